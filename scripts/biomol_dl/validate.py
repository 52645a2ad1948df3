"""The `validate` rule's library: raw table -> clean table, rejects table and summary.

For the validate rule and for anyone checking a dataset by hand. Every input row ends up either in
the clean table or in the rejects table with a reason, so `kept + rejected == rows_in` always holds;
rows merged into an earlier duplicate are listed in rejects as `duplicate_merged` (their labels
still count: they enter the mean, or agree with the kept row).

The dataset's config entry is the spec (see docs/ARCHITECTURE.md). Its `validation` options, with
their defaults:

  SMILES    strip_whitespace: true    strip surrounding whitespace (ESOL's SMILES end in a space)
            largest_fragment: false   keep the largest fragment (salt / counter-ion stripping)
            canonical: true           output RDKit canonical isomeric SMILES
  protein   uppercase: true           upper-case residues (false: lower case is rejected)
            ambiguous: reject         X B Z J U O: reject | keep | replace_x (B Z J U O -> X)
            alphabet: the 20 standard residues (a string of letters)
            min_length: 1, max_length: null (longer is rejected; truncation is the featurizers' job)
  both      duplicates: mean (regression) | drop_conflicts (classification) | first | keep
            duplicates_within: columns whose values keep copies apart (default: the split column
                                      of a predefined split, so a fixed test set stays intact)
            negative_label: null      binary string labels: the negative one (default: the single
                                      value that is not positive_label)

What is read, exactly (a cell is never cut short or silently changed; the reason codes are the
rejects table's `reason` up to the colon):

  SMILES    The stripped cell is the whole SMILES: RDKit is called with parseName and
            allowCXSMILES off, so nothing after it (a name, a `|...|` CXSMILES extension) can be
            dropped. Before RDKit sees it, a cell is rejected for whitespace inside it (space,
            tab, newline of a quoted cell, any Unicode space: whitespace_in_smiles, with the
            character and its position), a control or invisible character (NUL, U+200B:
            control_character) or any non-ASCII character (RDKit reads `CÇ` as methane:
            non_ascii_character). Empty after stripping: empty_input. What RDKit cannot parse
            (`.` alone, `C..C`, reactions `CC>>O`, unclosed rings, bad valences): invalid_smiles.
            Wildcard atoms `*` (wildcard_atom) and SMARTS query bonds `~` (query_bond) parse but
            are not molecules. Surrounding whitespace is stripped and counted
            (input_stats.whitespace_stripped) unless strip_whitespace is false; then it is
            whitespace_in_smiles too. Several fragments (`CC(=O)[O-].[Na+]`) are one molecule
            unless largest_fragment is set.
  sequences The stripped cell; whitespace inside (whitespace_in_sequence), control and non-ASCII
            characters are rejected as for SMILES. Lower case is upper-cased and counted
            (uppercase: true) or rejected (lowercase_residue); X B Z J U O follow `ambiguous`
            (non_standard_residue); anything else is invalid_character with what it probably is:
            a digit, `*` a stop codon, `-` / `.` an alignment gap.
  labels    One rule per task; surrounding whitespace is ignored, a missing marker (io.is_missing:
            empty, NA, nan, N/A) is a missing label (missing_label, except in multitask_binary):
            regression   NUMBER: optional sign, ASCII digits with an optional decimal point, an
                         optional exponent (`-1.5e3`, `.5`, `5.`, `+2`). `1_000`, fullwidth `１`,
                         `0x10`, `1,5` are invalid_label "not a number"; `inf`, `1e999` are
                         invalid_label "not finite".
            binary,      without positive_label exactly 0, 1, 0.0, 1.0, true/false, yes/no (any
            multitask    case); `01`, `2`, `1.00` are invalid_label. With positive_label: the
                         cell equals it (1) or negative_label (0).
            multiclass   the stripped text is the class name, except that a NUMBER is written one
                         way (`1`, `1.0`, `01`, `1e0` are class `1`; `0.50` is `0.5`), for cells
                         and for `classes:` from the config alike; two config classes that are
                         one class fail. Derived classes are sorted numbers first.

  records  A record the reader could read but not use (io.READ_ERRORS_ATTR) is rejected with
            the reader's reason, before its input is looked at: invalid_molblock and
            empty_molecule (an SDF record, with record number and file line; column `mol
            block`), header_mismatch (a FASTA header that does not fit `fasta_header`; column
            `header`).

Duplicates are found on the canonical SMILES (whatever `canonical` says) or on the normalised
sequence. `mean` averages the labels; `drop_conflicts` merges copies whose labels agree (multitask:
agree wherever both are present) and rejects every copy when they disagree; `first` keeps the first
copy; `keep` keeps all. Missing labels are recognised by `io.is_missing` (empty, NA, nan, N/A).
Identifiers never cost a row: an empty id becomes `row<N>`, a repeated one `<id>_row<N>`; both are
counted in the summary's `ids`. Any other id is kept as written (stripped): `NA`, `nan`, `None`,
`1e3`, `007` are ids, not missing values or numbers, and every later rule reads them back as
strings (io.read_table).

Rejects name both positions of a row: `row`, the 1-based data row, and `line`, the file line on
which it starts (they differ by the header, skipped lines, blank lines and quoted cells spanning
lines). Messages name the user's file (the source's path as written, URL or package resource),
never the internal copy under resources/.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import statistics
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from biomol_dl.io import LINES_ATTR, READ_ERRORS_ATTR, DataError, is_missing, read_raw_table
from biomol_dl.logutil import get
from biomol_dl.metrics import TASKS
from biomol_dl.residues import AMBIGUOUS as AMBIGUOUS_RESIDUES
from biomol_dl.residues import STANDARD as STANDARD_RESIDUES

log = get("biomol_dl.validate")

PROGRESS_EVERY = 2000
DUPLICATE_POLICIES = ("mean", "drop_conflicts", "first", "keep")
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "smiles": {"strip_whitespace": True, "largest_fragment": False, "canonical": True},
    "protein": {
        "uppercase": True,
        "ambiguous": "reject",
        "alphabet": STANDARD_RESIDUES,
        "min_length": 1,
        "max_length": None,
    },
}
COMMON_DEFAULTS: dict[str, Any] = {
    "duplicates": None,
    "duplicates_within": None,
    "negative_label": None,
}
_BINARY_WORDS = {
    "0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1, "no": 0, "yes": 1,
}  # fmt: skip
_RESERVED = ("id", "input", "row", "n_merged")
REJECT_COLUMNS = ["row", "line", "id", "column", "value", "reason"]
# A regression label (and a numeric class label): ASCII digits, optional sign, decimal point and
# exponent. Python's float() would also take '1_000', '\uff11' (fullwidth 1), 'inf' and 'nan'.
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_INFINITY = re.compile(r"[+-]?inf(?:inity)?", re.IGNORECASE)
_MAX_CLASS_EXPONENT = 30


class _Reject(Exception):
    """One row fails: `column` and `value` are what the rejects table shows."""

    def __init__(self, reason: str, column: str | None = None, value: str | None = None):
        super().__init__(reason)
        self.reason, self.column, self.value = reason, column, value


# ----------------------------------------------------------------------------------- options


def validation_options(spec: dict, source_name: str) -> dict[str, Any]:
    """The spec's `validation` dict completed with defaults; unknown keys raise DataError."""
    kind, task = spec.get("kind"), spec.get("task")
    if kind not in KIND_DEFAULTS:
        raise DataError(f"{source_name}: kind must be smiles or protein, got {kind!r}")
    if task not in TASKS:
        raise DataError(f"{source_name}: task must be one of {', '.join(TASKS)}, got {task!r}")
    defaults = {**KIND_DEFAULTS[kind], **COMMON_DEFAULTS}
    given = dict(spec.get("validation") or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise DataError(
            f"{source_name}: unknown validation option(s) {', '.join(map(repr, unknown))} for "
            f"kind {kind}; valid: {', '.join(sorted(defaults))}"
        )
    options = {**defaults, **given}
    if options["duplicates"] is None:
        options["duplicates"] = "mean" if task == "regression" else "drop_conflicts"
    if options["duplicates"] not in DUPLICATE_POLICIES:
        raise DataError(
            f"{source_name}: validation.duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, "
            f"got {options['duplicates']!r}"
        )
    if options["duplicates_within"] is None:
        # A predefined test set is the benchmark's: duplicates are merged inside each part, never
        # across (that would move test rows into train); cross-part copies are counted instead.
        split = spec.get("split") or {}
        column = split.get("column") if split.get("strategy") == "predefined" else None
        options["duplicates_within"] = [column] if column else []
    elif isinstance(options["duplicates_within"], str):
        options["duplicates_within"] = [options["duplicates_within"]]
    if options["duplicates"] == "mean" and task != "regression":
        raise DataError(
            f"{source_name}: validation.duplicates 'mean' averages regression labels; task {task} "
            "takes drop_conflicts, first or keep"
        )
    if kind == "protein":
        if options["ambiguous"] not in ("reject", "keep", "replace_x"):
            raise DataError(
                f"{source_name}: validation.ambiguous must be reject, keep or replace_x, "
                f"got {options['ambiguous']!r}"
            )
        options["alphabet"] = str(options["alphabet"]).upper()
    return options


# ------------------------------------------------------------------------------------- inputs


def _clean_rdkit_message(text: str) -> str:
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\]\s*", "", ln).strip() for ln in text.splitlines()]
    detail = "; ".join(ln for ln in lines if ln and not ln.startswith("*"))
    return detail[:200]


def _describe(char: str) -> str:
    """A character as a reason shows it: repr, plus code point and name beyond ASCII."""
    if char.isascii():
        return repr(char)  # '\t', '\x00', 'x'
    name = unicodedata.name(char, "")
    return f"{char!r} (U+{ord(char):04X}{' ' + name if name else ''})"


def _check_characters(text: str, what: str, column: str, raw: str) -> None:
    """Reject whitespace, control / invisible and non-ASCII characters inside `text` (already
    stripped when the options say so): RDKit reads `CC O` as ethane named "O" and `CÇ` as
    methane, and nothing in a sequence may vanish either. `what` is smiles or sequence."""
    if text.isascii() and text.isprintable() and " " not in text:
        return  # the common case, without a loop in Python
    for pos, char in enumerate(text, 1):
        if char.isspace():
            raise _Reject(f"whitespace_in_{what}: {_describe(char)} at position {pos}", column, raw)
        if unicodedata.category(char) in ("Cc", "Cf"):
            raise _Reject(f"control_character: {_describe(char)} at position {pos}", column, raw)
        if not char.isascii():
            raise _Reject(f"non_ascii_character: {_describe(char)} at position {pos}", column, raw)


class _SmilesChecker:
    """SMILES -> (output SMILES, duplicate key: canonical SMILES), or _Reject."""

    def __init__(self, options: dict, column: str):
        from rdkit import Chem, rdBase
        from rdkit.Chem.MolStandardize import rdMolStandardize

        self.Chem, self.rdBase, self.options, self.column = Chem, rdBase, options, column
        # The whole string is the SMILES: no " name" suffix and no " |CXSMILES|" extension.
        self.params = Chem.SmilesParserParams()
        self.params.parseName = False
        self.params.allowCXSMILES = False
        self.chooser = (
            rdMolStandardize.LargestFragmentChooser() if options["largest_fragment"] else None
        )
        self.counts: Counter[str] = Counter()
        self.sizes: list[int] = []

    def quiet(self):
        """Silence RDKit's warnings for the whole loop; errors are captured per molecule."""
        return self.rdBase.BlockLogs()

    def __call__(self, raw: str) -> tuple[str, str]:
        Chem = self.Chem
        smiles = raw.strip() if self.options["strip_whitespace"] else raw
        if not smiles.strip():
            raise _Reject("empty_input", self.column, raw)
        if smiles != raw:
            self.counts["whitespace_stripped"] += 1
        _check_characters(smiles, "smiles", self.column, raw)
        with self.rdBase.CaptureErrorLog() as capture:
            mol = Chem.MolFromSmiles(smiles, self.params)
        if mol is None:
            detail = _clean_rdkit_message(capture.messages) or "no message"
            raise _Reject(f"invalid_smiles: RDKit could not parse: {detail}", self.column, raw)
        if mol.GetNumAtoms() == 0:
            raise _Reject("empty_molecule: no atoms", self.column, raw)
        _check_not_a_query(mol, self.column, raw)
        changed = False
        if self.chooser is not None and len(Chem.GetMolFrags(mol)) > 1:
            mol = self.chooser.choose(mol)
            self.counts["largest_fragment_kept"] += 1
            changed = True
        key = Chem.MolToSmiles(mol)
        if self.options["canonical"]:
            out = key
        else:
            out = Chem.MolToSmiles(mol, canonical=False) if changed else smiles
        self.sizes.append(mol.GetNumHeavyAtoms())
        return out, key

    def stats(self, kept_rows: list[int]) -> dict[str, Any]:
        sizes = [self.sizes[i] for i in kept_rows]
        return {"heavy_atoms": _spread(sizes), **dict(self.counts)}


def _check_not_a_query(mol, column: str, raw: str) -> None:
    """RDKit's SMILES parser also takes wildcard atoms (`*`) and SMARTS' any-bond (`~`): they
    describe a family of molecules or an attachment point, not a molecule to learn from."""
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 0:
            raise _Reject(
                f"wildcard_atom: '*' (atom {atom.GetIdx() + 1}) is an attachment point or "
                "wildcard, not an element",
                column,
                raw,
            )
    for bond in mol.GetBonds():
        if bond.HasQuery():
            raise _Reject(
                f"query_bond: a query bond such as '~' (between atoms {bond.GetBeginAtomIdx() + 1}"
                f" and {bond.GetEndAtomIdx() + 1}) is SMARTS, not SMILES",
                column,
                raw,
            )


# Why a character that is no residue is there, for the reason text.
_NOT_A_RESIDUE = {
    "*": "a stop codon / terminator",
    "-": "an alignment gap",
    ".": "an alignment gap",
}


class _ProteinChecker:
    """Sequence -> (output sequence, duplicate key), or _Reject."""

    def __init__(self, options: dict, column: str):
        self.options, self.column = options, column
        self.alphabet = frozenset(options["alphabet"])
        self.ambiguous = frozenset(AMBIGUOUS_RESIDUES) - self.alphabet
        self.to_x = str.maketrans({c: "X" for c in self.ambiguous if c != "X"})
        self.counts: Counter[str] = Counter()
        self.sizes: list[int] = []

    def quiet(self):
        return contextlib.nullcontext()

    def __call__(self, raw: str) -> tuple[str, str]:
        seq = raw.strip()
        if not seq:
            raise _Reject("empty_input", self.column, raw)
        _check_characters(seq, "sequence", self.column, raw)
        if self.options["uppercase"]:
            upper = seq.upper()
            if upper != seq:
                self.counts["uppercased"] += 1
            seq = upper
        bad = set(seq) - self.alphabet
        if bad:
            policy = self.options["ambiguous"]
            for pos, char in enumerate(seq, 1):
                if char in self.alphabet:
                    continue
                if char.islower() and char.upper() in self.alphabet | self.ambiguous:
                    raise _Reject(
                        f"lowercase_residue: {char!r} at position {pos} (uppercase: false)",
                        self.column,
                        raw,
                    )
                if char in self.ambiguous:
                    if policy == "reject":
                        raise _Reject(
                            f"non_standard_residue: {char} at position {pos} (ambiguous: reject)",
                            self.column,
                            raw,
                        )
                    continue
                why = "a digit" if char.isdigit() else _NOT_A_RESIDUE.get(char, "not a residue")
                raise _Reject(
                    f"invalid_character: {char!r} at position {pos} ({why})", self.column, raw
                )
            if policy == "replace_x":
                seq = seq.translate(self.to_x)
                self.counts["ambiguous_replaced"] += 1
            else:
                self.counts["ambiguous_kept"] += 1
        if len(seq) < self.options["min_length"]:
            raise _Reject(
                f"too_short: {len(seq)} < min_length {self.options['min_length']}", self.column, raw
            )
        max_length = self.options["max_length"]
        if max_length is not None and len(seq) > max_length:
            raise _Reject(f"too_long: {len(seq)} > max_length {max_length}", self.column, raw)
        self.sizes.append(len(seq))
        return seq, seq

    def stats(self, kept_rows: list[int]) -> dict[str, Any]:
        sizes = [self.sizes[i] for i in kept_rows]
        return {"length": _spread(sizes), **dict(self.counts)}


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# ------------------------------------------------------------------------------------- labels


def _label_parser(
    spec: dict, options: dict, raw_labels: list[list[str]], source_name: str
) -> tuple[Callable[[str, str], float], list[str] | None]:
    """A function (column, cell) -> float label (NaN when missing) and, for multiclass, the
    class list. The class list / binary mapping is decided from the rows that passed input checks."""
    task, columns = spec["task"], list(spec["label_columns"])
    if task == "regression":
        return _parse_number, None

    if task == "multiclass":
        if spec.get("classes"):
            classes = _config_classes(spec["classes"], source_name)
        else:
            seen = set()
            for labels in raw_labels:
                for cell in labels:
                    with contextlib.suppress(_Reject):  # a bad label is rejected below
                        if not is_missing(cell):
                            seen.add(_class_name(cell, ""))
            classes = sorted(seen, key=_class_sort_key)
        index = {c: i for i, c in enumerate(classes)}

        def parse_multiclass(column: str, cell: str) -> float:
            if is_missing(cell):
                return math.nan
            value = _class_name(cell, column)
            if value not in index:
                raise _Reject(
                    f"invalid_label: {cell.strip()!r} is not one of the classes {classes}",
                    column,
                    cell,
                )
            return float(index[value])

        return parse_multiclass, classes

    positive = spec.get("positive_label")
    if positive is None:

        def parse_binary_words(column: str, cell: str) -> float:
            if is_missing(cell):
                return math.nan
            value = _BINARY_WORDS.get(cell.strip().lower())
            if value is None:
                raise _Reject(
                    f"invalid_label: {cell.strip()!r} is not a binary label (0/1, true/false, "
                    "yes/no; set positive_label for string labels)",
                    column,
                    cell,
                )
            return float(value)

        return parse_binary_words, None

    positive = str(positive).strip()
    negative = options.get("negative_label")
    if negative is None:
        others = Counter(
            labels[j].strip()
            for labels in raw_labels
            for j in range(len(columns))
            if not is_missing(labels[j]) and labels[j].strip() != positive
        )
        if len(others) > 1:
            listed = ", ".join(f"{k!r} ({n})" for k, n in others.most_common(6))
            raise DataError(
                f"{source_name}: binary labels besides positive_label {positive!r} take several "
                f"values: {listed}; set validation.negative_label"
            )
        negative = next(iter(others), None)
    negative = None if negative is None else str(negative).strip()

    def parse_binary_strings(column: str, cell: str) -> float:
        if is_missing(cell):
            return math.nan
        value = cell.strip()
        if value == positive:
            return 1.0
        if value == negative:
            return 0.0
        raise _Reject(
            f"invalid_label: {value!r} is neither positive_label {positive!r} nor "
            f"negative_label {negative!r}",
            column,
            cell,
        )

    return parse_binary_strings, None


def _row_labels(parse, task: str, label_columns: list[str], cells: list[str]) -> list[float]:
    """One row's labels (NaN = missing), or _Reject when missing where the task needs them."""
    values = [parse(col, cell) for col, cell in zip(label_columns, cells, strict=True)]
    missing = [j for j, v in enumerate(values) if math.isnan(v)]
    if task == "multitask_binary" and len(missing) == len(values):
        raise _Reject(
            f"all_labels_missing: none of the {len(values)} label columns has a value",
            ",".join(label_columns),
            "",
        )
    if task != "multitask_binary" and missing:
        j = missing[0]
        raise _Reject("missing_label: empty or NA", label_columns[j], cells[j])
    return values


def _parse_number(column: str, cell: str) -> float:
    """A regression label: NaN when missing, else a strict ASCII decimal (see the docstring)."""
    if is_missing(cell):
        return math.nan
    value = cell.strip()
    if not NUMBER.fullmatch(value):
        if _INFINITY.fullmatch(value):
            raise _Reject(f"invalid_label: {value!r} is not finite", column, cell)
        hint = ""
        odd = next((c for c in value if not c.isascii()), None)
        with contextlib.suppress(ValueError):
            float(value)  # Python reads '1_000' and fullwidth digits: say why they are not
            hint = " (only ASCII decimal or scientific notation such as -1.5e3 is read)"
        if odd:  # e.g. U+2212 MINUS SIGN pasted from a paper
            hint = f" (it contains {_describe(odd)}; only ASCII digits, sign, '.' and 'e' are read)"
        raise _Reject(f"invalid_label: {value!r} is not a number{hint}", column, cell)
    number = float(value)
    if not math.isfinite(number):
        raise _Reject(f"invalid_label: {value!r} is not finite (out of range)", column, cell)
    return number


def _class_name(cell: str, column: str) -> str:
    """The class a multiclass cell names: the stripped text, except that a number is written in
    one canonical way (`1`, `1.0`, `01`, `1e0` -> `1`; `0.50` -> `0.5`), so that it is one class."""
    value = cell.strip()
    if not NUMBER.fullmatch(value):
        return value
    number = Decimal(value)
    if abs(number.adjusted()) > _MAX_CLASS_EXPONENT:
        raise _Reject(f"invalid_label: {value!r} is too large or small for a class", column, cell)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _config_classes(given: list, source_name: str) -> list[str]:
    """`classes:` from the config, each normalised like a cell; two that name one class fail."""
    classes: list[str] = []
    for item in given:
        try:
            name = _class_name(str(item), "classes")
        except _Reject as err:
            raise DataError(f"{source_name}: classes: {err.reason}") from None
        if name in classes:
            raise DataError(
                f"{source_name}: classes: {item!r} and {given[classes.index(name)]!r} are the same "
                f"class ({name}); list each class once"
            )
        classes.append(name)
    return classes


def _class_sort_key(value: str) -> tuple[int, Decimal, str]:
    if NUMBER.fullmatch(value):
        return (0, Decimal(value), value)
    return (1, Decimal(0), value)


# -------------------------------------------------------------------------------- the table


def validate_table(
    df: pd.DataFrame,
    spec: dict,
    *,
    source_name: str,
    excluded: tuple[dict[str, str], dict[str, str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Validate a raw table of strings against a dataset spec.

    Returns (clean, rejects, summary): clean has `id, input, row, <labels>, <keep_columns>,
    n_merged`; rejects has REJECT_COLUMNS: `row` is the 1-based data row, `line` the file line on
    which it starts (from `df.attrs[LINES_ATTR]`, as read_raw_table sets it; empty without).
    `excluded`: the molecules of the spec's `exclude` datasets (corpus.excluded_molecules); a
    row holding one is rejected as `excluded` before labels and duplicates are looked at.
    """
    options = validation_options(spec, source_name)
    input_column, id_column = spec["input_column"], spec.get("id_column")
    label_columns = list(spec["label_columns"])
    keep_columns = list(spec.get("keep_columns") or [])
    _check_spec_columns(df, spec, source_name)
    task, n = spec["task"], len(df)

    checker = (_SmilesChecker if spec["kind"] == "smiles" else _ProteinChecker)(
        options, input_column
    )
    inputs = df[input_column].astype(str).tolist()
    ids = df[id_column].astype(str).tolist() if id_column else None
    labels_raw = df[label_columns].astype(str).values.tolist()
    within = options["duplicates_within"]
    within_values = df[within].astype(str).values.tolist() if within else [()] * n
    lines = df.attrs.get(LINES_ATTR)
    if lines is not None and len(lines) != n:
        lines = None  # the caller changed the rows read_raw_table numbered
    rejects: list[dict[str, Any]] = []

    def reject(i: int, rid: str, err: _Reject) -> None:
        rejects.append(
            {
                "row": i + 1,
                "line": lines[i] if lines else None,
                "id": rid,
                "column": err.column,
                "value": err.value,
                "reason": err.reason,
            }
        )

    # 1. identifiers and inputs (a record the reader could not use is rejected with its reason)
    read_errors = df.attrs.get(READ_ERRORS_ATTR) or {}
    candidates, n_filled = _check_inputs(checker, inputs, ids, within_values, reject, read_errors)
    if excluded is not None:
        candidates = _drop_excluded(candidates, excluded, spec, inputs, reject)

    # 2. labels (class lists and binary mappings are decided from the rows still in play)
    parse, classes = _label_parser(
        spec, options, [labels_raw[c["i"]] for c in candidates], source_name
    )
    labelled: list[dict[str, Any]] = []
    for cand in candidates:
        try:
            values = _row_labels(parse, task, label_columns, labels_raw[cand["i"]])
        except _Reject as err:
            reject(cand["i"], cand["id"], err)
        else:
            labelled.append({**cand, "labels": values, "n_merged": 1})

    # 3. duplicates, then duplicate identifiers among what is left
    kept, dup_info = _merge_duplicates(
        labelled, options["duplicates"], within, label_columns, inputs, input_column, reject
    )
    id_info = _unique_ids(kept, id_column, n_filled)
    log.info("validated %d/%d rows: kept %d, rejected %d", n, n, len(kept), len(rejects))

    clean = _clean_frame(kept, df, task, label_columns, keep_columns)
    rejects_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS).astype({"line": "Int64"})
    rejects_df = rejects_df.sort_values("row", kind="stable").reset_index(drop=True)
    by_reason = Counter(r.split(":", 1)[0] for r in rejects_df["reason"])
    summary = {
        "rows_in": n,
        "kept": len(clean),
        "rejected": len(rejects_df),
        "by_reason": dict(sorted(by_reason.items())),
        "kind": spec["kind"],
        "task": task,
        "input_column": input_column,
        "id_column": id_column,
        "label_columns": label_columns,
        "keep_columns": keep_columns,
        "classes": classes,
        "positive_label": spec.get("positive_label"),
        "label_stats": _label_stats(clean, task, label_columns, classes),
        "input_stats": checker.stats([c["size"] for c in kept]),
        "duplicates": dup_info,
        "ids": id_info,
        "validation": options,
        "source": {"name": source_name},
    }
    assert summary["kept"] + summary["rejected"] == n, "validation lost rows"  # the invariant
    return clean, rejects_df, summary


def _drop_excluded(candidates, excluded, spec, inputs, reject) -> list[dict[str, Any]]:
    """The candidates whose molecule is in none of the `exclude` datasets; the others are
    rejected with the dataset (and InChIKey) they matched."""
    from rdkit import Chem

    from biomol_dl.corpus import exclusion_reason

    how = spec.get("exclude_match") or "inchikey"
    kept = []
    for cand in candidates:
        reason, _ = exclusion_reason(Chem, cand["input"], *excluded, how)
        if reason is None:
            kept.append(cand)
        else:
            value = inputs[cand["i"]]
            reject(cand["i"], cand["id"], _Reject(reason, spec["input_column"], value))
    return kept


def _check_inputs(
    checker: Any,
    inputs: list[str],
    ids: list[str] | None,
    within_values: list,
    reject: Callable[[int, str, _Reject], None],
    read_errors: dict | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Step 1 of `validate_table`: each row's id (row<N> when empty) and checked input.

    Returns the rows still in play ({"i", "id", "input", "key", "group", "size"}) and how many
    ids were filled in; rejected rows go to `reject`.
    """
    candidates: list[dict[str, Any]] = []
    n_filled, n = 0, len(inputs)
    with checker.quiet():
        for i in range(n):
            rid = ids[i].strip() if ids is not None else ""
            if not rid:
                n_filled += ids is not None
                rid = f"row{i + 1}"
            try:
                if read_errors and i in read_errors:
                    column, value, reason = read_errors[i]
                    raise _Reject(reason, column, value)
                out, key = checker(inputs[i])
            except _Reject as err:
                reject(i, rid, err)
            else:
                size = len(checker.sizes) - 1
                group = (key, *within_values[i])
                candidates.append(
                    {"i": i, "id": rid, "input": out, "key": key, "group": group, "size": size}
                )
            if (i + 1) % PROGRESS_EVERY == 0:
                log.info("validated %d/%d rows", i + 1, n)
    return candidates, n_filled


def _check_spec_columns(df: pd.DataFrame, spec: dict, source_name: str) -> None:
    label_columns = list(spec["label_columns"])
    keep_columns = list(spec.get("keep_columns") or [])
    within = (spec.get("validation") or {}).get("duplicates_within") or []
    within = [within] if isinstance(within, str) else list(within)
    split = spec.get("split") or {}
    if split.get("strategy") == "predefined" and split.get("column"):
        within.append(split["column"])
    wanted = [spec["input_column"], *label_columns, *keep_columns, *within]
    if spec.get("id_column"):
        wanted.append(spec["id_column"])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(
            f"{source_name}: unknown column {missing[0]!r}; available: "
            f"{', '.join(map(repr, df.columns))}"
        )
    clash = [c for c in label_columns + keep_columns if c in _RESERVED]
    clash += [c for c in keep_columns if c in label_columns]
    if clash:
        raise DataError(
            f"{source_name}: column {clash[0]!r} cannot be a label or kept column: the clean table "
            f"already has {', '.join(_RESERVED)} and each label once"
        )


def _merge_duplicates(
    rows: list[dict],
    policy: str,
    within: list[str],
    label_columns: list[str],
    inputs: list[str],
    column: str,
    reject: Callable[[int, str, _Reject], None],
) -> tuple[list[dict], dict[str, Any]]:
    """Apply the duplicate policy to rows grouped by (duplicate key, `within` column values)."""
    info: dict[str, Any] = {"policy": policy, "groups": 0, "rows_merged": 0, "conflicts": 0}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    parts_per_input = Counter(key[0] for key in groups)
    info["inputs_in_several_parts"] = sum(1 for v in parts_per_input.values() if v > 1)
    if info["inputs_in_several_parts"]:
        log.warning(
            "%d inputs occur in more than one part (%s); kept apart, one copy per part",
            info["inputs_in_several_parts"],
            ", ".join(within),
        )
    if policy == "keep":
        info["groups"] = sum(1 for v in groups.values() if len(v) > 1)
        return rows, info

    drop: set[int] = set()

    def drop_row(row: dict, reason: str) -> None:
        reject(row["i"], row["id"], _Reject(reason, column, inputs[row["i"]]))
        drop.add(row["i"])

    spreads: list[dict[str, Any]] = []
    for group in groups.values():
        if len(group) == 1:
            continue
        info["groups"] += 1
        first, others = group[0], group[1:]
        first_row = first["i"] + 1
        if policy == "first":
            for g in others:
                drop_row(g, f"duplicate_dropped: same input as row {first_row} (duplicates: first)")
            continue
        if policy == "mean":
            merged = []
            for j, name in enumerate(label_columns):
                values = [g["labels"][j] for g in group if not math.isnan(g["labels"][j])]
                merged.append(statistics.fmean(values) if values else math.nan)
                if len(values) > 1:
                    rows_of = [g["i"] + 1 for g in group]
                    spread = max(values) - min(values)
                    spreads.append(
                        {"input": first["input"], "column": name, "rows": rows_of,
                         "labels": values, "range": spread}
                    )  # fmt: skip
            note = "its label is included in the mean"
        else:  # drop_conflicts
            conflict = _first_conflict(group, label_columns)
            if conflict:
                info["conflicts"] += 1
                listed = ", ".join(str(g["i"] + 1) for g in group)
                for g in group:
                    drop_row(
                        g, f"duplicate_conflict: {conflict} for the same input (rows {listed})"
                    )
                continue
            # Copies agree wherever both have a label; together they fill each other's gaps.
            merged = [
                next((g["labels"][j] for g in group if not math.isnan(g["labels"][j])), math.nan)
                for j in range(len(label_columns))
            ]
            note = "same labels"
        first["labels"], first["n_merged"] = merged, len(group)
        info["rows_merged"] += len(others)
        for g in others:
            drop_row(g, f"duplicate_merged: merged into row {first_row} ({note})")
    if policy == "mean":
        spreads.sort(key=lambda s: -s["range"])
        info["label_range_max"] = spreads[0]["range"] if spreads else 0.0
        info["label_range_mean"] = statistics.fmean(s["range"] for s in spreads) if spreads else 0.0
        info["widest"] = spreads[:5]
    return [r for r in rows if r["i"] not in drop], info


def _first_conflict(group: list[dict], label_columns: list[str]) -> str | None:
    for j, name in enumerate(label_columns):
        values = sorted({g["labels"][j] for g in group if not math.isnan(g["labels"][j])})
        if len(values) > 1:
            shown = " and ".join(_fmt(v) for v in values)
            prefix = f"{name} " if len(label_columns) > 1 else ""
            return f"{prefix}labels {shown}"
    return None


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _unique_ids(rows: list[dict], id_column: str | None, n_filled: int) -> dict[str, Any]:
    """Make the kept rows' ids unique: a repeated id becomes `<id>_row<N>` (N: its source row).

    A repeated or empty identifier says nothing about the molecule or sequence, so the row is
    kept under a derived id rather than rejected; the summary counts and lists the renamings.
    """
    info: dict[str, Any] = {"filled_from_row": n_filled, "renamed": 0, "renamed_examples": []}
    if not id_column:
        return info  # row<N> identifiers are unique by construction
    used = {r["id"] for r in rows}
    seen: set[str] = set()
    for r in rows:
        if r["id"] not in seen:
            seen.add(r["id"])
            continue
        new = f"{r['id']}_row{r['i'] + 1}"
        while new in used:
            new += "_"
        info["renamed"] += 1
        if len(info["renamed_examples"]) < 10:
            info["renamed_examples"].append({"row": r["i"] + 1, "id": r["id"], "new_id": new})
        r["id"] = new
        used.add(new)
        seen.add(new)
    if n_filled or info["renamed"]:
        log.warning(
            "ids: %d empty %s cell(s) replaced by row<N>, %d repeated id(s) renamed <id>_row<N>",
            n_filled,
            id_column,
            info["renamed"],
        )
    return info


def _clean_frame(
    rows: list[dict], df: pd.DataFrame, task: str, label_columns: list[str], keep_columns: list[str]
) -> pd.DataFrame:
    positions = [r["i"] for r in rows]
    clean = pd.DataFrame(
        {
            "id": pd.Series([r["id"] for r in rows], dtype=object),
            "input": pd.Series([r["input"] for r in rows], dtype=object),
            "row": pd.Series([i + 1 for i in positions], dtype="int64"),
        }
    )
    for j, name in enumerate(label_columns):
        values = pd.Series([r["labels"][j] for r in rows], dtype="float64")
        clean[name] = values.astype("int64") if task in ("binary", "multiclass") else values
    for name in keep_columns:
        clean[name] = df[name].iloc[positions].astype(str).to_numpy()
    clean["n_merged"] = pd.Series([r["n_merged"] for r in rows], dtype="int64")
    return clean


def _label_stats(
    clean: pd.DataFrame, task: str, label_columns: list[str], classes: list[str] | None
) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for name in label_columns:
        values = clean[name].dropna()
        if task == "regression":
            stats[name] = {
                "n": int(len(values)),
                "mean": float(values.mean()) if len(values) else None,
                "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
                "min": float(values.min()) if len(values) else None,
                "max": float(values.max()) if len(values) else None,
            }
            continue
        counts = Counter(int(v) for v in values)
        if task == "multiclass":
            stats[name] = {c: counts.get(k, 0) for k, c in enumerate(classes or [])}
        else:
            stats[name] = {"0": counts.get(0, 0), "1": counts.get(1, 0)}
        if task == "multitask_binary":
            stats[name]["missing"] = int(clean[name].isna().sum())
    return stats


# -------------------------------------------------------------------------------- the rule


def count_metrics(summary: dict) -> dict[str, int]:
    """rows_in, kept, rejected and rejected.<reason> of a validation (or corpus) summary, as the
    tracking run's metrics."""
    return {
        "rows_in": summary["rows_in"],
        "kept": summary["kept"],
        "rejected": summary["rejected"],
        **{f"rejected.{code}": n for code, n in summary["by_reason"].items()},
    }


def run_validation(
    raw: str | Path,
    spec: dict,
    clean_out: str | Path,
    rejects_out: str | Path,
    summary_out: str | Path,
    *,
    provenance: str | Path | None = None,
    diagnostics: tuple[str | Path, str | Path] | None = None,
    exclude_tables: dict[str, str | Path] | None = None,
) -> dict:
    """Read `raw` as the spec's source describes, validate, and write clean / rejects / summary.

    `provenance` (the JSON `fetch` wrote) names the user's own file: every message starts with
    it (sources.display_name), not with the internal copy `raw`. `diagnostics`, a pair of paths
    (rejects, summary), receives copies of those two files, always: the validate rule points them
    into its log folder, which Snakemake keeps when the job fails.

    `exclude_tables` ({dataset: its clean.csv}, for the spec's `exclude` list) removes those
    datasets' molecules, each as an `excluded` reject.

    Returns the summary. Raises DataError (one line) for unreadable files, unknown columns and
    when no valid row remains (the rejects and summary are still written, and the message says
    where, for diagnosis).
    """
    from biomol_dl.hashing import sha256_file
    from biomol_dl.sources import display_name, read_options, source_format

    raw = Path(raw)
    origin = (
        json.loads(Path(provenance).read_text())
        if provenance and Path(provenance).is_file()
        else None
    )
    name = display_name(origin, raw)
    source = spec.get("source") or {}
    fmt = source_format(source) if source else raw.suffix.lstrip(".").lower()
    required = [spec["input_column"], *spec["label_columns"], *(spec.get("keep_columns") or [])]
    if spec.get("id_column"):
        required.append(spec["id_column"])
    df = read_raw_table(raw, fmt, required=required, display_name=name, **read_options(source))
    if origin and origin.get("type") == "parts":
        # The raw file is the parts concatenated by fetch: its lines are no line of a user file,
        # and the records the parts' readers could not use are listed in the provenance.
        df.attrs.pop(LINES_ATTR, None)
        df.attrs[READ_ERRORS_ATTR] = {
            int(e["row"]) - 1: (e["column"], e["value"], e["reason"])
            for e in origin.get("read_errors", [])
        }
    log.info("%s: %d rows, columns %s", name, len(df), list(df.columns))
    excluded = None
    if spec.get("exclude"):
        from biomol_dl.corpus import excluded_molecules

        tables = exclude_tables or {}
        missing = [d for d in spec["exclude"] if d not in tables]
        if missing:
            raise DataError(f"{name}: no clean table given for excluded dataset(s) {missing}")
        how = spec.get("exclude_match") or "inchikey"
        excluded = excluded_molecules({d: tables[d] for d in spec["exclude"]}, how)
    clean, rejects, summary = validate_table(df, spec, source_name=name, excluded=excluded)
    if spec.get("exclude"):
        summary["exclude"] = {
            "datasets": list(spec["exclude"]),
            "match": spec.get("exclude_match") or "inchikey",
            "removed": int(summary["by_reason"].get("excluded", 0)),
        }
    summary["source"] = {"name": name, "file": str(raw), "format": fmt, "sha256": sha256_file(raw)}
    if origin:
        summary["source"].update(origin=origin.get("origin"), type=origin.get("type"))

    targets = [(rejects_out, summary_out)] + ([diagnostics] if diagnostics else [])
    for rejects_path, summary_path in targets:
        for path in (rejects_path, summary_path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        rejects.to_csv(rejects_path, index=False)
        Path(summary_path).write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    if summary["kept"] == 0:
        top = ", ".join(f"{k} {v}" for k, v in Counter(summary["by_reason"]).most_common(3))
        example = ""
        if len(rejects):
            first = rejects.iloc[0]
            where = _where(int(first["row"]), first["line"])
            example = f"; {where}, column {first['column']!r}: {first['reason']}"
        kept_at = diagnostics or (rejects_out, summary_out)
        raise DataError(
            f"{name}: no valid rows remain: all {summary['rows_in']} rejected ({top}){example}; "
            f"every reason is in {kept_at[0]} (summary: {kept_at[1]})"
        )
    Path(clean_out).parent.mkdir(parents=True, exist_ok=True)
    _for_csv(clean, spec["task"], summary["label_columns"]).to_csv(clean_out, index=False)
    log.info(
        "wrote %s (%d rows) and %s (%d rows)", clean_out, len(clean), rejects_out, len(rejects)
    )
    return summary


def _where(row: int, line: Any) -> str:
    """`data row 3 (file line 5)`; only the data row where the file line is unknown."""
    if line is None or pd.isna(line):
        return f"data row {row}"
    return f"data row {row} (file line {int(line)})"


def _for_csv(clean: pd.DataFrame, task: str, label_columns: list[str]) -> pd.DataFrame:
    """Missing multitask labels are written as empty cells and present ones as 0/1, not 0.0/1.0."""
    if task != "multitask_binary":
        return clean
    out = clean.copy()
    for name in label_columns:
        out[name] = out[name].astype("Int64")
    return out


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
