"""FASTA text -> a table of strings: one row per record, `id`, `sequence` and the header's fields.

How a header line becomes columns is the source option `fasta_header` (config
`datasets.<name>.source.fasta_header`), one of

    key=value            (the default) the id is the first word; `key=value` pairs after it become
                         columns, a value running until the next `key=` (">P1 label=0.5
                         split=train"); free text before the first pair is `description`.
    uniprot              UniProt's `>db|ACC|NAME protein name OS=... OX=... GN=... PE=... SV=...`:
                         columns db, accession, entry_name, protein_name and each of OS, OX, GN,
                         PE, SV present; the id is the accession.
    {fields: [a, b]}     the id, then exactly len(fields) whitespace-separated fields, named in
                         order (DeepLoc's `>Q9H400 Cell.membrane-M test` with fields [location,
                         set]).
    {pattern: REGEX}     a Python regular expression that must match the whole header (after `>`,
                         stripped); each named group is a column, the group `id` (if any) the
                         id, else the first word. E.g.
                         '(?P<id>\\S+) (?P<location>[^-\\s]+)-(?P<membrane>[MSU]) (?P<set>\\S+)'.

A header that does not fit (not UniProt-shaped, the wrong number of fields, no match) is not an
error for the whole file: its record is read with empty fields and listed in
`attrs[READ_ERRORS_ATTR]` (reason `header_mismatch`, with the file line), so validation rejects
that one row. Sequence lines are joined with their surrounding whitespace removed (line breaks are
the format); whitespace inside a line stays in the sequence, for validation to reject. A record
without sequence lines is kept with an empty sequence (validation rejects it: empty_input); `>`
alone is a record with an empty id. Text before the first `>` is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pandas as pd

from biomol_dl.io import DataError

PRESETS = ("key=value", "uniprot")
_RESERVED = ("id", "sequence")
_UNIPROT = re.compile(
    r"(?P<db>[A-Za-z]+)\|(?P<accession>[^|\s]+)\|(?P<entry_name>\S+)(?:\s+(?P<rest>.*))?"
)
_UNIPROT_KEYS = re.compile(r"(?:^|\s)(OS|OX|GN|PE|SV)=")

# A header parser: (header text without '>', first word) -> (id, fields) or a reason string.
Parser = Callable[[str, str], "tuple[str, dict[str, str]] | str"]


def header_parser(option: Any, where: str = "fasta_header") -> Parser:
    """The parser for a `fasta_header` option; DataError (naming `where`) for a bad option."""
    if option is None or option == "key=value":
        return _key_value
    if option == "uniprot":
        return _uniprot
    if option == "fields":
        raise DataError(f"{where}: the fields preset needs the field names: {{fields: [a, b]}}")
    if isinstance(option, str):
        raise DataError(
            f"{where}: unknown preset {option!r}; valid: key=value, uniprot, "
            "{fields: [names]}, {pattern: regex}"
        )
    if (
        not isinstance(option, dict)
        or len(option) != 1
        or next(iter(option))
        not in (
            "fields",
            "pattern",
        )
    ):
        raise DataError(
            f"{where}: expected key=value, uniprot, {{fields: [names]}} or {{pattern: regex}}, "
            f"got {option!r}"
        )
    if "fields" in option:
        names = option["fields"]
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise DataError(
                f"{where}.fields: expected a non-empty list of column names, got {names!r}"
            )
        _check_names(names, f"{where}.fields")
        return _fields_parser([str(n) for n in names])
    pattern = option["pattern"]
    try:
        regex = re.compile(str(pattern))
    except re.error as err:
        raise DataError(f"{where}.pattern: not a valid regular expression ({err})") from None
    if not regex.groupindex:
        raise DataError(f"{where}.pattern: {pattern!r} has no named group (?P<name>...)")
    _check_names([g for g in regex.groupindex if g != "id"], f"{where}.pattern")
    return _pattern_parser(regex)


def _check_names(names: list[str], where: str) -> None:
    clash = [n for n in names if n in _RESERVED]
    if clash:
        raise DataError(f"{where}: {clash[0]!r} is the record's own column; choose another name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{where}: repeated name(s) {', '.join(map(repr, repeated))}")


def _key_value(title: str, first: str) -> tuple[str, dict[str, str]]:
    """`key=value` pairs after the id; a value runs until the next `key=` (UniProt's "OS=Homo
    sapiens" keeps its space). Free text before the first pair goes to `description`."""
    rest = title[len(first) :].strip()
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
    return first, fields


def _uniprot(title: str, first: str) -> tuple[str, dict[str, str]] | str:
    match = _UNIPROT.fullmatch(title)
    if not match:
        return "not a UniProt header (>db|accession|entry_name ...)"
    fields = {k: match[k] for k in ("db", "accession", "entry_name")}
    rest = match["rest"] or ""
    keys = list(_UNIPROT_KEYS.finditer(rest))
    fields["protein_name"] = rest[: keys[0].start()].strip() if keys else rest.strip()
    for k, found in enumerate(keys):
        end = keys[k + 1].start() if k + 1 < len(keys) else len(rest)
        fields[found[1]] = rest[found.end() : end].strip()
    return match["accession"], fields


def _fields_parser(names: list[str]) -> Parser:
    def parse(title: str, first: str) -> tuple[str, dict[str, str]] | str:
        values = title.split()[1:]
        if len(values) != len(names):
            return (
                f"{len(values)} field(s) after the id, expected {len(names)} ({', '.join(names)})"
            )
        return first, dict(zip(names, values, strict=True))

    return parse


def _pattern_parser(regex: re.Pattern) -> Parser:
    def parse(title: str, first: str) -> tuple[str, dict[str, str]] | str:
        match = regex.fullmatch(title)
        if not match:
            return f"does not match the pattern {regex.pattern}"
        groups = {k: v or "" for k, v in match.groupdict().items()}
        record_id = groups.pop("id", first)
        return record_id, groups

    return parse


def read_fasta(text: str, name: str, fasta_header: Any = None) -> pd.DataFrame:
    """Parse FASTA `text` (LF newlines) into `id, sequence, <header fields>` rows of strings."""
    from biomol_dl.io import concat_chunks, iter_record_chunks

    return concat_chunks(list(iter_record_chunks(iter_fasta(text.split("\n"), name, fasta_header))))


def iter_fasta(
    lines: Iterable[str], name: str, fasta_header: Any = None
) -> Iterator[tuple[int, dict[str, str], tuple[str, str, str] | None]]:
    """(file line of the `>`, {id, sequence, header fields}, read error or None) of each record
    of FASTA `lines` (LF newlines removed), as they are read."""
    parse = header_parser(fasta_header, f"{name}: fasta_header")
    record: tuple[int, dict[str, str], tuple[str, str, str] | None] | None = None
    n_records = 0
    sequence: list[str] = []
    for number, line in enumerate(lines, 1):
        if line.startswith(">"):
            if record is not None:
                record[1]["sequence"] = "".join(sequence)
                yield record
            sequence = []
            title = line[1:].strip()
            first = title.split(None, 1)[0] if title else ""
            parsed = parse(title, first)
            error = None
            if isinstance(parsed, str):
                error = ("header", line[:200], f"header_mismatch: line {number}: {parsed}")
                record_id, fields = first, {}
            else:
                record_id, fields = parsed
            row = {"id": record_id, "sequence": ""}
            for key, value in fields.items():
                if key in row:
                    raise DataError(
                        f"{name}: line {number}: record {n_records + 1} ({record_id}): header "
                        f"key {key!r} clashes with the id/sequence columns"
                    )
                row[key] = value
            record = (number, row, error)
            n_records += 1
        elif record is not None:
            sequence.append(line.strip())
        elif line.strip():
            raise DataError(
                f"{name}: not FASTA: line {number}: the first non-blank character is "
                f"{line.strip()[0]!r}, expected '>'"
            )
    if record is None:
        raise DataError(f"{name}: no FASTA records")
    record[1]["sequence"] = "".join(sequence)
    yield record
