"""One job's run: `job_run` opens it, tags it, and ends it with the job's true status.

For rule-script authors. A rule script turns its `snakemake` object into a plain
`biomol_dl.job.Job` (scripts/snakemake_job.py) and wraps its work in

    with tracking.job_run(job) as run:            # or job_run(rule=, wildcards=, params=, ...)
        fit(..., log_metrics=run.log_metrics)     # one log_metrics({...}, step=epoch) per epoch
        run.log_metrics({"test_rmse": 0.61})      # final metrics
        run.log_artifact("results/.../metrics.json")

Each job gets a child run in its dataset's experiment `<prefix>/<dataset>` (jobs without a
`dataset` wildcard go to `<prefix>/workflow`), named by rule and wildcards, tagged
`mlflow.parentRunId` (the dataset's workflow run) and `biomol_dl.workflow_run_id` (the top run).

Job tags: rule, `wildcard.<name>`, host, pid, user, git commit + dirty flag of the workflow's
repository, config hash, SLURM_JOB_ID, `input.<name>.path`, and after the body
`output.<name>.path` / `output.<name>.sha256` (checkpoints are referenced this way, never
uploaded). Params: the rule's params, flattened (`model.params.lr`). A body that raises ends the
run FAILED with `biomol_dl.error` and an `error.txt` artifact (traceback); SIGTERM preemption and
other SystemExit / KeyboardInterrupt end it KILLED.

Orphaned jobs: a job whose outputs Snakemake discards is never FINISHED. When the Snakemake main
process dies without running its hooks (SIGKILL, the OOM killer, a lost login session), its
running jobs live on, but Snakemake (9.x, default file persistence) keeps the lock and an
incomplete marker per output (.snakemake/incomplete/<url-safe base64 of the output path>). After
`snakemake --unlock`, the next invocation re-makes outputs that are missing and refuses those that
exist (IncompleteFilesException) until it is given --rerun-incomplete, which re-makes them too;
only `snakemake --cleanup-metadata <files>` accepts them as they are. So:
- A job on the same host and PID namespace as the main process recorded in
  BIOMOL_DL_WORKFLOW_PROCESS runs a daemon watchdog thread that checks that process every
  BIOMOL_DL_WATCHDOG_SECONDS (default 2; 0 turns it off, e.g. for --immediate-submit). Once it is
  gone (or a zombie), the watchdog ends the run KILLED, tagged `biomol_dl.orphaned` = true and
  `biomol_dl.killed_reason`, and stops the job: SIGTERM to itself when the job has a Python
  SIGTERM handler (training then saves its resume state, so the re-made job resumes), a hard exit
  with status 143 otherwise or 30 s later. A local job is the main process's direct child (its
  script runs as one), yet the watchdog checks the recorded process rather than using
  PR_SET_PDEATHSIG, which covers only a direct parent and fires when the parent's *thread* that
  started the job ends (Snakemake starts jobs from a thread pool).
- A job about to end FINISHED checks too (a fast job may end between two watchdog polls): on the
  same host, the main process; in live mode, on any host (SLURM), whether its workflow run has
  already ended in the store (the next invocation marks a dead one KILLED). Either makes it
  KILLED + orphaned.
- The next invocation's store writer marks the rest (see `biomol_dl.tracking.stale`).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from biomol_dl.job import Job
from biomol_dl.tracking.process import (
    _local_workflow_process,
    _process_tags,
    _workflow_process_gone,
    git_state,
)
from biomol_dl.tracking.runs import JobRun
from biomol_dl.tracking.settings import (
    _HEX64,
    _MAX_TAG,
    _ORPHAN_GRACE_S,
    ENV_CONFIG_HASH,
    ENV_GIT_COMMIT,
    ENV_GIT_DIRTY,
    ENV_PARENT,
    ENV_PARENTS,
    ENV_SPOOL,
    ENV_WATCHDOG_SECONDS,
    TAG_ERROR,
    TAG_KIND,
    TAG_PARENT,
    TAG_WORKFLOW,
    TrackingUnavailable,
    _env_float,
    enabled,
    experiment_name,
    logger,
    tracking_mode,
    tracking_uri,
)
from biomol_dl.tracking.sinks import _LiveSink, _SpoolSink
from biomol_dl.tracking.spool import sync_spool
from biomol_dl.tracking.store import (
    _client,
    _retry,
    _unavailable,
    check_store,
    get_or_create_experiment,
)
from biomol_dl.tracking.values import _digest_tag, _each_file, _files, _key


class _OrphanWatchdog(threading.Thread):
    """Stops a job whose Snakemake main process is gone (a daemon thread of a local job).

    Polls the main process recorded in BIOMOL_DL_WORKFLOW_PROCESS; when it is gone, ends the run
    KILLED + orphaned, then stops the job (see "Orphaned jobs" in the module docstring).
    """

    def __init__(self, run: JobRun, interval: float):
        super().__init__(name="biomol-dl-orphan-watchdog", daemon=True)
        self.job, self.interval = run, interval
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            reason = _workflow_process_gone()
            if reason is None:
                continue
            logger.warning("%s; stopping this job", reason)
            self.job._terminate("KILLED", reason)
            if callable(signal.getsignal(signal.SIGTERM)):  # e.g. training saves its resume state
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(_ORPHAN_GRACE_S)
            os._exit(143)

    @classmethod
    def start_for(cls, run: JobRun) -> _OrphanWatchdog | None:
        """A started watchdog for `run`, or None (off, or no local main process to watch)."""
        interval = _env_float(ENV_WATCHDOG_SECONDS, 2.0)
        if not run.active or interval <= 0 or _local_workflow_process() is None:
            return None
        watchdog = cls(run, interval)
        watchdog.start()
        return watchdog


def _run_name(rule: str, wildcards: Mapping[str, Any]) -> str:
    return " ".join([rule, *[f"{k}={v}" for k, v in sorted(wildcards.items())]])


def _parent_for(experiment: str) -> str | None:
    try:
        parents = json.loads(os.environ.get(ENV_PARENTS) or "{}")
    except json.JSONDecodeError:
        parents = {}
    return parents.get(experiment) or os.environ.get(ENV_PARENT) or None


@contextmanager
def job_run(
    job: Job | None = None,
    *,
    rule: str | None = None,
    wildcards: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    inputs: Any = None,
    outputs: Any = None,
    experiment: str | None = None,
    parent: str | None = None,
) -> Iterator[JobRun]:
    """Open a child run for one job; FINISHED, FAILED (body raised) or KILLED (SIGTERM) at exit.

    job: the plain `biomol_dl.job.Job` a rule script made with `job_from_snakemake`; rule,
      wildcards, params, inputs and outputs are read from it unless given. inputs / outputs:
      {name: path or [paths]}, a list of paths or one path. experiment: overrides
      `<prefix>/<dataset wildcard>`. parent: the key of another parent run that
      workflow_start opened (a search study's: biomol_dl.search.study_parent_key); default
      the experiment's run.
    Spool mode (BIOMOL_DL_SPOOL set by workflow_start) writes a spool file; live mode raises
    TrackingUnavailable before the body runs when the store cannot be used. A job that outlives
    its Snakemake main process ends KILLED + orphaned (the watchdog stops it on the same host).
    """
    if job is not None and not isinstance(job, Job):
        # A rule script makes its Job with job_from_snakemake (scripts/snakemake_job.py).
        raise TypeError(
            f"tracking.job_run takes a biomol_dl.job.Job (see biomol_dl.job), not "
            f"{type(job).__name__}"
        )
    rule = rule or (job.rule if job else None) or "job"
    wildcards = dict(wildcards if wildcards is not None else (job.wildcards if job else {}))
    params = dict(params if params is not None else (job.params if job else {}))
    in_files = _files(inputs if inputs is not None else (job.input if job else None))
    out_files = _files(outputs if outputs is not None else (job.output if job else None))
    if not enabled():
        yield JobRun()
        return

    exp_name = experiment or experiment_name(wildcards.get("dataset"))
    tags = _job_tags(rule, wildcards, exp_name, parent)
    spool = os.environ.get(ENV_SPOOL)
    if spool:
        sink: Any = _SpoolSink(Path(spool), exp_name, _run_name(rule, wildcards), tags)
    else:
        sink = _open_live_run(exp_name, _run_name(rule, wildcards), tags)
    run = JobRun(sink)
    watchdog = _OrphanWatchdog.start_for(run)
    status, error = "FINISHED", None
    try:
        run.log_params(params)
        input_tags, lookups = _input_tags(in_files)
        run.set_tags(input_tags)
        if lookups:
            run._send("lineage", lookups)
        yield run
    except Exception as exc:
        status, error = "FAILED", exc
        raise
    except BaseException as exc:  # SystemExit (SIGTERM preemption: 143), KeyboardInterrupt
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        status, error = "KILLED", exc
        raise
    finally:
        try:
            if error is not None:
                run.set_tags({TAG_ERROR: f"{type(error).__name__}: {error}"})
                run.log_text("".join(traceback.format_exception(error)), "error.txt")
            run.set_tags(_output_tags(out_files, hashed=status == "FINISHED"))
        except Exception as exc:  # the job's own result matters more than its tags
            logger.warning("could not tag the end of run %s: %s", run.run_id, exc)
        finally:
            if watchdog is not None:
                watchdog.stop.set()
            # Checked last: hashing large outputs can take minutes.
            run._terminate(status, _orphan_reason(run) if status == "FINISHED" else None)


def _orphan_reason(run: JobRun) -> str | None:
    """Why a job that is about to end FINISHED is an orphan (its outputs will be discarded), or
    None: its main process is gone (same host), or, for a live run, its workflow run has ended."""
    reason = _workflow_process_gone()
    workflow = os.environ.get(ENV_PARENT)
    client = getattr(run._sink, "client", None)
    if reason or client is None or not workflow:
        return reason
    try:
        info = _retry(client.get_run, workflow).info
    except Exception as exc:  # cannot tell: the job's own result stands
        logger.warning("could not check workflow run %s: %s", workflow, exc)
        return None
    if info.status == "RUNNING":
        return None
    return (
        f"orphaned: its workflow run {workflow} ended ({info.status}) before this job did, so "
        "Snakemake discards this job's outputs"
    )


def _job_tags(
    rule: str, wildcards: Mapping[str, Any], exp_name: str, parent_key: str | None = None
) -> dict[str, str]:
    tags: dict[str, Any] = {
        TAG_KIND: "job",
        "rule": rule,
        **{f"wildcard.{k}": v for k, v in wildcards.items()},
        "wildcards": ",".join(f"{k}={v}" for k, v in sorted(wildcards.items())),
        **_process_tags(),
        "biomol_dl.workdir": os.getcwd(),
        "config_hash": os.environ.get(ENV_CONFIG_HASH, "unknown"),
    }
    commit, dirty = os.environ.get(ENV_GIT_COMMIT), os.environ.get(ENV_GIT_DIRTY)
    if commit is None:
        commit, dirty = git_state()
    tags["mlflow.source.git.commit"], tags["git_dirty"] = commit, dirty
    parent = (_parent_for(parent_key) if parent_key else None) or _parent_for(exp_name)
    if parent:
        tags[TAG_PARENT] = parent
        tags[TAG_WORKFLOW] = os.environ.get(ENV_PARENT) or parent
    return {_key(k): str(v)[:_MAX_TAG] for k, v in tags.items()}


def _open_live_run(exp_name: str, run_name: str, tags: Mapping[str, str]) -> _LiveSink:
    uri = tracking_uri()
    check_store(uri)
    client = _client(uri)
    try:
        exp_id = get_or_create_experiment(client, exp_name, uri)
        created = _retry(client.create_run, exp_id, tags=dict(tags), run_name=run_name)
    except TrackingUnavailable:
        raise
    except Exception as exc:
        raise _unavailable(uri, f"{type(exc).__name__}: {exc}") from None
    return _LiveSink(client, created.info.run_id, exp_id)


def _input_tags(files: Mapping[str, Any]) -> tuple[dict[str, str], list[list[str]]]:
    """Tags for the inputs, and (name, sha256, absolute path) of each to find a producer for."""
    tags: dict[str, str] = {}
    lookups: list[list[str]] = []
    for name, path in _each_file(files):
        digest = _digest_tag(path)
        tags[f"input.{name}.path"] = path
        tags[f"lineage.{name}.sha256"] = digest
        if _HEX64.match(digest):
            lookups.append([name, digest, str(Path(path).resolve())])
    return tags, lookups


def _output_tags(files: Mapping[str, Any], hashed: bool) -> dict[str, str]:
    tags: dict[str, str] = {}
    for name, path in _each_file(files):
        tags[f"output.{name}.path"] = path
        if hashed:
            digest = _digest_tag(path)
            tags[f"output.{name}.sha256"] = digest
            if _HEX64.match(digest):
                tags[f"produced.{digest}"] = str(Path(path).resolve())
    return tags


def find_runs(
    *,
    dataset: str | None = None,
    rule: str | None = None,
    wildcards: Mapping[str, Any] | None = None,
    status: str | None = "FINISHED",
    uri: str | None = None,
    max_results: int = 100,
) -> list[str]:
    """Run ids of job runs (newest first) whose `rule` and `wildcard.<name>` tags match.

    For the report, which shows each model's run id. In spool mode the spool is copied into the
    store first (under its lock), so jobs that just finished are found. Returns [] when tracking
    is off or nothing matches; raises TrackingUnavailable when the store cannot be reached.
    """
    if not enabled():
        return []
    uri = uri or tracking_uri()
    if tracking_mode() == "spool":
        sync_spool(uri=uri)
    client = _client(uri)
    experiment = _retry(client.get_experiment_by_name, experiment_name(dataset))
    if experiment is None:
        return []
    clauses = [f"attributes.status = '{status}'"] if status else []
    tags = {"rule": rule} if rule else {}
    tags.update({f"wildcard.{k}": v for k, v in (wildcards or {}).items()})
    for key, value in tags.items():
        if "'" in str(value) or "`" in key:
            raise ValueError(f"cannot search for tag {key}={value!r}")
        clauses.append(f"tags.`{key}` = '{value}'")
    runs = _retry(
        client.search_runs,
        [experiment.experiment_id],
        " and ".join(clauses),
        max_results=max_results,
        order_by=["attributes.start_time DESC"],
    )
    return [run.info.run_id for run in runs]
