"""A corpus of bad and odd raw inputs, each with the outcome validation must give.

Every case is a small file (text or bytes) plus a dataset spec, run in-process through
`run_validation` as the validate rule runs it: from an internal copy `resources/<case>/raw.<ext>`
with a provenance JSON naming the user's own path `data/<case>.<ext>`. A case expects either

  * a DataError: one line, starting with the user's path (never the internal copy), containing
    `error`; or
  * tables: the rejects given in `rejects` (data row -> reason prefix), nothing else rejected,
    `kept + rejected == rows_in`, every data row in exactly one of the two tables, and any
    expected clean values / summary entries.

`python tests/test_input_corpus.py` prints the cases as a Markdown table (for docs/BAD_INPUTS.md).
The last test runs awkward ids (NA, nan, None, 007, ...) through split, a random forest,
evaluation and the report's readers and checks that they come out unchanged.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from biomol_dl.io import DataError, read_table
from biomol_dl.validate import run_validation


def smiles(task: str = "regression", labels: tuple[str, ...] = ("y",), **extra: Any) -> dict:
    """A SMILES dataset spec: columns id, smiles, <labels>."""
    return {"kind": "smiles", "task": task, "input_column": "smiles", "id_column": "id",
            "label_columns": list(labels), **extra}  # fmt: skip


def protein(task: str = "binary", fmt: str = "csv", **extra: Any) -> dict:
    """A protein dataset spec: columns id, sequence, label (a FASTA gives `label=` in headers)."""
    return {"kind": "protein", "task": task, "input_column": "sequence", "id_column": "id",
            "label_columns": ["label"], "format": fmt, **extra}  # fmt: skip


def rows(*lines: str, header: str = "id,smiles,y") -> str:
    return "\n".join((header, *lines)) + "\n"


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    content: str | bytes
    spec: dict
    error: str | None = None  # the DataError must contain this
    rejects: dict[int, str] = field(default_factory=dict)  # data row -> reason prefix
    clean: dict[str, list] = field(default_factory=dict)  # clean column -> expected values
    summary: dict[str, Any] = field(default_factory=dict)  # dotted summary key -> value
    lines: dict[int, int] = field(default_factory=dict)  # rejected data row -> file line

    @property
    def ext(self) -> str:
        return self.spec.get("format", "csv")

    def outcome(self) -> str:
        if self.error:
            return f"error: `{self.error}`"
        parts = [f"row {r}: `{code}`" for r, code in sorted(self.rejects.items())]
        if self.clean or self.summary or not parts:
            shown = {**self.clean, **self.summary}
            parts.append("kept: " + ", ".join(f"{k} = {v!r}" for k, v in shown.items()))
        return "reject " + "; ".join(parts) if self.rejects else "; ".join(parts)


def molblock(title: str, atoms: str, bonds: str, y: str) -> str:
    """One SD record: V2000 atoms given as symbols in a chain (`C C O` is ethanol)."""
    symbols = atoms.split()
    lines = [title, "  corpus", "", f"{len(symbols):3d}{len(symbols) - 1:3d}  0  0  0  0  0  0  0"
             "  0999 V2000"]  # fmt: skip
    lines += [f"{1.5 * k:10.4f}    0.0000    0.0000 {s:<3} 0  0" for k, s in enumerate(symbols)]
    lines += [f"{k:3d}{k + 1:3d}{bonds}  0" for k in range(1, len(symbols))]
    return "\n".join([*lines, "M  END", ">  <y>", y, "", "$$$$"]) + "\n"


def xlsx() -> bytes:
    """The zip members that make a file an Excel workbook (the sheet itself does not matter)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in ("[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml"):
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), "<x/>")
    return buffer.getvalue()


GOOD = "ok,CCO,0.5"  # one valid row, so that a case's rejects do not empty the table
SEQ_GOOD = "ok,ACDEFGHIK,1"
SEQ_HEADER = "id,sequence,label"

CASES: list[Case] = [
    # ---------------------------------------------------------------- SMILES: exact reading
    Case(
        "smiles_space",
        "SMILES `CC O` and `CC N` (RDKit reads ethane, then merges the two)",
        rows("a,CC O,1.0", "b,CC N,2.0", GOOD),
        smiles(),
        rejects={1: "whitespace_in_smiles: ' ' at position 3", 2: "whitespace_in_smiles"},
    ),
    Case(
        "smiles_tab",
        "SMILES with a tab inside (`CC<TAB>O`)",
        rows("a,CC\tO,1", GOOD),
        smiles(),
        rejects={1: "whitespace_in_smiles: '\\t'"},
    ),
    Case(
        "smiles_nbsp",
        "SMILES with a no-break space (U+00A0) inside",
        rows("a,CC\u00a0O,1", GOOD),
        smiles(),
        rejects={1: "whitespace_in_smiles: '\\xa0' (U+00A0 NO-BREAK SPACE) at position 3"},
    ),
    Case(
        "smiles_newline_in_quotes",
        "a quoted SMILES cell spanning two lines; the next row's file line is one further down",
        rows('a,"CC\nO",1', "b,C1CC,2", GOOD),
        smiles(),
        rejects={1: "whitespace_in_smiles: '\\n'", 2: "invalid_smiles"},
        lines={1: 2, 2: 4},
    ),
    Case(
        "smiles_name_suffix",
        "SMILES followed by a name (`CCO ethanol`)",
        rows("a,CCO ethanol,1", "b,CCCO,2"),
        smiles(),
        rejects={1: "whitespace_in_smiles"},
    ),
    Case(
        "smiles_cxsmiles",
        "CXSMILES extension after a space (`CCO |$;;$|`)",
        rows("a,CCO |$;;$|,1", GOOD),
        smiles(),
        rejects={1: "whitespace_in_smiles"},
    ),
    Case(
        "smiles_cxsmiles_glued",
        "CXSMILES extension without the space (`CCO|$;;$|`)",
        rows("a,CCO|$;;$|,1", GOOD),
        smiles(),
        rejects={1: "invalid_smiles"},
    ),
    Case(
        "smiles_non_ascii",
        "SMILES `CÇ` (RDKit reads methane)",
        rows("a,CÇ,1", GOOD),
        smiles(),
        rejects={1: "non_ascii_character: 'Ç' (U+00C7 LATIN CAPITAL LETTER C WITH CEDILLA)"},
    ),
    Case(
        "smiles_fullwidth",
        "SMILES in fullwidth letters (`ＣＣＯ`)",
        rows("a,ＣＣＯ,1", GOOD),
        smiles(),
        rejects={1: "non_ascii_character"},
    ),
    Case(
        "smiles_zero_width",
        "SMILES with a zero-width space (U+200B) inside",
        rows("a,CC\u200bO,1", GOOD),
        smiles(),
        rejects={1: "control_character"},
    ),
    Case(
        "smiles_control",
        "SMILES with a control character (0x01) inside",
        rows("a,CC\x01O,1", GOOD),
        smiles(),
        rejects={1: "control_character: '\\x01'"},
    ),
    Case(
        "smiles_blank",
        "SMILES cell of spaces only",
        rows("a,   ,1", GOOD),
        smiles(),
        rejects={1: "empty_input"},
    ),
    Case(
        "smiles_dot",
        "SMILES `.` (no atoms)",
        rows("a,.,1", GOOD),
        smiles(),
        rejects={1: "invalid_smiles"},
    ),
    Case(
        "smiles_wildcard",
        "SMILES with a wildcard atom (`*CC`)",
        rows("a,*CC,1", GOOD),
        smiles(),
        rejects={1: "wildcard_atom"},
    ),
    Case(
        "smiles_query_bond",
        "SMILES with a SMARTS any-bond (`C~C`)",
        rows("a,C~C,1", GOOD),
        smiles(),
        rejects={1: "query_bond"},
    ),
    Case(
        "smiles_reaction",
        "reaction SMILES (`CC>>O`)",
        rows("a,CC>>O,1", GOOD),
        smiles(),
        rejects={1: "invalid_smiles"},
    ),
    Case(
        "smiles_padded",
        "SMILES with surrounding spaces (` CCO `): stripped and counted",
        rows("a, CCO ,1"),
        smiles(),
        clean={"input": ["CCO"]},
        summary={"input_stats.whitespace_stripped": 1},
    ),
    Case(
        "smiles_padded_no_strip",
        "surrounding space with `strip_whitespace: false`",
        rows("a, CCO,1", GOOD),
        smiles(validation={"strip_whitespace": False}),
        rejects={1: "whitespace_in_smiles: ' ' at position 1"},
    ),
    # ---------------------------------------------------------------- proteins
    Case(
        "seq_space",
        "sequence with a space inside (`ACD EFG`)",
        rows("a,ACD EFG,1", SEQ_GOOD, header=SEQ_HEADER),
        protein(),
        rejects={1: "whitespace_in_sequence: ' ' at position 4"},
    ),
    Case(
        "seq_digit",
        "sequence with a digit (`ACD1EF`)",
        rows("a,ACD1EF,1", SEQ_GOOD, header=SEQ_HEADER),
        protein(),
        rejects={1: "invalid_character: '1' at position 4 (a digit)"},
    ),
    Case(
        "seq_stop",
        "sequence ending in a stop `*`",
        rows("a,ACDEF*,1", SEQ_GOOD, header=SEQ_HEADER),
        protein(),
        rejects={1: "invalid_character: '*' at position 6 (a stop codon"},
    ),
    Case(
        "seq_gap",
        "aligned sequence with a gap `-`",
        rows("a,ACD-EF,1", SEQ_GOOD, header=SEQ_HEADER),
        protein(),
        rejects={1: "invalid_character: '-' at position 4 (an alignment gap)"},
    ),
    Case(
        "seq_lower_rejected",
        "lower-case sequence with `uppercase: false`",
        rows("a,acdef,1", SEQ_GOOD, header=SEQ_HEADER),
        protein(validation={"uppercase": False}),
        rejects={1: "lowercase_residue"},
    ),
    Case(
        "seq_lower_default",
        "lower-case sequence (default): upper-cased and counted",
        rows("a,acdef,1", header=SEQ_HEADER),
        protein(),
        clean={"input": ["ACDEF"]},
        summary={"input_stats.uppercased": 1},
    ),
    Case(
        "seq_non_ascii",
        "sequence with `É`",
        rows("a,ACDÉF,1", SEQ_GOOD, header=SEQ_HEADER),
        protein(),
        rejects={1: "non_ascii_character"},
    ),
    Case(
        "seq_ambiguous",
        "sequence with `X` (ambiguous: reject)",
        rows("a,ACXEF,1", SEQ_GOOD, header=SEQ_HEADER),
        protein(),
        rejects={1: "non_standard_residue: X at position 3"},
    ),
    Case(
        "fasta_no_sequence",
        "FASTA record without sequence lines",
        ">p1 label=1\n>p2 label=0\nACDEFG\n",
        protein(fmt="fasta"),
        rejects={1: "empty_input"},
        lines={1: 1},
    ),
    Case(
        "fasta_gt_only",
        "FASTA record that is `>` alone",
        ">p1 label=1\nACDEFG\n>\n",
        protein(fmt="fasta"),
        rejects={2: "empty_input"},
        lines={2: 3},
    ),
    Case(
        "fasta_space_in_line",
        "FASTA sequence line with a space inside; another record's wrapped lines are joined",
        ">p1 label=1\nACD EFG\n>p2 label=0\nACDEF\nGHIK\n",
        protein(fmt="fasta"),
        rejects={1: "whitespace_in_sequence"},
        clean={"input": ["ACDEFGHIK"]},
    ),
    Case(
        "fasta_crlf",
        "FASTA with CRLF line ends",
        ">p1 label=1\r\nACDEF\r\nGH\r\n",
        protein(fmt="fasta"),
        clean={"input": ["ACDEFGH"], "id": ["p1"]},
    ),
    Case(
        "fasta_text_first",
        "FASTA with text before the first `>`",
        "ACDEF\n>p1 label=1\nAC\n",
        protein(fmt="fasta"),
        error="not FASTA: line 1",
    ),
    # ---------------------------------------------------------------- regression labels
    Case(
        "reg_underscore",
        "regression label `1_000` (Python's float reads 1000)",
        rows("a,CCC,1_000", GOOD),
        smiles(),
        rejects={1: "invalid_label: '1_000' is not a number (only ASCII"},
    ),
    Case(
        "reg_fullwidth",
        "regression label `１` (fullwidth digit)",
        rows("a,CCC,１", GOOD),
        smiles(),
        rejects={1: "invalid_label: '１' is not a number"},
    ),
    Case(
        "reg_hex",
        "regression label ` 0x10`",
        rows("a,CCC, 0x10", GOOD),
        smiles(),
        rejects={1: "invalid_label: '0x10' is not a number"},
    ),
    Case(
        "reg_unicode_minus",
        "regression label `−1.5` (U+2212 MINUS SIGN, as pasted from a paper)",
        rows("a,CCC,−1.5", GOOD),
        smiles(),
        rejects={1: "invalid_label: '−1.5' is not a number (it contains '−' (U+2212 MINUS SIGN)"},
    ),
    Case(
        "reg_inf",
        "regression label `inf`",
        rows("a,CCC,inf", GOOD),
        smiles(),
        rejects={1: "invalid_label: 'inf' is not finite"},
    ),
    Case(
        "reg_nan",
        "regression label `nan` (a missing marker)",
        rows("a,CCC,nan", GOOD),
        smiles(),
        rejects={1: "missing_label"},
    ),
    Case(
        "reg_overflow",
        "regression label `1e999`",
        rows("a,CCC,1e999", GOOD),
        smiles(),
        rejects={1: "invalid_label: '1e999' is not finite"},
    ),
    Case(
        "reg_decimal_comma",
        "regression label `1,5` (decimal comma, quoted)",
        rows('a,CCC,"1,5"', GOOD),
        smiles(),
        rejects={1: "invalid_label: '1,5' is not a number"},
    ),
    Case(
        "reg_forms",
        "regression labels `-1.5E-3`, `.5`, `5.`, `+2`: read as numbers",
        rows("a,CCC,-1.5E-3", "b,CCCC,.5", "c,CCCCC,5.", "d,CCN,+2"),
        smiles(),
        clean={"y": [-0.0015, 0.5, 5.0, 2.0]},
    ),
    # ---------------------------------------------------------------- classification labels
    Case(
        "bin_01",
        "binary label `01`",
        rows("a,CCC,01", "ok,CCO,1"),
        smiles(task="binary"),
        rejects={1: "invalid_label: '01' is not a binary label"},
    ),
    Case(
        "bin_float_words",
        "binary labels `1.0`, `0.0`, `TRUE`, ` no `: read as 1, 0, 1, 0",
        rows("a,CCC,1.0", "b,CCCC,0.0", "c,CCCCC,TRUE", "d,CCN, no "),
        smiles(task="binary"),
        clean={"y": [1, 0, 1, 0]},
    ),
    Case(
        "bin_two",
        "binary label `2`",
        rows("a,CCC,2", "b,CCCC,1"),
        smiles(task="binary"),
        rejects={1: "invalid_label: '2' is not a binary label"},
    ),
    Case(
        "mc_one_point_zero",
        "multiclass labels `1`, `1.0`, `01`, `2`: one class 1",
        rows("a,CCC,1", "b,CCCC,1.0", "c,CCCCC,01", "d,CCN,2"),
        smiles(task="multiclass"),
        clean={"y": [0, 0, 0, 1]},
        summary={"classes": ["1", "2"]},
    ),
    Case(
        "mc_config_classes",
        "multiclass with `classes: [1, 2]` and cells `1.0`, `2`",
        rows("a,CCC,1.0", "b,CCCC,2"),
        smiles(task="multiclass", classes=[1, 2]),
        clean={"y": [0, 1]},
        summary={"classes": ["1", "2"]},
    ),
    Case(
        "mc_config_same_class",
        "multiclass `classes: ['1', '1.0']`",
        rows("a,CCC,1"),
        smiles(task="multiclass", classes=["1", "1.0"]),
        error="are the same class (1)",
    ),
    Case(
        "mc_unknown_class",
        "multiclass cell outside `classes: [a, b]`",
        rows("a,CCC,c", "b,CCCC,a"),
        smiles(task="multiclass", classes=["a", "b"]),
        rejects={1: "invalid_label: 'c' is not one of the classes"},
    ),
    Case(
        "mt_all_missing",
        "multitask row with every label missing",
        rows("a,CCC,,NA", "b,CCCC,1,", header="id,smiles,t1,t2"),
        smiles(task="multitask_binary", labels=("t1", "t2")),
        rejects={1: "all_labels_missing"},
    ),
    Case(
        "mt_bad_value",
        "multitask label `2`",
        rows("a,CCC,2,0", "b,CCCC,1,", header="id,smiles,t1,t2"),
        smiles(task="multitask_binary", labels=("t1", "t2")),
        rejects={1: "invalid_label: '2'"},
    ),
    # ---------------------------------------------------------------- ids
    Case(
        "ids_na_like",
        "ids `NA`, `nan`, `None`, `null`, `1e3`, `007`: kept as written",
        rows("NA,C,1", "nan,CC,2", "None,CCC,3", "null,CCCC,4", "1e3,CCCCC,5", "007,CCN,6"),
        smiles(),
        clean={"id": ["NA", "nan", "None", "null", "1e3", "007"]},
    ),
    Case(
        "ids_empty_repeated",
        "empty and repeated ids: row<N> and <id>_row<N>",
        rows(",C,1", "x,CC,2", "x,CCC,3"),
        smiles(),
        clean={"id": ["row1", "x", "x_row3"]},
    ),
    # ---------------------------------------------------------------- files
    Case(
        "file_cr_only",
        "old-Mac file: CR-only line ends",
        b"id,smiles,y\rok,CCO,1\rb,CCN,2\r",
        smiles(),
        clean={"id": ["ok", "b"]},
    ),
    Case(
        "file_crlf",
        "Windows file: CRLF line ends",
        b"id,smiles,y\r\nok,CCO,1\r\n",
        smiles(),
        clean={"input": ["CCO"]},
    ),
    Case(
        "file_trailing_comma",
        "a trailing comma on every data row (pandas shifts columns)",
        rows("a,CCO,1,", "b,CCN,2,"),
        smiles(),
        error="line 2 has 4 field(s) but the header (line 1) has 3 (a trailing delimiter?)",
    ),
    Case(
        "file_short_row",
        "a data row with a field missing",
        rows(GOOD, "b,CCN"),
        smiles(),
        error="line 3 has 2 field(s) but the header (line 1) has 3",
    ),
    Case(
        "file_open_quote",
        "a quote left open to the end of the file",
        rows(GOOD, 'b,"CCN,2', "c,CCC,3"),
        smiles(),
        error="line 3: a quoted field opened on this line is never closed",
    ),
    Case(
        "file_text_after_quote",
        'text after a closing quote (`"CC"O`)',
        rows('a,"CC"O,1', GOOD),
        smiles(),
        error="line 2: text after the closing quote",
    ),
    Case(
        "file_nul",
        "a NUL byte in a cell",
        b"id,smiles,y\na,CC\x00O,1\n",
        smiles(),
        error="line 2, character 5: NUL byte",
    ),
    Case(
        "file_utf16_bom",
        "UTF-16 with a byte-order mark",
        rows(GOOD).encode("utf-16"),
        smiles(),
        error="the file is UTF-16 LE text (byte-order mark FF FE)",
    ),
    Case(
        "file_utf16_no_bom",
        "UTF-16 without a byte-order mark",
        rows(GOOD).encode("utf-16-le"),
        smiles(),
        error="UTF-16 without a byte-order mark",
    ),
    Case(
        "file_latin1",
        "Latin-1 text (`é` as byte 0xe9)",
        rows("café,CCO,1").encode("latin-1"),
        smiles(),
        error="not UTF-8 text (byte 0xe9 at offset 15, line 2)",
    ),
    Case(
        "file_bom_header",
        "UTF-8 with a byte-order mark before the header",
        rows(GOOD).encode("utf-8-sig"),
        smiles(),
        clean={"id": ["ok"]},
    ),
    Case(
        "file_mixed_delimiters",
        "one data row separated by semicolons",
        rows(GOOD, "b;CCN;2"),
        smiles(),
        error="line 3 has 1 field(s) but the header (line 1) has 3 (it contains semicolons",
    ),
    Case(
        "file_duplicate_header",
        "two columns named `y`",
        rows("a,CCO,1,2", header="id,smiles,y,y"),
        smiles(),
        error="duplicate column name(s): 'y'",
    ),
    Case(
        "file_blank_lines",
        "blank and whitespace-only lines between rows: skipped",
        "id,smiles,y\n\nok,CCO,1\n   \nb,C1CC,2\n",
        smiles(),
        rejects={2: "invalid_smiles"},
        lines={2: 5},
    ),
    Case(
        "file_header_only",
        "a header and no data",
        "id,smiles,y\n",
        smiles(),
        error="no data rows (only a header line)",
    ),
    Case(
        "file_tsv_as_csv",
        "a tab-separated file read as CSV",
        "id\tsmiles\ty\nok\tCCO\t1\n",
        smiles(),
        error="wrong delimiter? only 1 column found as CSV",
    ),
    Case(
        "file_tsv_comma_in_cell",
        "a tab-separated file read as CSV, with a comma in one cell",
        "id\tsmiles\ty\na,b\tCCO\t1\n",
        smiles(),
        error="wrong delimiter? the header (line 1) is 1 column as CSV but contains tabs",
    ),
    Case(
        "file_header_less",
        "header-less file after a count line (`header: false, skip_rows: 1, columns`)",
        "5200,1,UniProt,AMP\nGLWSKIK,1\nAC D,0\n",
        protein(
            id_column=None,
            source={"header": False, "skip_rows": 1, "columns": ["sequence", "label"]},
        ),  # fmt: skip
        rejects={2: "whitespace_in_sequence"},
        lines={2: 3},
    ),
    Case(
        "file_gzip_csv",
        "a gzip-compressed CSV (recognised by its first bytes, whatever the file is called)",
        gzip.compress(rows(GOOD, "b,CCN,1").encode(), mtime=0),
        smiles(),
        clean={"id": ["ok", "b"]},
    ),
    Case(
        "file_gzip_truncated",
        "a gzip file cut short",
        gzip.compress(rows(GOOD).encode(), mtime=0)[:-12],
        smiles(),
        error="gzip-compressed, but the data is corrupt or truncated",
    ),
    Case(
        "file_xlsx",
        "an Excel workbook saved as .csv",
        xlsx(),
        smiles(),
        error="unsupported format 'xlsx' (an Excel workbook); supported: csv, tsv, fasta, sdf,",
    ),
    Case(
        "file_parquet_as_csv",
        "Parquet bytes read as CSV",
        b"PAR1\x15\x04\x15",
        smiles(),
        error="the content is PARQUET, but it is read as CSV",
    ),
    Case(
        "file_sdf_as_csv",
        "an SD file read as CSV",
        molblock("ethanol", "C C O", "  1", "0.5"),
        smiles(),
        error="the content is SDF, but it is read as CSV",
    ),
    Case(
        "sdf_bad_records",
        "SDF: an unknown element, an oxygen with a triple bond, a query bond (type 5), a good one",
        molblock("a", "C C Xx", "  1", "1")
        + molblock("b", "C O", "  3", "2")
        + molblock("c", "C C", "  5", "3")
        + molblock("ok", "C C O", "  1", "0.5"),
        smiles(format="sdf"),
        rejects={
            1: "invalid_molblock: record 1 (line 1): RDKit could not read it: Element 'Xx'",
            2: "invalid_molblock: record 2 (line 15): RDKit could not read it: Explicit valence",
            3: "query_bond",
        },
        lines={1: 1, 2: 15, 3: 27},
        clean={"id": ["ok"], "input": ["CCO"]},
    ),
    Case(
        "fasta_header_fields",
        "FASTA with `fasta_header: {fields: [label]}`: one header has two fields",
        ">P1 1\nMKV\n>P2 0 extra\nMKL\n>P3 0\nMKK\n",
        protein(fmt="fasta", source={"fasta_header": {"fields": ["label"]}}),
        rejects={2: "header_mismatch: line 3: 2 field(s) after the id, expected 1 (label)"},
        lines={2: 3},
    ),
    Case("file_empty", "an empty file (whitespace only)", "\n  \n", smiles(), error="empty file"),
    Case(
        "file_unknown_column",
        "the spec names a column the file lacks",
        rows(GOOD),
        smiles(labels=("logS",)),
        error="unknown column 'logS'; available: 'id', 'smiles', 'y'",
    ),
    Case(
        "file_header_spaces",
        "header names with spaces after the commas (`id, smiles, y`)",
        rows(GOOD, header="id, smiles, y"),
        smiles(),
        error="(the header has ' smiles': remove the spaces around the name)",
    ),
    Case(
        "file_all_rejected",
        "every row rejected: the error says where the reasons are",
        rows("a,C1CC,1", "b,CC O,2"),
        smiles(),
        error="no valid rows remain: all 2 rejected",
    ),
]


def _run(case: Case, tmp_path: Path):
    """run_validation as the rule runs it: an internal copy + provenance naming the user's path."""
    raw = tmp_path / "resources" / case.id / f"raw.{case.ext}"
    raw.parent.mkdir(parents=True)
    data = case.content if isinstance(case.content, bytes) else case.content.encode()
    raw.write_bytes(data)
    user_path = f"data/{case.id}.{case.ext}"
    provenance = tmp_path / "resources" / case.id / "provenance.json"
    provenance.write_text(
        json.dumps({"type": "path", "origin": user_path, "file": user_path, "format": case.ext})
    )
    spec = {k: v for k, v in case.spec.items() if k not in ("format", "source")}
    spec["source"] = {"type": "path", "path": user_path, **case.spec.get("source", {})}
    out = tmp_path / "results"
    logs = (tmp_path / "logs" / "rejects.csv", tmp_path / "logs" / "summary.json")
    outs = (out / "clean.csv", out / "rejects.csv", out / "summary.json")
    try:
        summary = run_validation(raw, spec, *outs, provenance=provenance, diagnostics=logs)
    except DataError as err:
        return err, user_path, raw, outs, logs
    return summary, user_path, raw, outs, logs


def _lookup(summary: dict, dotted: str) -> Any:
    value: Any = summary
    for key in dotted.split("."):
        value = value[key]
    return value


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, tmp_path: Path):
    result, user_path, raw, outs, logs = _run(case, tmp_path)
    if case.error:
        assert isinstance(result, DataError), f"expected an error, got {result}"
        message = str(result)
        assert "\n" not in message
        assert message.startswith(f"{user_path}: "), message
        assert str(raw) not in message and "resources" not in message, message
        assert case.error in message, message
        if Path(logs[1]).exists():  # the tables were made: the invariant holds, diagnostics kept
            summary = json.loads(Path(logs[1]).read_text())
            assert summary["kept"] + summary["rejected"] == summary["rows_in"]
            assert str(logs[0]) in message
        return
    assert not isinstance(result, DataError), f"{case.id}: unexpected error: {result}"
    summary = result
    clean = read_table(outs[0])
    rejects = read_table(outs[1], strings=("column", "value", "reason"))
    assert summary["kept"] + summary["rejected"] == summary["rows_in"]
    assert (summary["kept"], summary["rejected"]) == (len(clean), len(rejects))
    assert sorted([*clean["row"], *rejects["row"]]) == list(range(1, summary["rows_in"] + 1))
    got = dict(zip(rejects["row"], rejects["reason"], strict=True))
    assert set(got) == set(case.rejects), got
    for row, reason in case.rejects.items():
        assert got[row].startswith(reason), (row, got[row])
    for row, line in case.lines.items():
        assert rejects.set_index("row").loc[row, "line"] == line
    for column, values in case.clean.items():
        assert clean[column].tolist() == values
    for key, value in case.summary.items():
        assert _lookup(summary, key) == value
    assert read_table(logs[0], strings=("column", "value", "reason")).equals(
        rejects
    )  # the diagnostics copy


def test_corpus_is_large_and_distinct():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.content if isinstance(c.content, bytes) else c.content.encode()
                for c in CASES}) >= 40  # fmt: skip


def markdown_table() -> str:
    """The corpus as a Markdown table: id | input | expected outcome."""
    lines = ["| id | input | expected outcome |", "| --- | --- | --- |"]
    for case in CASES:
        kind = case.spec["kind"]
        where = f"{kind} {case.spec['task']}, {case.ext.upper()}"
        what = case.what.replace("|", "\\|")
        outcome = case.outcome().replace("|", "\\|").replace("\n", "\\n")
        lines.append(f"| `{case.id}` | {what} ({where}) | {outcome} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ ids


AWKWARD_IDS = ["NA", "nan", "None", "null", "1e3", "007", "N/A", "-1", "TRUE", ""]


def test_ids_survive_every_reader(tmp_path: Path):
    """validate -> split -> featurize -> random forest -> evaluate -> report plots, in-process."""
    from biomol_dl import splits
    from biomol_dl.evaluate import run_evaluation
    from biomol_dl.featurize import run_featurize
    from biomol_dl.models.rf import run_rf
    from biomol_dl.report import plots

    molecules = ["C" * (i + 1) + "O" for i in range(len(AWKWARD_IDS))]
    molecules += [f"{'C' * (i + 1)}N" for i in range(10)]
    ids = [*AWKWARD_IDS, *(f"m{i}" for i in range(10))]
    body = [f"{i},{s},{0.1 * k}" for k, (i, s) in enumerate(zip(ids, molecules, strict=True))]
    raw = tmp_path / "raw.csv"
    raw.write_text(rows(*body))
    v = tmp_path / "validate"
    run_validation(raw, smiles(), v / "clean.csv", v / "rejects.csv", v / "summary.json")
    expected = [*AWKWARD_IDS[:-1], "row10", *(f"m{i}" for i in range(10))]
    assert read_table(v / "clean.csv")["id"].tolist() == expected

    split_csv = tmp_path / "split.csv"
    splits.run_split(v / "clean.csv", {"strategy": "random", "fractions": [0.5, 0.25, 0.25]}, 0,
                     "smiles", "regression", ["y"], split_csv, tmp_path / "split.json")  # fmt: skip
    assert read_table(split_csv, strings=("split",))["id"].tolist() == expected
    run_featurize(v / "clean.csv", {"type": "morgan", "n_bits": 64}, tmp_path / "features.pt")
    model = tmp_path / "model"
    model.mkdir()
    run_rf(clean_csv=v / "clean.csv", split_csv=split_csv, features_pt=tmp_path / "features.pt",
           model_spec={"name": "rf", "family": "rf", "params": {"n_estimators": 5}},
           task="regression", label_columns=["y"], seed=0, out_model=model / "model.skops",
           out_predictions=model / "predictions.csv", out_history=model / "history.csv")  # fmt: skip
    predictions = read_table(model / "predictions.csv", strings=("split", "task"))
    assert sorted(predictions["id"]) == sorted(expected)
    metrics = run_evaluation(model / "predictions.csv", "regression", model / "metrics.json")
    n_test = int((read_table(split_csv, strings=("split",))["split"] == "test").sum())
    assert metrics["test"]["n"] == n_test  # every id counted once: none merged into NaN
    manifest = plots.run_model_plots(
        dataset="ids", model="rf", family="rf", task="regression", kind="smiles",
        predictions={0: model / "predictions.csv"}, histories={0: model / "history.csv"},
        metrics={0: model / "metrics.json"}, clean_csv=v / "clean.csv",
        validate_summary=v / "summary.json", primary_metric="rmse", rank_split="test",
        out_dir=tmp_path / "plots",
    )  # fmt: skip
    assert {p["name"] for p in manifest} >= {"parity", "error_vs_size"}


if __name__ == "__main__":
    print(markdown_table())
