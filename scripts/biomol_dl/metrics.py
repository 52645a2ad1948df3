"""Task names, metrics for regression, binary, multiclass and multitask-binary tasks, and which
metrics are better when lower.

Reported metrics (`task_metrics`, test and validation tables, plots): scikit-learn and SciPy
compute every number; this module decides which metrics a task reports, masks missing labels, and
returns NaN (not an exception) where a metric is undefined, e.g. ROC-AUC on a split in which a
task has a single class.

The validation metric of the training loop (`evaluate_metric`, early stopping and checkpoint
choice, once per epoch): numpy only, since importing scikit-learn would cost every training job a
second for two formulas; `roc_auc` and `mcc` agree with scikit-learn to float rounding (tested).
"""

from __future__ import annotations

import math

import numpy as np

TASKS = ("regression", "binary", "multiclass", "multitask_binary")
CLASSIFICATION_TASKS = ("binary", "multiclass", "multitask_binary")
BINARY_TASKS = ("binary", "multitask_binary")  # one probability of class 1 per label column
REGRESSION = ("rmse", "mae", "r2", "spearman")
CLASSIFICATION = ("roc_auc", "pr_auc", "accuracy", "mcc", "f1")
LOWER_IS_BETTER = frozenset({"rmse", "mae", "loss"})
# Which validation metrics the training loop can stop on, per task; the first is the default.
VALIDATION_METRICS = {
    "regression": ("rmse", "loss"),
    "binary": ("roc_auc", "accuracy", "mcc", "loss"),
    "multitask_binary": ("roc_auc", "loss"),
    "multiclass": ("accuracy", "mcc", "loss"),
}
# The metric a task is judged by unless the config names another (early stopping's "auto", the
# report's primary metric).
DEFAULT_METRIC = {task: names[0] for task, names in VALIDATION_METRICS.items()}


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) == 0:
        return dict.fromkeys(REGRESSION, math.nan)
    rho = spearmanr(y_true, y_pred).statistic if len(y_true) > 1 else math.nan
    return {
        "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else math.nan,
        "spearman": float(rho),
    }


def binary_metrics(y_true, p_pred, threshold: float = 0.5) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        matthews_corrcoef,
        roc_auc_score,
    )

    y_true = np.asarray(y_true).astype(int)
    p_pred = np.asarray(p_pred, float)
    if len(y_true) == 0:
        return dict.fromkeys(CLASSIFICATION, math.nan)
    y_hat = (p_pred >= threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, p_pred)) if both else math.nan,
        "pr_auc": float(average_precision_score(y_true, p_pred)) if both else math.nan,
        "accuracy": float(accuracy_score(y_true, y_hat)),
        "mcc": float(matthews_corrcoef(y_true, y_hat)) if both else math.nan,
        "f1": float(f1_score(y_true, y_hat, zero_division=0)),
    }


def multiclass_metrics(y_true, proba) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, float)
    if len(y_true) == 0:
        return {"accuracy": math.nan, "mcc": math.nan, "f1_macro": math.nan, "roc_auc": math.nan}
    y_hat = proba.argmax(axis=1)
    try:
        auc = roc_auc_score(y_true, proba, multi_class="ovr", labels=list(range(proba.shape[1])))
    except ValueError:
        auc = math.nan
    return {
        "accuracy": float(accuracy_score(y_true, y_hat)),
        "mcc": float(matthews_corrcoef(y_true, y_hat)),
        "f1_macro": float(f1_score(y_true, y_hat, average="macro", zero_division=0)),
        "roc_auc": float(auc),
    }


def task_metrics(task: str, y_true, y_pred, proba=None) -> dict[str, float]:
    """Metrics of one label column; rows whose label is missing (NaN) are left out."""
    y_true = np.asarray(y_true, float)
    keep = ~np.isnan(y_true)
    if task == "regression":
        return regression_metrics(y_true[keep], np.asarray(y_pred, float)[keep])
    if task in BINARY_TASKS:
        return binary_metrics(y_true[keep], np.asarray(y_pred, float)[keep])
    if task == "multiclass":
        return multiclass_metrics(y_true[keep], np.asarray(proba, float)[keep])
    raise ValueError(f"unknown task {task!r}")


def mean_over_tasks(per_task: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over tasks, ignoring tasks where it is undefined (NaN)."""
    names = sorted({m for metrics in per_task.values() for m in metrics})
    out = {}
    for name in names:
        values = [v[name] for v in per_task.values() if name in v and not math.isnan(v[name])]
        out[name] = float(np.mean(values)) if values else math.nan
    return out


def better(metric: str, a: float | None, b: float | None) -> bool:
    """Is `a` better than `b` for this metric? An undefined `a` (None, NaN, inf) never is; any
    defined `a` is better than an undefined `b` (None or NaN: no best value yet)."""
    if a is None or not math.isfinite(a):
        return False
    if b is None or math.isnan(b):
        return True
    return a < b if metric in LOWER_IS_BETTER else a > b


# --- the training loop's validation metric (numpy only) ------------------------------------------


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
    accuracy / mcc: multiclass argmax, binary threshold 0.5.
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
