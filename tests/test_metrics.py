"""Metrics agree with scikit-learn / SciPy computed independently, and missing labels are masked."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn import metrics as skm

from biomol_dl import metrics as M
from biomol_dl.evaluate import evaluate_predictions

rng = np.random.default_rng(0)


def test_regression_matches_sklearn():
    y, p = rng.normal(size=50), rng.normal(size=50)
    got = M.task_metrics("regression", y, p)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert got["r2"] == pytest.approx(skm.r2_score(y, p))
    assert got["spearman"] == pytest.approx(spearmanr(y, p).statistic)


def test_binary_matches_sklearn():
    y = rng.integers(0, 2, 80)
    p = np.clip(y * 0.3 + rng.random(80) * 0.7, 0, 1)
    got = M.task_metrics("binary", y, p)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(y, p >= 0.5))
    assert got["f1"] == pytest.approx(skm.f1_score(y, p >= 0.5))


def test_missing_labels_are_masked_and_single_class_is_nan():
    y = np.array([1, 0, np.nan, 1, np.nan])
    p = np.array([0.9, 0.2, 0.99, 0.8, 0.01])
    got = M.task_metrics("multitask_binary", y, p)
    assert got["roc_auc"] == pytest.approx(1.0)
    assert got["accuracy"] == pytest.approx(1.0)
    assert math.isnan(M.task_metrics("binary", [1, 1, 1], [0.2, 0.6, 0.9])["roc_auc"])


def test_multiclass_matches_sklearn():
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), size=60)
    got = M.task_metrics("multiclass", y, None, proba)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, proba.argmax(1)))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))


def test_evaluate_multitask_mean_over_tasks():
    rows = []
    for task, shift in (("a", 0.0), ("b", 0.4)):
        for i in range(20):
            y = i % 2
            rows.append(
                {
                    "id": str(i),
                    "split": "test",
                    "task": task,
                    "y_true": y,
                    "y_pred": min(1.0, y * 0.5 + 0.25 + shift * (i % 3 == 0)),
                }
            )
    result = evaluate_predictions(pd.DataFrame(rows), "multitask_binary")
    per_task = result["test"]["tasks"]
    assert set(per_task) == {"a", "b"}
    assert result["test"]["mean"]["roc_auc"] == pytest.approx(
        (per_task["a"]["roc_auc"] + per_task["b"]["roc_auc"]) / 2
    )
