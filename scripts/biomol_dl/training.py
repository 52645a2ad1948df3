"""The one training loop for every torch model of biomol-dl (MLP, GNN, transformers, CNN, PLM).

For the model-family authors and for `train_job.run_training`, which is the usual caller:

    cfg, model_params = TrainConfig.from_params(spec["params"])
    result = fit(model, lambda epoch: make_train_loader(epoch), val_loader, task=task,
                 config=cfg, y_train=y[train_idx], resume_dir=..., log_metrics=run.log_metrics)
    probs = predict(model, full_loader, task=task, target_scaler=result.target_scaler)

What `fit` does, top to bottom: AdamW (no weight decay on biases and norm weights); a learning
rate that warms up linearly then follows a cosine / exponential / plateau / constant schedule
(a torch LambdaLR, stepped per optimizer step); masked losses so NaN labels (missing multitask
labels) contribute neither loss nor gradient; regression targets standardized per task with
mean / sd of the TRAIN rows; regression heads that predict a variance too (`HEADS`: mve,
evidential), trained on their negative log-likelihood; optional class weights from the train
labels; gradient accumulation and clipping (torch.nn.utils.clip_grad_norm_); mixed precision on
CUDA (bf16 also on CPUs that have it); early stopping on
the validation metric with the best weights restored at the end.

`fit` is a short driver; read it first. Its parts, in the order an epoch runs them:
`_train_epoch` (`_backward` per micro-batch, `_optimizer_step`), `_validate` (`_evaluate`, under
torch.no_grad in eval mode, then `metrics.evaluate_metric`), `_early_stopping` (and the plateau
rule of `_LrFactor`), `_end_epoch` (the history row; the scheduler moves to the next epoch),
`_checkpoint`. What changes as it runs is a `_LoopState`; what is set up once is a `_Run`.

Batches are dict-like (a dict of tensors or a torch_geometric Batch) with `batch["y"]`: a float
tensor [B, T], NaN = missing (multiclass: the class index as a float, T = 1). `model(batch)`
returns [B, T] (standardized regression values, or logits) or [B, K] logits for multiclass.

Reproducibility and resume: one seed sets python / numpy / torch; the training batches of epoch
`e` come from `train_data(e)` and must depend only on (seed, e) (train_job seeds the family's
loader with `seed * 1000 + e`), never on a generator carried from epoch to epoch, so there is no
loader state to save. With a `resume_dir`, the complete training state (weights, optimizer,
scheduler state_dict, grad scaler, loop state, RNG states) is written atomically to
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
import json
import logging
import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from biomol_dl.hashing import sha256_json
from biomol_dl.metrics import (
    BINARY_TASKS,
    DEFAULT_METRIC,
    TASKS,
    VALIDATION_METRICS,
    better,
    evaluate_metric,
)

log = logging.getLogger("biomol_dl.training")

SCHEDULES = ("cosine", "exponential", "plateau", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what SLURM and shells expect from a terminated job
RESUME_FILE = "last.pt"
RESUME_FORMAT = "biomol_dl.resume/2"  # /2: the schedule is a torch LambdaLR


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
      CPU) | fp32 | bf16 (CUDA, and CPUs with native bf16) | fp16 (CUDA only).
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
            ("metric", ("auto", *sorted({m for ms in VALIDATION_METRICS.values() for m in ms}))),
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
    """The precision actually used: on CPU fp32, or bf16 when asked for and the CPU computes bf16
    natively (biomol_dl.plm.cpu_supports_bf16; else fp32, logged); auto on CUDA -> bf16 if
    supported, else fp16."""
    if device.type != "cuda":
        if pref == "bf16":
            from biomol_dl.plm import cpu_supports_bf16

            if cpu_supports_bf16():
                return "bf16"
            log.warning("precision bf16: this CPU has no native bf16; training in fp32")
        elif pref == "fp16":
            log.info("precision fp16 applies on CUDA only; training in fp32 on %s", device)
        return "fp32"
    if pref == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return pref


def _autocast(device: torch.device, precision: str):
    if precision == "bf16" or (device.type == "cuda" and precision == "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
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


# Regression heads: how many raw outputs per task the network returns and what they mean.
#   point       the value (mean squared error)
#   mve         mean and variance, the variance through softplus (Nix & Weigend 1994; chemprop's
#               MVE): Gaussian negative log-likelihood
#   evidential  the Normal-Inverse-Gamma parameters gamma, nu, alpha, beta (Amini et al. 2020;
#               nu, beta through softplus, alpha = 1 + softplus): the NIG negative log-likelihood
#               plus EVIDENTIAL_REG * |y - gamma| * (2 nu + alpha); its sd is the total
#               (aleatoric + epistemic) sqrt(beta (1 + nu) / (nu (alpha - 1)))
# The outputs of a head are grouped by parameter: [B, T] means, then [B, T] of the next, ...
HEADS = {"point": 1, "mve": 2, "evidential": 4}
EVIDENTIAL_REG = 0.2  # chemprop 2's default weight of the evidence regularizer
_MIN_VAR = 1e-6


def head_outputs(head: str, n_tasks: int) -> int:
    """The network outputs a head needs for n_tasks regression tasks."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
    return HEADS[head] * n_tasks


def head_parts(out: torch.Tensor, head: str) -> tuple[torch.Tensor, ...]:
    """The head's parameters from the raw outputs [B, HEADS[head] * T], each [B, T], positive
    where they must be: (mean,) | (mean, var) | (gamma, nu, alpha, beta)."""
    if head == "point":
        return (out,)
    parts = out.chunk(HEADS[head], dim=1)
    if head == "mve":
        return parts[0], F.softplus(parts[1]) + _MIN_VAR
    gamma, nu, alpha, beta = parts
    return (gamma, F.softplus(nu) + _MIN_VAR, F.softplus(alpha) + 1.0 + _MIN_VAR,
            F.softplus(beta) + _MIN_VAR)  # fmt: skip


def head_variance(parts: tuple[torch.Tensor, ...], head: str) -> torch.Tensor | None:
    """The predictive variance of a head's parameters (standardized units); None for point."""
    if head == "mve":
        return parts[1]
    if head == "evidential":
        _, nu, alpha, beta = parts
        return beta * (1 + nu) / (nu * (alpha - 1))
    return None


def _head_loss(parts: tuple[torch.Tensor, ...], z: torch.Tensor, head: str) -> torch.Tensor:
    """Element-wise loss of a regression head against standardized targets z."""
    if head == "point":
        return (parts[0] - z) ** 2
    if head == "mve":
        return F.gaussian_nll_loss(parts[0], z, parts[1], full=True, reduction="none")
    gamma, nu, alpha, beta = parts
    omega = 2 * beta * (1 + nu)
    nll = (
        0.5 * torch.log(math.pi / nu)
        - alpha * torch.log(omega)
        + (alpha + 0.5) * torch.log(nu * (z - gamma) ** 2 + omega)
        + torch.lgamma(alpha)
        - torch.lgamma(alpha + 0.5)
    )
    return nll + EVIDENTIAL_REG * (z - gamma).abs() * (2 * nu + alpha)


class _Loss:
    """Masked loss: sum over the labelled entries of a batch, and how many there were.

    Missing labels are replaced by 0 BEFORE the element-wise loss so no NaN enters the graph
    (torch.where would otherwise pass 0 * NaN = NaN gradients), then masked out of the sum.
    Regression takes the loss of its head (`HEADS`).
    """

    def __init__(self, task: str, scaler: TargetScaler, pos_weight, class_weight, device,
                 head: str = "point"):  # fmt: skip
        self.task = task
        self.head = head
        self.mean = torch.tensor(scaler.mean, dtype=torch.float32, device=device)
        self.sd = torch.tensor(scaler.sd, dtype=torch.float32, device=device)
        self.pos_weight = None if pos_weight is None else pos_weight.to(device)
        self.class_weight = None if class_weight is None else class_weight.to(device)

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = _check_output(out, y, self.task, self.head).float()
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
            loss = _head_loss(head_parts(out, self.head), (target - self.mean) / self.sd, self.head)
        else:
            loss = F.binary_cross_entropy_with_logits(
                out, target, pos_weight=self.pos_weight, reduction="none"
            )
        loss = torch.where(mask, loss, torch.zeros_like(loss))
        return loss.sum(), mask.sum().float()


def _check_output(
    out: torch.Tensor, y: torch.Tensor, task: str, head: str = "point"
) -> torch.Tensor:
    if not torch.is_tensor(out):
        raise TypeError(f"model(batch) must return a tensor, got {type(out).__name__}")
    if out.dim() == 1 and y.shape[1] == 1 and task != "multiclass":
        out = out.unsqueeze(1)
    if out.dim() != 2 or out.shape[0] != y.shape[0]:
        raise ValueError(
            f"model output shape {tuple(out.shape)} does not match labels {tuple(y.shape)}"
        )
    per_task = HEADS[head] if task == "regression" else 1
    if task != "multiclass" and out.shape[1] != y.shape[1] * per_task:
        extra = f" ({head} head: {per_task} per column)" if per_task > 1 else ""
        raise ValueError(
            f"model returns {out.shape[1]} outputs for {y.shape[1]} label columns{extra}"
        )
    return out


def _class_weights(task: str, y: np.ndarray, n_classes: int | None):
    """pos_weight [T] (binary / multitask) or class weights [K] (multiclass) from train labels."""
    if task in BINARY_TASKS:
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
    if task in BINARY_TASKS and not np.isin(finite, (0.0, 1.0)).all():
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


def _resolve_metric(task: str, metric: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task {task!r}: must be one of {', '.join(TASKS)}")
    if metric == "auto":
        return DEFAULT_METRIC[task]
    if metric not in VALIDATION_METRICS[task]:
        raise ValueError(
            f"metric {metric!r} does not apply to {task}; use one of {VALIDATION_METRICS[task]}"
        )
    return metric


@torch.no_grad()
def _evaluate(model, loader, loss_fn, device, precision):
    """Raw outputs, labels and mean loss over a loader, with the model in eval mode."""
    model.eval()
    outs, ys = [], []
    loss_sum, count = 0.0, 0.0
    for batch in loader or ():
        batch = to_device(batch, device)
        y = batch["y"]
        with _autocast(device, precision):
            out = model(batch)
        out = _check_output(out, y, loss_fn.task, loss_fn.head).float()
        s, c = loss_fn(out, y)
        loss_sum += float(s)
        count += float(c)
        outs.append(out.cpu())
        ys.append(y.float().cpu())
    if not outs:
        return None, None, float("nan")
    loss = loss_sum / count if count > 0 else float("nan")
    return torch.cat(outs).double().numpy(), torch.cat(ys).double().numpy(), loss


def _outputs_to_predictions(
    task: str, out: np.ndarray, scaler: TargetScaler | None, head: str = "point"
) -> np.ndarray:
    if task == "regression":
        out = out[:, : out.shape[1] // HEADS[head]]  # the means (a head's first part)
        if scaler is None:
            return out
        return out * np.asarray(scaler.sd) + np.asarray(scaler.mean)
    t = torch.from_numpy(out)
    return (torch.softmax(t, dim=1) if task == "multiclass" else torch.sigmoid(t)).numpy()


def predict(
    model: torch.nn.Module,
    loader: Iterable,
    *,
    task: str,
    target_scaler: TargetScaler | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    head: str = "point",
) -> np.ndarray:
    """Predictions for every example of `loader`, in loader order, as float64 numpy.

    regression: [N, T] values in the original units (de-standardized with `target_scaler`; a
    variance head's means); binary / multitask_binary: [N, T] probabilities; multiclass: [N, K]
    softmax probabilities. Leaves the model in eval mode.
    """
    return predict_distribution(model, loader, task=task, target_scaler=target_scaler,
                                device=device, precision=precision, head=head)[0]  # fmt: skip


@torch.no_grad()
def predict_distribution(
    model: torch.nn.Module,
    loader: Iterable,
    *,
    task: str,
    target_scaler: TargetScaler | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    head: str = "point",
) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions as `predict` gives them, [N, T] predictive sd in the original units of a
    regression variance head, else None), from one pass over `loader`."""
    _resolve_metric(task, "auto")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    model.eval()
    out = _raw_outputs(model, loader, task, device, precision, head)
    if out is None:
        return np.zeros((0, 0)), None
    preds = _outputs_to_predictions(task, out, target_scaler, head)
    if task != "regression" or head == "point":
        return preds, None
    var = head_variance(head_parts(torch.from_numpy(out), head), head).numpy()
    scale = np.asarray(target_scaler.sd) if target_scaler is not None else 1.0
    return preds, np.sqrt(var) * scale


def _raw_outputs(
    model, loader: Iterable, task: str, device, precision: str, head: str = "point"
) -> np.ndarray | None:
    """The model's raw outputs over a loader, float64 [N, T | K | head * T], in the model's
    current mode; None for an empty loader."""
    outs = []
    for batch in loader:
        batch = to_device(batch, device)
        with _autocast(device, precision):
            out = model(batch)
        outs.append(_check_output(out, batch["y"], task, head).float().cpu())
    return torch.cat(outs).double().numpy() if outs else None


@torch.no_grad()
def predict_mc_dropout(
    model: torch.nn.Module,
    loader: Iterable,
    *,
    task: str,
    passes: int,
    seed: int,
    target_scaler: TargetScaler | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """[passes, N, T] predictions with dropout left on (MC dropout, Gal & Ghahramani 2016): the
    model's Dropout modules in train mode, everything else (batch norm) in eval mode, seeded so a
    rerun gives the same draws. Leaves the model in eval mode."""
    dropouts = [
        m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0
    ]
    if not dropouts:
        raise ValueError(
            "uncertainty estimate 'dropout': the model has no dropout layer with p > 0; set its "
            "dropout param or choose another estimate"
        )
    device = torch.device(device) if device is not None else next(model.parameters()).device
    draws = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for _ in range(passes):
            model.eval()
            for m in dropouts:
                m.train()
            out = _raw_outputs(model, loader, task, device, precision)
            draws.append(_outputs_to_predictions(task, out, target_scaler))
    model.eval()
    return np.stack(draws)


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


_digest = sha256_json


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


def _make_optimizer(
    model: torch.nn.Module,
    params: list,
    cfg: TrainConfig,
    lr_scales: Mapping[str, float] | None = None,
):
    """AdamW over `params`: no weight decay on biases and normalization weights (1-d tensors),
    as usual for AdamW; a parameter whose name starts with a prefix in `lr_scales` learns at
    lr * scale (an encoder fine-tuned more gently than its new head)."""
    scale_of: dict[int, float] = {}
    for name, p in model.named_parameters():
        for prefix, scale in (lr_scales or {}).items():
            if name.startswith(prefix):
                scale_of[id(p)] = float(scale)
    grouped: dict[tuple[float, bool], list] = {}
    for p in params:
        grouped.setdefault((scale_of.get(id(p), 1.0), p.dim() < 2), []).append(p)
    # full-rate groups first, decayed before not: param_groups[0] is the one history logs
    keys = sorted(grouped, key=lambda k: (k[0] != 1.0, k[0], k[1]))
    groups = [
        {"params": grouped[k], "weight_decay": 0.0 if k[1] else cfg.weight_decay,
         "lr": cfg.lr * k[0]}
        for k in keys
    ]  # fmt: skip
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


class _LrFactor:
    """The learning rate of optimizer step `step` as a factor of lr: `_lr_factor` (warmup, then
    the schedule) times the plateau scale. The `lr_lambda` of the LambdaLR that sets the rate, so
    its attributes (plain values) travel in the scheduler's state_dict.

    Plateau: halve the scale when the validation metric has not improved for `patience` epochs
    (max(1, patience // 3)), down to 1/1000. This is torch's ReduceLROnPlateau(factor=0.5,
    patience=p - 1, threshold=0, min_lr=lr / 1000) decision for decision, but that one rescales
    the optimizer's rate in place, where the per-step warmup of the LambdaLR would overwrite it;
    so here the scale is a factor of the lambda.
    """

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        self.epochs, self.warmup_epochs = cfg.epochs, cfg.warmup_epochs
        self.schedule, self.final_lr_ratio = cfg.schedule, cfg.final_lr_ratio
        self.steps_per_epoch = steps_per_epoch
        self.scale = 1.0
        self.patience = max(1, cfg.patience // 3)
        self.bad_epochs = 0

    def __call__(self, step: int) -> float:
        return _lr_factor(self, step, self.steps_per_epoch) * self.scale

    def epoch_end(self, improved: bool) -> bool:
        """Count an epoch for the plateau rule; True when the scale was lowered."""
        if improved:
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs < self.patience or self.scale <= 1e-3:
            return False
        self.scale = max(1e-3, self.scale * 0.5)
        self.bad_epochs = 0
        return True


@dataclass
class _LoopState:
    """What changes as training runs, besides weights, optimizer, schedule: `loop` in last.pt."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # micro-batches done in the running epoch (mid-epoch checkpoint only)
    step_in_epoch: int = 0  # optimizer steps done in the running epoch
    loss_sum: float = 0.0  # the running epoch's train loss: sum and count of labelled entries
    loss_count: float = 0.0
    epoch_examples: int = 0
    epoch_seconds: float = 0.0  # time spent on the running epoch before a mid-epoch checkpoint
    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None  # early stopping: the best watched value, its epoch, weights
    best_epoch: int = 0
    best_state: dict | None = None
    bad_epochs: int = 0
    monitor: str | None = None  # the history column early stopping watches, set at epoch 1
    stopped_early: bool = False

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def next_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batch = self.step_in_epoch = self.epoch_examples = 0
        self.loss_sum = self.loss_count = self.epoch_seconds = 0.0


@dataclass
class _Run:
    """What one `fit` call sets up once and its parts share; none of it is saved."""

    model: torch.nn.Module
    task: str
    metric: str
    cfg: TrainConfig
    y_train: np.ndarray
    target_scaler: TargetScaler
    device: torch.device
    precision: str
    params: list  # what the optimizer updates
    keys: set[str] | None  # the state-dict keys that training changes (None = all)
    optimizer: torch.optim.Optimizer
    grad_scaler: torch.amp.GradScaler
    loss_fn: _Loss
    fingerprint: dict
    ckpt_path: Path | None
    # the LambdaLR over _LrFactor, made when the first loader tells the steps per epoch
    scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
    lr_factor: _LrFactor | None = None
    saved: dict | None = None  # resume state whose optimizer part waits for the scheduler
    examples_seen: int = 0  # throughput over the epochs this call ran from their start
    seconds_run: float = 0.0


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
    lr_scales: Mapping[str, float] | None = None,
    head: str = "point",
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
    lr_scales: {parameter-name prefix: factor of lr} (e.g. {"encoder.": 0.1} to fine-tune a
      pretrained encoder at a tenth of the head's rate); the schedule scales every group alike.
    head: the regression head the model's outputs are (`HEADS`): point, mve or evidential; the
      loss is its negative log-likelihood, early stopping still watches the metric of its means.

    Raises Preempted (exit status 143) after SIGTERM, once the checkpoint is written.
    """
    run = _setup(model, task, config, y_train, parameters, resume_dir, fingerprint, lr_scales,
                 head)  # fmt: skip
    st, rng = _resume(run)
    resumed_from = st.epoch if rng is not None else None
    log.info("training %s on %s (%s): %d trainable parameters, metric %s, up to %d epochs",
             task, run.device, run.precision, run.fingerprint["n_params"], run.metric,
             config.epochs)  # fmt: skip
    with _deterministic_on_cpu(run.device), _StopRequest() as stop:
        if rng is not None and st.batch == 0:  # resumed at the end of an epoch
            _set_rng_state(rng)
            rng = None
        for epoch in range(st.epoch + 1, config.epochs + 1):
            if st.stopped_early:
                break
            t0, from_start = time.perf_counter(), st.batch == 0
            _train_epoch(run, st, train_data, epoch, stop, rng, t0)
            rng = None
            value, val_loss, evaluated = _validate(run, val_data)
            improved = _early_stopping(run, st, epoch, value, val_loss, evaluated)
            if run.cfg.schedule == "plateau" and improved is not None:
                if run.lr_factor.epoch_end(improved):
                    log.info("val %s plateaued: lr scale now %g", run.metric, run.lr_factor.scale)
            row = _end_epoch(run, st, epoch, value, val_loss, t0, from_start)
            _report_epoch(run, st, row, log_metrics)
            _checkpoint(run, st)
            if stop.requested:
                raise Preempted(_preempt_message(run.ckpt_path, epoch, 0))
    return _finish(run, st, resumed_from, resume_dir, keep_resume_state)


def _setup(model, task, cfg, y_train, parameters, resume_dir, fingerprint, lr_scales,
           head="point") -> _Run:  # fmt: skip
    """Check the inputs, seed, pick device and precision, build optimizer, grad scaler and loss."""
    cfg.check()
    if head != "point" and task != "regression":
        raise ValueError(f"a {head} head is for regression, not {task}")
    head_outputs(head, 1)
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
    pos_weight = _class_weights(task, y_train, None) if cfg.class_weights else None
    return _Run(
        model=model,
        task=task,
        metric=metric,
        cfg=cfg,
        y_train=y_train,
        target_scaler=scaler,
        device=device,
        precision=precision,
        params=params,
        keys=keys,
        optimizer=_make_optimizer(model, params, cfg, lr_scales),
        grad_scaler=torch.amp.GradScaler("cuda", enabled=precision == "fp16"),
        loss_fn=_Loss(task, scaler, pos_weight, None, device, head),
        fingerprint={
            "train": cfg.fingerprint(),
            "task": task,
            "n_train": int(y_train.shape[0]),
            "n_params": int(sum(p.numel() for p in params)),
            "lr_scales": dict(lr_scales or {}),
            **({"head": head} if head != "point" else {}),
            "extra": dict(fingerprint or {}),
        },
        ckpt_path=Path(resume_dir) / RESUME_FILE if resume_dir else None,
    )


@contextlib.contextmanager
def _deterministic_on_cpu(device: torch.device):
    """Deterministic torch kernels (warn only) while training on CPU, as before afterwards."""
    if device.type != "cpu":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only_before)


def _train_epoch(run: _Run, st: _LoopState, train_data, epoch: int, stop, rng, t0: float) -> None:
    """One epoch of training (its rest after a mid-epoch resume); checkpoints and raises Preempted
    at the first optimizer step after SIGTERM."""
    loader = train_data(epoch) if callable(train_data) else train_data
    if run.scheduler is None:
        _start_schedule(run, loader)
    it = iter(loader)
    for _ in range(st.batch):  # a mid-epoch resume: same batches, so skip the done ones
        next(it)
    if rng is not None:  # after skipping, so the loader's draws match too
        _set_rng_state(rng)
    run.model.train()
    pending = 0
    for batch in it:
        _backward(run, st, batch, epoch)
        pending += 1
        if pending == run.cfg.accumulate:
            _optimizer_step(run, st)
            pending = 0
            if stop.requested:
                st.epoch_seconds += time.perf_counter() - t0
                _checkpoint(run, st)
                raise Preempted(_preempt_message(run.ckpt_path, epoch, st.batch))
    if pending:
        _optimizer_step(run, st)


def _start_schedule(run: _Run, loader) -> None:
    """The LambdaLR, once the first loader gives the steps per epoch; then the optimizer, schedule
    and grad scaler of a resume state (its steps per epoch win, so the rates stay those of the
    run that saved it)."""
    try:
        n = len(loader)
    except TypeError:  # an iterable without a length: schedule per epoch
        n = 0
    steps_per_epoch = max(1, math.ceil(n / run.cfg.accumulate)) if n else 1
    run.lr_factor = _LrFactor(run.cfg, steps_per_epoch)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, run.lr_factor)
    if run.saved is not None:
        run.optimizer.load_state_dict(run.saved["optimizer"])
        run.scheduler.load_state_dict(run.saved["scheduler"])
        if run.saved["grad_scaler"]:
            run.grad_scaler.load_state_dict(run.saved["grad_scaler"])
        run.saved = None


def _backward(run: _Run, st: _LoopState, batch, epoch: int) -> None:
    """Forward one micro-batch, backpropagate its (masked, accumulation-scaled) loss."""
    batch = to_device(batch, run.device)
    y = batch["y"]
    with _autocast(run.device, run.precision):
        out = run.model(batch)
    loss_fn = run.loss_fn
    if run.task == "multiclass" and run.cfg.class_weights and loss_fn.class_weight is None:
        loss_fn.class_weight = _class_weights(run.task, run.y_train, out.shape[1]).to(run.device)
    loss_sum, count = loss_fn(out, y)
    loss = loss_sum / count.clamp(min=1.0) / run.cfg.accumulate
    if run.precision != "fp16" and not torch.isfinite(loss):
        raise FloatingPointError(
            f"non-finite training loss at epoch {epoch}, batch {st.batch + 1}: "
            "lower lr, enable grad_clip or check the inputs for NaN/inf"
        )
    run.grad_scaler.scale(loss).backward()
    st.loss_sum += float(loss_sum.detach())
    st.loss_count += float(count)
    st.epoch_examples += int(y.shape[0])
    st.batch += 1


def _optimizer_step(run: _Run, st: _LoopState) -> None:
    """Unscale, clip, step, zero the gradients; then the rate of the next step of this epoch.

    The schedule counts steps_per_epoch steps per epoch: extra steps of a longer epoch keep the
    epoch's last rate, and `_end_epoch` moves the scheduler on to the next epoch's first step.
    """
    if run.cfg.grad_clip:
        run.grad_scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.params, run.cfg.grad_clip)
    run.grad_scaler.step(run.optimizer)
    run.grad_scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    st.step_in_epoch += 1
    if st.step_in_epoch < run.lr_factor.steps_per_epoch:
        _step_schedule(run)


def _step_schedule(run: _Run) -> None:
    with warnings.catch_warnings():
        # fp16: a step the grad scaler skipped (inf gradients) moves the schedule on all the same,
        # as in torch's AMP recipe; torch would warn when that happens to the very first step
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler")
        run.scheduler.step()


def _validate(run: _Run, val_data) -> tuple[float | None, float, bool]:
    """(validation metric or None where undefined, validation loss, whether there were rows)."""
    val_out, val_y, val_loss = _evaluate(
        run.model, val_data, run.loss_fn, run.device, run.precision
    )
    value = None
    if val_out is not None:
        preds = _outputs_to_predictions(run.task, val_out, run.target_scaler, run.loss_fn.head)
        value = evaluate_metric(run.task, run.metric, val_y, preds)
    if run.metric == "loss":
        value = val_loss
    return value, val_loss, val_out is not None


def _early_stopping(run: _Run, st: _LoopState, epoch, value, val_loss, evaluated) -> bool | None:
    """Keep the best epoch's weights; whether the watched value improved (None: undefined)."""
    if st.monitor is None and evaluated:
        st.monitor = f"val_{run.metric}" if value is not None else "val_loss"
        if value is None:
            log.warning(
                "val %s undefined on the validation rows; early stopping watches val_loss",
                run.metric,
            )
    watched, watched_metric = value, run.metric
    if st.monitor == "val_loss":
        watched, watched_metric = val_loss, "loss"
    improved = better(watched_metric, watched, st.best_metric)
    if improved:
        st.best_metric, st.best_epoch, st.bad_epochs = watched, epoch, 0
        st.best_state = _state_dict(run.model, run.keys)
    else:
        st.bad_epochs += 1
    return None if watched is None else improved


def _end_epoch(run: _Run, st: _LoopState, epoch, value, val_loss, t0, from_start) -> dict:
    """The epoch's history row; the loop state and the scheduler move on to the next epoch."""
    seconds = st.epoch_seconds + time.perf_counter() - t0
    if from_start:  # throughput only over whole epochs
        run.examples_seen += st.epoch_examples
        run.seconds_run += seconds
    row = {
        "epoch": epoch,
        "train_loss": st.loss_sum / st.loss_count if st.loss_count else math.nan,
        "val_loss": val_loss,
        f"val_{run.metric}": math.nan if value is None else float(value),
        "lr": run.optimizer.param_groups[0]["lr"],  # the rate of the epoch's last step
        "seconds": seconds,
    }
    st.history.append(row)
    st.next_epoch(epoch)
    if run.cfg.patience and st.bad_epochs >= run.cfg.patience and st.best_state:
        st.stopped_early = True
    while run.scheduler.last_epoch < epoch * run.lr_factor.steps_per_epoch:
        _step_schedule(run)  # on to the next epoch's first step (and a new plateau scale)
    return row


def _report_epoch(run: _Run, st: _LoopState, row: dict, log_metrics) -> None:
    log.info(
        "epoch %d/%d train_loss %.4f val_loss %.4f val_%s %.4f lr %.2e %.1fs%s",
        row["epoch"], run.cfg.epochs, row["train_loss"], row["val_loss"], run.metric,
        row[f"val_{run.metric}"], row["lr"], row["seconds"],
        " (best)" if st.best_epoch == row["epoch"] else "",
    )  # fmt: skip
    if log_metrics is not None:
        log_metrics(
            {k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}, step=row["epoch"]
        )


def _finish(run: _Run, st: _LoopState, resumed_from, resume_dir, keep_resume_state) -> FitResult:
    """Restore the best weights, clear the resume state unless kept, and say what happened."""
    if st.stopped_early:
        log.info("early stop after epoch %d: no better %s for %d epochs",
                 st.epoch, st.monitor, run.cfg.patience)  # fmt: skip
    if st.best_state is not None:
        run.model.load_state_dict(st.best_state, strict=run.keys is None)
    else:  # no validation rows: keep the last epoch
        st.best_epoch = st.epoch
    log.info("best epoch %d: %s %s", st.best_epoch, st.monitor, st.best_metric)
    if run.ckpt_path is not None and not keep_resume_state:
        clear_resume_state(resume_dir)
    return FitResult(
        history=copy.deepcopy(st.history),
        best_epoch=int(st.best_epoch),
        best_metric=math.nan if st.best_metric is None else float(st.best_metric),
        metric=run.metric,
        monitor=st.monitor or "none",
        target_scaler=run.target_scaler,
        device=str(run.device),
        precision=run.precision,
        stopped_early=bool(st.stopped_early),
        resumed_from_epoch=resumed_from,
        train_examples_seen=run.examples_seen,
        train_seconds=run.seconds_run,
    )


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint(run: _Run, st: _LoopState) -> None:
    """Write the complete training state to last.pt (atomically); nothing without a resume_dir."""
    if run.ckpt_path is None:
        return
    atomic_save(
        {
            "format": RESUME_FORMAT,
            "fingerprint": _digest(run.fingerprint),
            "fingerprint_dict": json.loads(json.dumps(run.fingerprint, default=str)),
            "model": _state_dict(run.model, run.keys),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "grad_scaler": run.grad_scaler.state_dict() if run.grad_scaler.is_enabled() else {},
            "loop": st.as_dict(),
            "rng": _rng_state(),
        },
        run.ckpt_path,
    )


def _resume(run: _Run) -> tuple[_LoopState, dict | None]:
    """The loop state to start from and the RNG state to restore (None: a fresh start).

    Loads the weights now; the optimizer, scheduler and grad scaler wait in `run.saved` for the
    scheduler, which the first loader of this call makes.
    """
    if run.ckpt_path is None:
        return _LoopState(), None
    for stale in run.ckpt_path.parent.glob(f"{RESUME_FILE}.tmp*"):
        stale.unlink(missing_ok=True)  # a write that a SIGKILL cut short
    saved = _load_resume(run.ckpt_path, _digest(run.fingerprint), run.fingerprint)
    if saved is None:
        return _LoopState(), None
    run.model.load_state_dict(saved["model"], strict=run.keys is None)
    run.saved = saved
    st = _LoopState(**saved["loop"])
    where = f" (batch {st.batch} of epoch {st.epoch + 1})" if st.batch else ""
    log.info("resuming from epoch %d%s: %s", st.epoch, where, run.ckpt_path)
    return st, saved["rng"]


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
        made_by = (
            f"format {ckpt['format']!r}" if isinstance(ckpt, dict) and "format" in ckpt else ""
        )
        why = (
            f"made by another biomol_dl version ({made_by}, now {RESUME_FORMAT!r})"
            if made_by
            else "not a biomol_dl resume state"
        )
        log.warning("ignoring %s: %s; starting fresh", path, why)
        return None
    if ckpt.get("fingerprint") != fp:
        old = ckpt.get("fingerprint_dict") or {}
        new = json.loads(json.dumps(fp_dict, default=str))
        why = "; ".join(_fingerprint_diff(old, new)[:5]) or "fingerprint differs"
        log.warning("resume state %s was made with other settings (%s); starting fresh", path, why)
        return None
    return ckpt
