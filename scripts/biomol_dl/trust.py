"""What a prediction for a new input says about how far to trust it: a calibrated interval or
calibrated probabilities and a prediction set, and the applicability domain.

The calibrators are the ones the evaluate rule fitted on each seed's validation split
(metrics.json `test_calibrated.calibrators`), so predict fits nothing. Columns added to the
long predictions (one row per input and task):

  regression        y_lo, y_hi   the split-conformal interval at the model's `coverage`, centred
                                 on y_pred: where the predictions carry the model's own sd for
                                 new inputs (y_model_sd: a variance head, a within-split
                                 ensemble) q * y_model_sd with q the mean of the seeds'
                                 sd-normalized validation quantiles, and y_sd_calibrated the
                                 variance-scaled sd; else the absolute-residual half-width (the
                                 mean of the seeds' validation quantiles)
  binary, multitask p_calibrated mean over seeds of each seed's calibrated P(class 1)
                    set          the conformal prediction set of classes ("0", "1", "0|1", or
                                 empty), from p_calibrated and the seeds' mean threshold
  multiclass        p_<k>_calibrated, set (class names joined by "|")
  every task        similarity   nearest-neighbour similarity to the molecules / sequences the
                                 seeds trained on (biomol_dl.domain), in_domain: >= threshold
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomol_dl import domain
from biomol_dl import uncertainty as U
from biomol_dl.metrics import BINARY_TASKS


def read_calibrations(metrics_files: Mapping[int, str | Path]) -> dict[int, dict]:
    """{seed: the `test_calibrated` block of its metrics.json}; a file without one (no
    validation or test rows) fails naming it."""
    import json

    out = {}
    for seed, path in sorted(metrics_files.items()):
        block = json.loads(Path(path).read_text()).get("test_calibrated")
        if not block:
            raise ValueError(f"{path}: no test_calibrated block to calibrate predictions with")
        out[int(seed)] = block
    return out


def training_inputs(clean_csv: str | Path, split_csvs: Sequence[str | Path]) -> list[str]:
    """The inputs of the rows any of the given splits trained on (union over seeds)."""
    from biomol_dl.io import read_table
    from biomol_dl.train_job import read_split

    clean = read_table(clean_csv)
    ids = clean["id"].tolist()
    trained = np.zeros(len(ids), dtype=bool)
    for path in split_csvs:
        trained |= read_split(path, ids) == "train"
    return clean.loc[trained, "input"].tolist()


def _q(block: Mapping, task: str, key: str) -> float:
    q = block["calibrators"][str(task)][key]["q"]
    return math.inf if q is None else float(q)


def add_trust_columns(
    frame: pd.DataFrame,
    *,
    task: str,
    inputs: Sequence[str],
    calibrations: Mapping[int, Mapping],
    reference: domain.Reference,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """`frame` (biomol_dl.predict.combine's output: task, y_pred, seed<N> or p_<k>, in input
    order within each task block) with the columns above; inputs: the inputs of one block;
    reference: the training inputs (domain.Reference, built once for all chunks)."""
    out = frame.copy()
    seeds = sorted(calibrations)
    n_inputs = len(inputs)
    tasks = out["task"].astype(str).to_numpy()
    if task == "regression":
        normalized = "y_model_sd" in out and all(
            "interval" in calibrations[s]["calibrators"][t] for s in seeds for t in set(tasks)
        )
        if normalized:
            q = np.array([np.mean([_q(calibrations[s], t, "interval") for s in seeds])
                          for t in tasks])  # fmt: skip
            scale = np.array([np.mean([calibrations[s]["calibrators"][t]["variance_scale"]["scale"]
                                       for s in seeds]) for t in tasks])  # fmt: skip
            sd = out["y_model_sd"].to_numpy(float)
            half = q * sd
            out["y_sd_calibrated"] = scale * sd
        else:
            half = np.array([np.mean([_q(calibrations[s], t, "abs_interval") for s in seeds])
                             for t in tasks])  # fmt: skip
        out["y_lo"] = out["y_pred"] - half
        out["y_hi"] = out["y_pred"] + half
    elif task in BINARY_TASKS:
        p_cal = np.zeros(len(out))
        q = np.zeros(len(out))
        for t in pd.unique(tasks):
            rows = tasks == t
            for s in seeds:
                fitted = calibrations[s]["calibrators"][t]
                column = f"seed{s}" if f"seed{s}" in out else "y_pred"
                calibrator = U.ProbabilityCalibrator.from_dict(fitted["probability"])
                p_cal[rows] += calibrator.apply(out.loc[rows, column].to_numpy(float))
                q[rows] += np.inf if fitted["sets"]["q"] is None else fitted["sets"]["q"]
        out["p_calibrated"] = p_cal / len(seeds)
        q = q / len(seeds)
        keep = np.stack([1 - out["p_calibrated"], out["p_calibrated"]], axis=1) >= (1 - q)[:, None]
        out["set"] = ["|".join(str(k) for k in np.flatnonzero(row)) for row in keep]
    elif task == "multiclass":
        prob_cols = sorted((c for c in out if c.startswith("p_") and c[2:].isdigit()),
                           key=lambda c: int(c[2:]))  # fmt: skip
        t = str(tasks[0])
        temperature = np.mean([calibrations[s]["calibrators"][t]["probability"]["temperature"]
                               for s in seeds])  # fmt: skip
        q = np.mean([_q(calibrations[s], t, "sets") for s in seeds])
        calibrated = U.ProbabilityCalibrator("temperature", 0, temperature=float(temperature))
        probs = calibrated.apply(out[prob_cols].to_numpy(float))
        for k, col in enumerate(prob_cols):
            out[f"{col}_calibrated"] = probs[:, k]
        names = [str(classes[k]) if classes and k < len(classes) else str(k)
                 for k in range(len(prob_cols))]  # fmt: skip
        out["set"] = ["|".join(names[k] for k in np.flatnonzero(row >= 1 - q)) for row in probs]
    else:
        raise ValueError(f"unknown task {task!r}")
    similarity = reference.similarity(list(inputs))
    n_tasks = len(out) // n_inputs if n_inputs else 0
    out["similarity"] = np.tile(similarity, n_tasks)
    out["in_domain"] = out["similarity"] >= reference.threshold
    return out


def describe(calibrations: Mapping[int, Mapping], kind: str) -> dict[str, Any]:
    """What summary.json says about the added columns."""
    first = calibrations[min(calibrations)]["settings"]
    return {
        "coverage": first["coverage"],
        "calibrated_on": "validation split of each seed (evaluate rule)",
        "domain": {
            "kind": kind,
            "threshold": domain.THRESHOLD[kind],
            "measure": "Tanimoto, Morgan r2 2048 bits"
            if kind == "smiles"
            else "Jaccard of 3-mer sets",
        },  # fmt: skip
    }
