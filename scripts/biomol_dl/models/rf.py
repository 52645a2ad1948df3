"""Random-forest baseline (scikit-learn) on fixed-length features.

Tuned forests on fingerprints are strong on MoleculeNet-size data (Jiang et al. 2021), so every
deep model is shown beside this one. Multitask-binary labels with gaps get one forest per task,
each trained on the rows where that task is labelled.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from biomol_dl.logutil import get

log = get(__name__)

DEFAULTS = {"n_estimators": 500, "max_features": "sqrt", "min_samples_leaf": 1, "max_depth": None}


def _matrix(features: dict) -> np.ndarray:
    X = features["X"].numpy() if hasattr(features["X"], "numpy") else np.asarray(features["X"])
    X = X.reshape(len(X), -1).astype(np.float32)
    return X


def _forest(task: str, params: dict, seed: int, threads: int):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
    kwargs = {**DEFAULTS, **params}
    if task == "regression" and kwargs["max_features"] == "sqrt" and "max_features" not in params:
        kwargs["max_features"] = 1.0 / 3  # Breiman's regression default
    return cls(random_state=seed, n_jobs=threads, **kwargs)


def run_rf(
    *,
    clean_csv,
    split_csv,
    features_pt,
    model_spec,
    task,
    label_columns,
    seed,
    out_model,
    out_predictions,
    out_history,
    threads=1,
    run=None,
) -> dict:
    import skops.io as sio
    import torch

    from biomol_dl.train_job import check_feature_ids, read_labels, read_split, write_predictions

    ids, y = read_labels(clean_csv, label_columns, task)
    split = read_split(split_csv, ids)
    train_rows = np.flatnonzero(split == "train")
    features = torch.load(features_pt, weights_only=True)
    check_feature_ids(features, ids, features_pt)
    X = _matrix(features)
    # Descriptor columns can hold NaN: impute with the training mean so the forest sees numbers.
    col_mean = np.nan_to_num(np.nanmean(X[train_rows], axis=0)) if np.isnan(X).any() else None
    if col_mean is not None:
        X = np.where(np.isnan(X), col_mean, X)
    params = dict(model_spec.get("params", {}))
    start = time.perf_counter()
    forests, columns = [], []
    for t, name in enumerate(label_columns):
        rows = train_rows[~np.isnan(y[train_rows, t])]
        forest = _forest(task, params, seed, threads).fit(X[rows], y[rows, t])
        if task == "regression":
            columns.append(forest.predict(X))
        elif task == "multiclass":
            proba = np.zeros((len(X), int(np.nanmax(y)) + 1))
            proba[:, forest.classes_.astype(int)] = forest.predict_proba(X)
            columns.extend(proba.T)
        else:
            classes = list(forest.classes_)
            p_one = (
                forest.predict_proba(X)[:, classes.index(1)] if 1 in classes else np.zeros(len(X))
            )
            columns.append(p_one)
        forests.append(forest)
        log.info(
            "task %s: forest of %d trees fitted on %d rows", name, forest.n_estimators, len(rows)
        )
    seconds = time.perf_counter() - start
    preds = np.stack(columns, axis=1)
    write_predictions(out_predictions, ids, split, task, label_columns, y, preds)
    sio.dump(
        {
            "forests": forests,
            "impute": col_mean,
            "spec": model_spec,
            "task": task,
            "label_columns": label_columns,
        },
        out_model,
    )
    Path(out_history).write_text("epoch,seconds\n" + f"0,{seconds:.3f}\n")
    stats = {"train_seconds": seconds, "n_train": len(train_rows)}
    if run is not None:
        run.log_params({"model": json.dumps(model_spec, default=str)[:5000], "seed": seed})
        run.log_metrics(stats)
    return stats
