"""The one training loop for every torch model of biomol-dl (MLP, GNN, transformers, CNN, PLM).

For the model-family authors and for `train_job.run_training`, which is the usual caller:

    cfg, model_params = TrainConfig.from_params(spec["params"])
    result = fit(model, lambda epoch: make_train_loader(epoch), val_loader, task=task,
                 config=cfg, y_train=y[train_idx], resume_dir=..., log_metrics=run.log_metrics)
    probs = predict(model, full_loader, task=task, target_scaler=result.target_scaler)

What `fit` does, top to bottom: AdamW (no weight decay on biases and norm weights); a learning
rate that warms up linearly then follows a cosine / plateau / constant schedule (set per optimizer
step); masked losses so NaN labels (missing multitask labels) contribute neither loss nor
gradient; regression targets standardized per task with mean / sd of the TRAIN rows; optional
class weights from the train labels; gradient accumulation and clipping; mixed precision on CUDA
only; early stopping on the validation metric with the best weights restored at the end.

Batches are dict-like (a dict of tensors or a torch_geometric Batch) with `batch["y"]`: a float
tensor [B, T], NaN = missing (multiclass: the class index as a float, T = 1). `model(batch)`
returns [B, T] (standardized regression values, or logits) or [B, K] logits for multiclass.

Reproducibility and resume: one seed sets python / numpy / torch; the training batches of epoch
`e` come from `train_data(e)` and must depend only on (seed, e) (train_job seeds the family's
loader with `seed * 1000 + e`), never on a generator carried from epoch to epoch, so there is no
loader state to save. With a `resume_dir`, the complete training state (weights, optimizer,
schedule, grad scaler, early-stopping state, history, RNG states) is written atomically to
`resume_dir/last.pt` at the end of every epoch (and mid-epoch on SIGTERM); a later call with the
same hyperparameter fingerprint continues from it and finishes with exactly the metrics of an
uninterrupted CPU run. SIGTERM (SLURM preemption or time limit) stops after the next optimizer
step, writes the checkpoint and raises `Preempted` (a SystemExit with status 143). A finished
run removes `last.pt` (train_job: once model.pt is written): model.pt is the result, and stale
resume state would only take disk space and mislead.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("biomol_dl.training")

TASKS = ("regression", "binary", "multiclass", "multitask_binary")
SCHEDULES = ("cosine", "exponential", "plateau", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
# Which validation metrics make sense for which task; the first is the default ("auto").
TASK_METRICS = {
    "regression": ("rmse", "loss"),
    "binary": ("roc_auc", "accuracy", "mcc", "loss"),
    "multitask_binary": ("roc_auc", "loss"),
    "multiclass": ("accuracy", "mcc", "loss"),
}
LOWER_IS_BETTER = {"rmse", "loss"}
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what SLURM and shells expect from a terminated job
RESUME_FILE = "last.pt"
RESUME_FORMAT = "biomol_dl.resume/1"


class Preempted(SystemExit):
    """Raised by `fit` after SIGTERM once the resume checkpoint is written (exit status 143)."""

    def __init__(self, message: str = "preempted"):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class TrainConfig:
    """Hyperparameters of the training loop itself (the rest of `params` belongs to the model).

    epochs, batch_size, lr, weight_decay: AdamW over at most `epochs` epochs.
    warmup_epochs: linear warmup of the learning rate (may be fractional), then `schedule`:
      cosine (to 0 at the end of the last epoch), exponential (to lr * final_lr_ratio at the end
      of the last epoch, chemprop's schedule: 1e-3 -> 1e-4 with its defaults), plateau (halve the
      rate when the validation metric has not improved for max(1, patience // 3) epochs, down to
      lr / 1000) or constant.
    final_lr_ratio: the end of the exponential schedule, as a fraction of lr (0 < ratio <= 1).
    patience: early stopping after this many epochs without a better validation metric (0 = off).
    grad_clip: max global gradient norm (0 or None = no clipping).
    seed: python / numpy / torch seed; train_job overrides it with the {seed} wildcard.
    device: auto (CUDA when available) | cpu | cuda.
    precision: auto (bf16 autocast on CUDA when supported, else fp16 with a GradScaler; fp32 on
      CPU) | fp32 | bf16 | fp16. Non-fp32 precisions apply on CUDA only.
    class_weights: binary / multitask: pos_weight = n_neg / n_pos per task (train rows);
      multiclass: n / (K * n_k).
    standardize: regression targets standardized with the train mean / sd (per task).
    accumulate: gradient accumulation steps (effective batch = batch_size * accumulate).
    metric: the validation metric for early stopping; auto = rmse (regression), roc_auc (binary,
      multitask: mean over tasks with both classes; val loss when none has), accuracy
      (multiclass). mcc / accuracy also work for binary, mcc for multiclass, loss for all.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    final_lr_ratio: float = 0.1
    patience: int = 20
    grad_clip: float | None = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    class_weights: bool = False
    standardize: bool = True
    accumulate: int = 1
    metric: str = "auto"

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> tuple[TrainConfig, dict]:
        """Split a model's config `params` into (TrainConfig, the remaining model params).

        Unknown keys stay in the model params; bad values fail with a one-line message.
        """
        rest = dict(params or {})
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in rest:
                kwargs[f.name] = _coerce(f.name, rest.pop(f.name), f.type)
        cfg = cls(**kwargs)
        cfg.check()
        return cfg, rest

    def check(self) -> None:
        """Fail with a one-line message on an impossible setting."""

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"training params.{name}={getattr(self, name)!r}: {why}")

        for name in ("epochs", "batch_size", "accumulate"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        for name in ("weight_decay", "warmup_epochs", "patience"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if not 0 < self.final_lr_ratio <= 1:
            raise bad("final_lr_ratio", "must be in (0, 1]")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise bad("grad_clip", "must be >= 0 or null")
        for name, allowed in (
            ("schedule", SCHEDULES),
            ("device", DEVICES),
            ("precision", PRECISIONS),
            ("metric", ("auto", *sorted({m for ms in TASK_METRICS.values() for m in ms}))),
        ):
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be one of {', '.join(allowed)}")

    def fingerprint(self) -> dict:
        """The settings that must match for a resume checkpoint to be reused (all but device)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "device"}


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    # YAML 1.1 reads "1e-3" as a string, and grids may hand over ints for floats: be lenient on
    # numbers, strict on everything else.
    type_name = str(type_name)
    try:
        if type_name.startswith("int"):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if type_name.startswith("float"):
            if value is None and "None" in type_name:
                return None
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if type_name == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if type_name == "str":
            return str(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"training params.{name}={value!r}: expected {type_name.split(' ')[0]}"
        ) from None
    return value


@dataclass
class TargetScaler:
    """Per-task mean / sd for regression targets (identity for classification)."""

    mean: list[float]
    sd: list[float]

    @classmethod
    def fit(cls, y_train: np.ndarray, enabled: bool = True) -> TargetScaler:
        """NaN-aware mean / sd per column of the train labels (sd 0 or undefined -> 1)."""
        y = np.asarray(y_train, dtype=np.float64)
        if not enabled:
            return cls.identity(y.shape[1])
        mean, sd = [], []
        for j in range(y.shape[1]):
            col = y[:, j][np.isfinite(y[:, j])]
            m = float(col.mean()) if col.size else 0.0
            s = float(col.std()) if col.size > 1 else 1.0
            mean.append(m)
            sd.append(s if s > 0 and math.isfinite(s) else 1.0)
        return cls(mean, sd)

    @classmethod
    def identity(cls, n_tasks: int) -> TargetScaler:
        return cls([0.0] * n_tasks, [1.0] * n_tasks)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "sd": list(self.sd)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TargetScaler | None:
        return None if d is None else cls(list(d["mean"]), list(d["sd"]))


@dataclass
class FitResult:
    """What `fit` returns: the history and where the best epoch was.

    history: one dict per epoch: epoch, train_loss, val_loss, val_<metric>, lr, seconds.
    monitor: the history column early stopping watched ("val_<metric>", or "val_loss" when the
      metric is undefined on the validation rows, e.g. ROC-AUC with one class).
    train_examples_seen / train_seconds: over the epochs run in this call (throughput).
    """

    history: list[dict]
    best_epoch: int
    best_metric: float
    metric: str
    monitor: str
    target_scaler: TargetScaler
    device: str
    precision: str
    stopped_early: bool
    resumed_from_epoch: int | None
    train_examples_seen: int
    train_seconds: float
    extra: dict = field(default_factory=dict)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    # the legacy global numpy RNG is what third-party code draws from, so it is seeded too
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)  # also seeds every CUDA device


def select_device(pref: str = "auto") -> torch.device:
    """auto -> cuda when available else cpu; "cuda" without CUDA fails with a clear message."""
    if pref not in DEVICES:
        raise ValueError(f"device {pref!r}: must be one of {', '.join(DEVICES)}")
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    if pref == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count > 1 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        # A workstation run (`--resources gpu=K`): Snakemake counts GPUs but assigns none, so
        # each job claims a free device itself. SLURM sets CUDA_VISIBLE_DEVICES for its jobs.
        index = claim_gpu(count)
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cuda")


_GPU_CLAIM: list = []  # keeps the claimed lock file open (and so locked) for the process' life


def claim_gpu(count: int, lock_dir: str | Path | None = None) -> int:
    """Lock and return the index of a GPU no other biomol-dl job on this machine holds.

    One lock file per device (`$BIOMOL_DL_GPU_LOCKS`, default /tmp/biomol_dl_gpu_locks); the OS
    releases the lock when the process exits, however it exits. With every device taken (more
    GPU jobs than `--resources gpu=K` should allow) it shares device pid % count, and says so.
    """
    import fcntl

    folder = Path(lock_dir or os.environ.get("BIOMOL_DL_GPU_LOCKS", "/tmp/biomol_dl_gpu_locks"))
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        handle = open(folder / f"gpu{index}.lock", "a+")  # noqa: SIM115 (held open on purpose)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _GPU_CLAIM.append(handle)
        log.info("claimed GPU %d of %d (lock %s)", index, count, handle.name)
        return index
    index = os.getpid() % count
    log.warning("all %d GPUs are claimed by other jobs; sharing GPU %d", count, index)
    return index


def resolve_precision(pref: str, device: torch.device) -> str:
    """The precision actually used: fp32 on CPU; auto on CUDA -> bf16 if supported, else fp16."""
    if device.type != "cuda":
        if pref in ("bf16", "fp16"):
            log.info("precision %s applies on CUDA only; training in fp32 on %s", pref, device)
        return "fp32"
    if pref == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return pref


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch (something with `.to`, or a dict of tensors) to `device`."""
    non_blocking = device.type == "cuda"  # pairs with pin_memory=True in the family's loader
    if isinstance(batch, Mapping):
        return {
            k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
    if hasattr(batch, "to"):
        return batch.to(device, non_blocking=non_blocking)
    raise TypeError(f"batch of type {type(batch).__name__} has no .to() and is not a dict")


# ----------------------------------------------------------------------------- losses and metrics


class _Loss:
    """Masked loss: sum over the labelled entries of a batch, and how many there were.

    Missing labels are replaced by 0 BEFORE the element-wise loss so no NaN enters the graph
    (torch.where would otherwise pass 0 * NaN = NaN gradients), then masked out of the sum.
    """

    def __init__(self, task: str, scaler: TargetScaler, pos_weight, class_weight, device):
        self.task = task
        self.mean = torch.tensor(scaler.mean, dtype=torch.float32, device=device)
        self.sd = torch.tensor(scaler.sd, dtype=torch.float32, device=device)
        self.pos_weight = None if pos_weight is None else pos_weight.to(device)
        self.class_weight = None if class_weight is None else class_weight.to(device)

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = _check_output(out, y, self.task).float()
        y = y.float()
        if self.task == "multiclass":
            mask = ~torch.isnan(y[:, 0])
            target = torch.where(mask, y[:, 0], torch.zeros_like(y[:, 0])).long()
            loss = F.cross_entropy(out, target, weight=self.class_weight, reduction="none")
            weight = mask.float()
            if self.class_weight is not None:  # normalize like torch's weighted mean does
                weight = weight * self.class_weight[target]
            return torch.where(mask, loss, torch.zeros_like(loss)).sum(), weight.sum()
        mask = ~torch.isnan(y)
        target = torch.where(mask, y, torch.zeros_like(y))
        if self.task == "regression":
            loss = (out - (target - self.mean) / self.sd) ** 2
        else:
            loss = F.binary_cross_entropy_with_logits(
                out, target, pos_weight=self.pos_weight, reduction="none"
            )
        loss = torch.where(mask, loss, torch.zeros_like(loss))
        return loss.sum(), mask.sum().float()


def _check_output(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if not torch.is_tensor(out):
        raise TypeError(f"model(batch) must return a tensor, got {type(out).__name__}")
    if out.dim() == 1 and y.shape[1] == 1 and task != "multiclass":
        out = out.unsqueeze(1)
    if out.dim() != 2 or out.shape[0] != y.shape[0]:
        raise ValueError(
            f"model output shape {tuple(out.shape)} does not match labels {tuple(y.shape)}"
        )
    if task != "multiclass" and out.shape[1] != y.shape[1]:
        raise ValueError(f"model returns {out.shape[1]} outputs for {y.shape[1]} label columns")
    return out


def _class_weights(task: str, y: np.ndarray, n_classes: int | None):
    """pos_weight [T] (binary / multitask) or class weights [K] (multiclass) from train labels."""
    if task in ("binary", "multitask_binary"):
        pos = np.nansum(y == 1, axis=0).astype(np.float64)
        neg = np.nansum(y == 0, axis=0).astype(np.float64)
        # a task with no positives (or negatives) in train gets weight 1 rather than inf / 0
        w = np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0)
        return torch.tensor(w, dtype=torch.float32)
    if task == "multiclass" and n_classes:
        labels = y[:, 0][np.isfinite(y[:, 0])].astype(int)
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        w = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 1.0)
        return torch.tensor(w, dtype=torch.float32)
    return None


def _check_labels(task: str, y: np.ndarray) -> None:
    finite = y[np.isfinite(y)]
    if task in ("binary", "multitask_binary") and not np.isin(finite, (0.0, 1.0)).all():
        raise ValueError(
            f"{task} labels must be 0/1 (or NaN), found {sorted(set(finite) - {0.0, 1.0})[:5]}"
        )
    if task == "multiclass":
        if y.shape[1] != 1:
            raise ValueError(f"multiclass takes one label column, got {y.shape[1]}")
        if (finite < 0).any() or (finite != np.round(finite)).any():
            raise ValueError("multiclass labels must be class indices 0..K-1")
    if task == "regression" and not np.isfinite(y).any(axis=0).all():
        raise ValueError("a regression label column has no finite value in the train rows")


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (ties count half); needs both classes."""
    ranks = _average_ranks(score)
    pos = y_true == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # 1-based ranks, tied values share the mean of their positions
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def mcc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Matthews correlation for binary or multiclass labels (0 when undefined, like sklearn)."""
    classes, t = np.unique(np.r_[y_true, y_pred], return_inverse=True)
    k = len(classes)
    cm = np.bincount(t[: len(y_true)] * k + t[len(y_true) :], minlength=k * k).reshape(k, k)
    cm = cm.astype(np.float64)
    n, correct = cm.sum(), np.trace(cm)
    p_true, p_pred = cm.sum(axis=1), cm.sum(axis=0)
    cov = correct * n - p_true @ p_pred
    denom = np.sqrt((n * n - p_pred @ p_pred) * (n * n - p_true @ p_true))
    return float(cov / denom) if denom > 0 else 0.0


def evaluate_metric(task: str, metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """The validation metric on de-standardized predictions / probabilities (None if undefined).

    rmse: mean over tasks of the per-task RMSE; roc_auc: mean over tasks with both classes;
    accuracy / mcc: multiclass argmax, binary threshold 0.5. (numpy only: importing
    scikit-learn would cost every training job a second for two formulas.)
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.size == 0:
        return None
    if task == "multiclass":
        mask = np.isfinite(y_true[:, 0])
        if not mask.any():
            return None
        t, p = y_true[mask, 0].astype(int), y_pred[mask].argmax(axis=1)
        if metric == "accuracy":
            return float((t == p).mean())
        return mcc(t, p) if metric == "mcc" else None
    values = []
    for j in range(y_true.shape[1]):
        mask = np.isfinite(y_true[:, j])
        t, p = y_true[mask, j], y_pred[mask, j]
        if t.size == 0:
            continue
        if metric == "rmse":
            values.append(float(np.sqrt(np.mean((t - p) ** 2))))
        elif metric == "roc_auc" and 0 < t.sum() < t.size:
            values.append(roc_auc(t, p))
        elif metric == "accuracy":
            values.append(float((t == (p >= 0.5)).mean()))
        elif metric == "mcc":
            values.append(mcc(t.astype(int), (p >= 0.5).astype(int)))
    return float(np.mean(values)) if values else None


def _resolve_metric(task: str, metric: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task {task!r}: must be one of {', '.join(TASKS)}")
    if metric == "auto":
        return TASK_METRICS[task][0]
    if metric not in TASK_METRICS[task]:
        raise ValueError(
            f"metric {metric!r} does not apply to {task}; use one of {TASK_METRICS[task]}"
        )
    return metric


@torch.no_grad()
def _run_eval(model, loader, loss_fn, device, precision):
    """Raw outputs, labels and mean loss over a loader, with the model in eval mode."""
    model.eval()
    outs, ys = [], []
    loss_sum, count = 0.0, 0.0
    for batch in loader or ():
        batch = to_device(batch, device)
        y = batch["y"]
        with _autocast(device, precision):
            out = model(batch)
        out = _check_output(out, y, loss_fn.task).float()
        s, c = loss_fn(out, y)
        loss_sum += float(s)
        count += float(c)
        outs.append(out.cpu())
        ys.append(y.float().cpu())
    if not outs:
        return None, None, float("nan")
    loss = loss_sum / count if count > 0 else float("nan")
    return torch.cat(outs).double().numpy(), torch.cat(ys).double().numpy(), loss


def _outputs_to_predictions(task: str, out: np.ndarray, scaler: TargetScaler | None) -> np.ndarray:
    if task == "regression":
        if scaler is None:
            return out
        return out * np.asarray(scaler.sd) + np.asarray(scaler.mean)
    t = torch.from_numpy(out)
    return (torch.softmax(t, dim=1) if task == "multiclass" else torch.sigmoid(t)).numpy()


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader: Iterable,
    *,
    task: str,
    target_scaler: TargetScaler | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Predictions for every example of `loader`, in loader order, as float64 numpy.

    regression: [N, T] values in the original units (de-standardized with `target_scaler`);
    binary / multitask_binary: [N, T] probabilities; multiclass: [N, K] softmax probabilities.
    Leaves the model in eval mode.
    """
    _resolve_metric(task, "auto")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    model.eval()
    outs = []
    for batch in loader:
        batch = to_device(batch, device)
        with _autocast(device, precision):
            out = model(batch)
        outs.append(_check_output(out, batch["y"], task).float().cpu())
    if not outs:
        return np.zeros((0, 0))
    return _outputs_to_predictions(task, torch.cat(outs).double().numpy(), target_scaler)


# ----------------------------------------------------------------------------- resume state


def _rng_state() -> dict:
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "python": [version, list(mt), gauss],
        # numpy's state as plain values: weights_only loading refuses numpy arrays
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # fewer GPUs than when saved: CPU-side still exact
            torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to `path` so that a kill at any moment leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _fingerprint_diff(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += _fingerprint_diff(a, b, f"{prefix}{key}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(
            b, sort_keys=True, default=str
        ):
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs


class _StopRequest:
    """SIGTERM handler that only raises a flag; the loop acts on it at a safe point."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._installed = False

    def __call__(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> _StopRequest:
        # signal handlers can only be set from the main thread (not from a notebook worker)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


# ----------------------------------------------------------------------------- the loop


def _make_optimizer(model: torch.nn.Module, params: list, cfg: TrainConfig):
    # no weight decay on biases and normalization weights (1-d tensors), as usual for AdamW
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Warmup then schedule, as a factor of cfg.lr, for optimizer step `step` (0-based)."""
    total = cfg.epochs * steps_per_epoch
    warm = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "exponential":
        return cfg.final_lr_ratio**progress
    return 1.0


def _training_keys(model: torch.nn.Module, params: list | None) -> set[str] | None:
    """State-dict keys training can change (trainable params + buffers); None = everything."""
    if params is None:
        return None
    ids = {id(p) for p in params}
    keys = {name for name, p in model.named_parameters() if id(p) in ids}
    return keys | {name for name, _ in model.named_buffers()}


def _state_dict(model: torch.nn.Module, keys: set[str] | None) -> dict:
    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in model.state_dict().items()
        if keys is None or k in keys
    }


def training_state(model: torch.nn.Module, parameters: Iterable | None = None) -> dict:
    """A CPU copy of the state dict; with `parameters`, only those parameters and the buffers."""
    params = list(parameters) if parameters is not None else None
    return _state_dict(model, _training_keys(model, params))


def _is_better(metric: str, value: float, best: float | None) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


def fit(
    model: torch.nn.Module,
    train_data: Callable[[int], Iterable] | Iterable,
    val_data: Iterable | None,
    *,
    task: str,
    config: TrainConfig,
    y_train: np.ndarray,
    parameters: Iterable[torch.nn.Parameter] | None = None,
    resume_dir: str | Path | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    log_metrics: Callable[..., Any] | None = None,
    keep_resume_state: bool = False,
) -> FitResult:
    """Train `model` in place and leave it holding the weights of the best validation epoch.

    model: built by the family, on CPU; moved to the selected device here.
    train_data: `epoch -> iterable of batches` (epochs count from 1; the batches of an epoch must
      depend only on (seed, epoch)), or one re-iterable loader (then exact resume needs its order
      to be fixed by the seed too).
    val_data: re-iterable batches of the validation rows (no shuffling); None or empty = no early
      stopping (the last epoch is kept).
    task: regression | binary | multiclass | multitask_binary.
    y_train: the train labels [N_train, T] (NaN = missing): regression mean / sd and class weights.
    parameters: what the optimizer updates (default: every parameter with requires_grad). When
      given, the resume state holds only these parameters and the buffers (the rest is frozen).
    resume_dir: where `last.pt` lives; None = no checkpoints, no resume.
    fingerprint: anything else that must match to resume (model spec, input file hashes ...).
    log_metrics: called as `log_metrics({...}, step=epoch)` after every epoch (e.g. JobRun's).
    keep_resume_state: leave last.pt for the caller to remove with `clear_resume_state` once its
      outputs are written (a kill while writing them then costs no retraining).

    Raises Preempted (exit status 143) after SIGTERM, once the checkpoint is written.
    """
    cfg = config
    cfg.check()
    metric = _resolve_metric(task, cfg.metric)
    y_train = np.asarray(y_train, dtype=np.float64)
    if y_train.ndim != 2:
        raise ValueError(f"y_train must be [N, T], got shape {y_train.shape}")
    _check_labels(task, y_train)
    device = select_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    scaler = (
        TargetScaler.fit(y_train, cfg.standardize)
        if task == "regression"
        else TargetScaler.identity(y_train.shape[1])
    )
    set_seed(cfg.seed)
    model.to(device)
    params = list(parameters) if parameters is not None else None
    keys = _training_keys(model, params)
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _make_optimizer(model, params, cfg)
    for group in optimizer.param_groups:
        group["base_lr"] = cfg.lr
    grad_scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    pos_weight = _class_weights(task, y_train, None) if cfg.class_weights else None
    loss_fn = _Loss(task, scaler, pos_weight, None, device)
    plateau_patience = max(1, cfg.patience // 3)

    # Everything below `st` is the mutable loop state: exactly what last.pt stores.
    st: dict[str, Any] = {
        "epoch": 0,  # completed epochs
        "batch": 0,  # micro-batches done in the running epoch (mid-epoch checkpoint only)
        "step_in_epoch": 0,
        "loss_sum": 0.0,
        "loss_count": 0.0,
        "epoch_examples": 0,
        "epoch_seconds": 0.0,
        "history": [],
        "best_metric": None,
        "best_epoch": 0,
        "best_state": None,
        "bad_epochs": 0,
        "monitor": None,
        "plateau_best": None,
        "plateau_bad": 0,
        "lr_scale": 1.0,
        "stopped_early": False,
    }
    fp_dict = {
        "train": cfg.fingerprint(),
        "task": task,
        "n_train": int(y_train.shape[0]),
        "n_params": int(sum(p.numel() for p in params)),
        "extra": dict(fingerprint or {}),
    }
    fp = _digest(fp_dict)
    ckpt_path = Path(resume_dir) / RESUME_FILE if resume_dir else None
    pending_rng = None
    resumed_from = None
    if ckpt_path is not None:
        for stale in ckpt_path.parent.glob(f"{RESUME_FILE}.tmp*"):
            stale.unlink(missing_ok=True)  # a write that a SIGKILL cut short
        loaded = _load_resume(ckpt_path, fp, fp_dict)
        if loaded is not None:
            model.load_state_dict(loaded["model"], strict=keys is None)
            optimizer.load_state_dict(loaded["optimizer"])
            if loaded["grad_scaler"]:
                grad_scaler.load_state_dict(loaded["grad_scaler"])
            st.update(loaded["loop"])
            pending_rng = loaded["rng"]
            resumed_from = st["epoch"]
            where = f" (batch {st['batch']} of epoch {st['epoch'] + 1})" if st["batch"] else ""
            log.info("resuming from epoch %d%s: %s", st["epoch"], where, ckpt_path)

    def checkpoint() -> None:
        if ckpt_path is None:
            return
        atomic_save(
            {
                "format": RESUME_FORMAT,
                "fingerprint": fp,
                "fingerprint_dict": json.loads(json.dumps(fp_dict, default=str)),
                "model": _state_dict(model, keys),
                "optimizer": optimizer.state_dict(),
                "grad_scaler": grad_scaler.state_dict() if grad_scaler.is_enabled() else {},
                "loop": st,
                "rng": _rng_state(),
            },
            ckpt_path,
        )

    steps_per_epoch = None
    examples_seen, seconds_run = 0, 0.0
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    if pending_rng is not None and st["batch"] == 0:
        _set_rng_state(pending_rng)
        pending_rng = None
    log.info(
        "training %s on %s (%s): %d trainable parameters, metric %s, up to %d epochs",
        task,
        device,
        precision,
        fp_dict["n_params"],
        metric,
        cfg.epochs,
    )
    try:
        with _StopRequest() as stop:
            for epoch in range(st["epoch"] + 1, cfg.epochs + 1):
                if st["stopped_early"]:
                    break
                t0 = time.perf_counter()
                loader = train_data(epoch) if callable(train_data) else train_data
                if steps_per_epoch is None:
                    try:
                        n = len(loader)
                    except TypeError:  # an iterable without a length: schedule per epoch
                        n = 0
                    steps_per_epoch = max(1, math.ceil(n / cfg.accumulate)) if n else 1
                it = iter(loader)
                skip = st["batch"]
                for _ in range(skip):  # a mid-epoch resume: same batches, so skip the done ones
                    next(it)
                if pending_rng is not None:  # after skipping, so the loader's draws match too
                    _set_rng_state(pending_rng)
                    pending_rng = None
                model.train()
                pending = 0
                for batch in it:
                    batch = to_device(batch, device)
                    y = batch["y"]
                    with _autocast(device, precision):
                        out = model(batch)
                    if task == "multiclass" and cfg.class_weights and loss_fn.class_weight is None:
                        loss_fn.class_weight = _class_weights(task, y_train, out.shape[1]).to(
                            device
                        )
                    loss_sum, count = loss_fn(out, y)
                    loss = loss_sum / count.clamp(min=1.0) / cfg.accumulate
                    if precision != "fp16" and not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"non-finite training loss at epoch {epoch}, batch {st['batch'] + 1}: "
                            "lower lr, enable grad_clip or check the inputs for NaN/inf"
                        )
                    grad_scaler.scale(loss).backward()
                    st["loss_sum"] += float(loss_sum.detach())
                    st["loss_count"] += float(count)
                    st["epoch_examples"] += int(y.shape[0])
                    st["batch"] += 1
                    pending += 1
                    if pending == cfg.accumulate:
                        _step(cfg, optimizer, grad_scaler, params, st, epoch, steps_per_epoch)
                        pending = 0
                        if stop.requested:
                            st["epoch_seconds"] += time.perf_counter() - t0
                            checkpoint()
                            raise Preempted(_preempt_message(ckpt_path, epoch, st["batch"]))
                if pending:
                    _step(cfg, optimizer, grad_scaler, params, st, epoch, steps_per_epoch)

                val_out, val_y, val_loss = _run_eval(model, val_data, loss_fn, device, precision)
                value = None
                if val_out is not None:
                    value = evaluate_metric(
                        task, metric, val_y, _outputs_to_predictions(task, val_out, scaler)
                    )
                if metric == "loss":
                    value = val_loss
                if st["monitor"] is None and val_out is not None:
                    st["monitor"] = f"val_{metric}" if value is not None else "val_loss"
                    if value is None:
                        log.warning(
                            "val %s undefined on the validation rows; early stopping "
                            "watches val_loss",
                            metric,
                        )
                watched, watched_metric = value, metric
                if st["monitor"] == "val_loss":
                    watched, watched_metric = val_loss, "loss"
                if _is_better(watched_metric, watched, st["best_metric"]):
                    st["best_metric"], st["best_epoch"], st["bad_epochs"] = watched, epoch, 0
                    st["best_state"] = _state_dict(model, keys)
                else:
                    st["bad_epochs"] += 1
                if cfg.schedule == "plateau" and watched is not None:
                    if _is_better(watched_metric, watched, st["plateau_best"]):
                        st["plateau_best"], st["plateau_bad"] = watched, 0
                    else:
                        st["plateau_bad"] += 1
                        if st["plateau_bad"] >= plateau_patience and st["lr_scale"] > 1e-3:
                            st["lr_scale"] = max(1e-3, st["lr_scale"] * 0.5)
                            st["plateau_bad"] = 0
                            log.info("val %s plateaued: lr scale now %g", metric, st["lr_scale"])
                seconds = st["epoch_seconds"] + time.perf_counter() - t0
                examples_seen += st["epoch_examples"] if skip == 0 else 0
                seconds_run += seconds if skip == 0 else 0.0
                row = {
                    "epoch": epoch,
                    "train_loss": st["loss_sum"] / st["loss_count"]
                    if st["loss_count"]
                    else math.nan,
                    "val_loss": val_loss,
                    f"val_{metric}": math.nan if value is None else float(value),
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": seconds,
                }
                st["history"].append(row)
                st.update(batch=0, step_in_epoch=0, loss_sum=0.0, loss_count=0.0)
                st.update(epoch_examples=0, epoch_seconds=0.0, epoch=epoch)
                if cfg.patience and st["bad_epochs"] >= cfg.patience and st["best_state"]:
                    st["stopped_early"] = True
                log.info(
                    "epoch %d/%d train_loss %.4f val_loss %.4f val_%s %.4f lr %.2e %.1fs%s",
                    epoch, cfg.epochs, row["train_loss"], val_loss, metric,
                    row[f"val_{metric}"], row["lr"], seconds,
                    " (best)" if st["best_epoch"] == epoch else "",
                )  # fmt: skip
                if log_metrics is not None:
                    log_metrics(
                        {k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)},
                        step=epoch,
                    )
                checkpoint()
                if stop.requested:
                    raise Preempted(_preempt_message(ckpt_path, epoch, 0))
    finally:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)

    if st["stopped_early"]:
        log.info("early stop after epoch %d: no better %s for %d epochs",
                 st["epoch"], st["monitor"], cfg.patience)  # fmt: skip
    if st["best_state"] is not None:
        model.load_state_dict(st["best_state"], strict=keys is None)
    else:  # no validation rows: keep the last epoch
        st["best_epoch"] = st["epoch"]
    log.info("best epoch %d: %s %s", st["best_epoch"], st["monitor"], st["best_metric"])
    if ckpt_path is not None and not keep_resume_state:
        clear_resume_state(resume_dir)
    return FitResult(
        history=copy.deepcopy(st["history"]),
        best_epoch=int(st["best_epoch"]),
        best_metric=math.nan if st["best_metric"] is None else float(st["best_metric"]),
        metric=metric,
        monitor=st["monitor"] or "none",
        target_scaler=scaler,
        device=str(device),
        precision=precision,
        stopped_early=bool(st["stopped_early"]),
        resumed_from_epoch=resumed_from,
        train_examples_seen=examples_seen,
        train_seconds=seconds_run,
    )


def _step(cfg, optimizer, grad_scaler, params, st, epoch, steps_per_epoch) -> None:
    """One optimizer step: set the lr for this step, unscale, clip, step, zero the gradients."""
    step = (epoch - 1) * steps_per_epoch + min(st["step_in_epoch"], steps_per_epoch - 1)
    factor = _lr_factor(cfg, step, steps_per_epoch) * st["lr_scale"]
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    if cfg.grad_clip:
        grad_scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    grad_scaler.step(optimizer)
    grad_scaler.update()
    optimizer.zero_grad(set_to_none=True)
    st["step_in_epoch"] += 1


def clear_resume_state(resume_dir: str | Path | None) -> None:
    """Remove resume_dir/last.pt (and resume_dir when that leaves it empty)."""
    if resume_dir is None:
        return
    path = Path(resume_dir) / RESUME_FILE
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when empty


def _preempt_message(ckpt_path: Path | None, epoch: int, batch: int) -> str:
    where = f"epoch {epoch}" + (f", batch {batch}" if batch else " (end)")
    if ckpt_path is None:
        return f"SIGTERM during {where}; no resume_dir, so the progress is lost"
    return f"SIGTERM during {where}; resume state saved to {ckpt_path}"


def _load_resume(path: Path, fp: str, fp_dict: Mapping) -> dict | None:
    """The resume checkpoint if it exists, loads and matches the fingerprint; else None (logged)."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file must not block a fresh start
        log.warning("ignoring unreadable resume state %s (%s); starting fresh", path, err)
        return None
    if not isinstance(ckpt, dict) or ckpt.get("format") != RESUME_FORMAT:
        log.warning("ignoring %s: not a biomol_dl resume state; starting fresh", path)
        return None
    if ckpt.get("fingerprint") != fp:
        old = ckpt.get("fingerprint_dict") or {}
        new = json.loads(json.dumps(fp_dict, default=str))
        why = "; ".join(_fingerprint_diff(old, new)[:5]) or "fingerprint differs"
        log.warning("resume state %s was made with other settings (%s); starting fresh", path, why)
        return None
    return ckpt
