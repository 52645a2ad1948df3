"""Read a raw table (CSV, TSV, FASTA, SDF or Parquet; plain or compressed) into a DataFrame of
strings, with one-line errors; and read the workflow's own tables (clean, split, predictions,
rejects) with ids kept as strings.

For the `validate` rule, `sources` (which concatenates multi-part sources) and `predict`. Every
raw cell comes back as a `str`, exactly as written in the file: nothing is converted to a number
and nothing is turned into NaN, so validation sees what the user wrote and can name it in a
rejects row. Which cells count as a *missing label* is decided in one place, `is_missing` (see
MISSING_VALUES).

Every failure raises `DataError` with a one-line message that starts with the file's name (the
caller's `display_name`: the user's own path, URL or package resource, not an internal copy) and,
where the problem sits on a line, the 1-based file line.

What a raw file may look like:

  compression  gzip, bz2, xz or a zip holding one file, recognised by the first bytes (never by
             the name) and removed before anything else (`read_bytes`); a corrupt or truncated
             archive, a zip of several files (use the source option `member`) and a tar archive
             are one-line errors.
  format     given by the caller, else `detect_format`: the name's extension after any
             compression extension (EXTENSIONS; a known unsupported one such as .xlsx or .json
             is an error naming it), else the content (`sniff_format`). Content that is clearly
             another format than the one asked for (Parquet, SDF or FASTA read as CSV; an Excel
             workbook; HDF5, SQLite, PDF) is an error naming what it is.
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
  FASTA      records start with `>`; the header line becomes `id` and columns as the option
             `fasta_header` says (biomol_dl.fasta: key=value, uniprot, fields, a regex); a
             header that does not fit is a read error of that record (see READ_ERRORS_ATTR).
  SDF        one row per record: `id`, `smiles` from the mol block, one column per data item
             (biomol_dl.sdf); a record RDKit cannot read is a read error of that record.
  Parquet    flat columns as strings (pyarrow); a null or NaN is "".

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

import bz2
import codecs
import csv
import gzip
import io
import lzma
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

FORMATS = ("csv", "tsv", "fasta", "sdf", "parquet")

# A label cell is missing when, stripped and lower-cased, it is one of these. "0" and "none" are
# real values for some datasets and are deliberately not in the list.
MISSING_VALUES = frozenset({"", "na", "nan", "n/a"})

# df.attrs key of read_raw_table's result: the 1-based file line on which each data row starts.
LINES_ATTR = "lines"
# df.attrs key: {0-based row: (column, value, reason)} for records that were read but cannot be
# used (an SDF mol block RDKit cannot read, a FASTA header that does not match its pattern);
# validation turns each into a rejects row, so nothing is dropped silently.
READ_ERRORS_ATTR = "read_errors"

# File name extensions -> format (after a compression extension is removed).
EXTENSIONS = {
    "csv": "csv", "tsv": "tsv", "tab": "tsv", "fasta": "fasta", "fa": "fasta", "faa": "fasta",
    "fas": "fasta", "sdf": "sdf", "sd": "sdf", "parquet": "parquet", "pq": "parquet",
}  # fmt: skip
COMPRESSION_EXTENSIONS = ("gz", "gzip", "bz2", "xz", "zip")
# Extensions of formats people try that are not tables this reader takes, with what they are.
UNSUPPORTED = {
    "xlsx": "an Excel workbook (export the sheet as CSV)",
    "xls": "an Excel workbook (export the sheet as CSV)",
    "json": "JSON (write it as CSV or Parquet)",
    "h5": "HDF5", "hdf5": "HDF5", "sqlite": "an SQLite database", "db": "a database",
    "pkl": "a Python pickle", "pickle": "a Python pickle", "npy": "a NumPy array",
    "npz": "NumPy arrays", "feather": "Arrow/Feather (write it as Parquet)",
    "smi": "a SMILES file (give format: csv or tsv, with header: false and columns)",
    "mol2": "Tripos MOL2 (convert it to SDF)", "pdb": "a PDB structure",
    "tar": "a tar archive (extract the table first)",
}  # fmt: skip
# Leading bytes of compressions (read through) and of binary formats (named in the error).
_COMPRESSION_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
)
_BINARY_MAGIC = (
    (b"PAR1", "parquet", "Parquet"),
    (b"(\xb5/\xfd", "zstd", "zstd-compressed (decompress it first, or use gzip)"),
    (b"\x89HDF", "hdf5", "HDF5"),
    (b"SQLite format 3\x00", "sqlite", "an SQLite database"),
    (b"%PDF", "pdf", "a PDF document"),
    (b"\xd0\xcf\x11\xe0", "xls", "an Excel 97-2003 workbook (export the sheet as CSV)"),
    (b"\x93NUMPY", "npy", "a NumPy array"),
    (b"ARROW1", "feather", "Arrow/Feather (write it as Parquet)"),
)
_SNIFF_BYTES = 1 << 16

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


def read_bytes(path: str | Path, display_name: str | None = None) -> tuple[bytes, str | None]:
    """(the file's bytes with any compression removed, the compression or None).

    The compression is recognised by the first bytes (gzip, bz2, xz, zip), never by the file
    name, so `hiv.csv.gz`, a gzip file called `x.csv` and a plain `x.gz` are all read. A zip
    must hold exactly one file (else name it with the source option `member`). DataError for a
    missing file, a folder or a corrupt / truncated archive.
    """
    path = Path(path)
    name = display_name or str(path)
    if not path.exists():
        raise DataError(f"{name}: file not found")
    if path.is_dir():
        raise DataError(f"{name}: is a folder, not a file")
    return decompress(path.read_bytes(), name)


def compression_of(path: str | Path) -> str | None:
    """gzip | bz2 | xz | zip from a file's first bytes, else None."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    return next((k for magic, k in _COMPRESSION_MAGIC if head.startswith(magic)), None)


def read_head(path: str | Path, display_name: str | None = None, size: int = _SNIFF_BYTES) -> bytes:
    """The first `size` decompressed bytes of a file, without reading all of it (for sniffing
    the format when a workflow is planned)."""
    name = display_name or str(path)
    kind = compression_of(path)
    try:
        if kind == "gzip":
            with gzip.open(path, "rb") as handle:
                return handle.read(size)
        if kind == "bz2":
            with bz2.open(path, "rb") as handle:
                return handle.read(size)
        if kind == "xz":
            with lzma.open(path, "rb") as handle:
                return handle.read(size)
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise DataError(f"{name}: {kind}-compressed, but the data is corrupt ({err})") from None
    if kind == "zip":
        return decompress(Path(path).read_bytes(), name)[0][:size]
    with open(path, "rb") as handle:
        return handle.read(size)


def decompress(data: bytes, name: str) -> tuple[bytes, str | None]:
    """`data` with its compression (recognised by content) removed, and the compression's name."""
    found: list[str] = []
    for _ in range(3):  # a .tar.gz is no table, but a zip of a .gz is still one file
        kind = next((k for magic, k in _COMPRESSION_MAGIC if data.startswith(magic)), None)
        if kind is None:
            break
        found.append(kind)
        try:
            if kind == "gzip":
                data = gzip.decompress(data)
            elif kind == "bz2":
                data = bz2.decompress(data)
            elif kind == "xz":
                data = lzma.decompress(data)
            else:
                data = _only_zip_member(data, name)
        except (OSError, EOFError, lzma.LZMAError, ValueError, zipfile.BadZipFile) as err:
            detail = " ".join(str(err).split()) or type(err).__name__
            raise DataError(
                f"{name}: {kind}-compressed, but the data is corrupt or truncated ({detail})"
            ) from None
    if len(data) > 262 and data[257:262] == b"ustar":
        raise DataError(f"{name}: a tar archive, not a table; extract the table from it first")
    return data, "+".join(found) or None


def _only_zip_member(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = [n for n in zf.namelist() if not n.endswith("/")]
        if "[Content_Types].xml" in files and any(n.startswith("xl/") for n in files):
            raise DataError(
                f"{name}: unsupported format 'xlsx' (an Excel workbook); supported: "
                f"{', '.join(FORMATS)}; export the sheet as CSV"
            )
        if len(files) != 1:
            shown = ", ".join(files[:12]) + (" ..." if len(files) > 12 else "")
            raise DataError(
                f"{name}: a zip archive with {len(files)} files ({shown or 'none'}); name the one "
                "to read with the source option `member`"
            )
        return zf.read(files[0])


def format_from_name(name: str | Path) -> str | None:
    """The format a file name's extension says (`hiv.csv.gz` -> csv), else None; an extension of
    a known unsupported format (xlsx, json, ...) raises DataError naming it."""
    parts = [p.lower() for p in PurePosixPath(str(name)).name.split(".")[1:]]
    while parts and parts[-1] in COMPRESSION_EXTENSIONS:
        parts.pop()
    if not parts:
        return None
    ext = parts[-1]
    if ext in UNSUPPORTED:
        raise DataError(
            f"{name}: unsupported format {ext!r} ({UNSUPPORTED[ext]}); supported: "
            f"{', '.join(FORMATS)}"
        )
    return EXTENSIONS.get(ext)


def sniff_format(data: bytes, name: str) -> str:
    """The format of decompressed `data` from its content: parquet by its magic bytes, fasta
    when the first non-blank character is `>`, sdf when the fourth line is a V2000/V3000 counts
    line (or an `M  END` line comes early), tsv when the first line has tabs and no commas, else
    csv. A binary format that is not a table (HDF5, SQLite, PDF, ...) raises DataError."""
    for magic, fmt, what in _BINARY_MAGIC:
        if data.startswith(magic):
            if fmt in FORMATS:
                return fmt
            raise DataError(
                f"{name}: unsupported format {fmt!r} (the content is {what}); supported: "
                f"{', '.join(FORMATS)}"
            )
    head = data[:_SNIFF_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")
    head = head.replace("\r\n", "\n").replace("\r", "\n")
    if head.lstrip().startswith(">"):
        return "fasta"
    lines = head.split("\n")
    if len(lines) > 3 and re.search(r"V[23]000\s*$", lines[3]) or "\nM  END" in head:
        return "sdf"
    first = next((ln for ln in lines if ln.strip()), "")
    return "tsv" if "\t" in first and "," not in first else "csv"


def detect_format(path: str | Path, display_name: str | None = None) -> str:
    """A file's format: from its name (a compression extension is skipped), else its content."""
    name = display_name or str(path)
    fmt = format_from_name(path)
    if fmt is None:
        data, _ = read_bytes(path, name)
        fmt = sniff_format(data, name)
    return fmt


def _check_content(data: bytes, fmt: str, name: str) -> None:
    """A declared (or extension-given) format against what the content clearly is."""
    found = sniff_format(data, name)
    if found == fmt or found in ("csv", "tsv") and fmt in ("csv", "tsv"):
        return
    if found in ("parquet", "fasta", "sdf") and fmt in ("csv", "tsv") or found == "parquet":
        raise DataError(
            f"{name}: the content is {found.upper()}, but it is read as {fmt.upper()} (from the "
            f"file name or `format:`); set format: {found}"
        )


def read_text(path: str | Path, display_name: str | None = None) -> str:
    """The file's text (decompressed first when gzip/bz2/xz/zip), decoded as UTF-8 (a BOM is
    dropped) with newlines normalised to LF.

    DataError if the file is missing, empty, UTF-16/32, not UTF-8 or contains a NUL byte.
    """
    name = display_name or str(path)
    data, compression = read_bytes(path, name)
    return _decode(data, name, compression)


def _decode(data: bytes, name: str, compression: str | None = None) -> str:
    inside = f" ({compression}-compressed)" if compression else ""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise DataError(
                f"{name}{inside}: the file is {encoding} text (byte-order mark "
                f"{bom.hex(' ').upper()}); re-save it as UTF-8"
            )
    if not data.strip():
        raise DataError(f"{name}{inside}: empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n")
        bad = data[err.start : err.start + 1].hex()
        raise DataError(
            f"{name}{inside}: not UTF-8 text (byte 0x{bad} at offset {err.start}, line "
            f"{line + 1}); re-save the file as UTF-8"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    nul = text.find("\x00")
    if nul >= 0:
        line_start = text.rfind("\n", 0, nul) + 1
        share = text.count("\x00") / len(text)
        hint = " (every other byte: UTF-16 without a byte-order mark?)" if share > 0.2 else ""
        raise DataError(
            f"{name}{inside}: line {text.count(chr(10), 0, nul) + 1}, character "
            f"{nul - line_start + 1}: NUL byte{hint}; a text table cannot contain one, re-save "
            "the file as UTF-8 text"
        )
    return text


def read_raw_table(
    path: str | Path,
    fmt: str | None = None,
    *,
    header: bool | int = True,
    skip_rows: int = 0,
    columns: Sequence[str] | None = None,
    required: Sequence[str] = (),
    display_name: str | None = None,
    fasta_header: Any = None,
    smiles_property: str | None = None,
) -> pd.DataFrame:
    """Read `path` as `fmt` (csv | tsv | fasta | sdf | parquet; None: `detect_format`) into a
    DataFrame whose cells are all `str`. Compression (gzip, bz2, xz, a one-file zip) is
    recognised by content and removed first, whatever the file is called.

    `required` names the columns the caller needs (input, id, labels, ...): a missing one raises
    DataError naming it and listing the available columns, and a file that parsed into a single
    column while several were required is reported as a probable wrong delimiter. FASTA records
    become rows with columns `id`, `sequence` and the header's fields (`fasta_header`, see
    `fasta.header_parser`; default: `key=value` pairs after the id). SDF records become rows with
    `id` (the title line), `smiles` (written by RDKit from the mol block, or the property named
    by `smiles_property`) and one column per data item. header/skip_rows/columns apply to CSV
    and TSV only. `display_name` is the name every message uses (default: `path`). The result's
    `attrs[LINES_ATTR]` lists the file line on which each row starts (not for Parquet), and
    `attrs[READ_ERRORS_ATTR]` the records that cannot be used, for validation to reject.
    """
    name = display_name or str(path)
    if fmt is None:
        fmt = format_from_name(path)
    data, compression = read_bytes(path, name)
    if fmt is None:
        fmt = sniff_format(data, name)
    if fmt not in FORMATS:
        raise DataError(f"{name}: unsupported format {fmt!r}; supported: {', '.join(FORMATS)}")
    _check_content(data, fmt, name)
    if fmt == "parquet":
        df = _read_parquet(data, name)
    else:
        text = _decode(data, name, compression)
        if fmt == "fasta":
            from biomol_dl.fasta import read_fasta

            df = read_fasta(text, name, fasta_header)
        elif fmt == "sdf":
            from biomol_dl.sdf import read_sdf

            df = read_sdf(text, name, smiles_property=smiles_property)
        else:
            df = _read_delimited(
                text, name, fmt, header=header, skip_rows=skip_rows, columns=columns
            )
    _check_columns(df, required, name, fmt)
    return df


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    """A Parquet file as strings: numbers written as Python writes them (1.5, 3, 1e-07), a null
    or NaN as "" (a missing value), booleans as true/false; nested columns are an error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(
            f"{name}: cannot read as Parquet ({' '.join(str(err).split())[:200]})"
        ) from None
    out: dict[str, list[str]] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_nested(field.type):
            raise DataError(
                f"{name}: column {field.name!r} is {field.type} (nested); only flat columns of "
                "numbers, strings and booleans can be read"
            )
        if field.name in out:
            raise DataError(f"{name}: duplicate column name(s): {field.name!r}")
        out[field.name] = [_parquet_cell(v) for v in column.to_pylist()]
    if not table.num_rows:
        raise DataError(f"{name}: no data rows")
    return pd.DataFrame(out, dtype=object)


def _parquet_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


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
