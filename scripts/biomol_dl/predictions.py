"""What every training job reads (labels, splits) and writes (long-format predictions).

Shared by the scikit-learn and torch training paths so predictions.csv has one format, whatever
the model: `id, split, task, y_true, y_pred` (+ `p_<k>` for multiclass), every clean row once per
label column, train, val and test alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def read_clean(clean_csv: str | Path) -> pd.DataFrame:
    return pd.read_csv(clean_csv, dtype={"id": str, "input": str})


def label_matrix(clean: pd.DataFrame, label_columns: list[str]) -> np.ndarray:
    """N x T float32 labels, NaN where a (multitask) label is missing."""
    return clean[label_columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)


def split_assignment(clean: pd.DataFrame, split_csv: str | Path) -> np.ndarray:
    """The split of every clean row, in clean-table order; fails if the files disagree."""
    split = pd.read_csv(split_csv, dtype={"id": str, "split": str})
    mapping = dict(zip(split["id"], split["split"], strict=True))
    missing = [i for i in clean["id"] if i not in mapping]
    if missing or len(mapping) != len(clean):
        raise ValueError(
            f"{split_csv} does not match the clean table ({len(mapping)} vs {len(clean)} ids; "
            f"first missing: {missing[:3]})"
        )
    return clean["id"].map(mapping).to_numpy()


def split_indices(assignment: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.flatnonzero(assignment == name) for name in SPLITS}


def write_predictions(
    out_csv: str | Path,
    ids,
    assignment,
    label_columns: list[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
) -> pd.DataFrame:
    """Write long-format predictions.

    y_true, y_pred: N x T. For multiclass (T = 1) `proba` is N x K and y_pred the argmax class.
    """
    frames = []
    for t, task in enumerate(label_columns):
        frame = pd.DataFrame(
            {
                "id": list(ids),
                "split": assignment,
                "task": task,
                "y_true": y_true[:, t],
                "y_pred": y_pred[:, t],
            }
        )
        if proba is not None:
            for k in range(proba.shape[1]):
                frame[f"p_{k}"] = proba[:, k]
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.to_csv(out_csv, index=False, float_format="%.6g")
    return out
