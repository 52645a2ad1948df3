"""Split a clean table into train / val / test, for the `split` rule and for notebooks.

`make_split(clean, spec, seed, kind=..., task=..., label_columns=...)` returns one partition name
per clean row plus an `info` dict (sizes, resolved parameters, strategy diagnostics);
`run_split(...)` does the same from and to files. Every strategy draws its randomness from
`numpy.random.default_rng(seed)`, never from global state, so a seed always gives the same split.

Strategies (`spec["strategy"]`), with `fractions: [train, val, test]` (default 0.8/0.1/0.1,
each > 0, summing to 1) and their own options:

random
    A seeded permutation cut at the target sizes.
scaffold (SMILES)  options: `balanced` (true), `include_chirality` (false)
    Molecules are grouped by Bemis-Murcko scaffold (RDKit MurckoScaffold) and whole groups are
    placed, so no scaffold is in two partitions. All acyclic molecules share the empty scaffold and
    form one group. `balanced: true` follows chemprop's scaffold_balanced idea: groups larger than
    half the val or the test size are placed first (so they mostly land in train), then the small
    groups, each list in seeded random order; each group goes to the first of train, val, test it
    fits into, else to the partition furthest below its target size (relative to it). `balanced:
    false` places groups largest first (the MoleculeNet/DeepChem scaffold split): the same split
    for every seed. Acyclic molecules (one group) usually land in train on real data, but on
    BBBP's 99 they can fill val instead: check `acyclic_per_partition` in the info.
stratified (binary, multiclass, multitask_binary)  option: `stratify_on` ("any")
    Two stratified draws (scikit-learn `train_test_split`): test from everything, then val from
    the rest, so each partition keeps the class proportions. For multitask_binary the stratum is
    `any` = "has a positive label in some task" (missing counts as not positive), or `first` = the
    first task's label (missing labels are their own stratum).
predefined  options: `column` (required), `values`, `val_column`, `val_fraction`
    Partitions come from a column of the clean table (listed in the dataset's `keep_columns`).
    `values` maps the column's values to partitions (default: train, val/valid/validation, test
    map to themselves); every value must be mapped. Validation rows come from, in order: values
    mapped to "val"; `val_column`, whose true cells (True/true/1/yes) move train rows to val
    (FLIP's `validation`; an empty cell is false); else `val_fraction` (default 0.1) of the train
    rows, drawn with the seed. `fractions` are ignored. With fixed val rows the split is identical
    for every seed (`seed_dependent: false` in the info).
homology (protein sequences)  options: `metric` ("kmer"), `k` ("auto"), `max_similarity` ("auto")
    No val or test sequence is more similar than `max_similarity` to any train sequence (nor test
    to val). Sequences are linked when their similarity exceeds the threshold; the connected
    components of that graph (single-linkage clusters) are placed whole, like scaffold groups, so
    the bound holds by construction; the info reports the maximum similarity between partitions,
    recomputed over every cross pair.
      metric "kmer": shared distinct k-mers / distinct k-mers of the shorter sequence (containment,
      not Jaccard, so a fragment of a longer protein counts as similar to it). Sparse matrix
      products: about 1 s for 5,200 peptides or 3,100 proteins of up to 1,367 residues. It is a
      near-duplicate filter, not a twilight-zone one: with k=3, pairs above 0.5 had >= 69 %
      identity among 400 modlAMP peptides, and pairs at or below 0.5 reached up to ~85 % identity
      (99.9th percentile ~73 %). Sequences shorter than k have no k-mers and are similar to nothing.
      metric "identity": Biopython PairwiseAligner, global with free end gaps, BLOSUM62, gap open
      -10 / extend -0.5 (EMBOSS needle's defaults); identity = identical aligned positions / length
      of the shorter sequence. Exact but O(n^2) alignments with traceback (~0.04 ms per peptide
      pair, ~3 ms per protein pair; 3,000 peptides took 5 min): for small data sets only (about
      1,000 peptides or 300 proteins); refused when the estimated time exceeds five minutes.
      Short peptides have a high background identity under this definition (18 % of the pairs
      among 400 modlAMP peptides exceed 0.3), so thresholds below ~0.5 tend to give one giant
      cluster.
      metric "mmseqs": MMseqs2 (`mmseqs easy-search`, all against all, `-s 7.5`, no cap on hits
      per query; Debian/Ubuntu package mmseqs2, or conda bioconda::mmseqs2; an optional
      dependency, a clear error names how to install it when missing); identity = identical
      aligned positions (nident) / length of the shorter sequence, as for "identity". For data
      sets of any size (on one thread: 26 s for 5,200 peptides, about 2.5 min for 3,147 eSol
      proteins), at the price of
      MMseqs2's prefilter: pairs it does not report count as 0, so the bound holds over the
      pairs it reports (the info says so).
    `max_identity` is accepted as another name for `max_similarity`. If one cluster is so large that
    val or test cannot be formed, the split fails and says to raise the threshold.

    `auto` (the default of `k` and `max_similarity`), recorded in the info's diagnostics
    (`k`, `max_similarity`, `auto`):
      k = the smallest k >= 3 with L_max / 20^k <= 0.05, L_max the longest sequence. A sequence
      of length L holds at most L of the 20^k possible k-mers, so by chance alone about L/20^k of
      any other sequence's k-mers are in it: with k = 3 a 13,100-residue protein holds ~80 % of
      all 3-mers and links everything (98 % of a full-length protein set in one cluster). k = 3
      up to 400 residues (peptides, domains), 4 up to 8,000, 5 up to 160,000.
      max_similarity = 0.5^(k/3) for "kmer": a pair at sequence identity p shares about p^k of
      its k-mers, so every k links the pairs that 0.5 links at k = 3 (about 80 % identity, near
      duplicates): 0.5, 0.397 (k = 4), 0.315 (k = 5). For "identity" and "mmseqs": 0.5.

Bad specs raise `ValueError("invalid split spec: ...")`; bad table content raises
`biomol_dl.io.DataError` naming the row (the clean table's `row`, i.e. the source data row), the id
and the column; `run_split` prefixes the file name.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomol_dl import logutil
from biomol_dl.io import DataError, read_table
from biomol_dl.metrics import CLASSIFICATION_TASKS
from biomol_dl.residues import UNKNOWN

log = logutil.get(__name__)

PARTITIONS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_VALUES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
TRUE_CELLS = frozenset({"true", "1", "1.0", "yes", "y", "t"})
FALSE_CELLS = frozenset({"", "false", "0", "0.0", "no", "n", "f", "nan", "na"})

# Options each strategy accepts, with defaults (None: no default). Unknown keys are errors, so a
# typo cannot silently fall back to a default.
OPTIONS: dict[str, dict[str, Any]] = {
    "random": {},
    "scaffold": {"balanced": True, "include_chirality": False},
    "stratified": {"stratify_on": "any"},
    "predefined": {"column": None, "values": None, "val_column": None, "val_fraction": None},
    "homology": {"metric": "kmer", "k": "auto", "max_similarity": "auto"},
}
KIND_OF_STRATEGY = {"scaffold": "smiles", "homology": "protein"}

# Cost of one PairwiseAligner alignment with traceback, measured on 2 shared cores and rounded up:
# ~0.04 ms per peptide pair, ~3 ms per pair of 300-residue proteins.
IDENTITY_SECONDS_PER_PAIR = 4e-5
IDENTITY_CELLS_PER_SECOND = 2e7
IDENTITY_MAX_SECONDS = 300.0
KMER_BLOCK = 512
METRICS = ("kmer", "identity", "mmseqs")
# auto k: the chance containment of any sequence in the longest one, L_max / 20^k, at most this.
AUTO_BACKGROUND = 0.05


def _spec_error(message: str) -> ValueError:
    return ValueError(f"invalid split spec: {message}")


def check_spec(spec: Mapping[str, Any], *, kind: str, task: str) -> dict[str, Any]:
    """The spec with defaults filled in (strategy, fractions, every option); else ValueError."""
    if not isinstance(spec, Mapping):
        raise _spec_error(f"expected a mapping with a 'strategy', got {spec!r}")
    strategy = spec.get("strategy")
    if strategy not in OPTIONS:
        raise _spec_error(f"unknown strategy {strategy!r}; valid: {', '.join(OPTIONS)}")
    options = dict(spec)
    if strategy == "homology" and "max_identity" in options:
        alias = options.pop("max_identity")
        if options.setdefault("max_similarity", alias) != alias:
            raise _spec_error("give max_similarity or max_identity (the same option), not both")
    allowed = {"strategy", "fractions", *OPTIONS[strategy]}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise _spec_error(
            f"unknown option(s) {', '.join(unknown)} for strategy {strategy}; "
            f"valid: {', '.join(sorted(allowed))}"
        )
    needed_kind = KIND_OF_STRATEGY.get(strategy)
    if needed_kind and kind != needed_kind:
        raise _spec_error(f"strategy {strategy} needs {needed_kind} inputs; this dataset is {kind}")
    if strategy == "stratified" and task not in CLASSIFICATION_TASKS:
        raise _spec_error(
            f"strategy stratified needs a classification task ({', '.join(CLASSIFICATION_TASKS)}); "
            f"this dataset is {task} (use random or scaffold)"
        )
    resolved = {"strategy": strategy, "fractions": _check_fractions(spec.get("fractions"))}
    for name, default in OPTIONS[strategy].items():
        resolved[name] = options.get(name, default)
    _check_options(resolved)
    return resolved


def _check_fractions(fractions: Any) -> list[float]:
    if fractions is None:
        return list(DEFAULT_FRACTIONS)
    try:
        values = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise _spec_error(
            f"fractions must be three numbers [train, val, test], got {fractions!r}"
        ) from None
    if len(values) != 3 or not all(0 < v < 1 for v in values):
        raise _spec_error(f"fractions must be three numbers in (0, 1), got {fractions!r}")
    if abs(sum(values) - 1) > 1e-6:
        raise _spec_error(f"fractions {fractions!r} sum to {sum(values):g}, not 1")
    return values


def _check_options(spec: dict[str, Any]) -> None:
    strategy = spec["strategy"]
    for flag in ("balanced", "include_chirality"):
        if flag in spec and not isinstance(spec[flag], bool):
            raise _spec_error(f"{flag} must be true or false, got {spec[flag]!r}")
    if strategy == "stratified" and spec["stratify_on"] not in ("any", "first"):
        raise _spec_error(f"stratify_on must be 'any' or 'first', got {spec['stratify_on']!r}")
    if strategy == "predefined":
        if not isinstance(spec["column"], str) or not spec["column"]:
            raise _spec_error("strategy predefined needs `column`, the clean-table column to read")
        values = spec["values"]
        if values is not None:
            if not isinstance(values, Mapping) or not values:
                raise _spec_error(f"values must map column values to partitions, got {values!r}")
            bad = {k: v for k, v in values.items() if v not in PARTITIONS}
            if bad:
                raise _spec_error(f"values {bad!r}: partitions must be one of {PARTITIONS}")
        if spec["val_column"] is not None and spec["val_fraction"] is not None:
            raise _spec_error("give val_column or val_fraction, not both")
        vf = spec["val_fraction"]
        if vf is not None and not (isinstance(vf, int | float) and 0 < vf < 1):
            raise _spec_error(f"val_fraction must be a number in (0, 1), got {vf!r}")
    if strategy == "homology":
        if spec["metric"] not in METRICS:
            raise _spec_error(f"metric must be one of {', '.join(METRICS)}, got {spec['metric']!r}")
        k = spec["k"]
        if k != "auto" and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 8):
            raise _spec_error(f"k must be 'auto' or an integer from 1 to 8, got {k!r}")
        t = spec["max_similarity"]
        if t != "auto" and (
            isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 1
        ):
            raise _spec_error(f"max_similarity must be 'auto' or a number in (0, 1], got {t!r}")


# --------------------------------------------------------------------------------------------
# Public entry points


def make_split(
    clean: pd.DataFrame,
    split: Mapping[str, Any],
    seed: int,
    *,
    kind: str,
    task: str,
    label_columns: Sequence[str],
) -> tuple[pd.Series, dict[str, Any]]:
    """Assign every row of `clean` to train, val or test.

    clean: the validate rule's table (`id`, `input`, `row`, labels, kept columns).
    Returns (a Series of "train"/"val"/"test" indexed like `clean`, info) where info holds
    strategy, seed, seed_dependent, params (the spec with defaults), n, sizes, fractions (achieved)
    and diagnostics (strategy-specific).
    """
    spec = check_spec(split, kind=kind, task=task)
    _check_table(clean, label_columns)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    started = time.perf_counter()
    strategy = STRATEGIES[spec["strategy"]]
    labels, diagnostics, seed_dependent = strategy(
        clean, spec, rng, task=task, label_columns=list(label_columns)
    )
    n = len(clean)
    sizes = {p: int(np.sum(labels == p)) for p in PARTITIONS}
    for p in PARTITIONS:
        if sizes[p] == 0:  # strategies guard this with better messages; this is the last line
            raise DataError(f"{spec['strategy']} split left {p} empty ({n} rows)")
    info = {
        "strategy": spec["strategy"],
        "seed": int(seed),
        "seed_dependent": bool(seed_dependent),
        "params": spec,
        "n": n,
        "sizes": sizes,
        "fractions": {p: round(sizes[p] / n, 4) for p in PARTITIONS},
        "diagnostics": diagnostics,
    }
    log.info(
        "%s split, seed %d: train %d, val %d, test %d (%.2f s)",
        spec["strategy"],
        seed,
        *sizes.values(),
        time.perf_counter() - started,
    )
    return pd.Series(labels, index=clean.index, name="split", dtype=object), _jsonable(info)


def run_split(
    clean_csv: str | Path,
    split_spec: Mapping[str, Any],
    seed: int,
    kind: str,
    task: str,
    label_columns: Sequence[str],
    out_csv: str | Path,
    out_json: str | Path,
) -> dict[str, Any]:
    """Read clean.csv, split it, write `id, split` (clean-table order) and the info JSON.

    Returns the info dict. Table problems raise DataError starting with the clean file's name.
    """
    # Ids stay strings ("NA", "None", "007"), and so do a predefined split's columns: a cell
    # reads as written ("1", not 1.0 because another cell is empty).
    named = [split_spec.get(key) for key in ("column", "val_column")]
    clean = read_table(clean_csv, strings=[c for c in named if isinstance(c, str)])
    try:
        assignment, info = make_split(
            clean, split_spec, int(seed), kind=kind, task=task, label_columns=label_columns
        )
    except DataError as err:
        raise DataError(f"{clean_csv}: {err}") from None
    info["clean_csv"] = str(clean_csv)
    for path in (out_csv, out_json):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": clean["id"], "split": assignment}).to_csv(out_csv, index=False)
    Path(out_json).write_text(json.dumps(info, indent=2) + "\n")
    return info


# --------------------------------------------------------------------------------------------
# Helpers shared by the strategies


def _check_table(clean: pd.DataFrame, label_columns: Sequence[str]) -> None:
    missing = [c for c in ("id", "input", *label_columns) if c not in clean.columns]
    if missing:
        raise DataError(f"no column(s) {', '.join(map(repr, missing))} in the clean table")
    ids = clean["id"]
    empty = ids.isna().to_numpy() | (ids.fillna("").astype(str).str.strip() == "").to_numpy()
    for i in np.flatnonzero(empty):
        raise DataError(f"{_where(clean, i)}, column 'id': empty id")
    duplicated = ids.duplicated().to_numpy()
    for i in np.flatnonzero(duplicated):
        raise DataError(f"{_where(clean, i)}, column 'id': id appears more than once")
    if len(clean) < 3:
        raise DataError(f"{len(clean)} rows cannot make three non-empty partitions")


def _where(clean: pd.DataFrame, i: int) -> str:
    """'row R (id X)' for positional row i, R being the source data row when known."""
    row = clean["row"].iloc[i] if "row" in clean.columns else i + 1
    return f"row {row} (id {clean['id'].iloc[i]!r})"


def _target_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Integer (train, val, test) sizes summing to n, val and test at least 1, train at least 1."""
    n_val = max(1, math.floor(n * fractions[1] + 0.5))
    n_test = max(1, math.floor(n * fractions[2] + 0.5))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise DataError(f"{n} rows are too few for fractions {list(fractions)}")
    return n_train, n_val, n_test


def _assign_groups(
    groups: list[np.ndarray], n: int, fractions: Sequence[float], rng, *, balanced: bool
) -> np.ndarray:
    """Place whole groups of row indices into partitions; returns one partition name per row."""
    targets = np.array(_target_sizes(n, fractions))
    if balanced:
        half = min(targets[1], targets[2]) / 2
        big = [g for g in groups if len(g) > half]
        small = [g for g in groups if len(g) <= half]
        order = [big[i] for i in rng.permutation(len(big))]
        order += [small[i] for i in rng.permutation(len(small))]
    else:
        order = sorted(groups, key=len, reverse=True)  # stable: ties keep first-appearance order
    labels = np.empty(n, dtype=object)
    filled = np.zeros(3, dtype=int)
    for group in order:
        fits = np.flatnonzero(filled + len(group) <= targets)
        # A group that fits nowhere goes to the partition furthest below its target, relative to
        # that target (chemprop sends it to test, which can leave val or test empty or bloated).
        p = int(fits[0]) if len(fits) else int(np.argmax((targets - filled) / targets))
        labels[group] = PARTITIONS[p]
        filled[p] += len(group)
    return labels


def _require_val_test(labels: np.ndarray, groups: list[np.ndarray], what: str, hint: str) -> None:
    n = len(labels)
    largest = max(len(g) for g in groups)
    for p in ("val", "test"):
        if not np.any(labels == p):
            raise DataError(
                f"cannot form a {p} partition: the largest {what} holds {largest} of {n} rows "
                f"({largest / n:.0%}) and {len(groups)} {what}s in all; {hint}"
            )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# --------------------------------------------------------------------------------------------
# Strategies: (clean, spec, rng, task=, label_columns=) -> (labels, diagnostics, seed_dependent)


def _random(clean, spec, rng, **_):
    n = len(clean)
    n_train, n_val, _n_test = _target_sizes(n, spec["fractions"])
    order = rng.permutation(n)
    labels = np.empty(n, dtype=object)
    labels[order[:n_train]] = "train"
    labels[order[n_train : n_train + n_val]] = "val"
    labels[order[n_train + n_val :]] = "test"
    return labels, {}, True


def scaffolds(smiles: Sequence[str], include_chirality: bool = False) -> list[str | None]:
    """Bemis-Murcko scaffold SMILES per molecule: "" if acyclic, None if RDKit cannot parse it."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Scaffolds import MurckoScaffold

    out: list[str | None] = []
    # Scaffold extraction warns once per lone [H+] ("not removing hydrogen atom without
    # neighbors"), thousands of lines on BBBP; the validate rule has already vetted the molecules.
    RDLogger.DisableLog("rdApp.warning")
    try:
        for smi in smiles:
            mol = Chem.MolFromSmiles(smi) if isinstance(smi, str) else None
            out.append(
                None
                if mol is None
                else MurckoScaffold.MurckoScaffoldSmiles(
                    mol=mol, includeChirality=include_chirality
                )
            )
    finally:
        RDLogger.EnableLog("rdApp.warning")
    return out


def _scaffold(clean, spec, rng, **_):
    keys = scaffolds(clean["input"].tolist(), spec["include_chirality"])
    for i, key in enumerate(keys):
        if key is None:
            raise DataError(
                f"{_where(clean, i)}, column 'input': RDKit cannot parse SMILES "
                f"{clean['input'].iloc[i]!r}"
            )
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    groups = [np.array(v) for v in by_key.values()]
    labels = _assign_groups(groups, len(clean), spec["fractions"], rng, balanced=spec["balanced"])
    _require_val_test(labels, groups, "scaffold group", "use strategy random, or other fractions")
    keys_arr = np.array(keys, dtype=object)
    per_part = {p: set(keys_arr[labels == p]) for p in PARTITIONS}
    shared = (
        (per_part["train"] & per_part["val"])
        | (per_part["train"] & per_part["test"])
        | (per_part["val"] & per_part["test"])
    )
    diagnostics = {
        "n_scaffolds": len(by_key),
        "largest_scaffold_group": max(len(g) for g in groups),
        "acyclic_molecules": len(by_key.get("", [])),
        "scaffolds_per_partition": {p: len(per_part[p]) for p in PARTITIONS},
        "acyclic_per_partition": {
            p: int(np.sum((keys_arr == "") & (labels == p))) for p in PARTITIONS
        },
        "scaffolds_in_two_partitions": len(shared),
    }
    return labels, diagnostics, spec["balanced"]


def _strata(clean, task, label_columns, stratify_on) -> np.ndarray:
    values = clean[label_columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    if task == "multitask_binary":
        if stratify_on == "any":
            return (np.nan_to_num(values, nan=0.0) == 1).any(axis=1).astype(int)
        first = values[:, 0]
        return np.where(np.isnan(first), -1, first).astype(int)  # missing: its own stratum
    for i in np.flatnonzero(np.isnan(values[:, 0])):
        raise DataError(
            f"{_where(clean, i)}, column {label_columns[0]!r}: missing or non-numeric label "
            f"{clean[label_columns[0]].iloc[i]!r}"
        )
    return values[:, 0].astype(int)


def _stratified(clean, spec, rng, *, task, label_columns):
    from sklearn.model_selection import train_test_split

    y = _strata(clean, task, label_columns, spec["stratify_on"])
    n = len(clean)
    _n_train, n_val, n_test = _target_sizes(n, spec["fractions"])
    counts = {int(c): int(k) for c, k in zip(*np.unique(y, return_counts=True), strict=True)}
    # scikit-learn takes an int seed; draw both from our generator so nothing global is touched.
    seed_test, seed_val = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
    idx = np.arange(n)
    try:
        rest, test = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed_test)
        train, val = train_test_split(
            rest, test_size=n_val, stratify=y[rest], random_state=seed_val
        )
    except ValueError as err:
        raise DataError(
            f"stratified split impossible with class counts {counts} and sizes val {n_val}, "
            f"test {n_test}: {err}"
        ) from None
    labels = np.empty(n, dtype=object)
    labels[train], labels[val], labels[test] = "train", "val", "test"
    per_part = {}
    for p in PARTITIONS:
        classes, k = np.unique(y[labels == p], return_counts=True)
        per_part[p] = {str(int(c)): int(m) for c, m in zip(classes, k, strict=True)}
    diagnostics = {
        "stratum": "label" if task != "multitask_binary" else spec["stratify_on"],
        "class_counts": {str(c): k for c, k in counts.items()},
        "class_counts_per_partition": per_part,
    }
    return labels, diagnostics, True


def _predefined(clean, spec, rng, **_):
    column = spec["column"]
    if column not in clean.columns:
        raise DataError(
            f"predefined split: column {column!r} is not in the clean table (columns: "
            f"{', '.join(clean.columns)}); list it in the dataset's keep_columns"
        )
    mapping = {str(k).strip(): v for k, v in (spec["values"] or DEFAULT_VALUES).items()}
    labels = np.empty(len(clean), dtype=object)
    for i, value in enumerate(clean[column].tolist()):
        key = "" if pd.isna(value) else str(value).strip()
        if key not in mapping:
            raise DataError(
                f"{_where(clean, i)}, column {column!r}: value {key!r} is not one of "
                f"{sorted(mapping)} (map it under split.values)"
            )
        labels[i] = mapping[key]
    value_counts = {str(k): int(v) for k, v in clean[column].astype(str).value_counts().items()}
    val_column = spec["val_column"]
    if np.any(labels == "val"):
        source = "values"
        if spec["val_fraction"] is not None:
            raise DataError(
                f"predefined split: split.values already put {int(np.sum(labels == 'val'))} rows "
                "in val; drop val_fraction"
            )
    elif val_column is not None:
        source = "val_column"
        marks = _true_cells(clean, val_column)
        for i in np.flatnonzero(marks & (labels == "test")):
            raise DataError(
                f"{_where(clean, i)}, column {val_column!r}: marked for validation but column "
                f"{column!r} puts it in test"
            )
        if not marks.any():
            raise DataError(f"predefined split: no row is marked true in column {val_column!r}")
        labels[marks] = "val"
    else:
        source = "val_fraction"
        train = np.flatnonzero(labels == "train")
        fraction = spec["val_fraction"] if spec["val_fraction"] is not None else 0.1
        n_val = max(1, math.floor(len(train) * fraction + 0.5))
        if n_val >= len(train):
            raise DataError(
                f"predefined split: {len(train)} train rows are too few to draw a val part"
            )
        labels[rng.choice(train, size=n_val, replace=False)] = "val"
    for p in ("train", "test"):
        if not np.any(labels == p):
            raise DataError(f"predefined split: no row of column {column!r} maps to {p}")
    diagnostics = {
        "column": column,
        "value_counts": value_counts,
        "val_source": source,
        "note": "fractions are ignored; test is fixed by the column"
        + (
            "; val is drawn with the seed"
            if source == "val_fraction"
            else "; same split for every seed"
        ),
    }
    return labels, diagnostics, source == "val_fraction"


def _true_cells(clean: pd.DataFrame, column: str) -> np.ndarray:
    if column not in clean.columns:
        raise DataError(
            f"predefined split: val_column {column!r} is not in the clean table; list it in the "
            "dataset's keep_columns"
        )
    marks = np.zeros(len(clean), dtype=bool)
    for i, value in enumerate(clean[column].tolist()):
        cell = "" if pd.isna(value) else str(value).strip().lower()
        if cell in TRUE_CELLS:
            marks[i] = True
        elif cell not in FALSE_CELLS:
            raise DataError(
                f"{_where(clean, i)}, column {column!r}: {value!r} is neither true nor false"
            )
    return marks


# --------------------------------------------------------------------------------------------
# Homology


def kmer_matrix(sequences: Sequence[str], k: int):
    """Binary CSR matrix (sequences x distinct k-mers present), float32 for fast products."""
    import scipy.sparse as sp

    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for seq in sequences:
        kmers = {seq[j : j + k] for j in range(len(seq) - k + 1)}
        indices.extend(vocab.setdefault(km, len(vocab)) for km in kmers)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix(
        (data, np.array(indices, dtype=np.int64), np.array(indptr, dtype=np.int64)),
        shape=(len(sequences), max(len(vocab), 1)),
    )


def kmer_similarity(a, b) -> np.ndarray:
    """Dense containment similarity between the rows of two k-mer matrices (see module doc)."""
    shared = (a @ b.T).toarray().astype(np.float64)
    size_a = np.asarray(a.sum(axis=1)).ravel()
    size_b = np.asarray(b.sum(axis=1)).ravel()
    smaller = np.minimum(size_a[:, None], size_b[None, :])
    return np.divide(shared, smaller, out=np.zeros_like(shared), where=smaller > 0)


def identity_aligner():
    """The PairwiseAligner behind metric "identity" (global, free end gaps, BLOSUM62)."""
    from Bio import Align
    from Bio.Align import substitution_matrices

    aligner = Align.PairwiseAligner(mode="global")
    aligner.substitution_matrix = substitution_matrices.load("BLOSUM62")
    aligner.open_gap_score = -10.0
    aligner.extend_gap_score = -0.5
    aligner.open_end_gap_score = 0.0
    aligner.extend_end_gap_score = 0.0
    return aligner


def pairwise_identity(a: str, b: str, aligner=None) -> float:
    """Identical aligned positions / length of the shorter sequence, from one optimal alignment."""
    aligner = aligner or identity_aligner()
    if not a or not b:
        return 0.0
    alignment = aligner.align(a, b)[0]
    return alignment.counts().identities / min(len(a), len(b))


def _identity_matrix(sequences: list[str]) -> np.ndarray:
    n = len(sequences)
    lengths = np.array([len(s) for s in sequences], dtype=float)
    cells = (lengths.sum() ** 2 - (lengths**2).sum()) / 2
    seconds = n * (n - 1) / 2 * IDENTITY_SECONDS_PER_PAIR + cells / IDENTITY_CELLS_PER_SECOND
    if seconds > IDENTITY_MAX_SECONDS:
        raise ValueError(
            f"invalid split spec: metric identity would align {len(sequences)} sequences pairwise "
            f"(about {seconds / 60:.0f} min); use metric kmer or mmseqs for a data set this size"
        )
    aligner = identity_aligner()
    alphabet = set(aligner.substitution_matrix.alphabet)
    # Letters BLOSUM62 lacks (U, O, lower case) are scored as the unknown residue X.
    seqs = ["".join(c if c in alphabet else UNKNOWN for c in s.upper()) for s in sequences]
    log.info(
        "identity metric: %d pairwise alignments (estimated %.0f s)", n * (n - 1) // 2, seconds
    )
    sim = np.zeros((n, n))
    np.fill_diagonal(sim, 1.0)
    for i in range(n):
        for j in range(i + 1, n):
            sim[i, j] = sim[j, i] = pairwise_identity(seqs[i], seqs[j], aligner)
        if n >= 200 and (i + 1) % max(1, n // 10) == 0:
            log.info("identity metric: %d / %d sequences aligned against the rest", i + 1, n)
    return sim


def auto_k(max_length: int) -> int:
    """The smallest k >= 3 whose chance containment in the longest sequence is <= 5 %."""
    k = 3
    while k < 8 and max_length / 20**k > AUTO_BACKGROUND:
        k += 1
    return k


def auto_max_similarity(metric: str, k: int) -> float:
    """0.5^(k/3) for k-mers (the same identity at every k), 0.5 for alignment identity."""
    return round(0.5 ** (k / 3), 3) if metric == "kmer" else 0.5


def resolve_homology(spec: Mapping[str, Any], sequences: Sequence[str]) -> dict[str, Any]:
    """`k` and `max_similarity` with `auto` resolved for these sequences (see the module doc)."""
    resolved = dict(spec)
    auto = [name for name in ("k", "max_similarity") if spec[name] == "auto"]
    if spec["k"] == "auto":
        resolved["k"] = auto_k(max((len(s) for s in sequences), default=0))
    if spec["max_similarity"] == "auto":
        resolved["max_similarity"] = auto_max_similarity(spec["metric"], resolved["k"])
    resolved["auto"] = auto
    return resolved


def _homology(clean, spec, rng, **_):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    seqs = [str(s).strip() for s in clean["input"].tolist()]
    n = len(seqs)
    spec = resolve_homology(spec, seqs)
    if spec["auto"]:
        log.info(
            "homology auto (%s): k=%d, max_similarity=%g for sequences up to %d residues",
            ", ".join(spec["auto"]), spec["k"], spec["max_similarity"],
            max((len(s) for s in seqs), default=0),
        )  # fmt: skip
    threshold = float(spec["max_similarity"])
    rows, cols = [], []
    if spec["metric"] == "mmseqs":
        from biomol_dl.mmseqs import identity_hits

        pairs = identity_hits(seqs, threshold)
        above = pairs["identity"].to_numpy() > threshold
        rows.append(pairs["a"].to_numpy()[above])
        cols.append(pairs["b"].to_numpy()[above])
        hits = sp.csr_matrix(
            (pairs["identity"].to_numpy(), (pairs["a"].to_numpy(), pairs["b"].to_numpy())),
            shape=(n, n),
        )
        hits = hits.maximum(hits.T).tocsr()

        def similarity(ia, ib):
            return hits[ia][:, ib].toarray()

    elif spec["metric"] == "kmer":
        kmers = kmer_matrix(seqs, spec["k"])

        def similarity(ia, ib):
            return kmer_similarity(kmers[ia], kmers[ib])

        everyone = np.arange(n)
        for start in range(0, n, KMER_BLOCK):
            block = np.arange(start, min(start + KMER_BLOCK, n))
            r, c = np.nonzero(similarity(block, everyone) > threshold)
            keep = c > block[r]
            rows.append(block[r[keep]])
            cols.append(c[keep])
    else:
        sim_matrix = _identity_matrix(seqs)

        def similarity(ia, ib):
            return sim_matrix[np.ix_(ia, ib)]

        r, c = np.nonzero(np.triu(sim_matrix > threshold, k=1))
        rows.append(r)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = sp.coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    n_clusters, cluster = connected_components(graph, directed=False)
    members = np.argsort(cluster, kind="stable")
    groups = np.split(members, np.cumsum(np.bincount(cluster))[:-1])
    labels = _assign_groups(groups, n, spec["fractions"], rng, balanced=True)
    _require_val_test(
        labels,
        groups,
        "cluster",
        f"raise max_similarity above {threshold:g}"
        + (f" or k above {spec['k']}" if spec["metric"] == "kmer" else ""),
    )
    part = {p: np.flatnonzero(labels == p) for p in PARTITIONS}
    cross = {}
    for a, b in (("test", "train"), ("val", "train"), ("test", "val")):
        # In blocks, so a large test set against a large train set never needs one dense matrix.
        cross[f"{a}_{b}"] = max(
            float(similarity(part[a][i : i + KMER_BLOCK], part[b]).max())
            for i in range(0, len(part[a]), KMER_BLOCK)
        )
    if max(cross.values()) > threshold:  # cannot happen unless the clustering is wrong
        raise RuntimeError(f"homology split broke its own bound: {cross} > {threshold}")
    diagnostics = {
        "metric": spec["metric"],
        "k": spec["k"] if spec["metric"] == "kmer" else None,
        "max_similarity": threshold,
        "auto": spec["auto"],
        "similarity": "shared distinct k-mers / k-mers of the shorter sequence"
        if spec["metric"] == "kmer"
        else "identical aligned positions / length of the shorter sequence",
        "edges_above_threshold": len(r),
        "n_clusters": n_clusters,
        "largest_cluster": max(len(g) for g in groups),
        "clusters_per_partition": {p: len(np.unique(cluster[part[p]])) for p in PARTITIONS},
        "max_similarity_between": {pair: round(v, 4) for pair, v in cross.items()},
        "max_similarity_between_computed_on": "the cross-partition pairs MMseqs2 reports"
        if spec["metric"] == "mmseqs"
        else "all cross-partition pairs",
    }
    if spec["metric"] == "kmer":
        short = int(sum(len(s) < spec["k"] for s in seqs))
        diagnostics["shorter_than_k"] = short
        if short:
            log.warning("%d sequences are shorter than k=%d: similar to nothing", short, spec["k"])
    return labels, diagnostics, True


STRATEGIES: dict[str, Callable[..., tuple[np.ndarray, dict, bool]]] = {
    "random": _random,
    "scaffold": _scaffold,
    "stratified": _stratified,
    "predefined": _predefined,
    "homology": _homology,
}
