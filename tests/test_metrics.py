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


def test_task_names_are_the_schema_enum_and_every_task_has_metrics():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load(
        (Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )

    def enums(node):
        if isinstance(node, dict):
            if set(node.get("enum") or ()) >= {"regression", "multitask_binary"}:
                yield node["enum"]
            for value in node.values():
                yield from enums(value)
        elif isinstance(node, list):
            for value in node:
                yield from enums(value)

    found = list(enums(schema))
    assert found and all(tuple(e) == M.TASKS for e in found)
    primary = schema["properties"]["report"]["properties"]["primary_metric"]
    assert primary["default"] == M.DEFAULT_METRIC and set(primary["properties"]) == set(M.TASKS)
    assert set(M.VALIDATION_METRICS) == set(M.TASKS) == set(M.DEFAULT_METRIC)
    assert set(M.CLASSIFICATION_TASKS) == set(M.TASKS) - {"regression"}
    assert set(M.BINARY_TASKS) < set(M.CLASSIFICATION_TASKS)
    assert M.DEFAULT_METRIC == {
        "regression": "rmse",
        "binary": "roc_auc",
        "multitask_binary": "roc_auc",
        "multiclass": "accuracy",
    }


def test_better_knows_the_direction_and_undefined_values():
    assert M.better("rmse", 0.1, 0.2) and not M.better("rmse", 0.2, 0.1)
    assert M.better("roc_auc", 0.9, 0.8) and not M.better("roc_auc", 0.8, 0.9)
    assert M.better("mae", 1.0, 2.0) and M.better("loss", 1.0, 2.0)
    assert M.better("rmse", 5.0, None)
    assert not M.better("rmse", None, 1.0) and not M.better("rmse", math.nan, None)
    assert not M.better("roc_auc", math.inf, 0.5)


def test_numpy_validation_metrics_match_sklearn():
    y = rng.integers(0, 2, 200)
    score = np.round(rng.random(200), 1)  # many ties
    assert M.roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score))
    for _ in range(5):
        a, b = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
        assert M.mcc(a, b) == pytest.approx(skm.matthews_corrcoef(a, b))
    assert M.mcc(np.zeros(5, int), np.zeros(5, int)) == 0.0


def test_evaluate_metric_masks_missing_labels_and_averages_tasks():
    y = np.array([[0, 1], [1, np.nan], [1, 0], [0, 1]], float)
    p = np.array([[0.2, 0.9], [0.8, 0.1], [0.6, 0.4], [0.3, 0.3]])
    auc = M.evaluate_metric("multitask_binary", "roc_auc", y, p)
    assert auc == pytest.approx(np.mean([1.0, skm.roc_auc_score([1, 0, 1], [0.9, 0.4, 0.3])]))
    assert M.evaluate_metric("binary", "accuracy", y[:, :1], p[:, :1]) == 1.0
    reg = M.evaluate_metric("regression", "rmse", np.array([[1.0], [np.nan]]), np.array([[2], [9]]))
    assert reg == pytest.approx(1.0)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([[0], [2], [np.nan]])
    assert M.evaluate_metric("multiclass", "accuracy", labels, probs) == 0.5
    assert M.evaluate_metric("multiclass", "rmse", labels, probs) is None
    assert M.evaluate_metric("regression", "rmse", np.zeros((0, 1)), np.zeros((0, 1))) is None
