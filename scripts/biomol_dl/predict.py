"""Predictions for new SMILES or sequences with a trained model, or with every seed of it as an
ensemble.

For the predict rule and for notebooks. `run_predict` reads a CSV / TSV / FASTA table, validates
its inputs exactly as the dataset's validate rule does (same kind, same `validation` options, via
biomol_dl.validate; labels are not needed and duplicates are kept, since every row asked about
gets an answer), featurizes them with the featurizer saved in the model file, predicts with each
seed's model and combines the seeds. Invalid rows go to rejects.csv with their reason, never
silently away.

predictions.csv has one row per valid input row and label column (task):

  id, row, input, task, y_pred, y_sd, n_models, [label], seed<N>..., [p_<k>, p_<k>_sd ...]

  row      1-based data row of the input file (as in the validate rule's rejects.csv)
  input    the validated input (canonical SMILES, normalised sequence)
  y_pred   ensemble mean: the value (regression), P(class 1) (binary, multitask_binary), or the
           class index of the highest mean probability (multiclass)
  y_sd     sd across seeds (empty with one model); multiclass: sd of the chosen class' probability
  label    binary: 1 when y_pred >= 0.5; multiclass: the class name
  seed<N>  each model's own y_pred (not for multiclass); p_<k>, p_<k>_sd: multiclass mean and sd

Each seed's model file is read by its family's `predict` (biomol_dl.models): torch families go
through biomol_dl.train_job.predict_inputs, the random forest reads its own model file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomol_dl.io import DataError, read_raw_table
from biomol_dl.logutil import get
from biomol_dl.metrics import BINARY_TASKS

log = get(__name__)

_NO_LABEL = "__biomol_dl_no_label__"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".fasta": "fasta", ".fa": "fasta"}


# ------------------------------------------------------------------------------ validation


def validate_inputs(
    table: pd.DataFrame,
    *,
    kind: str,
    validation: Mapping[str, Any] | None,
    input_column: str,
    id_column: str | None,
    source_name: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(clean, rejects, summary) for unlabelled inputs, with the dataset's validation policy.

    clean: id, input, row; rejects: row, line, id, column, value, reason (as the validate rule
    writes: `line` is the file line on which the data row starts).
    """
    from biomol_dl.validate import validate_table

    if _NO_LABEL in table.columns:
        raise DataError(f"{source_name}: column {_NO_LABEL!r} is reserved")
    labelled = table.copy()
    labelled[_NO_LABEL] = "0"  # validate_table wants labels; every row gets the same dummy one
    options = {**(validation or {}), "duplicates": "keep", "duplicates_within": []}
    spec = {
        "kind": kind,
        "task": "regression",
        "input_column": input_column,
        "id_column": id_column,
        "label_columns": [_NO_LABEL],
        "validation": options,
    }
    clean, rejects, summary = validate_table(labelled, spec, source_name=source_name)
    keep = {k: summary[k] for k in ("rows_in", "kept", "rejected", "by_reason", "input_stats")}
    keep["ids"] = summary.get("ids")
    return clean[["id", "input", "row"]], rejects, keep


# ------------------------------------------------------------------------------ models


def predict_one(
    family: str,
    model_file: str | Path,
    inputs: Sequence[str],
    *,
    n_classes: int | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """One trained model's long-format predictions: input, task, y_pred (+ p_k), input order."""
    from biomol_dl.models import get_family

    model = get_family(family)()
    return model.predict(model_file, list(inputs), n_classes=n_classes, threads=threads)


# ------------------------------------------------------------------------------ ensemble


def combine(
    per_seed: Mapping[int, pd.DataFrame], task: str, classes: Sequence[str] | None = None
) -> pd.DataFrame:
    """Ensemble mean and sd across seeds of long-format predictions (same inputs, same order)."""
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]
    for s in seeds[1:]:
        other = per_seed[s]
        if (
            len(other) != len(first)
            or not (other["task"].to_numpy() == first["task"].to_numpy()).all()
        ):
            raise ValueError(f"seed {s} predicted different rows or tasks than seed {seeds[0]}")
    out = first[["task"]].copy()
    n = len(seeds)
    if task == "multiclass":
        prob_cols = sorted((c for c in first if c.startswith("p_")), key=lambda c: int(c[2:]))
        stack = np.stack([per_seed[s][prob_cols].to_numpy(float) for s in seeds])
        mean = stack.mean(axis=0)
        sd = stack.std(axis=0, ddof=1) if n > 1 else np.full_like(mean, np.nan)
        out["y_pred"] = mean.argmax(axis=1)
        out["y_sd"] = sd[np.arange(len(sd)), out["y_pred"].to_numpy()] if n > 1 else np.nan
        out["n_models"] = n
        if classes:
            out["label"] = [str(classes[k]) if k < len(classes) else str(k) for k in out["y_pred"]]
        for k, col in enumerate(prob_cols):
            out[col] = mean[:, k]
            out[f"{col}_sd"] = sd[:, k]
        return out
    stack = np.stack([per_seed[s]["y_pred"].to_numpy(float) for s in seeds])
    out["y_pred"] = stack.mean(axis=0)
    out["y_sd"] = stack.std(axis=0, ddof=1) if n > 1 else np.nan
    out["n_models"] = n
    if task in BINARY_TASKS:
        out["label"] = (out["y_pred"] >= 0.5).astype(int)
    for s, values in zip(seeds, stack, strict=True):
        out[f"seed{s}"] = values
    return out


def input_format(path: str | Path, given: str | None = None) -> str:
    if given:
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{path}: cannot tell the format from {suffix or 'no extension'!r}; set `format` "
            f"(csv, tsv or fasta) in the predict entry"
        )
    return FORMATS[suffix]


def run_predict(
    *,
    input_path: str | Path,
    input_column: str,
    id_column: str | None,
    kind: str,
    validation: Mapping[str, Any] | None,
    task: str,
    validate_summary: str | Path | None,
    family: str,
    model_files: Mapping[int, str | Path],
    out_predictions: str | Path,
    out_rejects: str | Path,
    out_summary: str | Path,
    input_format_name: str | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """The predict rule: validate, featurize, predict with every seed, write the three files.

    model_files: {seed: the family's model file}. validate_summary: the dataset's validate
    summary.json, for multiclass class names (None: class indices only). Raises DataError when no input row is valid (rejects.csv and
    summary.json are written first, to show why).
    """
    classes = None
    if validate_summary is not None:
        classes = json.loads(Path(validate_summary).read_text()).get("classes")
    fmt = input_format(input_path, input_format_name)
    required = [input_column] + ([id_column] if id_column else [])
    table = read_raw_table(input_path, fmt, required=required)
    clean, rejects, summary = validate_inputs(
        table,
        kind=kind,
        validation=validation,
        input_column=input_column,
        id_column=id_column,
        source_name=str(input_path),
    )
    for path in (out_predictions, out_rejects, out_summary):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    rejects.to_csv(out_rejects, index=False)
    summary.update(
        input=str(input_path), family=family, task=task, seeds=sorted(int(s) for s in model_files)
    )
    summary["models"] = {str(s): str(p) for s, p in sorted(model_files.items())}
    Path(out_summary).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    log.info(
        "%s: %d rows, %d valid, %d rejected", input_path, summary["rows_in"], summary["kept"],
        summary["rejected"],
    )  # fmt: skip
    if clean.empty:
        reasons = ", ".join(f"{k} {v}" for k, v in summary["by_reason"].items())
        raise DataError(f"{input_path}: no valid input rows ({reasons}); see {out_rejects}")

    inputs = clean["input"].tolist()
    per_seed = {}
    n_classes = len(classes) if classes else None
    for seed, path in sorted(model_files.items()):
        frame = predict_one(family, path, inputs, n_classes=n_classes, threads=threads)
        if len(frame) % len(inputs):
            raise ValueError(f"{path}: {len(frame)} predictions for {len(inputs)} inputs")
        per_seed[int(seed)] = frame
        log.info("seed %s: %d predictions from %s", seed, len(frame), path)
    combined = combine(per_seed, task, classes)
    n_tasks = len(combined) // len(inputs)
    head = pd.DataFrame(
        {
            "id": np.tile(clean["id"].to_numpy(dtype=object), n_tasks),
            "row": np.tile(clean["row"].to_numpy(), n_tasks),
            "input": np.tile(clean["input"].to_numpy(dtype=object), n_tasks),
        }
    )
    out = pd.concat([head, combined.reset_index(drop=True)], axis=1)
    out.to_csv(out_predictions, index=False)
    log.info("wrote %s (%d rows, %d model(s))", out_predictions, len(out), len(per_seed))
    return summary
