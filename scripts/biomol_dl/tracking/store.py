"""The MLflow store: one client per URI, the schema created once, retries, fail-fast checks.

Stores. Default: sqlite:///results/mlflow/mlflow.db under the workflow's working directory
(artifacts in results/mlflow/artifacts), made absolute for jobs. `tracking.uri` in the config or
MLFLOW_TRACKING_URI selects another store, e.g. http://host:5000 for `mlflow server`. A SQLite
store's folder is created only inside the working directory (where the default is); a store named
anywhere else must have its folder already, or tracking fails before any job with one line naming
the URI and the missing folder (so a typo like sqlite:////nonexistent/... never creates folders at
the filesystem root). Many writers (live mode) on SQLite: the schema is created once, under a file
lock (on a fresh file, concurrent schema creation loses all but one process's run),
`workflow_start` creates every configured dataset's experiment before any job, experiment creation
is create-or-get, and store calls are retried with jittered backoff on "database is locked"
(MLflow itself sets a 20 s SQLite busy timeout per session; its MLFLOW_SQLALCHEMYSTORE_* variables
only size the pool).

Unreachable store (choice: fail fast, and in spool mode buffer too). `workflow_start`, and a live
job before its body, check the store (HTTP: GET /health within BIOMOL_DL_TRACKING_TIMEOUT
seconds, default 10; SQLite: opening it) and raise `TrackingUnavailable`, one line naming the
URI. A spooled job never needs the store: if it goes away mid-workflow, the syncer warns and the
spool waits for the next sync. A live job that loses the store mid-run warns once and stops
logging rather than throw away hours of training.

This package's modules are the only code of biomol-dl that imports mlflow, and only inside the
functions that talk to a store.
"""

from __future__ import annotations

import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from biomol_dl.tracking.settings import (
    ENV_PREFIX,
    ENV_RETRIES,
    ENV_TIMEOUT,
    ENV_TRACKING,
    ENV_URI,
    TAG_KILLED_REASON,
    TAG_ORPHANED,
    TrackingUnavailable,
    _env_float,
    _sqlite_path,
    logger,
    tracking_uri,
)


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


def _kill(client: Any, run_id: str, reason: str, orphaned: bool = False) -> None:
    if orphaned:
        _retry(client.set_tag, run_id, TAG_ORPHANED, "true")
    _retry(client.set_tag, run_id, TAG_KILLED_REASON, reason)
    _retry(client.set_terminated, run_id, "KILLED")
