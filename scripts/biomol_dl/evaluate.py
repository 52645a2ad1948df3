"""The evaluate rule: a training job's predictions -> metrics per split and task.

Predictions arrive in the long format every training rule writes (id, split, task, y_true, y_pred,
and p_<k> for multiclass); metrics are computed here, once, in one way for every model family, so
no model can report a number computed differently from the others.

`test_calibrated` holds the uncertainty metrics of the test split after calibration fitted on
the validation split only (biomol_dl.uncertainty, the model's `uncertainty:` settings): interval
coverage and width, NLL, miscalibration area, ENCE and sd/error Spearman (regression; raw_* before
variance scaling), ECE, Brier and NLL (raw_* before calibration) and conformal set size and
coverage (classification), with the fitted calibrators under `calibrators`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from biomol_dl import metrics as M
from biomol_dl import uncertainty as U
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


CALIBRATED = "test_calibrated"


def calibrated_test_metrics(
    pred: pd.DataFrame, task: str, settings: U.Settings, source: str = "predictions"
) -> dict | None:
    """Uncertainty metrics on test, each calibrator fitted on the val rows of its task; None
    when the predictions have no val or no test rows."""
    val, test = pred[pred["split"] == "val"], pred[pred["split"] == "test"]
    if val.empty or test.empty:
        return None
    has_sd = "y_sd" in pred.columns and pred["y_sd"].notna().any()
    if settings.estimate not in ("auto", "none") and task == "regression" and not has_sd:
        raise ValueError(f"{source}: uncertainty estimate {settings.estimate!r} but no y_sd column")
    use_sd = has_sd and settings.estimate != "none" and task == "regression"
    prob_cols = sorted((c for c in pred.columns if c.startswith("p_")), key=lambda c: int(c[2:]))
    per_task, fitted = {}, {}
    for name, t_rows in test.groupby("task", sort=False):
        v_rows = val[val["task"] == name]

        def arrays(rows):
            out = {"y_true": rows["y_true"].to_numpy(float)}
            if task == "regression":
                out["y_pred"] = rows["y_pred"].to_numpy(float)
                out["sd"] = rows["y_sd"].to_numpy(float) if use_sd else None
            elif task == "multiclass":
                out["proba"] = rows[prob_cols].to_numpy(float)
            else:
                out["proba"] = rows["y_pred"].to_numpy(float)
            return out

        calibrate = U.calibrate_regression if task == "regression" else U.calibrate_classification
        per_task[str(name)], fitted[str(name)] = calibrate(arrays(v_rows), arrays(t_rows), settings)
        if any(math.isinf(f.get("q", 0.0)) for f in fitted[str(name)].values()):
            log.warning(
                "task %s: %d validation rows are too few for conformal coverage %.2f: the "
                "interval / set is unbounded", name, len(v_rows), settings.coverage,
            )  # fmt: skip
    return {
        "n": int(test["id"].nunique()),
        "fitted_on": "val",
        "settings": {**dataclasses.asdict(settings), "estimate_used": "y_sd" if use_sd else "none"},
        "tasks": per_task,
        "mean": M.mean_over_tasks(per_task),
        "calibrators": fitted,
    }


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A long predictions.csv (id, split, task, y_true, y_pred, p_k...); split and task as read."""
    pred = read_table(path, strings=("split", "task"))
    missing = {"id", "split", "task", "y_true", "y_pred"} - set(pred.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return pred


def run_evaluation(
    predictions_csv: str | Path,
    task: str,
    out_json: str | Path,
    uncertainty: dict | None = None,
) -> dict:
    pred = read_predictions(predictions_csv)
    result = evaluate_predictions(pred, task)
    settings = U.Settings.from_config(uncertainty)
    calibrated = calibrated_test_metrics(pred, task, settings, str(predictions_csv))
    if calibrated is not None:
        result[CALIBRATED] = calibrated
    Path(out_json).write_text(json.dumps(_finite(result), indent=2))
    for split in ("val", "test", CALIBRATED):
        if split in result:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in result[split]["mean"].items())
            log.info("%s (%d rows): %s", split, result[split]["n"], shown)
    return result


def _finite(obj):
    """JSON has no NaN or infinity: undefined metrics (and an unbounded conformal threshold)
    are written as null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj
