"""Predictions for new SMILES or sequences with a trained model, or with every seed of it as an
ensemble.

For the predict rule and for notebooks. `run_predict` reads a CSV / TSV / FASTA / SDF / Parquet
table (plain or compressed), validates its inputs exactly as the dataset's validate rule does
(same kind, same `validation` options, via biomol_dl.validate; labels are not needed and
duplicates are kept, since every row asked about gets an answer), featurizes them with the
featurizer saved in the model file, predicts with each seed's model and combines the seeds.
Invalid rows go to rejects.csv with their reason, never silently away.

predictions.csv has one row per valid input row and label column (task):

  id, row, input, task, y_pred, y_sd, [y_model_sd], n_models, [label], seed<N>...,
  [p_<k>, p_<k>_sd ...], [y_lo, y_hi, [y_sd_calibrated] | p_calibrated, set |
  p_<k>_calibrated..., set], [similarity, in_domain]

  row      1-based data row of the input file (as in the validate rule's rejects.csv)
  input    the validated input (canonical SMILES, normalised sequence)
  y_pred   ensemble mean: the value (regression), P(class 1) (binary, multitask_binary), or the
           class index of the highest mean probability (multiclass)
  y_sd     sd across seeds (empty with one model); multiclass: sd of the chosen class' probability
  y_model_sd  regression models with an sd of their own (uncertainty estimate mve, evidential,
           ensemble): the mean over seeds of it
  label    binary: 1 when y_pred >= 0.5; multiclass: the class name
  seed<N>  each model's own y_pred (not for multiclass); p_<k>, p_<k>_sd: multiclass mean and sd

With the seeds' metrics.json and the dataset's clean table and split files (the predict rule
gives them), each row also says how far to trust it (biomol_dl.trust): regression `y_lo`,
`y_hi` (the split-conformal interval each seed's evaluation fitted on its validation split, at the
model's `uncertainty.coverage`); binary / multitask `p_calibrated` and the conformal `set`;
multiclass `p_<k>_calibrated` and `set`; every task `similarity` (nearest-neighbour Tanimoto to
the training molecules, or 3-mer Jaccard to the training sequences) and `in_domain`
(similarity >= 0.3, biomol_dl.domain.THRESHOLD); summary.json's `trust` says which.

Each seed's model file is read by its family's `predict` (biomol_dl.models): torch families go
through biomol_dl.train_job.predict_inputs, the random forest reads its own model file.

Large inputs run in chunks of `chunk_rows` rows (CHUNK_ROWS): the file is read as a stream
(biomol_dl.io.iter_raw_table: CSV, TSV, FASTA, SDF, Parquet, compressed or not), and each chunk is
validated, featurized, predicted by every seed and appended to predictions.csv / rejects.csv, so
no whole-input table is held and memory does not grow with the input. The files are the same as
from one pass: rows, ids (row<N> counts from the file's first row) and summary.json (counts,
reasons, input_stats) are those of the whole file, and a multitask file keeps its task-major
order. Ids that repeat are renamed `<id>_row<N>` as the validate rule does it over the whole
file: each chunk's kept ids are hashed (8 bytes a row) as they go by, and only when two hashes
agree are the staged chunks read again, with a set of their ids, to rename the repeats in order.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomol_dl.io import LINES_ATTR, READ_ERRORS_ATTR, DataError, iter_raw_table
from biomol_dl.logutil import get
from biomol_dl.metrics import BINARY_TASKS

log = get(__name__)

_NO_LABEL = "__biomol_dl_no_label__"
_ROW_ID = "__biomol_dl_row_id__"  # a unique stand-in id per row while a chunk is validated
CHUNK_ROWS = 20_000  # input rows validated, featurized and predicted at a time


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
    if "y_model_sd" in first:  # each seed's own sd (a variance head, a within-split ensemble)
        out["y_model_sd"] = np.mean([per_seed[s]["y_model_sd"].to_numpy(float) for s in seeds], 0)
    out["n_models"] = n
    if task in BINARY_TASKS:
        out["label"] = (out["y_pred"] >= 0.5).astype(int)
    for s, values in zip(seeds, stack, strict=True):
        out[f"seed{s}"] = values
    return out


def input_format(path: str | Path, given: str | None = None) -> str:
    """The input file's format: `given`, else as a dataset source's is found (io.detect_format:
    its name, a compression extension skipped, else its content), so `new.sdf.gz` works."""
    from biomol_dl.io import detect_format

    return given or detect_format(path)


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
    chunk_rows: int = CHUNK_ROWS,
    metrics_files: Mapping[int, str | Path] | None = None,
    clean_csv: str | Path | None = None,
    split_files: Mapping[int, str | Path] | None = None,
) -> dict[str, Any]:
    """The predict rule: validate, featurize, predict with every seed, write the three files,
    `chunk_rows` input rows at a time.

    model_files: {seed: the family's model file}. validate_summary: the dataset's validate
    summary.json, for multiclass class names (None: class indices only). Raises DataError when
    no input row is valid (rejects.csv and summary.json are written first, to show why).
    metrics_files, clean_csv, split_files ({seed: path}): the evaluate rule's metrics.json of each
    seed and the dataset's clean table and split files, for the trust columns (all or none).
    """
    trust = _trust_context(metrics_files, clean_csv, split_files, model_files, kind)
    classes = None
    if validate_summary is not None:
        classes = json.loads(Path(validate_summary).read_text()).get("classes")
    fmt = input_format(input_path, input_format_name)
    required = [input_column] + ([id_column] if id_column else [])
    raw = iter_raw_table(input_path, fmt, required=required, chunk_rows=chunk_rows)
    for path in (out_predictions, out_rejects, out_summary):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    chunks = _ValidatedChunks(
        raw, kind=kind, validation=validation, input_column=input_column,
        id_column=id_column, source_name=str(input_path),
    )  # fmt: skip
    staging = Path(out_predictions).with_name(f".{Path(out_predictions).name}.chunks")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    writer = _PredictionWriter(out_predictions)
    rejects_part = staging / "rejects.csv"
    try:
        # 1. validation, chunk by chunk as the file is read: rejects appended, valid rows staged
        parts, header = [], True
        done = 0
        for k, (clean, rejects, n_rows) in enumerate(chunks):
            rejects.to_csv(rejects_part, index=False, header=header, mode="w" if header else "a")
            header, done = False, done + n_rows
            if k or n_rows == chunk_rows:
                log.info("%d input rows validated", done)
            if not clean.empty:
                clean.to_pickle(staging / f"clean{k}.pkl")
                parts.append(k)
        if chunks.maybe_repeated:
            chunks.summary["ids"]["renamed"], chunks.summary["ids"]["renamed_examples"] = (
                _rename_repeats(staging, parts, id_column, chunks.summary["ids"]["filled_from_row"])
            )
        os.replace(rejects_part, out_rejects)
        summary = chunks.summary
        summary.update(input=str(input_path), family=family, task=task,
                       seeds=sorted(int(s) for s in model_files))  # fmt: skip
        summary["models"] = {str(s): str(p) for s, p in sorted(model_files.items())}
        if trust:
            summary["trust"] = trust["describe"]
        Path(out_summary).write_text(json.dumps(summary, indent=1, default=str) + "\n")
        log.info(
            "%s: %d rows, %d valid, %d rejected", input_path, summary["rows_in"],
            summary["kept"], summary["rejected"],
        )  # fmt: skip
        if summary["kept"] == 0:
            reasons = ", ".join(f"{k} {v}" for k, v in summary["by_reason"].items())
            raise DataError(f"{input_path}: no valid input rows ({reasons}); see {out_rejects}")
        # 2. each seed over every chunk, so a model that is slow to load is loaded once
        n_classes = len(classes) if classes else None
        for seed, path in sorted(model_files.items()):
            _predict_seed(staging, parts, family, int(seed), path, n_classes, threads,
                          summary["kept"])  # fmt: skip
        # 3. the ensemble, chunk by chunk, appended to predictions.csv
        for k in parts:
            writer.write(_combined_chunk(staging, k, model_files, task, classes, trust))
        n_out = writer.close()
    except BaseException:
        writer.discard()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s (%d rows, %d model(s))", out_predictions, n_out, len(model_files))
    return summary


def _predict_seed(staging, parts, family, seed, path, n_classes, threads, n_valid) -> None:
    """One seed's long-format predictions of every staged chunk, staged beside it."""
    start, done = time.perf_counter(), 0
    for k in parts:
        inputs = pd.read_pickle(staging / f"clean{k}.pkl")["input"].tolist()
        frame = predict_one(family, path, inputs, n_classes=n_classes, threads=threads)
        if len(frame) % len(inputs):
            raise ValueError(f"{path}: {len(frame)} predictions for {len(inputs)} inputs")
        frame.drop(columns="input").to_pickle(staging / f"seed{seed}_{k}.pkl")
        done += len(inputs)
        if len(parts) > 1:
            log.info(
                "seed %s: %d/%d inputs predicted (%.0f/s)",
                seed, done, n_valid, done / max(time.perf_counter() - start, 1e-9),
            )  # fmt: skip
    log.info("seed %s: %d inputs predicted with %s", seed, done, path)


def _trust_context(metrics_files, clean_csv, split_files, model_files, kind) -> dict | None:
    """The seeds' calibrators and the training inputs (fingerprinted once), or None."""
    given = [metrics_files is not None, clean_csv is not None, split_files is not None]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("trust columns need metrics_files, clean_csv and split_files together")
    from biomol_dl import trust
    from biomol_dl.domain import Reference

    seeds = sorted(int(s) for s in model_files)
    missing = [s for s in seeds if s not in metrics_files or s not in split_files]
    if missing:
        raise ValueError(f"no metrics.json / split file for seed(s) {missing}")
    calibrations = trust.read_calibrations({s: metrics_files[s] for s in seeds})
    train = trust.training_inputs(clean_csv, [split_files[s] for s in seeds])
    log.info("trust columns: calibrators of %d seed(s), %d training inputs", len(seeds), len(train))
    return {"calibrations": calibrations, "reference": Reference(train, kind),
            "describe": trust.describe(calibrations, kind)}  # fmt: skip


def _combined_chunk(staging, k, model_files, task, classes, trust=None) -> pd.DataFrame:
    """predictions.csv rows (task-major) of one staged chunk, every seed combined."""
    clean = pd.read_pickle(staging / f"clean{k}.pkl")
    per_seed = {int(s): pd.read_pickle(staging / f"seed{int(s)}_{k}.pkl") for s in model_files}
    combined = combine(per_seed, task, classes)
    if trust:
        from biomol_dl.trust import add_trust_columns

        combined = add_trust_columns(
            combined, task=task, inputs=clean["input"].tolist(),
            calibrations=trust["calibrations"], reference=trust["reference"], classes=classes,
        )  # fmt: skip
    n_tasks = len(combined) // len(clean)
    head = pd.DataFrame(
        {
            "id": np.tile(clean["id"].to_numpy(dtype=object), n_tasks),
            "row": np.tile(clean["row"].to_numpy(), n_tasks),
            "input": np.tile(clean["input"].to_numpy(dtype=object), n_tasks),
        }
    )
    return pd.concat([head, combined.reset_index(drop=True)], axis=1)


class _PredictionWriter:
    """Appends chunks of predictions.csv rows, one part file per task, joined in task order at
    `close` (so a multitask file is task-major, as from one pass)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.parts: dict[str, Path] = {}
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        for name, rows in frame.groupby("task", sort=False):
            part = self.parts.get(name)
            first = part is None
            if first:
                part = self.path.with_name(f".{self.path.name}.part{len(self.parts)}")
                self.parts[name] = part
            header = first and len(self.parts) == 1  # the joined file has one header line
            rows.to_csv(part, index=False, header=header, mode="w" if first else "a")
            self.rows += len(rows)

    def close(self) -> int:
        parts = list(self.parts.values())
        if len(parts) == 1:
            os.replace(parts[0], self.path)
        else:
            tmp = self.path.with_name(f".{self.path.name}.joined")
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        while block := src.read(1 << 20):
                            out.write(block)
            os.replace(tmp, self.path)
            for part in parts:
                part.unlink()
        return self.rows

    def discard(self) -> None:
        for part in self.parts.values():
            part.unlink(missing_ok=True)
        self.parts = {}


class _ValidatedChunks:
    """Iterate (clean, rejects, n_rows) over the chunks of a raw table as `iter_raw_table` reads
    them, rows and ids numbered as in the whole file; `.summary` afterwards is validate_inputs'
    summary of the whole table (but for the renaming of repeated ids: when `.maybe_repeated`,
    `_rename_repeats` renames them in the staged chunks). A table of one chunk is validated as
    it is, in one pass."""

    def __init__(self, raw: Iterable[pd.DataFrame], *, kind, validation, input_column, id_column,
                 source_name):  # fmt: skip
        self.raw, self.kind, self.validation = raw, kind, validation
        self.input_column, self.id_column, self.source_name = input_column, id_column, source_name
        self.columns = list(dict.fromkeys([input_column] + ([id_column] if id_column else [])))
        self.summary: dict[str, Any] | None = None
        self.maybe_repeated = False

    def _validate(self, table: pd.DataFrame, id_column: str | None):
        return validate_inputs(
            table, kind=self.kind, validation=self.validation, input_column=self.input_column,
            id_column=id_column, source_name=self.source_name,
        )  # fmt: skip

    def _only(self, frame: pd.DataFrame) -> pd.DataFrame:
        """What validation reads of a chunk (with its lines and read errors)."""
        table = frame[self.columns].copy()
        table.attrs = {
            k: frame.attrs[k] for k in (LINES_ATTR, READ_ERRORS_ATTR) if k in frame.attrs
        }
        return table

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, int]]:
        frames = iter(self.raw)
        first = next(frames)  # the reader raises on a file without rows
        second = next(frames, None)
        if second is None:
            clean, rejects, self.summary = self._validate(self._only(first), self.id_column)
            yield clean, rejects, len(first)
            return
        counts: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        sizes = np.zeros(0, dtype=np.int64)  # kept inputs per size
        hashes: list[np.ndarray] = []  # of the kept ids, to find repeats
        n = kept = rejected = filled = 0
        size_key = "heavy_atoms" if self.kind == "smiles" else "length"
        for frame in itertools.chain([first, second], frames):
            lo = n
            n += len(frame)
            part = self._only(frame)
            ids = None
            if self.id_column:
                # the whole file's ids: stripped, row<N> when empty; validation sees a unique
                # stand-in, so that it renames nothing within the chunk
                ids = part[self.id_column].astype(str).str.strip().to_numpy(dtype=object)
                empty = np.flatnonzero(ids == "")
                ids[empty] = [f"row{lo + i + 1}" for i in empty]
                filled += len(empty)
                part[_ROW_ID] = [str(i) for i in range(len(part))]
            clean, rejects, summary = self._validate(part, _ROW_ID if ids is not None else None)
            if ids is not None:
                clean["id"] = ids[clean["row"].to_numpy(dtype=np.int64) - 1]
                rejects["id"] = ids[rejects["row"].to_numpy(dtype=np.int64) - 1]
                hashes.append(pd.util.hash_array(clean["id"].to_numpy(dtype=object)))
            clean = clean.assign(row=clean["row"] + lo)
            rejects = rejects.assign(row=rejects["row"] + lo)
            if ids is None:  # row<N> of the whole file
                clean["id"] = "row" + clean["row"].astype(str)
                rejects["id"] = "row" + rejects["row"].astype(str)
            kept, rejected = kept + summary["kept"], rejected + summary["rejected"]
            by_reason.update(summary["by_reason"])
            stats = dict(summary["input_stats"])
            stats.pop(size_key, None)
            counts.update(stats)
            here = np.bincount(_input_sizes(clean["input"], self.kind))
            if len(here) > len(sizes):
                sizes = np.pad(sizes, (0, len(here) - len(sizes)))
            sizes[: len(here)] += here
            yield clean, rejects, len(frame)
        if hashes:
            self.maybe_repeated = bool(pd.Series(np.concatenate(hashes)).duplicated().any())
        self.summary = {
            "rows_in": n, "kept": kept, "rejected": rejected,
            "by_reason": dict(sorted(by_reason.items())),
            "input_stats": {size_key: _spread_counts(sizes), **counts},
            "ids": {"filled_from_row": filled, "renamed": 0, "renamed_examples": []},
        }  # fmt: skip


def _rename_repeats(staging: Path, parts: list[int], id_column: str, filled: int):
    """Rename repeated ids in the staged clean chunks as biomol_dl.validate's `_unique_ids`
    does over the whole file (the first keeps its id, a later one becomes `<id>_row<N>`, with
    `_` added while that is taken); (renamed, renamed_examples). Holds a set of the ids."""
    used: set[str] = set()
    for k in parts:
        used.update(pd.read_pickle(staging / f"clean{k}.pkl")["id"])
    seen: set[str] = set()
    renamed, examples = 0, []
    for k in parts:
        clean = pd.read_pickle(staging / f"clean{k}.pkl")
        ids = clean["id"].tolist()
        for j, (rid, row) in enumerate(zip(ids, clean["row"].tolist(), strict=True)):
            if rid not in seen:
                seen.add(rid)
                continue
            new = f"{rid}_row{row}"
            while new in used:
                new += "_"
            renamed += 1
            if len(examples) < 10:
                examples.append({"row": row, "id": rid, "new_id": new})
            ids[j] = new
            used.add(new)
            seen.add(new)
        if ids != clean["id"].tolist():
            clean["id"] = ids
            clean.to_pickle(staging / f"clean{k}.pkl")
    if filled or renamed:
        log.warning(
            "ids: %d empty %s cell(s) replaced by row<N>, %d repeated id(s) renamed <id>_row<N>",
            filled, id_column, renamed,
        )  # fmt: skip
    return renamed, examples


def _input_sizes(inputs: pd.Series, kind: str) -> np.ndarray:
    """What validation's input_stats summarise, per valid input: heavy atoms or length."""
    if kind != "smiles":
        return inputs.str.len().to_numpy(dtype=np.int64)
    from rdkit import Chem

    # the validated SMILES parse; heavy atoms do not depend on sanitization
    return np.array(
        [Chem.MolFromSmiles(s, sanitize=False).GetNumHeavyAtoms() for s in inputs], dtype=np.int64
    )


def _spread(values: np.ndarray) -> dict[str, Any] | None:
    """min / median / max as biomol_dl.validate reports them (statistics.median's types)."""
    return _spread_counts(np.bincount(np.asarray(values, dtype=np.int64), minlength=0))


def _spread_counts(counts: np.ndarray) -> dict[str, Any] | None:
    """`_spread` of the values that `counts` (a bincount) counts."""
    n = int(counts.sum())
    if not n:
        return None
    ends = np.cumsum(counts)
    at = lambda k: int(np.searchsorted(ends, k, side="right"))  # noqa: E731 (value at rank k)
    mid = n // 2
    median = at(mid) if n % 2 else (at(mid - 1) + at(mid)) / 2
    return {"min": at(0), "median": median, "max": at(n - 1)}
