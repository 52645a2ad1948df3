"""Workflow hooks: the Snakefile's `onstart:` calls `workflow_start(config)`, `onsuccess:` /
`onerror:` call `workflow_end(...)`.

Hierarchy. `workflow_start` opens one run per workflow invocation in `<prefix>/workflow` and,
under it, one run per configured dataset in `<prefix>/<dataset>` (the MLflow UI nests runs only
within one experiment); each job's run is a child of its dataset's run. Run ids, the absolute
tracking URI (MLFLOW_TRACKING_URI) and the spool folder reach jobs through environment
variables, which local jobs inherit and SLURM jobs get through `sbatch --export=ALL`:
BIOMOL_DL_PARENT_RUN_ID, BIOMOL_DL_PARENT_RUNS (JSON, experiment -> run id), BIOMOL_DL_SPOOL,
and BIOMOL_DL_WORKFLOW_PROCESS (the main process's identity, for the orphan watchdog). The mode
(spool or live) is chosen here: BIOMOL_DL_TRACKING_MODE, else config `tracking.mode`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from biomol_dl.tracking.process import _process_identity, _process_tags, git_state
from biomol_dl.tracking.runs import JobRun
from biomol_dl.tracking.settings import (
    _MAX_TAG,
    ENV_CONFIG_HASH,
    ENV_GIT_COMMIT,
    ENV_GIT_DIRTY,
    ENV_HASH_CACHE,
    ENV_PARENT,
    ENV_PARENTS,
    ENV_PREFIX,
    ENV_SPOOL,
    ENV_TRACKING,
    ENV_URI,
    ENV_WORKFLOW_PROCESS,
    TAG_ERROR,
    TAG_KIND,
    TAG_PARENT,
    TAG_WORKFLOW,
    TrackingUnavailable,
    enabled,
    experiment_name,
    experiment_prefix,
    logger,
    tracking_mode,
    tracking_uri,
)
from biomol_dl.tracking.sinks import _LiveSink
from biomol_dl.tracking.spool import _start_syncer, _stop_syncer, sync_spool
from biomol_dl.tracking.stale import Incomplete, cleanup_stale_runs
from biomol_dl.tracking.store import (
    _client,
    _kill,
    _prefix_experiment_ids,
    _retry,
    _search_all,
    _unavailable,
    check_store,
    get_or_create_experiment,
)
from biomol_dl.tracking.values import _yaml


def workflow_start(
    config: Mapping[str, Any] | None = None,
    workdir: str | Path | None = None,
    *,
    repo: str | Path | None = None,
    incomplete: Incomplete | None = None,
) -> str | None:
    """Prepare the store and open the workflow's runs; call from the Snakefile's `onstart:`.

    Creates the schema and every configured dataset's experiment before any job starts, marks
    stale RUNNING runs of earlier invocations KILLED, opens the workflow run and one run per
    dataset under it, logs the resolved config, and exports the environment variables jobs
    read. `incomplete(workdir, outputs)` names the outputs the workflow engine still marks
    incomplete (see `biomol_dl.tracking.stale`). Returns the workflow run id (None when tracking
    is off). Raises TrackingUnavailable.
    """
    config = config or {}
    workdir = Path(workdir or os.getcwd()).resolve()
    if ((config.get("tracking") or {}).get("enabled")) is False:
        os.environ[ENV_TRACKING] = "0"
    if not enabled():
        logger.info("biomol-dl tracking is off")
        return None
    uri = tracking_uri(config, workdir)
    prefix = experiment_prefix(config)
    mode = tracking_mode(config)
    commit, dirty = git_state(repo)
    chash = _config_hash(config)
    os.environ.update(
        {
            ENV_URI: uri,
            ENV_PREFIX: prefix,
            ENV_GIT_COMMIT: commit,
            ENV_GIT_DIRTY: dirty,
            ENV_CONFIG_HASH: chash,
            ENV_WORKFLOW_PROCESS: json.dumps(_process_identity()),
        }
    )
    os.environ.setdefault(ENV_HASH_CACHE, str(workdir / "results/mlflow/sha256_cache.sqlite"))
    os.environ.pop(ENV_SPOOL, None)
    check_store(uri)
    common = {
        **_process_tags(),
        "config_hash": chash,
        "mlflow.source.git.commit": commit,
        "git_dirty": dirty,
        "biomol_dl.workdir": str(workdir),
    }
    spool = workdir / "results/mlflow/spool"
    try:
        # Leftovers of an invocation that died (Snakemake locks the workdir): unended runs end
        # KILLED (a SLURM orphan may still run; its later records are dropped, never FINISHED).
        sync_spool(spool, uri, finalize=True)
        main = _open_workflow_runs(_client(uri), uri, config, prefix, common, incomplete)
    except TrackingUnavailable:
        raise
    except Exception as exc:
        raise _unavailable(uri, f"{type(exc).__name__}: {exc}") from None
    if mode == "spool":
        os.environ[ENV_SPOOL] = str(spool)
        _start_syncer(spool, uri)
    logger.info("MLflow workflow run %s in %s (%s mode)", main, uri, mode)
    return main


def _open_workflow_runs(
    client: Any,
    uri: str,
    config: Mapping[str, Any],
    prefix: str,
    common: Mapping[str, str],
    incomplete: Incomplete | None = None,
) -> str:
    datasets = list(config.get("datasets") or {})
    names = [experiment_name(None, prefix)] + [experiment_name(d, prefix) for d in datasets]
    exp_ids = {name: get_or_create_experiment(client, name, uri) for name in names}
    killed = cleanup_stale_runs(
        client, _prefix_experiment_ids(client, prefix), incomplete=incomplete
    )

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    main = _retry(
        client.create_run,
        exp_ids[names[0]],
        run_name=f"workflow {stamp}",
        tags={
            **common,
            TAG_KIND: "workflow",
            "command": " ".join(sys.argv)[:_MAX_TAG],
            "datasets": ",".join(datasets),
            "stale_runs_killed": str(len(killed)),
        },
    ).info.run_id
    top = JobRun(_LiveSink(client, main, exp_ids[names[0]]))
    top.set_tags({TAG_WORKFLOW: main})
    parents = {names[0]: main}
    for dataset, name in zip(datasets, names[1:], strict=True):
        parents[name] = _retry(
            client.create_run,
            exp_ids[name],
            run_name=f"workflow {stamp}",
            tags={
                **common,
                TAG_KIND: "dataset_workflow",
                TAG_PARENT: main,
                TAG_WORKFLOW: main,
                "wildcard.dataset": dataset,
            },
        ).info.run_id
    for dataset, model, key, spec in _studies(config):
        # one parent run per search study (biomol_dl.search), under its dataset's run
        name = experiment_name(dataset, prefix)
        parents[key] = _retry(
            client.create_run,
            exp_ids[name],
            run_name=f"study {model} {stamp}",
            tags={
                **common,
                TAG_KIND: "study",
                TAG_PARENT: parents[name],
                TAG_WORKFLOW: main,
                "wildcard.dataset": dataset,
                "wildcard.model": model,
                "biomol_dl.study": spec["study_name"],
            },
        ).info.run_id
        JobRun(_LiveSink(client, parents[key], exp_ids[name])).log_params({"study": spec})
    if config:
        top.log_text(_yaml(config), "config.yaml")
    os.environ[ENV_PARENT] = main
    os.environ[ENV_PARENTS] = json.dumps(parents)
    return main


def workflow_end(status: str = "FINISHED", log: Any = None) -> None:
    """End the workflow's runs; call from `onsuccess:` ("FINISHED") and `onerror:` ("FAILED").

    Jobs of this workflow still RUNNING are marked KILLED; `log` (Snakemake's log file, or the
    list of them that Snakemake hands its hooks) is attached to the workflow run. Never raises:
    the workflow's own result matters more.
    """
    main = os.environ.get(ENV_PARENT)
    if not enabled() or not main:
        return
    status = {"success": "FINISHED", "error": "FAILED"}.get(status.lower(), status.upper())
    logs = [log] if isinstance(log, (str, os.PathLike)) else list(log or [])
    parents = json.loads(os.environ.get(ENV_PARENTS) or "{}") or {"": main}
    steps: list[tuple[str, Callable[[], Any]]] = []
    try:
        client = _client(tracking_uri())
    except Exception as exc:
        logger.warning("could not end MLflow workflow run %s: %s", main, exc)
        return

    def kill_orphans() -> None:
        exp_ids = {_retry(client.get_run, rid).info.experiment_id for rid in parents.values()}
        running = _search_all(
            client,
            sorted(exp_ids),
            f"attributes.status = 'RUNNING' and tags.`{TAG_WORKFLOW}` = '{main}'",
        )
        for run in running:
            if run.info.run_id not in parents.values():
                _kill(client, run.info.run_id, f"workflow ended ({status}) while it was running")

    top = JobRun(_LiveSink(client, main))
    if os.environ.get(ENV_SPOOL):
        _stop_syncer()
        steps.append(("sync the spool", lambda: sync_spool(finalize=True)))
    steps.append(("mark unfinished jobs KILLED", kill_orphans))
    if status != "FINISHED":
        error = "the Snakemake workflow failed; see its log artifact"
        steps.append(("tag the error", lambda: top.set_tags({TAG_ERROR: error})))
    for path in logs:
        steps.append((f"attach {path}", lambda path=path: top.log_artifact(path)))
    for rid in [r for r in parents.values() if r != main] + [main]:
        steps.append((f"end run {rid}", lambda rid=rid: _retry(client.set_terminated, rid, status)))
    for what, step in steps:  # each step on its own: ending the runs matters most
        try:
            step()
        except Exception as exc:
            logger.warning(
                "MLflow workflow_end: could not %s: %s: %s", what, type(exc).__name__, exc
            )


def _studies(config: Mapping[str, Any]) -> list[tuple[str, str, str, dict]]:
    """(dataset, model, parent key, study spec) of every search study of a loaded config."""
    models = config.get("models") or {}
    if not any(isinstance(m, Mapping) and m.get("search") for m in models.values()):
        return []
    from biomol_dl import search

    return [
        (d, m, search.study_parent_key(d, m), search.study_spec(config, d, m))
        for d, m in search.studies(config)
    ]


def _config_hash(config: Mapping[str, Any]) -> str:
    if not config:
        return "none"
    from biomol_dl.config import config_hash

    return config_hash(dict(config))
