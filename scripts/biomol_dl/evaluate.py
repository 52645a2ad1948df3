"""The evaluate rule: a training job's predictions -> metrics per split and task.

Predictions arrive in the long format every training rule writes (id, split, task, y_true, y_pred,
and p_<k> for multiclass); metrics are computed here, once, in one way for every model family, so
no model can report a number computed differently from the others.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from biomol_dl import metrics as M
from biomol_dl.io import read_table
from biomol_dl.logutil import get

log = get(__name__)


def evaluate_predictions(pred: pd.DataFrame, task: str) -> dict:
    """{split: {"tasks": {task: {metric: value}}, "mean": {...}, "n": rows}} for val and test."""
    out: dict = {}
    prob_cols = sorted((c for c in pred.columns if c.startswith("p_")), key=lambda c: int(c[2:]))
    for split in ("train", "val", "test"):
        part = pred[pred["split"] == split]
        if part.empty:
            continue
        per_task = {}
        for name, rows in part.groupby("task", sort=False):
            proba = rows[prob_cols].to_numpy() if prob_cols else None
            per_task[str(name)] = M.task_metrics(task, rows["y_true"], rows["y_pred"], proba)
        out[split] = {
            "n": int(part["id"].nunique()),
            "tasks": per_task,
            "mean": M.mean_over_tasks(per_task),
        }
    return out


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A long predictions.csv (id, split, task, y_true, y_pred, p_k...); split and task as read."""
    pred = read_table(path, strings=("split", "task"))
    missing = {"id", "split", "task", "y_true", "y_pred"} - set(pred.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return pred


def run_evaluation(predictions_csv: str | Path, task: str, out_json: str | Path) -> dict:
    pred = read_predictions(predictions_csv)
    result = evaluate_predictions(pred, task)
    Path(out_json).write_text(json.dumps(_finite(result), indent=2))
    for split in ("val", "test"):
        if split in result:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in result[split]["mean"].items())
            log.info("%s (%d rows): %s", split, result[split]["n"], shown)
    return result


def _finite(obj):
    """JSON has no NaN: undefined metrics are written as null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float | np.floating):
        return None if math.isnan(obj) else float(obj)
    return obj
