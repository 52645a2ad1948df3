"""Metrics for regression, binary, multiclass and multitask-binary tasks.

Scikit-learn and SciPy compute every number; this module decides which metrics a task reports,
masks missing labels, and returns NaN (not an exception) where a metric is undefined, e.g. ROC-AUC
on a split in which a task has a single class.
"""

from __future__ import annotations

import math

import numpy as np

REGRESSION = ("rmse", "mae", "r2", "spearman")
CLASSIFICATION = ("roc_auc", "pr_auc", "accuracy", "mcc", "f1")
LOWER_IS_BETTER = {"rmse", "mae", "loss"}


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
    if task in {"binary", "multitask_binary"}:
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


def better(metric: str, a: float, b: float) -> bool:
    """Is `a` better than `b` for this metric?"""
    return a < b if metric in LOWER_IS_BETTER else a > b
