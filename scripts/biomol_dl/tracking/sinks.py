"""Where a job's records go: straight to the store (live) or to a spool file (spool).

Both sinks take the same calls (`log`, `lineage`, `artifact`, `text`, `model`, `end`), so a `JobRun`
does not know which mode it runs in; `biomol_dl.tracking.spool` replays a spool file through a
live sink.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from biomol_dl.tracking.lineage import _resolve_lineage
from biomol_dl.tracking.settings import _BATCH, _SPOOL_SUFFIX, logger
from biomol_dl.tracking.store import _retry

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

    def model(self, local_dir: str, artifact_path: str, name: str,
              tags: Mapping[str, str] | None = None) -> None:  # fmt: skip
        """Upload an MLflow model folder to the run and register it as a new version of `name`.

        A store that refuses the registration (an MlflowException) costs a warning, not the
        run: the job's own records and status still reach the store.
        """
        from mlflow.exceptions import MlflowException

        _retry(self.client.log_artifacts, self.run_id, local_dir, artifact_path)
        source = f"{_retry(self.client.get_run, self.run_id).info.artifact_uri}/{artifact_path}"
        try:
            try:
                _retry(self.client.create_registered_model, name)
            except MlflowException as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                    raise
            _retry(self.client.create_model_version, name, source, run_id=self.run_id,
                   tags=dict(tags or {}))  # fmt: skip
        except MlflowException as exc:
            logger.warning("model %s of run %s not registered: %s", name, self.run_id, exc)


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

    def model(self, local_dir: str, artifact_path: str, name: str,
              tags: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self._write(op="model", local_dir=local_dir, artifact_path=artifact_path, name=name,
                    tags=dict(tags or {}))  # fmt: skip

    def end(self, status: str, end_time: int | None = None) -> None:
        self._write(op="end", status=status, time=end_time or _now_ms())
        self._file.close()


def _now_ms() -> int:
    return int(time.time() * 1000)
