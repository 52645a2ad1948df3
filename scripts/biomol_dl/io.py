"""Read a raw table (CSV, TSV or FASTA) into a DataFrame of strings, with one-line errors; and
read the workflow's own tables (clean, split, predictions, rejects) with ids kept as strings.

For the `validate` rule, `sources` (which concatenates multi-part sources) and `predict`. Every
raw cell comes back as a `str`, exactly as written in the file: nothing is converted to a number
and nothing is turned into NaN, so validation sees what the user wrote and can name it in a
rejects row. Which cells count as a *missing label* is decided in one place, `is_missing` (see
MISSING_VALUES).

Every failure raises `DataError` with a one-line message that starts with the file's name (the
caller's `display_name`: the user's own path, URL or package resource, not an internal copy) and,
where the problem sits on a line, the 1-based file line.

What a raw file may look like:

  encoding   UTF-8, with or without a byte-order mark. UTF-16 / UTF-32 (recognised by their
             byte-order mark), other encodings and NUL bytes are one-line errors.
  newlines   LF, CRLF and old-Mac CR-only are all read; they are normalised to LF first (a CR
             inside a quoted cell becomes LF too).
  CSV / TSV  comma / tab separated, `"` quoting as written by Excel and pandas (`""` inside a
             quoted cell is one quote). Every data row must have as many fields as the header:
             a trailing delimiter, a missing field or a row written with another delimiter is an
             error naming the first such line and both field counts (nothing is padded or
             shifted). A quote left open to the end of the file or text after a closing quote is
             an error naming its line. Blank (or whitespace-only) lines are skipped. Header names
             are used as written; a repeated name is an error, an empty one is called
             `column_<k>`.
  FASTA      records start with `>`; the id is the first word of the header line and `key=value`
             pairs after it become columns (see `_header_fields`). Sequence lines are joined with
             their surrounding whitespace removed (line breaks are the format); whitespace inside
             a line stays in the sequence, for validation to reject. A record without sequence
             lines is kept with an empty sequence (validation rejects it: empty_input); `>` alone
             is a record with an empty id. Text before the first `>` is an error.

Header-less files (modlAMP's AMPvsUniProt.csv starts with the line `5200,1,UniProt,AMP`, a count
and the class names, not column names) are read with source options:

    header: false          # no header line; columns come from `columns` (else column_1, ...)
    skip_rows: 1           # lines skipped before anything else (the header or the first data row)
    columns: [sequence, label]

`header: true` (the default) reads column names from the first line after `skip_rows`; an integer
`header: n` is the same as `skip_rows: n, header: true`. With a header, `columns` renames the
columns (same count). Row numbers (`row`, 1-based) always count data rows, not file lines: a quoted
cell that spans two lines (B3DB has two) is still one row. The file line on which each row starts
is kept in `df.attrs[LINES_ATTR]` (for FASTA: the record's `>` line), so that messages can name
both.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

FORMATS = ("csv", "tsv", "fasta")

# A label cell is missing when, stripped and lower-cased, it is one of these. "0" and "none" are
# real values for some datasets and are deliberately not in the list.
MISSING_VALUES = frozenset({"", "na", "nan", "n/a"})

# df.attrs key of read_raw_table's result: the 1-based file line on which each data row starts.
LINES_ATTR = "lines"

# Columns of the workflow's own tables that always hold names, never numbers (read_table); the
# clean table reserves them, so no label column has these names.
STRING_COLUMNS = ("id", "input")

_DELIMITERS = {"csv": ",", "tsv": "\t"}
_OTHER_DELIMITERS = (  # (delimiter, its name, what a file separated by it is)
    ("\t", "tabs", "tab-separated (format: tsv)"),
    (",", "commas", "comma-separated (format: csv)"),
    (";", "semicolons", "semicolon-separated"),
)
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "UTF-32 BE"),
    (codecs.BOM_UTF16_LE, "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "UTF-16 BE"),
)


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
    """The file's text, decoded as UTF-8 (a BOM is dropped) with newlines normalised to LF.

    DataError if the file is missing, empty, UTF-16/32, not UTF-8 or contains a NUL byte.
    """
    path = Path(path)
    name = display_name or str(path)
    if not path.exists():
        raise DataError(f"{name}: file not found")
    if path.is_dir():
        raise DataError(f"{name}: is a folder, not a file")
    data = path.read_bytes()
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise DataError(
                f"{name}: the file is {encoding} text (byte-order mark {bom.hex(' ').upper()}); "
                "re-save it as UTF-8"
            )
    if not data.strip():
        raise DataError(f"{name}: empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n")
        bad = data[err.start : err.start + 1].hex()
        raise DataError(
            f"{name}: not UTF-8 text (byte 0x{bad} at offset {err.start}, line {line + 1}); "
            "re-save the file as UTF-8"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    nul = text.find("\x00")
    if nul >= 0:
        line_start = text.rfind("\n", 0, nul) + 1
        share = text.count("\x00") / len(text)
        hint = " (every other byte: UTF-16 without a byte-order mark?)" if share > 0.2 else ""
        raise DataError(
            f"{name}: line {text.count(chr(10), 0, nul) + 1}, character {nul - line_start + 1}: "
            f"NUL byte{hint}; a text table cannot contain one, re-save the file as UTF-8 text"
        )
    return text


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
    `display_name` is the name every message uses (default: `path`). The result's
    `attrs[LINES_ATTR]` lists the file line on which each row starts.
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
        has_header = header
    elif isinstance(header, int) and header >= 0:
        skip_rows, has_header = skip_rows + header, True
    else:
        raise DataError(
            f"{name}: option header must be true, false or a line number, got {header!r}"
        )
    if not isinstance(skip_rows, int) or isinstance(skip_rows, bool) or skip_rows < 0:
        raise DataError(f"{name}: option skip_rows must be a whole number >= 0, got {skip_rows!r}")
    records = _records(text, name, fmt, skip_rows)
    if not records:
        raise DataError(f"{name}: no rows left after skipping {skip_rows} line(s)")
    if has_header:
        header_line, names = records[0]
        names = [n if n else f"column_{k + 1}" for k, n in enumerate(names)]
        records = records[1:]
        if not records:
            raise DataError(f"{name}: no data rows (only a header line)")
        reference = f"the header (line {header_line})"
    else:
        header_line, first = records[0]
        names = [f"column_{k + 1}" for k in range(len(first))]
        reference = f"the first row (line {header_line})"
    if columns is not None:
        columns = [str(c) for c in columns]
        if len(columns) != len(names):
            raise DataError(
                f"{name}: option columns names {len(columns)} column(s) "
                f"({', '.join(columns)}) but the file has {len(names)}"
            )
        names = columns
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        raise DataError(f"{name}: duplicate column name(s): {', '.join(map(repr, duplicated))}")
    _check_field_counts(records, names, reference, name, fmt)
    df = pd.DataFrame([fields for _, fields in records], columns=names, dtype=object)
    df.attrs[LINES_ATTR] = [line for line, _ in records]
    return df


def _records(text: str, name: str, fmt: str, skip_rows: int) -> list[tuple[int, list[str]]]:
    """(first file line, fields) of every non-blank record after `skip_rows` lines."""
    body = text.split("\n", skip_rows)[-1] if skip_rows else text
    if skip_rows and text.count("\n") < skip_rows:
        body = ""
    reader = csv.reader(io.StringIO(body), delimiter=_DELIMITERS[fmt], strict=True)
    records: list[tuple[int, list[str]]] = []
    end = 0  # last line consumed by the reader
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if len(fields) > 1 or (fields and fields[0].strip()):
                records.append((start + skip_rows, fields))
    except csv.Error as err:
        start, failed = end + 1 + skip_rows, reader.line_num + skip_rows
        if "unexpected end of data" in str(err):
            detail = (
                f"line {start}: a quoted field opened on this line is never closed (the '\"' "
                "runs to the end of the file)"
            )
        elif "expected after" in str(err):
            detail = (
                f"line {failed}: text after the closing quote of a quoted field (write a quote "
                'inside a quoted field as "")'
            )
        else:
            detail = f"line {failed}: {' '.join(str(err).split())}"
        raise DataError(f"{name}: cannot parse as {fmt.upper()}: {detail}") from None
    return records


def _other_delimiter(fields: Sequence[str], fmt: str) -> tuple[str, str] | None:
    """(name, kind) of the first other delimiter found in `fields`, e.g. ("tabs", "tab-...")."""
    for sep, label, kind in _OTHER_DELIMITERS:
        if sep != _DELIMITERS[fmt] and any(sep in f for f in fields):
            return label, kind
    return None


def _check_field_counts(
    records: list[tuple[int, list[str]]], names: list[str], reference: str, name: str, fmt: str
) -> None:
    """Every row has as many fields as `names`: pandas would shift or pad the others silently."""
    expected = len(names)
    wrong = [(line, fields) for line, fields in records if len(fields) != expected]
    if not wrong:
        return
    line, fields = wrong[0]
    other = _other_delimiter(names, fmt) if expected == 1 else None
    if other:
        raise DataError(
            f"{name}: wrong delimiter? {reference} is 1 column as {fmt.upper()} but contains "
            f"{other[0]}: is the file {other[1]}?"
        )
    hint = ""
    if len(fields) > expected and not any(f.strip() for f in fields[expected:]):
        hint = " (a trailing delimiter?)"
    elif other := _other_delimiter(fields, fmt):
        hint = f" (it contains {other[0]}: mixed delimiters?)"
    more = f"; {len(wrong) - 1} more line(s) differ" if len(wrong) > 1 else ""
    raise DataError(
        f"{name}: line {line} has {len(fields)} field(s) but {reference} has {expected}{hint}"
        f"{more}; nothing is padded or shifted, fix the file"
    )


def _read_fasta(text: str, name: str) -> pd.DataFrame:
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    sequence: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith(">"):
            if rows:
                rows[-1]["sequence"] = "".join(sequence)
            sequence = []
            title = line[1:].strip()
            record_id = title.split(None, 1)[0] if title else ""
            row = {"id": record_id, "sequence": ""}
            for key, value in _header_fields(title, record_id).items():
                if key in row:
                    raise DataError(
                        f"{name}: line {number}: record {len(rows) + 1} ({record_id}): header "
                        f"key {key!r} clashes with the id/sequence columns"
                    )
                row[key] = value
            rows.append(row)
            lines.append(number)
        elif rows:
            sequence.append(line.strip())
        elif line.strip():
            raise DataError(
                f"{name}: not FASTA: line {number}: the first non-blank character is "
                f"{line.strip()[0]!r}, expected '>'"
            )
    if not rows:
        raise DataError(f"{name}: no FASTA records")
    rows[-1]["sequence"] = "".join(sequence)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    df = pd.DataFrame(rows, columns=keys, dtype=object).fillna("")
    df.attrs[LINES_ATTR] = lines
    return df


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
        other = _other_delimiter([str(df.columns[0])], fmt)
        hint = f"; the header contains {other[0]}: is the file {other[1]}?" if other else ""
        raise DataError(
            f"{name}: wrong delimiter? only 1 column found as {fmt.upper()} while {n_needed} "
            f"expected ({', '.join(map(repr, required))}){hint}"
        )
    padded = next((str(c) for c in df.columns if str(c).strip() == missing[0]), None)
    hint = f" (the header has {padded!r}: remove the spaces around the name)" if padded else ""
    raise DataError(
        f"{name}: unknown column {missing[0]!r}"
        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        + f"; available: {available}{hint}"
    )


def read_table(path: str | Path, *, strings: Iterable[str] = ()) -> pd.DataFrame:
    """A table the workflow wrote (clean.csv, split/seed<N>.csv, predictions.csv, rejects.csv).

    Ids and inputs are names, never numbers or missing markers: the columns in STRING_COLUMNS and
    `strings` (e.g. "split", "task" of a predictions table) are read as `str` exactly as written
    (ids "NA", "nan", "None", "null", "1e3", "007" survive; an empty cell is ""). Every other
    column is parsed by pandas with only an empty cell as NaN, so labels and predictions are
    numbers, NaN where missing, and a text column stays text. No column becomes the index.
    """
    text_columns = [*STRING_COLUMNS, *strings]
    table = pd.read_csv(
        path,
        dtype=dict.fromkeys(text_columns, str),
        keep_default_na=False,
        na_values=[""],
        index_col=False,
    )
    for column in table.columns.intersection(text_columns):
        table[column] = table[column].fillna("")
    return table
