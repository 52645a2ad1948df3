"""MLflow tracking of every rule: the only module of biomol-dl that imports mlflow.

For rule-script authors and for the Snakefile. A rule script wraps its work in

    with tracking.job_run(snakemake) as run:      # or job_run(rule=, wildcards=, params=, ...)
        fit(..., log_metrics=run.log_metrics)     # one log_metrics({...}, step=epoch) per epoch
        run.log_metrics({"test_rmse": 0.61})      # final metrics
        run.log_artifact("results/.../metrics.json")

and the Snakefile calls `workflow_start(config)` in `onstart:` and `workflow_end(...)` in
`onsuccess:` / `onerror:`. Library code only ever sees the `JobRun` (or its `log_metrics`).

Two modes, chosen by `workflow_start` (BIOMOL_DL_TRACKING_MODE, else config `tracking.mode`):
- spool (default): a job appends its records as JSON lines to its own file under
  results/mlflow/spool and never imports mlflow (a job pays milliseconds, not the ~2-3 s of
  importing mlflow and its SQL store). A thread of the Snakemake main process replays the files
  every BIOMOL_DL_SYNC_SECONDS (default 5), so the store has one writer however many jobs run;
  `workflow_end` does a final sync, and `workflow_start` syncs what a dead invocation left.
- live: every job writes to the store itself (runs appear at once; costs each job the import).
  Jobs run outside a workflow (no workflow_start, e.g. a notebook) are always live.

Hierarchy. `workflow_start` opens one run per workflow invocation in `<prefix>/workflow` and,
under it, one run per configured dataset in `<prefix>/<dataset>` (the MLflow UI nests runs only
within one experiment). Each job gets a child run in its dataset's experiment (jobs without a
`dataset` wildcard go to `<prefix>/workflow`), named by rule and wildcards, tagged
`mlflow.parentRunId` (the dataset's workflow run) and `biomol_dl.workflow_run_id` (the top run).
Run ids, the absolute tracking URI (MLFLOW_TRACKING_URI) and the spool folder reach jobs through
environment variables, which local jobs inherit and SLURM jobs get through `sbatch
--export=ALL`: BIOMOL_DL_PARENT_RUN_ID, BIOMOL_DL_PARENT_RUNS (JSON, experiment -> run id),
BIOMOL_DL_SPOOL.

Job tags: rule, `wildcard.<name>`, host, pid, user, git commit + dirty flag of the workflow's
repository, config hash, SLURM_JOB_ID, `input.<name>.path`, and after the body
`output.<name>.path` / `output.<name>.sha256` (checkpoints are referenced this way, never
uploaded). Params: the rule's params, flattened (`model.params.lr`). A body that raises ends the
run FAILED with `biomol_dl.error` and an `error.txt` artifact (traceback); SIGTERM preemption
and other SystemExit / KeyboardInterrupt end it KILLED.

Orphaned jobs: a job whose outputs Snakemake discards is never FINISHED. When the Snakemake main
process dies without running its hooks (SIGKILL, the OOM killer, a lost login session), its
running jobs live on, but Snakemake (9.x, default file persistence) keeps the lock and an
incomplete marker per output (.snakemake/incomplete/<url-safe base64 of the output path>). After
`snakemake --unlock`, the next invocation re-makes outputs that are missing and refuses those that
exist (IncompleteFilesException) until it is given --rerun-incomplete, which re-makes them too;
only `snakemake --cleanup-metadata <files>` accepts them as they are. So:
- `workflow_start` exports the main process's identity in BIOMOL_DL_WORKFLOW_PROCESS (JSON: host,
  PID namespace, pid, and start time in clock ticks, which a reused pid cannot fake). A job on the
  same host and PID namespace runs a daemon watchdog thread that checks that process every
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
- The store writer of the next invocation (`workflow_start`, after replaying the dead invocation's
  spool) marks KILLED + orphaned every FINISHED job of a workflow it finds dead (see Stale runs)
  whose outputs Snakemake still marks incomplete in that job's working directory: a job that
  ended just before its main process died, or on another host without the watchdog. Outputs that
  `--cleanup-metadata` accepted have no marker left and their runs stay FINISHED.

Lineage (choice: tags in the store, not a sidecar index, so it works the same against a shared
`mlflow server` and shows in the UI). Every finished job tags `produced.<sha256>` = the output's
absolute path. A consumer hashes its inputs (`lineage.<input>.sha256`) and, per input, the most
recent FINISHED run carrying that tag (same path first, then same content anywhere under the
prefix) becomes `lineage.<input>.run_id` / `.rule` (looked up by the job in live mode, by the
sync in spool mode). `lineage(run_id)` walks a model's run back through featurization, split
and validation to the raw data's hash. Hashes are cached by (path, size, mtime) in a small
SQLite file (BIOMOL_DL_HASH_CACHE, default results/mlflow/sha256_cache.sqlite), so a large
feature file is hashed once, not once per consumer; files over BIOMOL_DL_HASH_MAX_MB (default
8192) are not hashed and tagged as skipped.

Stores. Default: sqlite:///results/mlflow/mlflow.db under the workflow's working directory
(artifacts in results/mlflow/artifacts), made absolute for jobs. `tracking.uri` in the config or
MLFLOW_TRACKING_URI selects another store, e.g. http://host:5000 for `mlflow server`. A SQLite
store's folder is created only inside the working directory (where the default is); a store named
anywhere else must have its folder already, or tracking fails before any job with one line naming
the URI and the missing folder (so a typo like sqlite:////nonexistent/... never creates folders at
the filesystem root). Many
writers (live mode) on SQLite: the schema is created once, under a file lock (on a fresh file,
concurrent schema creation loses all but one process's run), `workflow_start` creates every
configured dataset's experiment before any job, experiment creation is create-or-get, and store
calls are retried with jittered backoff on "database is locked" (MLflow itself sets a 20 s
SQLite busy timeout per session; its MLFLOW_SQLALCHEMYSTORE_* variables only size the pool).

Unreachable store (choice: fail fast, and in spool mode buffer too). `workflow_start`, and a
live job before its body, check the store (HTTP: GET /health within BIOMOL_DL_TRACKING_TIMEOUT
seconds, default 10; SQLite: opening it) and raise `TrackingUnavailable`, one line naming the
URI. A spooled job never needs the store: if it goes away mid-workflow, the syncer warns and
the spool waits for the next sync. A live job that loses the store mid-run warns once and stops
logging rather than throw away hours of training.

Stale runs. `workflow_start` marks RUNNING runs under the prefix KILLED when their process is
gone: on this host, when the recorded pid no longer runs (or now belongs to a younger process);
a job whose workflow run has ended or is itself stale; runs from other hosts only when older
than BIOMOL_DL_STALE_HOURS (default 24; a live job's own final status still overwrites KILLED,
but FINISHED only while its workflow run is RUNNING). The same pass marks the dead workflows'
discarded FINISHED jobs orphaned (see Orphaned jobs). `workflow_end` marks its own still-RUNNING
jobs KILLED and ends the workflow runs.

Off switch: BIOMOL_DL_TRACKING=0 (or `tracking.enabled: false`) makes every call a no-op.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import logging
import os
import posixpath
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from biomol_dl.job import Job

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


# --------------------------------------------------------------------------------------------
# Settings


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


# --------------------------------------------------------------------------------------------
# Store access: health check, schema creation under a lock, retries


def _is_transient(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", None)
    if code in {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}:
        return True
    message = str(exc).lower()
    return "database is locked" in message or "database table is locked" in message


def _retry(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call fn, retrying "database is locked"-like errors with jittered exponential backoff."""
    attempts = max(1, int(_env_float(ENV_RETRIES, 10)))
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not _is_transient(exc):
                raise
            delay = min(0.1 * 2**attempt, 5.0) * random.uniform(0.5, 1.5)
            logger.debug("transient MLflow error (%s); retry %d in %.2fs", exc, attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


_CLIENTS: dict[str, Any] = {}


def _unavailable(uri: str, reason: Any) -> TrackingUnavailable:
    reason = " ".join(str(reason).split())
    if "Invalid Host header" in reason:  # mlflow >= 3.5 accepts only localhost / private IPs
        reason = "the server rejects this Host name; start it with --allowed-hosts <name>:<port>"
    reason = reason[:300]
    return TrackingUnavailable(
        f"biomol-dl tracking: MLflow store {uri} is unavailable ({reason}); start it or point "
        f"tracking.uri / {ENV_URI} at a reachable store, or set {ENV_TRACKING}=0 to run untracked"
    )


def check_store(uri: str | None = None, timeout: float | None = None) -> None:
    """Raise TrackingUnavailable unless the store answers (HTTP: GET /health; SQLite: open it)."""
    uri = uri or tracking_uri()
    timeout = timeout if timeout is not None else _env_float(ENV_TIMEOUT, 10.0)
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
                if resp.status != 200:
                    raise _unavailable(uri, f"/health answered HTTP {resp.status}")
        except urllib.error.HTTPError as exc:
            raise _unavailable(uri, f"/health answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise _unavailable(uri, getattr(exc, "reason", exc)) from None
    else:
        _client(uri)


def _client(uri: str) -> Any:
    """An MlflowClient for `uri`, the store's schema created once (under a lock for SQLite)."""
    if uri in _CLIENTS:
        return _CLIENTS[uri]
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # compute nodes have no internet
    try:
        path = _sqlite_path(uri)
        if path is not None:
            _store_folder(uri, path.parent)
            with _file_lock(path.with_name(path.name + ".lock")):
                client = MlflowClient(tracking_uri=uri, registry_uri=uri)
                _retry(client.search_experiments, max_results=1)  # creates / checks the schema
        else:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    except TrackingUnavailable:
        raise
    except Exception as exc:
        raise _unavailable(uri, f"{type(exc).__name__}: {exc}") from None
    _CLIENTS[uri] = client
    return client


def _store_folder(uri: str, folder: Path) -> None:
    """Create a SQLite store's folder, but only inside the working directory.

    The default store (results/mlflow) is there; a folder named anywhere else must exist, so a
    mistyped absolute path fails (one line naming the URI and the folder) instead of creating
    folders at the filesystem root.
    """
    if folder.is_dir():
        return
    cwd = Path.cwd().resolve()
    if not folder.resolve().is_relative_to(cwd):
        raise _unavailable(
            uri,
            f"its folder {folder} does not exist; create it, or name a store inside the working "
            f"directory {cwd}, where biomol-dl creates the folder",
        )
    folder.mkdir(parents=True, exist_ok=True)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): rely on the retries
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # some network file systems refuse flock: rely on the retries
            logger.debug("no lock on %s: %s", path, exc)
        yield


def get_or_create_experiment(client: Any, name: str, uri: str | None = None) -> str:
    """The experiment id for `name`, creating it if needed; safe when processes race to create.

    For SQLite stores, new experiments keep their artifacts beside the database
    (<db folder>/artifacts/<name>), whatever the creating process's working directory.
    """
    from mlflow.exceptions import MlflowException

    path = _sqlite_path(uri or "")
    location = (path.parent / "artifacts" / name).as_uri() if path else None
    for _ in range(5):
        exp = _retry(client.get_experiment_by_name, name)
        if exp is not None:
            if exp.lifecycle_stage != "active":
                raise TrackingUnavailable(
                    f"biomol-dl tracking: experiment {name!r} is deleted in {uri}; restore it "
                    f"(`mlflow experiments restore`) or choose another {ENV_PREFIX}"
                )
            return exp.experiment_id
        try:
            return _retry(client.create_experiment, name, artifact_location=location)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "exists" not in str(exc):
                raise
            # Another process created it between our lookup and create: look it up again.
    raise TrackingUnavailable(f"biomol-dl tracking: could not create or find experiment {name!r}")


def _prefix_experiment_ids(client: Any, prefix: str) -> list[str]:
    exps = _retry(client.search_experiments, filter_string=f"name LIKE '{prefix}/%'")
    return [e.experiment_id for e in exps if e.name.startswith(f"{prefix}/")]


def _search_all(client: Any, experiment_ids: Sequence[str], filter_string: str) -> list[Any]:
    if not experiment_ids:
        return []
    runs, token = [], None
    while True:
        page = _retry(client.search_runs, list(experiment_ids), filter_string, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


# --------------------------------------------------------------------------------------------
# Hashes and provenance


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a file, cached by (path, size, mtime); None for files over the size limit."""
    p = Path(path)
    st = p.stat()
    if st.st_size > _env_float(ENV_HASH_MAX_MB, 8192) * 2**20:
        return None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    cached = _hash_cache(key)
    if cached:
        return cached
    digest = hashlib.sha256()
    with open(p, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    _hash_cache(key, digest.hexdigest())
    return digest.hexdigest()


def _hash_cache(key: tuple[str, int, int], value: str | None = None) -> str | None:
    # A cache only: any problem with it (locked, read-only, corrupt) means hashing again.
    db = Path(os.environ.get(ENV_HASH_CACHE) or "results/mlflow/sha256_cache.sqlite")
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(db, timeout=30)) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS files "
                "(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT)"
            )
            if value is not None:
                conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (*key, value))
                return value
            row = conn.execute(
                "SELECT sha256 FROM files WHERE path = ? AND size = ? AND mtime_ns = ?", key
            ).fetchone()
            return row[0] if row else None
    except (sqlite3.Error, OSError) as exc:
        logger.debug("sha256 cache %s unusable: %s", db, exc)
        return None


def git_state(repo: str | Path | None = None) -> tuple[str, str]:
    """(commit, dirty) of the workflow's repository: ("unknown", "unknown") without git."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout

    try:
        git("rev-parse", "--show-toplevel")
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return "unknown", "unknown"  # no git, or not a repository (an installed package)
    try:
        commit = git("rev-parse", "HEAD").strip()
    except (OSError, RuntimeError, subprocess.SubprocessError):
        commit = "none"  # a repository without commits yet
    try:
        dirty = "true" if git("status", "--porcelain").strip() else "false"
    except (OSError, RuntimeError, subprocess.SubprocessError):
        dirty = "unknown"
    return commit, dirty


def _process_tags() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid()), "mlflow.user": user}
    if os.environ.get("SLURM_JOB_ID"):
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of a process, from Linux /proc; else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _process_alive(
    pid: int, run_start_ms: int | None = None, start_ticks: int | None = None
) -> bool:
    """True if `pid` runs here (not a zombie) and is the process meant, not one that reused the
    number: the one that started at `start_ticks` exactly, or one not younger than a run that
    started at `run_start_ms`. Without /proc only the pid is checked."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, ticks = stat
    if state in {"Z", "X"}:  # killed, not yet reaped by its parent
        return False
    if start_ticks is not None:
        return ticks == start_ticks
    if run_start_ms is None:
        return True
    try:
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK") <= run_start_ms / 1000 + 2
    except (OSError, ValueError, IndexError, StopIteration):
        return True


def _pid_namespace() -> str | None:
    """This process's PID namespace (Linux), so a container sharing the host name is not here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_identity() -> dict[str, Any]:
    """This process as BIOMOL_DL_WORKFLOW_PROCESS records it: host, PID namespace, pid and start
    time (clock ticks after boot)."""
    stat = _proc_stat(os.getpid())
    return {
        "host": socket.gethostname(),
        "pid_ns": _pid_namespace(),
        "pid": os.getpid(),
        "start_ticks": stat and stat[1],
    }


def _local_workflow_process() -> tuple[int, int | None] | None:
    """(pid, start ticks) of the Snakemake main process that `workflow_start` recorded, when it
    runs on this host, in this PID namespace, and is not this process; else None."""
    try:
        main = json.loads(os.environ.get(ENV_WORKFLOW_PROCESS) or "{}")
        pid, ticks = int(main["pid"]), main.get("start_ticks")
        here = main["host"] == socket.gethostname() and main.get("pid_ns") == _pid_namespace()
    except (json.JSONDecodeError, TypeError, ValueError, KeyError):
        return None
    if not here or pid == os.getpid():
        return None
    return pid, (int(ticks) if ticks is not None else None)


def _workflow_process_gone() -> str | None:
    """Why this job is an orphan when its local Snakemake main process is gone; else None."""
    main = _local_workflow_process()
    if main is None or _process_alive(main[0], start_ticks=main[1]):
        return None
    return (
        f"orphaned: the Snakemake main process (pid {main[0]} on {socket.gethostname()}) is "
        "gone, so Snakemake discards this job's outputs (they stay marked incomplete)"
    )


# --------------------------------------------------------------------------------------------
# Names and values


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _key(name: Any) -> str:
    """A valid MLflow param / metric / tag key (alphanumerics, _ - . space / :)."""
    key = re.sub(r"[^\w.\-/ :]", "_", str(name))[:250] or "_"
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith(("..", "/")):
        key = re.sub(r"^[./]+", "_", key.replace("/", "_"))
    return key


def _files(obj: Any) -> dict[str, str | list[str]]:
    """Named files: {name: path or [paths]}, a list of paths (keyed by position) or one path."""
    if obj is None:
        return {}
    if isinstance(obj, (str, os.PathLike)):
        return {"0": str(obj)}
    items = obj.items() if isinstance(obj, Mapping) else enumerate(obj)
    out: dict[str, str | list[str]] = {}
    for name, value in items:
        if str(name).startswith("_"):
            continue
        if isinstance(value, (str, os.PathLike)):
            out[str(name)] = str(value)
        else:
            out[str(name)] = [str(v) for v in value]
    return out


def _legacy_job(obj: Any) -> Job:
    """TEMPORARY: a rule script that still passes its snakemake-like object (until every script
    calls job_from_snakemake itself); converted by the adapter beside the rule scripts."""
    from snakemake_job import job_from_snakemake

    return job_from_snakemake(obj)


def _each_file(files: Mapping[str, str | list[str]]) -> Iterator[tuple[str, str]]:
    for name, value in files.items():
        if isinstance(value, str):
            yield name, value
        else:
            for i, path in enumerate(value):
                yield f"{name}.{i}", path


def _digest_tag(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        return "directory"
    if not p.exists():
        return "missing"
    return file_sha256(p) or f"skipped (over {os.environ.get(ENV_HASH_MAX_MB, 8192)} MB)"


# --------------------------------------------------------------------------------------------
# Where a job's records go: straight to the store (live) or to a spool file (spool)

Metric = tuple[str, float, int, int]  # key, value, timestamp (ms), step


class _LiveSink:
    """Writes a run's records to the MLflow store as they come."""

    def __init__(self, client: Any, run_id: str, experiment_id: str | None = None):
        self.client, self.run_id, self.experiment_id = client, run_id, experiment_id

    def log(self, metrics: Sequence[Metric] = (), params: Mapping[str, str] | None = None,
            tags: Mapping[str, str] | None = None) -> None:  # fmt: skip
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import Param, RunTag

        metric_list = [MlflowMetric(*m) for m in metrics]
        param_list = [Param(k, v) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        # MLflow's per-call limits: 100 params + tags, 1000 entities in all.
        while metric_list or param_list or tag_list:
            some_params = param_list[:_BATCH]
            room = _BATCH - len(some_params)
            _retry(
                self.client.log_batch,
                self.run_id,
                metrics=metric_list[:900],
                params=some_params,
                tags=tag_list[:room],
            )
            metric_list, param_list, tag_list = (
                metric_list[900:],
                param_list[_BATCH:],
                tag_list[room:],
            )

    def lineage(self, lookups: Sequence[Sequence[str]]) -> None:
        self.log(tags=_resolve_lineage(self.client, lookups))

    def artifact(self, path: str, artifact_path: str | None = None) -> None:
        _retry(self.client.log_artifact, self.run_id, path, artifact_path)

    def text(self, text: str, artifact_file: str) -> None:
        _retry(self.client.log_text, self.run_id, text, artifact_file)

    def end(self, status: str, end_time: int | None = None) -> None:
        _retry(self.client.set_terminated, self.run_id, status, end_time)


class _SpoolSink:
    """Appends a run's records, one JSON line each, to its own file under the spool folder.

    Costs a job no mlflow import and no store round trip; `sync_spool` (a thread of the
    Snakemake main process, the store's only writer) turns the file into an MLflow run.
    """

    run_id = None
    experiment_id = None

    def __init__(self, spool: Path, experiment: str, run_name: str, tags: Mapping[str, str]):
        spool.mkdir(parents=True, exist_ok=True)
        stem = f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = spool / f"{stem}{_SPOOL_SUFFIX}"
        self._file = open(self.path, "a", encoding="utf-8")  # open until end(): one append a record
        self._write(op="start", experiment=experiment, run_name=run_name, tags=dict(tags),
                    time=_now_ms())  # fmt: skip

    def _write(self, **event: Any) -> None:
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()

    def log(self, metrics: Sequence[Metric] = (), params: Mapping[str, str] | None = None,
            tags: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self._write(op="log", metrics=[list(m) for m in metrics], params=dict(params or {}),
                    tags=dict(tags or {}))  # fmt: skip

    def lineage(self, lookups: Sequence[Sequence[str]]) -> None:
        self._write(op="lineage", inputs=[list(x) for x in lookups])

    def artifact(self, path: str, artifact_path: str | None = None) -> None:
        self._write(op="artifact", path=path, artifact_path=artifact_path)

    def text(self, text: str, artifact_file: str) -> None:
        self._write(op="text", text=text, artifact_file=artifact_file)

    def end(self, status: str, end_time: int | None = None) -> None:
        self._write(op="end", status=status, time=end_time or _now_ms())
        self._file.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# One job's run


class JobRun:
    """One MLflow run for one Snakemake job, or a no-op when tracking is off.

    run_id is the MLflow run id in live mode and None in spool mode (the run is created when
    the spool is synced). Logging during the body never kills a job: a failing store call (after
    retries) is reported once as a warning and later calls are skipped. Thread-safe (the orphan
    watchdog may end the run while the body logs); once ended, further calls do nothing.
    """

    def __init__(self, sink: Any = None):
        self._sink = sink
        self._params: dict[str, str] = {}
        self._lock = threading.RLock()
        self._ended = False
        self.run_id = getattr(sink, "run_id", None)
        self.experiment_id = getattr(sink, "experiment_id", None)
        self.spool_file = getattr(sink, "path", None)

    @property
    def active(self) -> bool:
        return self._sink is not None

    def _send(self, method: str, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            if self._sink is not None and not self._ended:
                self._send_now(method, *args, **kwargs)

    def _send_now(self, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(self._sink, method)(*args, **kwargs)
        except Exception as exc:
            logger.warning(
                "MLflow %s failed for run %s (%s: %s); tracking is off for the rest of this job",
                method, self.run_id or self.spool_file, type(exc).__name__,
                " ".join(str(exc).split())[:300],
            )  # fmt: skip
            self._sink = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params, flattened (`model.params.lr`); a key logged twice keeps its first value."""
        new = {}
        for key, value in _flatten(params).items():
            key, text = _key(key), str(value)[:_MAX_PARAM]
            if key in self._params:
                if self._params[key] != text:
                    logger.warning(
                        "param %s already logged as %r; ignoring %r", key, self._params[key], text
                    )
                continue
            self._params[key] = new[key] = text
        if new:
            self._send("log", params=new)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log a dict of metrics in one batch (call once per epoch with step=epoch)."""
        now, batch = _now_ms(), []
        for key, value in metrics.items():
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                logger.warning("metric %s=%r is not a number; not logged", key, value)
                continue
            batch.append((_key(key), number, now, int(step or 0)))
        if batch:
            self._send("log", metrics=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if tags:
            self._send("log", tags={_key(k): str(v)[:_MAX_TAG] for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a small file (metrics, predictions, plots, model card).

        Files over BIOMOL_DL_ARTIFACT_MAX_MB (default 50) are referenced by path and sha256
        tags instead: Snakemake owns results/, MLflow keeps metadata. In spool mode the file is
        read when the spool is synced, so log files that stay (results/), not temporary ones.
        """
        p = Path(path)
        if not self.active:
            return
        if not p.is_file():
            logger.warning("artifact %s does not exist; not logged", p)
            return
        if p.stat().st_size > _env_float(ENV_ARTIFACT_MAX_MB, 50) * 2**20:
            self.log_checkpoint(p, name=p.name)
            return
        self._send("artifact", str(p.resolve()), artifact_path)

    def log_checkpoint(self, path: str | Path, name: str = "model") -> None:
        """Reference a large file (a checkpoint) by absolute path, size and sha256 tags."""
        if not self.active:
            return
        p = Path(path).resolve()
        self.set_tags(
            {
                f"checkpoint.{name}.path": p,
                f"checkpoint.{name}.bytes": p.stat().st_size if p.exists() else "missing",
                f"checkpoint.{name}.sha256": _digest_tag(str(p)),
            }
        )

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("text", text, artifact_file)

    def log_dict(self, obj: Mapping[str, Any], artifact_file: str) -> None:
        """Log a dict as a YAML (.yaml / .yml) or JSON artifact, e.g. a resolved config."""
        if artifact_file.endswith((".yaml", ".yml")):
            self.log_text(_yaml(obj), artifact_file)
        else:
            self.log_text(json.dumps(obj, indent=2, default=str), artifact_file)

    def _terminate(self, status: str, orphaned: str | None = None) -> None:
        """End the run with `status` (KILLED and tagged when `orphaned` gives why); once only."""
        with self._lock:
            if orphaned:
                self.set_tags({TAG_ORPHANED: "true", TAG_KILLED_REASON: orphaned})
                status = "KILLED"
            self._send("end", status)
            self._ended = True


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
) -> Iterator[JobRun]:
    """Open a child run for one job; FINISHED, FAILED (body raised) or KILLED (SIGTERM) at exit.

    job: the plain `biomol_dl.job.Job` a rule script made with `job_from_snakemake`; rule,
      wildcards, params, inputs and outputs are read from it unless given. inputs / outputs:
      {name: path or [paths]}, a list of paths or one path. experiment: overrides
      `<prefix>/<dataset wildcard>`.
    Spool mode (BIOMOL_DL_SPOOL set by workflow_start) writes a spool file; live mode raises
    TrackingUnavailable before the body runs when the store cannot be used. A job that outlives
    its Snakemake main process ends KILLED + orphaned (the watchdog stops it on the same host).
    """
    if job is not None and not isinstance(job, Job):
        job = _legacy_job(job)
    rule = rule or (job.rule if job else None) or "job"
    wildcards = dict(wildcards if wildcards is not None else (job.wildcards if job else {}))
    params = dict(params if params is not None else (job.params if job else {}))
    in_files = _files(inputs if inputs is not None else (job.input if job else None))
    out_files = _files(outputs if outputs is not None else (job.output if job else None))
    if not enabled():
        yield JobRun()
        return

    exp_name = experiment or experiment_name(wildcards.get("dataset"))
    tags = _job_tags(rule, wildcards, exp_name)
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


def _job_tags(rule: str, wildcards: Mapping[str, Any], exp_name: str) -> dict[str, str]:
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
    parent = _parent_for(exp_name)
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


# --------------------------------------------------------------------------------------------
# Lineage


def _resolve_lineage(client: Any, lookups: Sequence[Sequence[str]]) -> dict[str, str]:
    """lineage.<name>.run_id / .rule tags for (name, sha256, absolute path) lookups."""
    tags: dict[str, str] = {}
    experiment_ids = _prefix_experiment_ids(client, experiment_prefix()) if lookups else []
    for name, digest, path in lookups:
        producer = find_producer(client, digest, path, experiment_ids)
        if producer is not None:
            tags[f"lineage.{name}.run_id"] = producer.info.run_id
            tags[f"lineage.{name}.rule"] = producer.data.tags.get("rule", "")
    return tags


def find_producer(
    client: Any, sha256: str, path: str | None = None, experiment_ids: Sequence[str] | None = None
) -> Any | None:
    """The most recent FINISHED run that wrote a file with this sha256 (same path preferred)."""
    if experiment_ids is None:
        experiment_ids = _prefix_experiment_ids(client, experiment_prefix())
    if not experiment_ids:
        return None
    base = f"attributes.status = 'FINISHED' and tags.`produced.{sha256}`"
    filters = [f"{base} LIKE '%'"]
    if path and "'" not in str(path):
        filters.insert(0, f"{base} = '{Path(path).resolve()}'")
    for filter_string in filters:
        runs = _retry(
            client.search_runs,
            list(experiment_ids),
            filter_string,
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if runs:
            return runs[0]
    return None


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


def lineage(run_id: str, uri: str | None = None, max_runs: int = 1000) -> list[dict[str, Any]]:
    """Walk back from a run through `lineage.<input>.run_id` tags, breadth first.

    Returns one dict per run reached (the given run first): run_id, rule, name, experiment_id,
    inputs {name: {"sha256", "run_id" or None}}, outputs {name: sha256}.
    """
    client = _client(uri or tracking_uri())
    seen: dict[str, dict[str, Any]] = {}
    queue = [run_id]
    while queue and len(seen) < max_runs:
        rid = queue.pop(0)
        if rid in seen:
            continue
        run = _retry(client.get_run, rid)
        tags = run.data.tags
        inputs: dict[str, dict[str, str | None]] = {}
        for key, value in tags.items():
            if key.startswith("lineage.") and key.endswith(".sha256"):
                name = key[len("lineage.") : -len(".sha256")]
                inputs[name] = {"sha256": value, "run_id": tags.get(f"lineage.{name}.run_id")}
        outputs = {
            key[len("output.") : -len(".sha256")]: value
            for key, value in tags.items()
            if key.startswith("output.") and key.endswith(".sha256")
        }
        seen[rid] = {
            "run_id": rid,
            "rule": tags.get("rule"),
            "name": run.info.run_name,
            "experiment_id": run.info.experiment_id,
            "inputs": inputs,
            "outputs": outputs,
        }
        queue.extend(i["run_id"] for i in inputs.values() if i["run_id"])
    return list(seen.values())


# --------------------------------------------------------------------------------------------
# Spool: jobs append, one process syncs


def spool_dir(workdir: str | Path | None = None) -> Path:
    """BIOMOL_DL_SPOOL, else <workdir>/results/mlflow/spool."""
    env = os.environ.get(ENV_SPOOL)
    return Path(env) if env else Path(workdir or os.getcwd()).resolve() / "results/mlflow/spool"


def sync_spool(spool: str | Path | None = None, uri: str | None = None, *,
               finalize: bool = False) -> int:  # fmt: skip
    """Replay spool files into MLflow runs; return how many runs were completed.

    Files are replayed oldest job first, from where the last sync stopped (so producers' outputs
    are in the store before their consumers' lineage is looked up); a file is removed once its
    run has ended. finalize: runs whose job never ended them (killed jobs) end KILLED.
    Raises TrackingUnavailable when the store cannot be reached (the spool is kept).
    """
    spool = Path(spool) if spool else spool_dir()
    if not spool.is_dir() or not any(spool.glob(f"*{_SPOOL_SUFFIX}")):
        return 0
    uri = uri or tracking_uri()
    check_store(uri)
    client = _client(uri)
    completed = 0
    with _file_lock(spool / ".sync.lock"):
        for path in sorted(spool.glob(f"*{_SPOOL_SUFFIX}")):
            try:
                completed += _sync_file(client, uri, path, finalize)
            except TrackingUnavailable:
                raise
            except Exception as exc:  # the store went away mid-pass: keep the rest for later
                raise _unavailable(uri, f"{type(exc).__name__}: {exc}") from None
    return completed


def _bad_record(exc: Exception) -> bool:
    """A problem with one spooled record (skip it), not with the store (stop and retry later)."""
    code = str(getattr(exc, "error_code", ""))
    bad = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"}
    return code in bad or isinstance(exc, (KeyError, TypeError, ValueError))


def _sync_file(client: Any, uri: str, path: Path, finalize: bool) -> bool:
    state_path = path.with_name(path.name + ".state")
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    run_id, offset = state.get("run_id"), int(state.get("offset", 0))

    def save() -> None:
        tmp = state_path.with_name(state_path.name + ".tmp")
        tmp.write_text(json.dumps({"run_id": run_id, "offset": offset}))
        os.replace(tmp, state_path)

    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    data = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next sync
    pending: dict[str, Any] = {"metrics": [], "params": {}, "tags": {}}
    sink = _LiveSink(client, run_id) if run_id else None
    ended = False

    def flush() -> None:
        if sink and (pending["metrics"] or pending["params"] or pending["tags"]):
            sink.log(pending["metrics"], pending["params"], pending["tags"])
        pending.update(metrics=[], params={}, tags={})

    for line in data.splitlines(keepends=True):
        offset += len(line)
        try:
            event = json.loads(line)
            op = event["op"]
            if op == "start":
                exp_id = get_or_create_experiment(client, event["experiment"], uri)
                run_id = _retry(client.create_run, exp_id, start_time=event["time"],
                                tags=event["tags"], run_name=event["run_name"]).info.run_id  # fmt: skip
                sink = _LiveSink(client, run_id, exp_id)
                save()  # never create this run twice
            elif sink is None:
                continue
            elif op == "log":  # merge consecutive records into few log_batch calls
                pending["metrics"].extend(tuple(m) for m in event.get("metrics", []))
                pending["params"].update(event.get("params", {}))
                pending["tags"].update(event.get("tags", {}))
            else:
                flush()
                if op == "lineage":
                    sink.lineage(event["inputs"])
                elif op == "artifact" and not Path(event["path"]).is_file():
                    logger.warning("artifact %s of run %s is gone", event["path"], run_id)
                elif op == "artifact":
                    sink.artifact(event["path"], event.get("artifact_path"))
                elif op == "text":
                    sink.text(event["text"], event["artifact_file"])
                elif op == "end":
                    sink.end(event["status"], event.get("time"))
                    ended = True
                save()
        except Exception as exc:
            if not _bad_record(exc):
                raise
            logger.warning("%s: record at byte %d skipped: %s", path, offset - len(line), exc)
            pending.update(metrics=[], params={}, tags={})
    try:
        flush()
    except Exception as exc:
        if not _bad_record(exc):
            raise
        logger.warning("%s: records skipped: %s", path, exc)
    if not ended and finalize:
        if sink is not None:
            _kill(client, run_id, "its job ended without closing the run (killed?)")
        ended = True
    if ended:
        path.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
    else:
        save()
    return ended


class _SpoolSyncer(threading.Thread):
    """Syncs the spool every few seconds from the Snakemake main process (a daemon thread)."""

    def __init__(self, spool: Path, uri: str, interval: float):
        super().__init__(name="biomol-dl-mlflow-sync", daemon=True)
        self.spool, self.uri, self.interval = spool, uri, interval
        self.stop = threading.Event()
        self._last_error = ""

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                sync_spool(self.spool, self.uri)
                self._last_error = ""
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:  # once per distinct problem, not every tick
                    logger.warning("MLflow spool sync: %s (will retry)", message)
                self._last_error = message


_SYNCER: _SpoolSyncer | None = None


def _stop_syncer() -> None:
    global _SYNCER
    if _SYNCER is not None:
        _SYNCER.stop.set()
        _SYNCER.join(timeout=60)
        _SYNCER = None


# --------------------------------------------------------------------------------------------
# Workflow hooks (Snakefile onstart / onsuccess / onerror)


def workflow_start(
    config: Mapping[str, Any] | None = None,
    workdir: str | Path | None = None,
    *,
    repo: str | Path | None = None,
) -> str | None:
    """Prepare the store and open the workflow's runs; call from the Snakefile's `onstart:`.

    Creates the schema and every configured dataset's experiment before any job starts, marks
    stale RUNNING runs of earlier invocations KILLED, opens the workflow run and one run per
    dataset under it, logs the resolved config, and exports the environment variables jobs
    read. Returns the workflow run id (None when tracking is off). Raises TrackingUnavailable.
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
        main = _open_workflow_runs(_client(uri), uri, config, prefix, common)
    except TrackingUnavailable:
        raise
    except Exception as exc:
        raise _unavailable(uri, f"{type(exc).__name__}: {exc}") from None
    if mode == "spool":
        global _SYNCER
        _stop_syncer()
        os.environ[ENV_SPOOL] = str(spool)
        _SYNCER = _SpoolSyncer(spool, uri, _env_float(ENV_SYNC_SECONDS, 5))
        _SYNCER.start()
    logger.info("MLflow workflow run %s in %s (%s mode)", main, uri, mode)
    return main


def _open_workflow_runs(
    client: Any, uri: str, config: Mapping[str, Any], prefix: str, common: Mapping[str, str]
) -> str:
    datasets = list(config.get("datasets") or {})
    names = [experiment_name(None, prefix)] + [experiment_name(d, prefix) for d in datasets]
    exp_ids = {name: get_or_create_experiment(client, name, uri) for name in names}
    killed = cleanup_stale_runs(client, _prefix_experiment_ids(client, prefix))

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


def cleanup_stale_runs(
    client: Any, experiment_ids: Sequence[str], stale_hours: float | None = None
) -> list[str]:
    """Mark KILLED the RUNNING runs whose process is gone (see the module docstring)."""
    stale_hours = stale_hours if stale_hours is not None else _env_float(ENV_STALE_HOURS, 24)
    host, now_ms = socket.gethostname(), time.time() * 1000
    running = _search_all(client, experiment_ids, "attributes.status = 'RUNNING'")
    by_id = {r.info.run_id: r for r in running}

    def own_process_gone(run: Any) -> bool:
        tags = run.data.tags
        if tags.get(TAG_HOST) == host and str(tags.get(TAG_PID, "")).isdigit():
            return not _process_alive(int(tags[TAG_PID]), run.info.start_time)
        return now_ms - run.info.start_time > stale_hours * 3600 * 1000

    dead_workflows = {
        rid
        for rid, r in by_id.items()
        if r.data.tags.get(TAG_KIND) == "workflow" and own_process_gone(r)
    }
    killed = []
    for workflow in sorted(dead_workflows):
        finished = _search_all(
            client,
            experiment_ids,
            f"attributes.status = 'FINISHED' and tags.`{TAG_WORKFLOW}` = '{workflow}'",
        )
        for run in finished:
            discarded = _discarded_outputs(run.data.tags)
            if discarded:
                reason = (
                    f"orphaned: its workflow's main process died before Snakemake accepted its "
                    f"outputs (still marked incomplete: {', '.join(discarded)})"
                )
                _kill(client, run.info.run_id, reason, orphaned=True)
                killed.append(run.info.run_id)
    for rid, run in by_id.items():
        tags = run.data.tags
        workflow = tags.get(TAG_WORKFLOW)
        if tags.get(TAG_KIND) == "workflow":
            dead, reason = rid in dead_workflows, "its workflow process is gone"
        elif workflow and (workflow in dead_workflows or workflow not in by_id):
            dead, reason = True, f"its workflow run {workflow} ended or its process is gone"
        elif workflow:  # a job of a live workflow: only a local pid can tell it died
            dead = tags.get(TAG_HOST) == host and own_process_gone(run)
            reason = "its process is gone"
        else:
            dead, reason = own_process_gone(run), "its process is gone or it is too old"
        if dead:
            _kill(client, rid, reason)
            killed.append(rid)
    return killed


def _kill(client: Any, run_id: str, reason: str, orphaned: bool = False) -> None:
    if orphaned:
        _retry(client.set_tag, run_id, TAG_ORPHANED, "true")
    _retry(client.set_tag, run_id, TAG_KILLED_REASON, reason)
    _retry(client.set_terminated, run_id, "KILLED")


def _discarded_outputs(tags: Mapping[str, str]) -> list[str]:
    """The outputs of a job run (its `output.<name>.path` tags) that Snakemake still marks
    incomplete in the job's working directory (`biomol_dl.workdir`): it never accepted them and
    the next run re-makes them. Empty when that directory has no markers folder to read (another
    host's disk, or `--persistence-backend db`)."""
    folder = Path(tags.get("biomol_dl.workdir") or "/nonexistent") / ".snakemake" / "incomplete"
    if not folder.is_dir():
        return []
    return [
        path
        for key, path in sorted(tags.items())
        if key.startswith("output.") and key.endswith(".path")
        if _incomplete_marker(folder, path).exists()
    ]


def _incomplete_marker(folder: Path, output: str) -> Path:
    """Where Snakemake's file persistence keeps the incomplete marker of `output` (as the rule
    names it, relative to the working directory): its url-safe base64, cut into names of at most
    NAME_MAX - 1 characters, all but the last prefixed with "@" (snakemake.persistence.file)."""
    try:
        size = (os.pathconf(folder, "PC_NAME_MAX") or 255) - 1
    except (OSError, ValueError, AttributeError):
        size = 254
    b64 = base64.urlsafe_b64encode(output.encode()).decode()
    parts = [b64[i : i + size] for i in range(0, len(b64), size)]
    return folder.joinpath(*[f"@{part}" for part in parts[:-1]], parts[-1])


def _config_hash(config: Mapping[str, Any]) -> str:
    if not config:
        return "none"
    from biomol_dl.config import config_hash

    return config_hash(dict(config))


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False)


# --------------------------------------------------------------------------------------------
# Models (optional): log a torch model with a signature and register it


def log_torch_model(
    run: JobRun,
    model: Any,
    input_example: Any,
    *,
    name: str = "model",
    registered_model_name: str | None = None,
    pip_requirements: Sequence[str] | None = None,
) -> str | None:
    """Log `model` with mlflow.pytorch (signature inferred from `input_example`) to `run`.

    model must take one tensor (wrap dict-batch models in a small nn.Module first);
    input_example: a numpy array of a few inputs. With registered_model_name, the model is also
    registered in the Model Registry. Returns the model URI (None when tracking is off).
    """
    if not run.active:
        return None
    if run.run_id is None:
        raise TrackingUnavailable(
            "biomol-dl tracking: log_torch_model needs a live run; run this rule with "
            f"{ENV_MODE}=live (spool mode creates runs only when the spool is synced)"
        )
    import mlflow
    import mlflow.pytorch
    import torch

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # Giving the requirements skips MLflow's slow import-scanning subprocess.
    requirements = list(pip_requirements or [f"torch=={torch.__version__.split('+')[0]}"])
    with mlflow.start_run(run_id=run.run_id):
        info = mlflow.pytorch.log_model(
            model,
            name=name,
            input_example=input_example,
            registered_model_name=registered_model_name,
            pip_requirements=requirements,
        )
    # Leaving start_run() ended the run FINISHED; job_run sets the real final status.
    _retry(run._sink.client.update_run, run.run_id, status="RUNNING")
    return info.model_uri
