"""A run as library code sees it: `JobRun` (params, metrics, tags, artifacts), and logging a torch
model to it. Library code only ever sees the `JobRun` (or its `log_metrics`), never a sink or a
store.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from biomol_dl.tracking.settings import (
    _MAX_PARAM,
    _MAX_TAG,
    ENV_ARTIFACT_MAX_MB,
    ENV_MODE,
    TAG_KILLED_REASON,
    TAG_ORPHANED,
    TrackingUnavailable,
    _env_float,
    logger,
    tracking_uri,
)
from biomol_dl.tracking.sinks import _now_ms
from biomol_dl.tracking.store import _retry
from biomol_dl.tracking.values import _digest_tag, _flatten, _key, _yaml


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

    def register_model(
        self, model_dir: str | Path, name: str, tags: Mapping[str, Any] | None = None
    ) -> None:
        """Upload an MLflow model folder (one with an MLmodel file) as the run's `model`
        artifact and register it as a new version of `name` in the store's model registry.

        In spool mode this happens when the main process syncs the spool (the store's only
        writer, so registry writes never race on SQLite); the folder must stay (results/).
        """
        if not self.active:
            return
        folder = Path(model_dir).resolve()
        if not (folder / "MLmodel").is_file():
            raise FileNotFoundError(f"{folder}: not an MLflow model folder (no MLmodel file)")
        self._send("model", str(folder), "model", name,
                   {_key(k): str(v)[:_MAX_TAG] for k, v in (tags or {}).items()})  # fmt: skip

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


def save_pyfunc_model(
    path: str | Path,
    *,
    loader_module: str,
    data_path: str | Path,
    code_paths: Sequence[str | Path] = (),
    pip_requirements: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write an MLflow `pyfunc` model folder at `path` (no store involved).

    `loader_module` is a module whose `_load_pyfunc(data_path)` returns an object with
    `predict(model_input, params=None)`; `data_path` (a folder of files) is copied into the
    model, and so is each of `code_paths` (put on sys.path when the model loads). Giving
    `pip_requirements` skips MLflow's slow requirement inference.
    """
    import mlflow.pyfunc

    path = Path(path)
    if path.exists():
        import shutil

        shutil.rmtree(path)
    mlflow.pyfunc.save_model(
        path=str(path),
        loader_module=loader_module,
        data_path=str(data_path),
        code_paths=[str(p) for p in code_paths] or None,
        pip_requirements=list(pip_requirements or []),
        metadata=dict(metadata or {}),
    )
    return path
