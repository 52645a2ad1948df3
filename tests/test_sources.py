"""Sources: sha256 is enforced everywhere, the mirror stands in for the network, package files are
found without importing the package, zip members and multi-part sources, FASTA header labels."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from biomol_dl.io import DataError, read_raw_table
from biomol_dl.sources import (
    MIRROR_ENV,
    fetch_dataset,
    mirror_folders,
    resolve_source,
    source_format,
)
from biomol_dl.validate import run_validation

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CSV = b"smiles,y\nCCO,1.5\nCCN,0.5\n"


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_path_source_sha256_mismatch_is_an_error(tmp_path):
    path = _write(tmp_path / "x.csv", CSV)
    assert (
        resolve_source(
            {"type": "path", "path": str(path), "sha256": _sha(CSV)},
            mirror=None,
            cache_dir=tmp_path / "dl",
        )
        == path
    )
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        resolve_source(
            {"type": "path", "path": str(path), "sha256": wrong},
            mirror=None,
            cache_dir=tmp_path / "dl",
        )
    text = _one_line(err)
    assert str(path) in text and wrong in text and _sha(CSV) in text and "mismatch" in text


def test_download_is_verified_and_cached(tmp_path):
    origin = _write(tmp_path / "remote" / "data.csv", CSV)
    source = {"type": "url", "url": origin.as_uri(), "sha256": _sha(CSV)}
    cache = tmp_path / "dl"
    path = resolve_source(source, mirror=None, cache_dir=cache)
    assert path == cache / _sha(CSV) / "data.csv" and path.read_bytes() == CSV
    origin.unlink()  # the cached copy now serves without any "network"
    assert resolve_source(source, mirror=None, cache_dir=cache) == path
    path.write_bytes(CSV + b"CCC,0\n")  # a corrupted cache is caught, not used
    with pytest.raises(DataError, match="sha256 mismatch for cached download"):
        resolve_source(source, mirror=None, cache_dir=cache)


def test_downloaded_content_with_wrong_sha256_is_an_error(tmp_path):
    origin = _write(tmp_path / "remote" / "data.csv", CSV)
    wrong = _sha(b"something else")
    with pytest.raises(DataError) as err:
        resolve_source(
            {"type": "url", "url": origin.as_uri(), "sha256": wrong},
            mirror=None,
            cache_dir=tmp_path / "dl",
        )
    text = _one_line(err)
    assert origin.as_uri() in text and wrong in text and _sha(CSV) in text
    assert not (tmp_path / "dl" / wrong / "data.csv").exists()


@pytest.mark.parametrize("mirror_path", [None, "sub/renamed.csv"])
def test_mirror_stands_in_for_a_missing_url(tmp_path, mirror_path):
    absent = tmp_path / "nowhere" / "data.csv"  # the URL's file does not exist
    mirror = tmp_path / "mirror"
    _write(mirror / (mirror_path or "data.csv"), CSV)
    source = {"type": "url", "url": absent.as_uri(), "sha256": _sha(CSV)}
    if mirror_path:
        source["mirror_path"] = mirror_path
    out = tmp_path / "res" / "raw.csv"
    prov = fetch_dataset(
        source,
        out,
        tmp_path / "res" / "prov.json",
        mirror=[str(tmp_path / "empty_mirror"), str(mirror)],
        cache_dir=tmp_path / "dl",
    )
    assert out.read_bytes() == CSV and prov["mirror_used"] is True
    assert json.loads((tmp_path / "res" / "prov.json").read_text())["sha256"] == _sha(CSV)
    assert not (tmp_path / "dl").exists()  # nothing was downloaded


def test_mirror_env_variable_overrides_config(tmp_path, monkeypatch):
    env_mirror = tmp_path / "env_mirror"
    _write(env_mirror / "data.csv", CSV)
    monkeypatch.setenv(MIRROR_ENV, str(env_mirror))
    assert mirror_folders(["/config/mirror"]) == [env_mirror]
    source = {
        "type": "url",
        "url": (tmp_path / "absent.csv").as_uri().replace("absent", "data"),
        "sha256": _sha(CSV),
    }
    assert resolve_source(source, mirror="/config/mirror", cache_dir=tmp_path / "dl") == (
        env_mirror / "data.csv"
    )


def test_mirror_with_wrong_content_is_an_error(tmp_path):
    mirror = tmp_path / "mirror"
    bad = _write(mirror / "data.csv", CSV + b"CCC,9\n")
    source = {"type": "url", "url": (tmp_path / "data.csv").as_uri(), "sha256": _sha(CSV)}
    with pytest.raises(DataError) as err:
        resolve_source(source, mirror=str(mirror), cache_dir=tmp_path / "dl")
    text = _one_line(err)
    assert str(bad) in text and "sha256 mismatch" in text and _sha(CSV) in text


@pytest.mark.parametrize(
    "url", ["file:///nonexistent/biomol/data.csv", "http://127.0.0.1:9/data.csv"]
)
def test_no_network_names_the_url_and_the_mirror_variable(tmp_path, url):
    with pytest.raises(DataError) as err:
        resolve_source(
            {"type": "url", "url": url, "sha256": _sha(CSV)},
            mirror=[str(tmp_path)],
            cache_dir=tmp_path / "dl",
        )
    text = _one_line(err)
    assert text.startswith(url) and "download failed" in text and MIRROR_ENV in text


def test_package_resources_without_importing_the_package(tmp_path):
    """In a fresh interpreter: B3DB and modlamp files are found, neither package is imported."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT / "scripts")!r})
from biomol_dl.sources import fetch_dataset
from biomol_dl.io import read_raw_table
out = {str(tmp_path)!r}
p = fetch_dataset({{"type": "package", "package": "B3DB", "resource": "B3DB_regression.tsv"}},
                  out + "/b3db.tsv", out + "/b3db.json", mirror=None, cache_dir=out)
t = read_raw_table(out + "/b3db.tsv", "tsv", required=["SMILES", "logBB"])
print(len(t), p["distribution"], p["sha256"])
p = fetch_dataset({{"type": "package", "package": "modlamp", "resource": "data/AMPvsUniProt.csv"}},
                  out + "/amp.csv", out + "/amp.json", mirror=None, cache_dir=out)
t = read_raw_table(out + "/amp.csv", "csv", header=False, skip_rows=1, columns=["sequence", "label"])
print(len(t), sorted(set(t["label"].str.strip())))
print("imported:", [m for m in ("B3DB", "modlamp") if m in sys.modules])
"""
    import importlib.util

    if importlib.util.find_spec("B3DB") is None or importlib.util.find_spec("modlamp") is None:
        pytest.skip("qc-b3db or modlamp is not installed")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    b3db, amp, imported = proc.stdout.strip().splitlines()
    n, dist, sha = b3db.split()
    assert int(n) > 1000 and dist.lower() == "qc-b3db" and len(sha) == 64
    # Two B3DB names are quoted cells spanning two lines: rows are records, not lines.
    lines = (tmp_path / "b3db.tsv").read_text().count("\n")
    assert int(n) < lines - 1
    assert amp.startswith("5200 ") and "['0', '1']" in amp
    assert imported == "imported: []"


def test_missing_package_or_resource(tmp_path):
    with pytest.raises(DataError, match="'no_such_pkg_xyz' is not installed"):
        resolve_source(
            {"type": "package", "package": "no_such_pkg_xyz", "resource": "a.csv"},
            mirror=None,
            cache_dir=tmp_path,
        )
    with pytest.raises(DataError, match="no file 'nope.tsv'"):
        resolve_source(
            {"type": "package", "package": "pytest", "resource": "nope.tsv"},
            mirror=None,
            cache_dir=tmp_path,
        )
    with pytest.raises(DataError, match="top-level package"):
        resolve_source(
            {"type": "package", "package": "a.b", "resource": "x.csv"},
            mirror=None,
            cache_dir=tmp_path,
        )


def test_zip_member_is_extracted_and_verified(tmp_path):
    archive = tmp_path / "remote" / "splits.zip"
    archive.parent.mkdir()
    tsv = b"sequence\ttarget\nMKV\t1.0\nGLW\t2.0\n"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("splits/a.tsv", tsv)
        zf.writestr("splits/b.csv", CSV)
    zip_sha = _sha(archive.read_bytes())
    mirror = tmp_path / "mirror"
    _write(mirror / "flip" / "splits.zip", archive.read_bytes())
    archive.unlink()
    source = {
        "type": "url",
        "url": archive.as_uri(),
        "sha256": zip_sha,
        "mirror_path": "flip/splits.zip",
        "member": "splits/a.tsv",
    }
    assert source_format(source) == "tsv"
    out = tmp_path / "res" / "raw.tsv"
    prov = fetch_dataset(
        source, out, tmp_path / "res" / "p.json", mirror=[str(mirror)], cache_dir=tmp_path / "dl"
    )
    assert out.read_bytes() == tsv
    assert prov["sha256"] == zip_sha and prov["member_sha256"] == _sha(tsv)
    assert prov["member"] == "splits/a.tsv" and prov["mirror_used"]
    with pytest.raises(DataError) as err:
        resolve_source(
            {**source, "member": "splits/c.csv"}, mirror=[str(mirror)], cache_dir=tmp_path / "dl"
        )
    assert "no member 'splits/c.csv'" in _one_line(err) and "splits/b.csv" in str(err.value)


def _train_test_parts(train, test) -> dict:
    parts = [
        {"type": "path", "path": str(p), "part": n} for p, n in ((train, "train"), (test, "test"))
    ]
    return {"parts": parts}


def test_multipart_sources_are_concatenated_with_a_part_column(tmp_path):
    train = _write(tmp_path / "train.csv", b"gene,solubility,sequence\ng1,0.5,MKV\ng2,0.25,GLW\n")
    test = _write(tmp_path / "test.csv", b"gene,solubility,sequence\ng3,1.0,ACD\n")
    source = _train_test_parts(train, test)
    assert source_format(source) == "csv"
    out = tmp_path / "res" / "raw.csv"
    prov = fetch_dataset(source, out, tmp_path / "res" / "p.json", mirror=None, cache_dir=tmp_path)
    table = pd.read_csv(out, dtype=str)
    assert table["part"].tolist() == ["train", "train", "test"]
    assert table["gene"].tolist() == ["g1", "g2", "g3"]
    assert [p["rows"] for p in prov["parts"]] == [2, 1]
    assert all(len(p["sha256"]) == 64 for p in prov["parts"])
    # The fetched table validates like any other, carrying `part` along.
    spec = {
        "kind": "protein",
        "source": source,
        "input_column": "sequence",
        "id_column": "gene",
        "label_columns": ["solubility"],
        "task": "regression",
        "keep_columns": ["part"],
    }
    outs = [tmp_path / n for n in ("c.csv", "r.csv", "s.json")]
    assert run_validation(out, spec, *outs)["kept"] == 3
    assert pd.read_csv(outs[0])["part"].tolist() == ["train", "train", "test"]


def test_multipart_header_mismatch_names_both_files(tmp_path):
    a = _write(tmp_path / "a.csv", b"gene,solubility,sequence\ng1,0.5,MKV\n")
    b = _write(tmp_path / "b.csv", b"gene,sequence,solubility\ng3,ACD,1.0\n")
    source = _train_test_parts(a, b)
    with pytest.raises(DataError) as err:
        fetch_dataset(
            source, tmp_path / "raw.csv", tmp_path / "p.json", mirror=None, cache_dir=tmp_path
        )
    text = _one_line(err)
    assert str(a) in text and str(b) in text


def test_fasta_header_labels_become_columns(tmp_path):
    table = read_raw_table(DATA / "labelled.fasta", "fasta")
    assert list(table.columns[:4]) == ["id", "sequence", "label", "split"]
    rows = table.set_index("id")
    assert rows.loc["P1", "sequence"] == "MKVLAAGIVGLW"  # wrapped lines joined
    assert rows["label"].tolist() == ["0.5", "1.25", "-0.1"]
    assert rows.loc["P3", "split"] == "train" and rows.loc["P3", "description"] == "Some free text"
    assert rows.loc["P1", "description"] == ""

    source = {"type": "path", "path": str(DATA / "labelled.fasta")}
    assert source_format(source) == "fasta"
    out = tmp_path / "raw.fasta"
    fetch_dataset(source, out, tmp_path / "p.json", mirror=None, cache_dir=tmp_path)
    assert out.read_bytes() == (DATA / "labelled.fasta").read_bytes()  # copied as-is
    spec = {
        "kind": "protein",
        "source": source,
        "input_column": "sequence",
        "id_column": "id",
        "label_columns": ["label"],
        "task": "regression",
        "keep_columns": ["split"],
    }
    outs = [tmp_path / n for n in ("c.csv", "r.csv", "s.json")]
    summary = run_validation(out, spec, *outs)
    assert summary["kept"] == 3 and summary["label_stats"]["label"]["max"] == pytest.approx(1.25)


def test_not_fasta_is_one_line(tmp_path):
    path = _write(tmp_path / "x.fasta", b"smiles,y\nCCO,1\n")
    with pytest.raises(DataError) as err:
        read_raw_table(path, "fasta")
    assert _one_line(err).startswith(str(path)) and "expected '>'" in str(err.value)


def test_messages_name_the_users_file_not_the_internal_copy(tmp_path, monkeypatch):
    """A path is named as written in the config; after fetch, validation names it (or the URL),
    not resources/<dataset>/raw.csv, with the file line of the problem."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        resolve_source({"type": "path", "path": "./data/nope.csv"}, mirror=None, cache_dir="dl")
    assert _one_line(err).startswith("./data/nope.csv: file not found")

    bad = b"smiles,y\nCCO,1\nCCN,2,\n"  # a trailing comma on line 3
    _write(tmp_path / "data" / "my.csv", bad)
    _write(tmp_path / "mirror" / "remote.csv", bad)
    url = "https://example.invalid/remote.csv"
    sources = {
        "./data/my.csv": {"type": "path", "path": "./data/my.csv"},
        url: {"type": "url", "url": url, "sha256": _sha(bad)},
    }
    spec = {"kind": "smiles", "input_column": "smiles", "label_columns": ["y"], "task": "binary"}
    for shown, source in sources.items():
        raw, prov = tmp_path / "resources" / "raw.csv", tmp_path / "resources" / "prov.json"
        fetch_dataset(source, raw, prov, mirror=[tmp_path / "mirror"], cache_dir=tmp_path / "dl")
        outs = [tmp_path / "out" / n for n in ("c.csv", "r.csv", "s.json")]
        with pytest.raises(DataError) as err:
            run_validation(raw, {**spec, "source": source}, *outs, provenance=prov)
        text = _one_line(err)
        assert text.startswith(f"{shown}: line 3 has 3 field(s) but the header (line 1) has 2")
        assert "resources" not in text
