"""Spool mode: jobs append JSON lines, one process replays them into the store.

In spool mode (the default) a job appends its records as JSON lines to its own file under
results/mlflow/spool and never imports mlflow (a job pays milliseconds, not the ~2-3 s of
importing mlflow and its SQL store). A thread of the Snakemake main process replays the files
every BIOMOL_DL_SYNC_SECONDS (default 5), so the store has one writer however many jobs run;
`workflow_end` does a final sync, and `workflow_start` syncs what a dead invocation left. In live
mode every job writes to the store itself (runs appear at once; costs each job the import).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from biomol_dl.tracking.settings import (
    _SPOOL_SUFFIX,
    ENV_SPOOL,
    ENV_SYNC_SECONDS,
    _env_float,
    logger,
    tracking_uri,
)
from biomol_dl.tracking.sinks import _LiveSink
from biomol_dl.tracking.store import (
    TrackingUnavailable,
    _client,
    _file_lock,
    _kill,
    _retry,
    _unavailable,
    check_store,
    get_or_create_experiment,
)


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
                elif op == "model" and not Path(event["local_dir"], "MLmodel").is_file():
                    logger.warning("model %s of run %s is gone", event["local_dir"], run_id)
                elif op == "model":
                    sink.model(event["local_dir"], event["artifact_path"], event["name"],
                               event.get("tags"))  # fmt: skip
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


def _start_syncer(spool: Path, uri: str) -> None:
    """Start syncing `spool` into `uri` every BIOMOL_DL_SYNC_SECONDS (one syncer per process)."""
    global _SYNCER
    _stop_syncer()
    _SYNCER = _SpoolSyncer(spool, uri, _env_float(ENV_SYNC_SECONDS, 5))
    _SYNCER.start()


def _stop_syncer() -> None:
    global _SYNCER
    if _SYNCER is not None:
        _SYNCER.stop.set()
        _SYNCER.join(timeout=60)
        _SYNCER = None
