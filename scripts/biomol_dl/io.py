"""Read a raw table (CSV, TSV, FASTA, SDF or Parquet; plain or compressed) into a DataFrame of
strings, with one-line errors; and read the workflow's own tables (clean, split, predictions,
rejects) with ids kept as strings.

For the `validate` rule, `sources` (which concatenates multi-part sources) and `predict`. The
reader streams: `iter_raw_table` hands the table out in chunks of rows as it reads the file
(decompressing as it goes; Parquet by row batches), so `predict` holds no whole input, and
`read_raw_table` is its chunks joined, with the same values, row numbers and messages. Every
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
import itertools
import lzma
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
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
_BLOCK = 1 << 20  # bytes read at a time
CHUNK_ROWS = 20_000  # rows a chunk of iter_raw_table holds

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
    with open_stream(path, display_name) as stream:
        return stream.read_all(), stream.compression


def compression_of(path: str | Path) -> str | None:
    """gzip | bz2 | xz | zip from a file's first bytes, else None."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    return _compression(head)


def read_head(path: str | Path, display_name: str | None = None, size: int = _SNIFF_BYTES) -> bytes:
    """The first `size` decompressed bytes of a file, without reading all of it (for sniffing
    the format when a workflow is planned)."""
    with open_stream(path, display_name) as stream:
        return stream.peek(size)


def decompress(data: bytes, name: str) -> tuple[bytes, str | None]:
    """`data` with its compression (recognised by content) removed, and the compression's name."""
    with _Stream.open(io.BytesIO(data), name) as stream:
        return stream.read_all(), stream.compression


def _compression(head: bytes) -> str | None:
    return next((k for magic, k in _COMPRESSION_MAGIC if head.startswith(magic)), None)


# What a decompressor raises on corrupt or truncated data.
_CORRUPT = (OSError, EOFError, lzma.LZMAError, ValueError, zipfile.BadZipFile, zlib.error)


def _corrupt(kind: str, name: str, err: BaseException) -> DataError:
    detail = " ".join(str(err).split()) or type(err).__name__
    return DataError(f"{name}: {kind}-compressed, but the data is corrupt or truncated ({detail})")


def open_stream(path: str | Path, display_name: str | None = None) -> _Stream:
    """The file's bytes as a stream, compression (recognised by content) removed as it is read;
    DataError for a missing file, a folder, a tar archive, a zip of several files."""
    path = Path(path)
    name = display_name or str(path)
    if not path.exists():
        raise DataError(f"{name}: file not found")
    if path.is_dir():
        raise DataError(f"{name}: is a folder, not a file")
    return _Stream.open(open(path, "rb"), name)  # noqa: SIM115 (closed by the stream)


class _Stream:
    """A binary stream (a file, or what a decompressor reads from the layer below) whose first
    bytes can be looked at before they are read. A decompressor's error is a DataError naming
    the file and the compression, raised when the bad part is read."""

    def __init__(self, raw: Any, name: str, kind: str | None = None, below: _Stream | None = None):
        self.raw, self.name, self.kind, self.below = raw, name, kind, below
        self.buffer = b""
        self.compression: str | None = None

    @classmethod
    def open(cls, handle: Any, name: str) -> _Stream:
        """`handle` with up to three layers of compression removed (a zip of a .gz is still one
        file; a .tar.gz is no table)."""
        stream = cls(handle, name)
        found: list[str] = []
        try:
            for _ in range(3):
                kind = _compression(stream.peek(8))
                if kind is None:
                    break
                found.append(kind)
                try:
                    if kind == "gzip":
                        inner: Any = gzip.GzipFile(fileobj=stream, mode="rb")
                    elif kind == "bz2":
                        inner = bz2.BZ2File(stream)
                    elif kind == "xz":
                        inner = lzma.LZMAFile(stream)
                    else:
                        inner = _zip_member(stream, name)
                except _CORRUPT as err:
                    raise _corrupt(kind, name, err) from None
                stream = cls(inner, name, kind, stream)
            stream.compression = "+".join(found) or None
            head = stream.peek(263)
            if len(head) > 262 and head[257:262] == b"ustar":
                raise DataError(
                    f"{name}: a tar archive, not a table; extract the table from it first"
                )
        except BaseException:
            stream.close()
            raise
        return stream

    def _read(self, size: int) -> bytes:
        try:
            return self.raw.read(size)
        except _CORRUPT as err:
            if self.kind is None:
                raise
            raise _corrupt(self.kind, self.name, err) from None

    def peek(self, size: int) -> bytes:
        while len(self.buffer) < size:
            more = self._read(size - len(self.buffer))
            if not more:
                break
            self.buffer += more
        return self.buffer[:size]

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.read_all()
        if self.buffer:
            out, self.buffer = self.buffer[:size], self.buffer[size:]
            return out
        return self._read(size)

    def read_all(self) -> bytes:
        parts = [self.buffer]
        self.buffer = b""
        while block := self._read(_BLOCK):
            parts.append(block)
        return b"".join(parts)

    def drain(self) -> None:
        """Read to the end, so a corrupt or truncated archive is reported (as it is when the
        whole file is decompressed before anything else)."""
        self.buffer = b""
        while self._read(_BLOCK):
            pass

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        stream: _Stream | None = self
        while stream is not None:
            stream.raw.close()
            stream = stream.below

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _zip_member(stream: _Stream, name: str) -> Any:
    """The one file of a zip archive, opened for reading."""
    raw = stream.raw
    if stream.kind is None and hasattr(raw, "seek"):
        raw.seek(0)  # a file or bytes: the zip directory is read in place
        stream.buffer = b""
        source: Any = raw
    else:  # inside another compression: the archive is read into memory first
        source = io.BytesIO(stream.read_all())
    zf = zipfile.ZipFile(source)
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
    return zf.open(files[0])


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
        fmt = sniff_format(read_head(path, name), name)
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
    with open_stream(path, display_name) as stream:
        text = _Text(stream)
        out = "".join(text.blocks)
        text.finish()
    return out


class _Text:
    """A byte stream decoded as UTF-8 text, LF newlines, one block at a time, with the checks
    of a whole file: a UTF-16/32 byte-order mark at the start, invalid UTF-8 (its offset and
    line), a NUL byte (its line and character; the share of NULs in the whole text says whether
    it looks like UTF-16) and, in `finish`, a file of nothing but whitespace. A CR at the end of
    a block waits for the next one, so a CRLF split between blocks is one newline.

    The order in which problems are reported is that of a file read whole: a corrupt archive
    before anything about its text, invalid UTF-8 anywhere before a NUL byte, both before what
    the parser finds; so a UTF-8 error drains the archive first, and a NUL byte stops the text
    (nothing after it is parsed) and drains the rest before it is raised.
    """

    def __init__(self, stream: _Stream):
        self.stream, self.name = stream, stream.name
        inside = f" ({stream.compression}-compressed)" if stream.compression else ""
        self.where = f"{self.name}{inside}"
        head = stream.peek(4)
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                stream.drain()
                raise DataError(
                    f"{self.where}: the file is {encoding} text (byte-order mark "
                    f"{bom.hex(' ').upper()}); re-save it as UTF-8"
                )
        self.nonblank = False
        self.blocks = self._blocks()

    def _blocks(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        first, fed, lines, column, chars, nuls = True, 0, 0, 0, 0, 0
        carry_cr, nul = False, None  # nul: (line, character) of the first NUL byte
        while True:
            data = self.stream.read(_BLOCK)
            final = not data
            if not self.nonblank and data.strip():
                self.nonblank = True
            if first and data:
                first = False
                if data.startswith(codecs.BOM_UTF8):
                    data = data[3:]
            pending = decoder.getstate()[0]
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError as err:
                before = ("\r" if carry_cr else "") + (pending + data)[: err.start].decode()
                line = lines + _lf(before).count("\n") + 1
                bad = (pending + data)[err.start : err.start + 1].hex()
                self.stream.drain()
                raise DataError(
                    f"{self.where}: not UTF-8 text (byte 0x{bad} at offset "
                    f"{fed - len(pending) + err.start}, line {line}); re-save the file as UTF-8"
                ) from None
            fed += len(data)
            if carry_cr:
                text, carry_cr = "\r" + text, False
            if text.endswith("\r") and not final:
                text, carry_cr = text[:-1], True
            text = _lf(text)
            chars += len(text)
            nuls += text.count("\x00")
            if nul is None:
                at = text.find("\x00")
                if at >= 0:
                    newlines = text.count("\n", 0, at)
                    start = text.rfind("\n", 0, at) + 1
                    nul = (lines + newlines + 1, at - start + 1 if newlines else column + at + 1)
                elif text:
                    yield text
                    last = text.rfind("\n")
                    lines += text.count("\n")
                    column = len(text) - last - 1 if last >= 0 else column + len(text)
            if final:
                break
        if nul is not None:
            hint = (
                " (every other byte: UTF-16 without a byte-order mark?)"
                if nuls / chars > 0.2
                else ""
            )
            raise DataError(
                f"{self.where}: line {nul[0]}, character {nul[1]}: NUL byte{hint}; a text "
                "table cannot contain one, re-save the file as UTF-8 text"
            )

    def lines(self, keepends: bool = False) -> Iterator[str]:
        """The text's lines, as `text.split("\\n")` gives them (keepends: each with its "\\n",
        and no empty last line, as a file object gives them)."""
        rest = ""
        for block in self.blocks:
            parts = (rest + block).split("\n")
            rest = parts.pop()
            if keepends:
                yield from (p + "\n" for p in parts)
            else:
                yield from parts
        if rest or not keepends:
            yield rest

    def finish(self) -> None:
        """Read the rest of the file (raising what the checks find there), then the check of
        an empty file, which comes before any parser's complaint."""
        for _ in self.blocks:
            pass
        if not self.nonblank:
            raise DataError(f"{self.where}: empty file")


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def iter_raw_table(
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
    chunk_rows: int = CHUNK_ROWS,
    fill_required: bool = True,
) -> Iterator[pd.DataFrame]:
    """`read_raw_table`'s table, `chunk_rows` rows at a time, reading the file as it goes (a
    compressed one is decompressed as it is read; Parquet by row batches), so memory does not
    grow with the file.

    Each chunk is a DataFrame of `str` cells whose index is the rows' 0-based position in the
    whole table; `attrs[LINES_ATTR]` holds the file lines of its rows and
    `attrs[READ_ERRORS_ATTR]` its unusable records, keyed by position within the chunk (as
    validation reads them). Values, columns and messages are those of `read_raw_table`, which is
    these chunks joined. A problem is raised when the reader gets to it (after the chunks
    before it), and it is the problem a whole-file read reports: when one is found, the rest of
    the file is read for anything a whole-file read finds first (a corrupt archive, invalid
    UTF-8, a NUL byte, a parse error further on).

    Columns: CSV, TSV and Parquet chunks all have the file's columns. FASTA and SDF chunks have
    the columns seen so far (a header field or data item first seen later is absent from the
    chunks before); with `fill_required`, a `required` column not yet seen is "" there (as the
    whole table has it), and one that no record has is an error at the end.
    """
    name = display_name or str(path)
    if fmt is None:
        fmt = format_from_name(path)
    step = max(1, int(chunk_rows))
    with open_stream(path, name) as stream:
        try:
            head = stream.peek(_SNIFF_BYTES)
            if fmt is None:
                fmt = sniff_format(head, name)
            if fmt not in FORMATS:
                raise DataError(
                    f"{name}: unsupported format {fmt!r}; supported: {', '.join(FORMATS)}"
                )
            _check_content(head, fmt, name)
        except DataError:
            stream.drain()  # a corrupt archive is reported first
            raise
        if fmt == "parquet":
            frames = _parquet_chunks(stream, path, name, step)
            text = None
        else:
            text = _Text(stream)
            if fmt == "fasta":
                from biomol_dl.fasta import iter_fasta

                frames = iter_record_chunks(iter_fasta(text.lines(), name, fasta_header), step)
            elif fmt == "sdf":
                from biomol_dl.sdf import iter_sdf

                records = iter_sdf(text.lines(), name, smiles_property=smiles_property)
                frames = iter_record_chunks(records, step)
            else:
                frames = _delimited_chunks(
                    text, name, fmt, step, header=header, skip_rows=skip_rows, columns=columns
                )
        fixed = fmt not in ("fasta", "sdf")  # every chunk has every column
        seen: list[str] = []
        try:
            for frame in frames:
                seen = list(frame.columns)
                missing = [c for c in required if c not in frame.columns]
                if missing and fixed:
                    _check_columns(seen, required, name, fmt)
                if missing and fill_required:
                    frame = frame.assign(**dict.fromkeys(missing, ""))
                    frame = frame.astype(dict.fromkeys(missing, object))
                yield frame
            _check_columns(seen, required, name, fmt)
        except DataError as err:
            first = err
            try:  # a parse error further on comes first, as the whole file is parsed first
                for _ in frames:
                    pass
            except DataError as later:
                first = later
            if text is not None:
                text.finish()
            else:
                stream.drain()
            raise first from None


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

    The table is `iter_raw_table`'s chunks joined: one reader for both.
    """
    frames = list(
        iter_raw_table(
            path, fmt, header=header, skip_rows=skip_rows, columns=columns, required=required,
            display_name=display_name, fasta_header=fasta_header,
            smiles_property=smiles_property, fill_required=False,
        )
    )  # fmt: skip
    return concat_chunks(frames)


def concat_chunks(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Chunks of `iter_raw_table` as one table: columns in the order first seen ("" where a
    chunk lacks one), lines joined, read errors keyed by row of the whole table."""
    if len(frames) == 1:
        df = frames[0].reset_index(drop=True)
    else:
        df = pd.concat(frames, sort=False).reset_index(drop=True)
        if any(len(f.columns) != df.shape[1] for f in frames):
            df = df.fillna("")
    attrs: dict[str, Any] = {}
    if all(LINES_ATTR in f.attrs for f in frames):
        attrs[LINES_ATTR] = [line for f in frames for line in f.attrs[LINES_ATTR]]
    errors = {
        int(f.index[0]) + k: v for f in frames for k, v in f.attrs.get(READ_ERRORS_ATTR, {}).items()
    }
    if errors:
        attrs[READ_ERRORS_ATTR] = errors
    df.attrs = attrs
    return df


def iter_record_chunks(
    records: Iterable[tuple[int, dict, tuple | None]], step: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """DataFrames of `step` FASTA / SDF records ((file line, {column: value}, read error or
    None)), columns in the order first seen, "" where a record lacks one."""
    keys: dict[str, None] = {}
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    errors: dict[int, tuple] = {}
    offset = 0
    for line, row, error in records:
        for key in row:
            if key not in keys:
                keys[key] = None
        if error is not None:
            errors[len(rows)] = error
        rows.append(row)
        lines.append(line)
        if len(rows) == step:
            yield _record_frame(rows, list(keys), lines, errors, offset)
            offset += len(rows)
            rows, lines, errors = [], [], {}
    if rows:
        yield _record_frame(rows, list(keys), lines, errors, offset)


def _record_frame(rows, keys, lines, errors, offset) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=keys, dtype=object).fillna("")
    df.index = pd.RangeIndex(offset, offset + len(df))
    df.attrs[LINES_ATTR] = lines
    if errors:
        df.attrs[READ_ERRORS_ATTR] = errors
    return df


def _parquet_chunks(
    stream: _Stream, path: str | Path, name: str, step: int
) -> Iterator[pd.DataFrame]:
    """A Parquet file as strings, `step` rows at a time (pyarrow's iter_batches): numbers
    written as Python writes them (1.5, 3, 1e-07), a null or NaN as "" (a missing value),
    booleans as true/false; nested columns are an error. A compressed file is decompressed into
    memory first (Parquet needs to seek)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def failed(err: BaseException) -> DataError:
        return DataError(f"{name}: cannot read as Parquet ({' '.join(str(err).split())[:200]})")

    source: Any = path if stream.compression is None else io.BytesIO(stream.read_all())
    try:
        parquet = pq.ParquetFile(source)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as err:
        raise failed(err) from None
    names: list[str] = []
    for field in schema:
        if pa.types.is_nested(field.type):
            raise DataError(
                f"{name}: column {field.name!r} is {field.type} (nested); only flat columns of "
                "numbers, strings and booleans can be read"
            )
        if field.name in names:
            raise DataError(f"{name}: duplicate column name(s): {field.name!r}")
        names.append(field.name)
    if not parquet.metadata.num_rows:
        raise DataError(f"{name}: no data rows")
    offset = 0
    batches = parquet.iter_batches(batch_size=step)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError, ValueError) as err:
            raise failed(err) from None
        if batch is None:
            return
        out = {
            field: [_parquet_cell(v) for v in column.to_pylist()]
            for field, column in zip(names, batch.columns, strict=True)
        }
        df = pd.DataFrame(out, dtype=object, index=pd.RangeIndex(offset, offset + batch.num_rows))
        offset += batch.num_rows
        yield df


def _parquet_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _delimited_chunks(
    text: _Text,
    name: str,
    fmt: str,
    step: int,
    *,
    header: bool | int,
    skip_rows: int,
    columns: Sequence[str] | None,
) -> Iterator[pd.DataFrame]:
    """CSV / TSV rows as DataFrames of `step` rows. Problems with the header (the `columns`
    option, repeated names) and the field counts are raised after the rest of the file is
    parsed, so a parse error anywhere comes first (as when the whole file is parsed first)."""
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
    records = _csv_records(text, name, fmt, skip_rows)
    first = next(records, None)
    if first is None:
        raise DataError(f"{name}: no rows left after skipping {skip_rows} line(s)")
    header_line, fields = first
    if has_header:
        names = [n if n else f"column_{k + 1}" for k, n in enumerate(fields)]
        pending: list[tuple[int, list[str]]] = []
        reference = f"the header (line {header_line})"
    else:
        names = [f"column_{k + 1}" for k in range(len(fields))]
        pending = [first]
        reference = f"the first row (line {header_line})"
    problem = None
    if columns is not None:
        columns = [str(c) for c in columns]
        if len(columns) != len(names):
            problem = DataError(
                f"{name}: option columns names {len(columns)} column(s) "
                f"({', '.join(columns)}) but the file has {len(names)}"
            )
        names = columns
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated and problem is None:
        problem = DataError(f"{name}: duplicate column name(s): {', '.join(map(repr, duplicated))}")
    if problem is not None:
        if not pending and next(records, None) is None:
            raise DataError(f"{name}: no data rows (only a header line)")
        for _ in records:
            pass
        raise problem
    expected = len(names)
    rows: list[list[str]] = []
    lines: list[int] = []
    offset = 0
    for line, fields in itertools.chain(pending, records):
        if len(fields) != expected:
            wrong = sum(len(f) != expected for _, f in records)
            raise _field_count_error(line, fields, wrong, names, reference, name, fmt)
        rows.append(fields)
        lines.append(line)
        if len(rows) == step:
            yield _delimited_frame(rows, names, lines, offset)
            offset += len(rows)
            rows, lines = [], []
    if rows:
        yield _delimited_frame(rows, names, lines, offset)
    elif not offset:
        raise DataError(f"{name}: no data rows (only a header line)")


def _delimited_frame(rows, names, lines, offset) -> pd.DataFrame:
    df = pd.DataFrame(
        rows, columns=names, dtype=object, index=pd.RangeIndex(offset, offset + len(rows))
    )
    df.attrs[LINES_ATTR] = lines
    return df


def _csv_records(
    text: _Text, name: str, fmt: str, skip_rows: int
) -> Iterator[tuple[int, list[str]]]:
    """(first file line, fields) of every non-blank record after `skip_rows` lines."""
    lines = text.lines(keepends=True)
    for _ in itertools.islice(lines, skip_rows):
        pass
    reader = csv.reader(lines, delimiter=_DELIMITERS[fmt], strict=True)
    end = 0  # last line consumed by the reader
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if len(fields) > 1 or (fields and fields[0].strip()):
                yield start + skip_rows, fields
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


def _other_delimiter(fields: Sequence[str], fmt: str) -> tuple[str, str] | None:
    """(name, kind) of the first other delimiter found in `fields`, e.g. ("tabs", "tab-...")."""
    for sep, label, kind in _OTHER_DELIMITERS:
        if sep != _DELIMITERS[fmt] and any(sep in f for f in fields):
            return label, kind
    return None


def _field_count_error(
    line: int, fields: list[str], more: int, names: list[str], reference: str, name: str, fmt: str
) -> DataError:
    """A row (the first of `more` + 1) without as many fields as `names`: pandas would shift or
    pad it silently."""
    expected = len(names)
    other = _other_delimiter(names, fmt) if expected == 1 else None
    if other:
        return DataError(
            f"{name}: wrong delimiter? {reference} is 1 column as {fmt.upper()} but contains "
            f"{other[0]}: is the file {other[1]}?"
        )
    hint = ""
    if len(fields) > expected and not any(f.strip() for f in fields[expected:]):
        hint = " (a trailing delimiter?)"
    elif other := _other_delimiter(fields, fmt):
        hint = f" (it contains {other[0]}: mixed delimiters?)"
    more_text = f"; {more} more line(s) differ" if more else ""
    return DataError(
        f"{name}: line {line} has {len(fields)} field(s) but {reference} has {expected}{hint}"
        f"{more_text}; nothing is padded or shifted, fix the file"
    )


def _check_columns(columns: Sequence[Any], required: Sequence[str], name: str, fmt: str) -> None:
    missing = [c for c in required if c not in columns]
    if not missing:
        return
    available = ", ".join(map(repr, columns))
    n_needed = len(set(required))
    if len(columns) == 1 and n_needed > 1 and fmt != "fasta":
        other = _other_delimiter([str(columns[0])], fmt)
        hint = f"; the header contains {other[0]}: is the file {other[1]}?" if other else ""
        raise DataError(
            f"{name}: wrong delimiter? only 1 column found as {fmt.upper()} while {n_needed} "
            f"expected ({', '.join(map(repr, required))}){hint}"
        )
    padded = next((str(c) for c in columns if str(c).strip() == missing[0]), None)
    hint = f" (the header has {padded!r}: remove the spaces around the name)" if padded else ""
    raise DataError(
        f"{name}: unknown column {missing[0]!r}"
        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        + f"; available: {available}{hint}"
    )


def read_table(
    path: str | Path, *, strings: Iterable[str] = (), columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """A table the workflow wrote (clean.csv, split/seed<N>.csv, predictions.csv, rejects.csv).

    Ids and inputs are names, never numbers or missing markers: the columns in STRING_COLUMNS and
    `strings` (e.g. "split", "task" of a predictions table) are read as `str` exactly as written
    (ids "NA", "nan", "None", "null", "1e3", "007" survive; an empty cell is ""). Every other
    column is parsed by pandas with only an empty cell as NaN, so labels and predictions are
    numbers, NaN where missing, and a text column stays text. No column becomes the index.
    `columns`: read only these (in the file's order), for a reader that needs no labels.
    """
    text_columns = [*STRING_COLUMNS, *strings]
    table = pd.read_csv(
        path,
        dtype=dict.fromkeys(text_columns, str),
        keep_default_na=False,
        na_values=[""],
        index_col=False,
        usecols=list(columns) if columns is not None else None,
    )
    for column in table.columns.intersection(text_columns):
        table[column] = table[column].fillna("")
    return table
