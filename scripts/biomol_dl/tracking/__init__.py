"""MLflow tracking of every rule: the only package of biomol-dl that imports mlflow.

For rule-script authors and for the Snakefile. A rule script turns its `snakemake` object into a
plain `biomol_dl.job.Job` with scripts/snakemake_job.py and wraps its work in

    with tracking.job_run(job) as run:            # or job_run(rule=, wildcards=, params=, ...)
        fit(..., log_metrics=run.log_metrics)     # one log_metrics({...}, step=epoch) per epoch
        run.log_metrics({"test_rmse": 0.61})      # final metrics
        run.log_artifact("results/.../metrics.json")

and the Snakefile calls `workflow_start(config)` in `onstart:` and `workflow_end(...)` in
`onsuccess:` / `onerror:`. Library code only ever sees the `JobRun` (or its `log_metrics`).
Nothing here reads Snakemake's objects: jobs come as plain values.

Two modes, chosen by `workflow_start` (BIOMOL_DL_TRACKING_MODE, else config `tracking.mode`):
spool (the default: jobs append JSON lines, a thread of the Snakemake main process replays them,
so the store has one writer and jobs never import mlflow) and live (every job writes to the
store itself). Jobs run outside a workflow (no workflow_start, e.g. a notebook) are always live.
Off switch: BIOMOL_DL_TRACKING=0 (or `tracking.enabled: false`) makes every call a no-op.

The package, one module per concern (each module's docstring tells its part in full):

    settings   environment variables, tag names, limits; enabled, tracking_uri, tracking_mode
    store      the MLflow client per URI, schema under a lock, retries, fail-fast store checks
    process    host / pid / git tags, whether a recorded process still runs
    values     flattened params, valid keys, named files, file digests (biomol_dl.hashing)
    lineage    which run produced each input; lineage(run_id) back to the raw data
    sinks      where a run's records go: the store (live) or a spool file (spool)
    spool      sync_spool and the syncer thread of the Snakemake main process
    runs       JobRun, the handle library code logs to; log_torch_model, save_pyfunc_model
    jobs       job_run: a job's run, its tags, status, orphan watchdog; find_runs
    stale      stale RUNNING runs and orphaned FINISHED runs of dead invocations
    hooks      workflow_start / workflow_end: the workflow's runs, the environment for jobs

Each module imports only modules above it in that list (tests/test_tracking.py keeps it so).
"""

from biomol_dl.tracking.hooks import workflow_end, workflow_start
from biomol_dl.tracking.jobs import _parent_for, find_runs, job_run
from biomol_dl.tracking.lineage import find_producer, lineage
from biomol_dl.tracking.process import git_state
from biomol_dl.tracking.runs import JobRun, log_torch_model, save_pyfunc_model
from biomol_dl.tracking.settings import (
    DEFAULT_PREFIX,
    DEFAULT_URI,
    ENV_ARTIFACT_MAX_MB,
    ENV_CONFIG_HASH,
    ENV_GIT_COMMIT,
    ENV_GIT_DIRTY,
    ENV_HASH_CACHE,
    ENV_HASH_MAX_MB,
    ENV_MODE,
    ENV_PARENT,
    ENV_PARENTS,
    ENV_PREFIX,
    ENV_RETRIES,
    ENV_SPOOL,
    ENV_STALE_HOURS,
    ENV_SYNC_SECONDS,
    ENV_TIMEOUT,
    ENV_TRACKING,
    ENV_URI,
    ENV_WATCHDOG_SECONDS,
    ENV_WORKFLOW_PROCESS,
    TAG_ERROR,
    TAG_HOST,
    TAG_KILLED_REASON,
    TAG_KIND,
    TAG_ORPHANED,
    TAG_PARENT,
    TAG_PID,
    TAG_WORKFLOW,
    WORKFLOW_EXPERIMENT,
    TrackingUnavailable,
    enabled,
    experiment_name,
    experiment_prefix,
    tracking_mode,
    tracking_uri,
)
from biomol_dl.tracking.spool import _stop_syncer, spool_dir, sync_spool
from biomol_dl.tracking.stale import cleanup_stale_runs
from biomol_dl.tracking.store import _client, _retry, check_store, get_or_create_experiment
from biomol_dl.tracking.values import file_sha256

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_URI",
    "ENV_ARTIFACT_MAX_MB",
    "ENV_CONFIG_HASH",
    "ENV_GIT_COMMIT",
    "ENV_GIT_DIRTY",
    "ENV_HASH_CACHE",
    "ENV_HASH_MAX_MB",
    "ENV_MODE",
    "ENV_PARENT",
    "ENV_PARENTS",
    "ENV_PREFIX",
    "ENV_RETRIES",
    "ENV_SPOOL",
    "ENV_STALE_HOURS",
    "ENV_SYNC_SECONDS",
    "ENV_TIMEOUT",
    "ENV_TRACKING",
    "ENV_URI",
    "ENV_WATCHDOG_SECONDS",
    "ENV_WORKFLOW_PROCESS",
    "TAG_ERROR",
    "TAG_HOST",
    "TAG_KILLED_REASON",
    "TAG_KIND",
    "TAG_ORPHANED",
    "TAG_PARENT",
    "TAG_PID",
    "TAG_WORKFLOW",
    "WORKFLOW_EXPERIMENT",
    "JobRun",
    "TrackingUnavailable",
    "check_store",
    "cleanup_stale_runs",
    "enabled",
    "experiment_name",
    "experiment_prefix",
    "file_sha256",
    "find_producer",
    "find_runs",
    "get_or_create_experiment",
    "git_state",
    "job_run",
    "lineage",
    "log_torch_model",
    "save_pyfunc_model",
    "spool_dir",
    "sync_spool",
    "tracking_mode",
    "tracking_uri",
    "workflow_end",
    "workflow_start",
    # Internals the tests reach for (one store client per URI, retries, parents, the syncer).
    "_client",
    "_parent_for",
    "_retry",
    "_stop_syncer",
]
