"""Tracking settings: the environment variables, tag names and limits, and what they resolve to.

Every setting a job needs reaches it through an environment variable that `workflow_start` sets
in the Snakemake main process (local jobs inherit them, SLURM jobs get them through `sbatch
--export=ALL`); the config's `tracking:` block is read only there.

Mode (`tracking_mode`): BIOMOL_DL_TRACKING_MODE, else config `tracking.mode`; `spool` (the
default) or `live` (see `biomol_dl.tracking.spool`). Jobs run outside a workflow (no
workflow_start, e.g. a notebook) are always live.

Store (`tracking_uri`): config `tracking.uri`, else MLFLOW_TRACKING_URI, else
sqlite:///results/mlflow/mlflow.db under the workflow's working directory, made absolute for jobs.

Off switch: BIOMOL_DL_TRACKING=0 (or `tracking.enabled: false`) makes every call a no-op.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger("biomol_dl.tracking")

DEFAULT_URI = "sqlite:///results/mlflow/mlflow.db"
DEFAULT_PREFIX = "biomol-dl"
WORKFLOW_EXPERIMENT = "workflow"

ENV_TRACKING = "BIOMOL_DL_TRACKING"
ENV_MODE = "BIOMOL_DL_TRACKING_MODE"
ENV_URI = "MLFLOW_TRACKING_URI"
ENV_PARENT = "BIOMOL_DL_PARENT_RUN_ID"
ENV_PARENTS = "BIOMOL_DL_PARENT_RUNS"
ENV_SPOOL = "BIOMOL_DL_SPOOL"
ENV_SYNC_SECONDS = "BIOMOL_DL_SYNC_SECONDS"
ENV_PREFIX = "BIOMOL_DL_EXPERIMENT_PREFIX"
ENV_CONFIG_HASH = "BIOMOL_DL_CONFIG_HASH"
ENV_GIT_COMMIT = "BIOMOL_DL_GIT_COMMIT"
ENV_GIT_DIRTY = "BIOMOL_DL_GIT_DIRTY"
ENV_HASH_CACHE = "BIOMOL_DL_HASH_CACHE"
ENV_HASH_MAX_MB = "BIOMOL_DL_HASH_MAX_MB"
ENV_TIMEOUT = "BIOMOL_DL_TRACKING_TIMEOUT"
ENV_RETRIES = "BIOMOL_DL_TRACKING_RETRIES"
ENV_STALE_HOURS = "BIOMOL_DL_STALE_HOURS"
ENV_ARTIFACT_MAX_MB = "BIOMOL_DL_ARTIFACT_MAX_MB"
ENV_WORKFLOW_PROCESS = "BIOMOL_DL_WORKFLOW_PROCESS"
ENV_WATCHDOG_SECONDS = "BIOMOL_DL_WATCHDOG_SECONDS"

TAG_KIND = "biomol_dl.kind"  # workflow | dataset_workflow | job
TAG_WORKFLOW = "biomol_dl.workflow_run_id"
TAG_HOST = "biomol_dl.host"
TAG_PID = "biomol_dl.pid"
TAG_ERROR = "biomol_dl.error"
TAG_PARENT = "mlflow.parentRunId"
TAG_ORPHANED = "biomol_dl.orphaned"
TAG_KILLED_REASON = "biomol_dl.killed_reason"

_MAX_PARAM = 6000
_MAX_TAG = 8000
_BATCH = 100  # MLflow's limit on params + tags per log_batch
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SPOOL_SUFFIX = ".jsonl"
_ORPHAN_GRACE_S = 30  # how long an orphaned job's own SIGTERM handler may take to exit


class TrackingUnavailable(RuntimeError):
    """The MLflow store cannot be reached or used; the message is one line naming the URI."""


def enabled() -> bool:
    """False when BIOMOL_DL_TRACKING is 0 / false / off / no (set by the user or the config)."""
    return os.environ.get(ENV_TRACKING, "1").strip().lower() not in {"0", "false", "off", "no"}


def tracking_uri(config: Mapping | None = None, workdir: str | Path | None = None) -> str:
    """The store: config `tracking.uri`, else MLFLOW_TRACKING_URI, else the local SQLite default.

    A relative SQLite path is made absolute against `workdir` (default: the current directory),
    so a job running elsewhere (another cwd, a SLURM node) writes to the same database.
    """
    configured = ((config or {}).get("tracking") or {}).get("uri")
    uri = configured or os.environ.get(ENV_URI) or DEFAULT_URI
    path = _sqlite_path(uri)
    if path is not None and not path.is_absolute():
        base, _, query = uri.removeprefix("sqlite:///").partition("?")
        absolute = (Path(workdir or os.getcwd()) / base).resolve()
        uri = f"sqlite:///{absolute}" + (f"?{query}" if query else "")
    return uri


def tracking_mode(config: Mapping | None = None) -> str:
    """Spool (the default) or live: BIOMOL_DL_TRACKING_MODE, else config `tracking.mode`."""
    configured = ((config or {}).get("tracking") or {}).get("mode")
    mode = (os.environ.get(ENV_MODE) or configured or "spool").strip().lower()
    if mode not in {"spool", "live"}:
        raise ValueError(f"tracking mode must be 'spool' or 'live', not {mode!r}")
    return mode


def experiment_prefix(config: Mapping | None = None) -> str:
    configured = ((config or {}).get("tracking") or {}).get("experiment_prefix")
    return configured or os.environ.get(ENV_PREFIX) or DEFAULT_PREFIX


def experiment_name(dataset: str | None = None, prefix: str | None = None) -> str:
    """`<prefix>/<dataset>`, or `<prefix>/workflow` for workflow runs and dataset-less jobs."""
    return f"{prefix or experiment_prefix()}/{dataset or WORKFLOW_EXPERIMENT}"


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").partition("?")[0])


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
