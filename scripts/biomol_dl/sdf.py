"""SD files (SDF, V2000 or V3000 mol blocks) -> a table of strings, one row per record.

Records end at a `$$$$` line (the last one may omit it). Each row has
  id        the record's title (the mol block's first line, stripped; may be empty),
  smiles    canonical isomeric SMILES that RDKit writes from the mol block (Chem.MolFromMolBlock,
            sanitized, hydrogens removed, stereo from the block / 3D coordinates) -- or, with the
            source option `smiles_property: NAME`, the text of that data item as written, and the
            mol block is not read at all,
  <items>   one column per data item (`> <NAME>` header, value up to the blank line; several
            value lines are joined with a newline), in the order first seen; a record without
            an item has "" there (a missing label). An item named `id` or `smiles` (the
            reader's own columns) becomes the column `item_id` / `item_smiles`.
A record whose mol block RDKit cannot read (or that has no `M  END` line, or no atoms) keeps its
row, with an empty `smiles`, and is listed in `attrs[READ_ERRORS_ATTR]` with its record number,
the file line on which it starts and RDKit's reason (`invalid_molblock`), so validation rejects
that row and counts it; nothing is dropped. The file line of each record is `attrs[LINES_ATTR]`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator

import pandas as pd

from biomol_dl.io import DataError

_ITEM = re.compile(r"^>.*?<([^>]*)>")
_OWN = ("id", "smiles")


def _records(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(first file line, lines) of each record; blank space between records is skipped."""
    current, start = [], 1
    for number, line in enumerate(lines, 1):
        if line.rstrip() == "$$$$":
            yield start, current
            current, start = [], number + 1
        else:
            current.append(line)
    if any(line.strip() for line in current):
        yield start, current


def _items(lines: list[str]) -> dict[str, str]:
    """The data items after `M  END`: {name: value}."""
    items: dict[str, str] = {}
    k = 0
    while k < len(lines):
        match = _ITEM.match(lines[k])
        k += 1
        if not match:
            continue
        values = []
        while k < len(lines) and lines[k].strip():
            values.append(lines[k].rstrip())
            k += 1
        items.setdefault(match[1].strip(), "\n".join(values))
    return items


def read_sdf(text: str, name: str, *, smiles_property: str | None = None) -> pd.DataFrame:
    """Parse SD `text` (LF newlines) into rows (see the module doc)."""
    from biomol_dl.io import concat_chunks, iter_record_chunks

    records = iter_sdf(text.split("\n"), name, smiles_property=smiles_property)
    return concat_chunks(list(iter_record_chunks(records)))


def iter_sdf(
    lines: Iterable[str], name: str, *, smiles_property: str | None = None
) -> Iterator[tuple[int, dict[str, str], tuple[str, str, str] | None]]:
    """(file line, row, read error or None) of each record of SD `lines`, as they are read; the
    first 50 records are looked at for an `M  END` line before any is handed out."""
    from rdkit import Chem, rdBase

    records = _records(lines)
    first = list(itertools.islice(records, 50))
    if not any("M  END" in ln for _, block in first for ln in block):
        raise DataError(f"{name}: not an SD file: no record has an 'M  END' line")
    for number, (start, block) in enumerate(itertools.chain(first, records), 1):
        rows: list[dict[str, str]] = []
        errors: dict[int, tuple[str, str, str]] = {}
        with rdBase.BlockLogs():  # warnings off; the record's errors are captured
            _read_record(Chem, rdBase, number, start, block, smiles_property, rows, errors)
        yield start, rows[0], errors.get(0)


def _read_record(Chem, rdBase, number, start, lines, smiles_property, rows, errors) -> None:
    """Append record `number` (lines from file line `start`) to `rows`; a failure to `errors`."""
    end = next((k for k, ln in enumerate(lines) if ln.rstrip() == "M  END"), None)
    block = lines[: end + 1] if end is not None else lines
    items = _items(lines[end + 1 :]) if end is not None else {}
    title = block[0].strip() if block else ""
    row = {"id": title, "smiles": ""}
    where = f"record {number} (line {start})"
    if smiles_property is not None:
        row["smiles"] = items.get(smiles_property, "")
    elif end is None:
        errors[len(rows)] = ("mol block", title, f"invalid_molblock: {where}: no 'M  END' line")
    else:
        failure = ""
        with rdBase.CaptureErrorLog() as capture:
            try:
                mol = Chem.MolFromMolBlock("\n".join(block) + "\n", sanitize=True, removeHs=True)
            except (RuntimeError, ValueError) as err:  # some parse errors raise instead
                mol, failure = None, " ".join(str(err).split())
        if mol is None:
            detail = _message(capture.messages) or failure[:200]
            errors[len(rows)] = (
                "mol block",
                title,
                f"invalid_molblock: {where}: RDKit could not read it"
                + (f": {detail}" if detail else " (it gave no reason)"),
            )
        elif mol.GetNumAtoms() == 0:
            errors[len(rows)] = ("mol block", title, f"empty_molecule: {where}: no atoms")
        else:
            row["smiles"] = Chem.MolToSmiles(mol)
    for key, value in items.items():
        if key in _OWN:
            if key == smiles_property:
                continue  # it is the smiles column already
            key = f"item_{key}"
        row.setdefault(key, value)
    rows.append(row)


_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")
_NOISE = re.compile(
    r"^(\*+|-+|Stacktrace:|\d+# .*|Violation occurred .*|Failed Expression: .*|"
    r"(Pre|Post)-condition Violation|Invariant Violation)$"
)


def _message(text: str) -> str:
    """RDKit's message without time stamps, and without the stack trace an invariant violation
    (an unknown element) logs."""
    lines = [_STAMP.sub("", ln).strip() for ln in text.splitlines()]
    unique = list(dict.fromkeys(ln for ln in lines if ln and not _NOISE.match(ln)))
    return "; ".join(unique)[:200]
