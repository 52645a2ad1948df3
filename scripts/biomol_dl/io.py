"""Read a raw table (CSV, TSV or FASTA) into a DataFrame of strings, with one-line errors.

For the `validate` rule and for `sources` (which concatenates multi-part sources). Every cell comes
back as a `str`, exactly as written in the file: nothing is converted to a number and nothing is
turned into NaN, so validation sees what the user wrote and can name it in a rejects row. Which
cells count as a *missing label* is decided in one place, `is_missing` (see MISSING_VALUES).

Every failure raises `DataError` with a one-line message that starts with the file's name.

Header-less files (modlAMP's AMPvsUniProt.csv starts with the line `5200,1,UniProt,AMP`, a count
and the class names, not column names) are read with source options:

    header: false          # no header line; columns come from `columns` (else column_1, ...)
    skip_rows: 1           # lines skipped before anything else (the header or the first data row)
    columns: [sequence, label]

`header: true` (the default) reads column names from the first line after `skip_rows`; an integer
`header: n` is the same as `skip_rows: n, header: true`. With a header, `columns` renames the
columns (same count). Row numbers (`row`, 1-based) always count data rows, not file lines: a quoted
cell that spans two lines (B3DB has two) is still one row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

FORMATS = ("csv", "tsv", "fasta")

# A label cell is missing when, stripped and lower-cased, it is one of these. "0" and "none" are
# real values for some datasets and are deliberately not in the list.
MISSING_VALUES = frozenset({"", "na", "nan", "n/a"})

_DELIMITERS = {"csv": ",", "tsv": "\t"}


class DataError(ValueError):
    """A problem with input data: the message is one line and starts with the file's name."""


def is_missing(value: object) -> bool:
    """True for an empty cell or a conventional missing marker (NA, nan, N/A; any case)."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value  # NaN
    return str(value).strip().lower() in MISSING_VALUES


def read_text(path: str | Path, display_name: str | None = None) -> str:
    """The file's text, decoded as UTF-8 (a BOM is dropped); DataError if missing, empty or not UTF-8."""
    path = Path(path)
    name = display_name or str(path)
    if not path.exists():
        raise DataError(f"{name}: file not found")
    if path.is_dir():
        raise DataError(f"{name}: is a folder, not a file")
    data = path.read_bytes()
    if not data.strip():
        raise DataError(f"{name}: empty file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.start + 1].hex()
        raise DataError(
            f"{name}: not UTF-8 text (byte 0x{bad} at offset {err.start}, line {line}); "
            "re-save the file as UTF-8"
        ) from None


def read_raw_table(
    path: str | Path,
    fmt: str,
    *,
    header: bool | int = True,
    skip_rows: int = 0,
    columns: Sequence[str] | None = None,
    required: Sequence[str] = (),
    display_name: str | None = None,
) -> pd.DataFrame:
    """Read `path` as `fmt` (csv | tsv | fasta) into a DataFrame whose cells are all `str`.

    `required` names the columns the caller needs (input, id, labels, ...): a missing one raises
    DataError naming it and listing the available columns, and a file that parsed into a single
    column while several were required is reported as a probable wrong delimiter. FASTA records
    become rows with columns `id`, `sequence` and one column per `key=value` pair in the header
    line (">P1 label=0.5 split=train"); header/skip_rows/columns do not apply to FASTA.
    """
    name = display_name or str(path)
    if fmt not in FORMATS:
        raise DataError(f"{name}: unsupported format {fmt!r}; supported: {', '.join(FORMATS)}")
    text = read_text(path, name)
    if fmt == "fasta":
        df = _read_fasta(text, name)
    else:
        df = _read_delimited(text, name, fmt, header=header, skip_rows=skip_rows, columns=columns)
    _check_columns(df, required, name, fmt)
    return df


def _read_delimited(
    text: str,
    name: str,
    fmt: str,
    *,
    header: bool | int,
    skip_rows: int,
    columns: Sequence[str] | None,
) -> pd.DataFrame:
    if isinstance(header, bool):
        header_line = 0 if header else None
    elif isinstance(header, int) and header >= 0:
        skip_rows, header_line = skip_rows + header, 0
    else:
        raise DataError(
            f"{name}: option header must be true, false or a line number, got {header!r}"
        )
    if not isinstance(skip_rows, int) or skip_rows < 0:
        raise DataError(f"{name}: option skip_rows must be a whole number >= 0, got {skip_rows!r}")
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=_DELIMITERS[fmt],
            header=header_line,
            skiprows=skip_rows,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
            quoting=csv.QUOTE_MINIMAL,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: no rows left after skipping {skip_rows} line(s)") from None
    except pd.errors.ParserError as err:
        detail = " ".join(str(err).split())
        raise DataError(f"{name}: cannot parse as {fmt.upper()}: {detail}") from None
    if header_line is None:
        df.columns = [f"column_{i + 1}" for i in range(df.shape[1])]
    if columns is not None:
        columns = [str(c) for c in columns]
        if len(columns) != df.shape[1]:
            raise DataError(
                f"{name}: option columns names {len(columns)} column(s) "
                f"({', '.join(columns)}) but the file has {df.shape[1]}"
            )
        df.columns = columns
    if columns is not None or header_line is None:
        names = list(df.columns)
    else:
        names = _header_names(text, fmt, skip_rows)
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        raise DataError(f"{name}: duplicate column name(s): {', '.join(map(repr, duplicated))}")
    if df.empty:
        raise DataError(f"{name}: no data rows (only a header line)")
    # Short rows are padded by pandas with NaN; they are empty cells to everything downstream.
    return df.fillna("").astype(str)


def _header_names(text: str, fmt: str, skip_rows: int) -> list[str]:
    """The header's names as written (pandas renames a repeated `a` to `a.1` silently)."""
    rest = text.split("\n", skip_rows)[-1] if skip_rows else text
    return next(csv.reader(io.StringIO(rest), delimiter=_DELIMITERS[fmt]), [])


def _read_fasta(text: str, name: str) -> pd.DataFrame:
    from Bio import SeqIO

    first = text.lstrip()[:1]
    if first != ">":
        raise DataError(
            f"{name}: not FASTA: the first non-blank character is {first!r}, expected '>'"
        )
    rows: list[dict[str, str]] = []
    try:
        for record in SeqIO.parse(io.StringIO(text), "fasta"):
            row = {"id": record.id, "sequence": str(record.seq)}
            for key, value in _header_fields(record.description, record.id).items():
                if key in row:
                    raise DataError(
                        f"{name}: record {len(rows) + 1} ({record.id}): header key {key!r} "
                        "clashes with the id/sequence columns"
                    )
                row[key] = value
            rows.append(row)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        detail = " ".join(str(err).split())
        raise DataError(f"{name}: cannot parse as FASTA: {detail}") from None
    if not rows:
        raise DataError(f"{name}: no FASTA records")
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return pd.DataFrame(rows, columns=keys, dtype=str).fillna("")


def _header_fields(description: str, record_id: str) -> dict[str, str]:
    """`key=value` pairs after the id; a value runs until the next `key=` (UniProt's "OS=Homo
    sapiens" keeps its space). Free text before the first pair goes to `description`."""
    rest = description[len(record_id) :].strip() if description.startswith(record_id) else ""
    fields: dict[str, str] = {}
    free: list[str] = []
    key = None
    for token in rest.split():
        k, sep, v = token.partition("=")
        if sep and k and k.replace("_", "").replace("-", "").isalnum():
            key = k
            fields[key] = v
        elif key is None:
            free.append(token)
        else:
            fields[key] = f"{fields[key]} {token}"
    if free:
        fields = {"description": " ".join(free), **fields}
    return fields


def _check_columns(df: pd.DataFrame, required: Sequence[str], name: str, fmt: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return
    available = ", ".join(map(repr, df.columns))
    n_needed = len(set(required))
    if df.shape[1] == 1 and n_needed > 1 and fmt != "fasta":
        only = str(df.columns[0])
        hint = next(
            (
                f"; the header contains {label}: is the file {kind}?"
                for sep, label, kind in (
                    ("\t", "tabs", "tab-separated (format: tsv)"),
                    (",", "commas", "comma-separated (format: csv)"),
                    (";", "semicolons", "semicolon-separated"),
                )
                if sep in only and sep != _DELIMITERS[fmt]
            ),
            "",
        )
        raise DataError(
            f"{name}: wrong delimiter? only 1 column found as {fmt.upper()} while {n_needed} "
            f"expected ({', '.join(map(repr, required))}){hint}"
        )
    raise DataError(
        f"{name}: unknown column {missing[0]!r}"
        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        + f"; available: {available}"
    )
