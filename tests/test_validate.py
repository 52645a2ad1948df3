"""Validation: every row is kept or rejected with a reason, labels are parsed per task, duplicate
policies behave, and every broken file fails with one line naming the file."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from biomol_dl.io import DataError, read_raw_table
from biomol_dl.validate import run_validation, validate_table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
BROKEN = DATA / "broken"
SHARED = (ROOT / ".." / "shared" / "datasets").resolve()

MULTITASK = {
    "kind": "smiles",
    "input_column": "smiles",
    "id_column": "mol_id",
    "label_columns": ["task_a", "task_b", "task_c"],
    "task": "multitask_binary",
    "validation": {"largest_fragment": True},
}
REGRESSION = {**MULTITASK, "id_column": "name", "label_columns": ["logS"], "task": "regression"}
PEPTIDES = {
    "kind": "protein",
    "input_column": "sequence",
    "id_column": "pep_id",
    "label_columns": ["label"],
    "task": "binary",
}


def _validate(path: Path, spec: dict, fmt: str = "csv"):
    return validate_table(read_raw_table(path, fmt), spec, source_name=str(path))


def _reason_of(rejects: pd.DataFrame, row: int) -> str:
    reasons = rejects.loc[rejects["row"] == row, "reason"].tolist()
    assert len(reasons) == 1, f"row {row} appears {len(reasons)} times in rejects"
    return reasons[0]


def _check_invariant(clean: pd.DataFrame, rejects: pd.DataFrame, summary: dict) -> None:
    assert summary["kept"] == len(clean) and summary["rejected"] == len(rejects)
    assert summary["kept"] + summary["rejected"] == summary["rows_in"]
    # Every input row is accounted for exactly once, in one of the two tables.
    rows = sorted(clean["row"].tolist() + rejects["row"].tolist())
    assert rows == list(range(1, summary["rows_in"] + 1))
    assert sum(summary["by_reason"].values()) == summary["rejected"]


def test_broken_multitask_molecules_every_row_accounted():
    clean, rejects, summary = _validate(BROKEN / "molecules.csv", MULTITASK)
    _check_invariant(clean, rejects, summary)
    assert list(clean.columns) == ["id", "input", "row", "task_a", "task_b", "task_c", "n_merged"]
    expected = {
        2: "invalid_smiles",
        3: "empty_input",
        6: "invalid_label",
        7: "duplicate_merged",
        8: "duplicate_conflict",
        9: "duplicate_conflict",
        10: "all_labels_missing",
        11: "invalid_smiles",
    }
    for row, code in expected.items():
        assert _reason_of(rejects, row).split(":")[0] == code, row
    assert set(clean["row"]) == {1, 4, 5, 12, 13, 14, 15}
    assert "unclosed ring" in _reason_of(rejects, 2)
    assert "valence" in _reason_of(rejects, 11)
    assert "'maybe'" in _reason_of(rejects, 6)
    assert rejects.loc[rejects["row"] == 6, "column"].item() == "task_a"
    assert "merged into row 1" in _reason_of(rejects, 7)
    assert "task_a labels 0 and 1" in _reason_of(rejects, 8)

    by_row = clean.set_index("row")
    # Row 7 (OCC) agreed with row 1 (CCO) where both had labels: merged, gaps filled.
    assert by_row.loc[1, ["task_a", "task_b", "task_c"]].tolist() == [1, 0, 0]
    assert by_row.loc[1, "n_merged"] == 2
    # An empty id falls back to row<N>; a repeated one is renamed, never a reason to drop data.
    assert by_row.loc[13, "id"] == "row13" and by_row.loc[14, "id"] == "m12_row14"
    assert clean["id"].is_unique
    assert summary["ids"]["filled_from_row"] == 1 and summary["ids"]["renamed"] == 1
    assert by_row.loc[4, "input"] == "Oc1ccccc1"  # whitespace stripped, canonical
    assert by_row.loc[5, "input"] == "CC(=O)[O-]"  # sodium counter-ion removed
    assert summary["input_stats"]["whitespace_stripped"] == 1
    assert summary["input_stats"]["largest_fragment_kept"] == 1
    assert summary["label_stats"]["task_b"]["missing"] == 0
    assert summary["by_reason"]["duplicate_conflict"] == 2


def test_regression_duplicates_are_averaged_and_labels_checked():
    clean, rejects, summary = _validate(BROKEN / "solubility.csv", REGRESSION)
    _check_invariant(clean, rejects, summary)
    ethanol = clean.set_index("id").loc["ethanol"]
    assert ethanol["logS"] == pytest.approx(2.0) and ethanol["n_merged"] == 3
    assert "included in the mean" in _reason_of(rejects, 2)
    assert _reason_of(rejects, 4).startswith("invalid_smiles")
    assert _reason_of(rejects, 5) == "invalid_label: 'abc' is not a number"
    assert _reason_of(rejects, 6).startswith("missing_label")
    assert "not finite" in _reason_of(rejects, 10)
    assert summary["duplicates"]["label_range_max"] == pytest.approx(2.0)
    stats = summary["label_stats"]["logS"]
    assert stats["min"] == pytest.approx(-2.0) and stats["max"] == pytest.approx(2.0)
    assert stats["mean"] == pytest.approx(clean["logS"].mean())


@pytest.mark.parametrize(
    ("policy", "kept_ethanol", "reason"),
    [("first", 1.0, "duplicate_dropped"), ("keep", None, None), ("drop_conflicts", None, None)],
)
def test_regression_duplicate_policies(policy, kept_ethanol, reason):
    spec = {**REGRESSION, "validation": {"duplicates": policy}}
    clean, rejects, summary = _validate(BROKEN / "solubility.csv", spec)
    _check_invariant(clean, rejects, summary)
    ethanol = clean[clean["input"] == "CCO"]
    if policy == "keep":
        assert len(ethanol) == 3 and (ethanol["n_merged"] == 1).all()
    elif policy == "first":
        assert ethanol["logS"].tolist() == [kept_ethanol]
        assert _reason_of(rejects, 3).startswith(reason)
    else:  # 1.0, 2.0, 3.0 disagree: every copy goes
        assert ethanol.empty
        assert all(_reason_of(rejects, r).startswith("duplicate_conflict") for r in (1, 2, 3))


def test_salt_kept_whole_without_largest_fragment():
    clean, _, _ = _validate(BROKEN / "solubility.csv", {**REGRESSION, "validation": {}})
    assert "CC(=O)[O-].[Na+]" in clean["input"].tolist()


def test_canonical_false_keeps_the_written_smiles():
    spec = {**REGRESSION, "validation": {"canonical": False, "duplicates": "keep"}}
    clean, _, _ = _validate(BROKEN / "solubility.csv", spec)
    assert clean.set_index("id").loc["ethanol_c", "input"] == "C(C)O"


@pytest.mark.parametrize(
    ("validation", "expected"),
    [
        (
            {},
            {
                2: "non_standard_residue: X at position 4",
                6: "non_standard_residue: B at position 3",
                10: "non_standard_residue: U at position 4",
                4: "invalid_character: '*' at position 3",
                7: "empty_input",
            },
        ),
        ({"ambiguous": "keep"}, {4: "invalid_character", 7: "empty_input"}),
        ({"ambiguous": "replace_x"}, {4: "invalid_character", 7: "empty_input"}),
        ({"uppercase": False}, {3: "lowercase_residue: 'a' at position 1"}),
        ({"max_length": 30}, {5: "too_long: 40 > max_length 30"}),
        ({"min_length": 5}, {8: "too_short: 3 < min_length 5"}),
    ],
)
def test_protein_policies(validation, expected):
    clean, rejects, summary = _validate(
        BROKEN / "peptides.csv", {**PEPTIDES, "validation": validation}
    )
    _check_invariant(clean, rejects, summary)
    for row, reason in expected.items():
        assert _reason_of(rejects, row).startswith(reason), (row, _reason_of(rejects, row))
    inputs = clean.set_index("row")["input"]
    if validation.get("ambiguous") == "replace_x":
        assert inputs[6] == "ACXXEF" and inputs[10] == "ACDXEF" and inputs[2] == "ACDXFG"
    if validation.get("ambiguous") == "keep":
        assert inputs[6] == "ACBZEF"
    if "uppercase" not in validation:
        assert inputs[3] == "ACDEFG"
    if "min_length" not in validation:
        assert inputs[9] == "GLFD"
    assert summary["input_stats"]["length"]["min"] >= validation.get("min_length", 1)


def test_binary_string_labels_and_multiclass():
    df = pd.DataFrame(
        {
            "smiles": ["CCO", "CCN", "CCC", "CCCl", "CCBr"],
            "bbb": ["BBB+", "BBB-", " BBB+ ", "", "BBB?"],
            "kind": ["b", "a", "c", "a", "10"],
        }
    )
    base = {"kind": "smiles", "input_column": "smiles", "id_column": None}
    spec = {**base, "label_columns": ["bbb"], "task": "binary", "positive_label": "BBB+"}
    with pytest.raises(DataError, match="negative_label"):
        validate_table(df, spec, source_name="t.csv")
    spec["validation"] = {"negative_label": "BBB-"}
    clean, rejects, summary = validate_table(df, spec, source_name="t.csv")
    assert clean["bbb"].tolist() == [1, 0, 1] and clean["id"].tolist() == ["row1", "row2", "row3"]
    assert _reason_of(rejects, 4).startswith("missing_label")
    assert _reason_of(rejects, 5).startswith("invalid_label: 'BBB?'")
    assert summary["label_stats"]["bbb"] == {"0": 1, "1": 2}

    spec = {**base, "label_columns": ["kind"], "task": "multiclass"}
    clean, _, summary = validate_table(df, spec, source_name="t.csv")
    assert summary["classes"] == ["10", "a", "b", "c"]
    assert clean["kind"].tolist() == [2, 1, 3, 1, 0]
    clean, rejects, summary = validate_table(
        df, {**spec, "classes": ["c", "b", "a"]}, source_name="t.csv"
    )
    assert clean["kind"].tolist() == [1, 2, 0, 2]
    assert "not one of the classes" in _reason_of(rejects, 5)


def test_bad_spec_fails_with_one_line():
    df = read_raw_table(BROKEN / "solubility.csv", "csv")
    with pytest.raises(DataError, match="unknown validation option.*'largest_fragments'"):
        validate_table(
            df, {**REGRESSION, "validation": {"largest_fragments": True}}, source_name="x.csv"
        )
    with pytest.raises(DataError, match="'mean' averages regression"):
        validate_table(
            df,
            {
                **PEPTIDES,
                "input_column": "smiles",
                "id_column": None,
                "label_columns": ["logS"],
                "validation": {"duplicates": "mean"},
            },
            source_name="x.csv",
        )


def test_run_validation_writes_the_contract_files(tmp_path):
    out = {
        k: tmp_path / f"{k}.{e}"
        for k, e in (("clean", "csv"), ("rejects", "csv"), ("summary", "json"))
    }
    spec = {**MULTITASK, "source": {"type": "path", "path": str(BROKEN / "molecules.csv")}}
    summary = run_validation(
        BROKEN / "molecules.csv", spec, out["clean"], out["rejects"], out["summary"]
    )
    written = json.loads(out["summary"].read_text())
    assert written["kept"] + written["rejected"] == written["rows_in"] == 15
    assert written == json.loads(json.dumps(summary))
    assert len(written["source"]["sha256"]) == 64
    clean = pd.read_csv(out["clean"])
    assert clean["task_c"].isna().sum() == 0 and set(clean["task_a"].dropna()) <= {0, 1}
    # Missing multitask labels are empty cells; present ones are written 0/1, not 0.0/1.0.
    text = out["clean"].read_text().splitlines()
    assert all(".0" not in line.split(",", 3)[3] for line in text[1:])
    rejects = pd.read_csv(out["rejects"], keep_default_na=False)
    assert list(rejects.columns) == ["row", "line", "id", "column", "value", "reason"]
    assert (rejects["line"] == rejects["row"] + 1).all()  # data row N starts on line N + 1


def test_header_less_source_options(tmp_path):
    raw = tmp_path / "amp.csv"
    raw.write_text("4,1,UniProt,AMP\nGLWSKIK, 1\nMKVLAAG, 0\nGLWSKIK, 1\nAAAXAA,0\n")
    spec = {
        "kind": "protein",
        "source": {
            "type": "path",
            "path": str(raw),
            "header": False,
            "skip_rows": 1,
            "columns": ["sequence", "label"],
        },
        "input_column": "sequence",
        "label_columns": ["label"],
        "task": "binary",
    }
    outs = [tmp_path / n for n in ("c.csv", "r.csv", "s.json")]
    summary = run_validation(raw, spec, *outs)
    assert (summary["rows_in"], summary["kept"]) == (4, 2)
    assert summary["by_reason"] == {"duplicate_merged": 1, "non_standard_residue": 1}
    assert pd.read_csv(outs[0])["label"].tolist() == [1, 0]


@pytest.mark.parametrize(
    ("name", "spec_update", "message"),
    [
        ("does_not_exist.csv", {}, "file not found"),
        ("empty.csv", {}, "empty file"),
        ("tab_separated.csv", {}, "only 1 column found"),
        ("latin1.csv", {}, "not UTF-8 text (byte 0xe9 at offset 35, line 3)"),
        ("solubility.csv", {"input_column": "SMILES"}, "unknown column 'SMILES'; available:"),
        ("all_invalid.csv", {}, "no valid rows remain"),
    ],
)
def test_broken_files_raise_one_line(tmp_path, name, spec_update, message):
    spec = {
        "kind": "smiles",
        "input_column": "smiles",
        "label_columns": ["label"],
        "task": "binary",
        **spec_update,
    }
    if name == "solubility.csv":
        spec["label_columns"] = ["logS"]
    outs = [tmp_path / n for n in ("c.csv", "r.csv", "s.json")]
    with pytest.raises(DataError) as info:
        run_validation(BROKEN / name, spec, *outs)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(BROKEN / name)), text
    assert message in text
    assert not outs[0].exists()


@pytest.mark.parametrize("named_logs", [False, True], ids=["log0", "named_logs"])
def test_rule_script_reports_data_error_as_one_line(tmp_path, named_logs):
    """scripts/validate.py with a stand-in `snakemake` object: exit 1, `biomol-dl: ...`, no
    traceback. With the rule's named logs, the message names the user's file (from the
    provenance) and the log copies of rejects / summary, which survive the failed job."""
    logs = {"log": "validate.log", "rejects": "v.rejects.csv", "summary": "v.summary.json"}
    logs = {k: str(tmp_path / "logs" / v) for k, v in logs.items()}
    provenance = ""
    if named_logs:
        provenance = str(tmp_path / "provenance.json")
        Path(provenance).write_text(json.dumps({"type": "path", "origin": "data/my.csv",
                                                "file": "data/my.csv"}))  # fmt: skip
    log_list = f"NL(fromdict={logs!r})" if named_logs else f"NL([{logs['log']!r}])"
    runner = tmp_path / "run.py"
    runner.write_text(
        textwrap.dedent(f"""
        import runpy, sys
        from types import SimpleNamespace as NS
        from snakemake.iocontainers import Namedlist as NL
        sys.path.insert(0, {str(ROOT / "scripts")!r})
        out = {str(tmp_path)!r}
        spec = {{"kind": "smiles", "input_column": "smiles", "label_columns": ["label"],
                 "task": "binary"}}
        smk = NS(
            input=NL(fromdict={{"raw": {str(BROKEN / "all_invalid.csv")!r},
                                "provenance": {provenance!r}}}),
            output=NL(fromdict={{"clean": out + "/c.csv", "rejects": out + "/r.csv",
                                 "summary": out + "/s.json"}}),
            params=NL(fromdict={{"spec": spec}}), wildcards=NL(fromdict={{"dataset": "broken"}}),
            log={log_list}, rule="validate", threads=1, resources=NL(), config={{}},
        )
        runpy.run_path({str(ROOT / "scripts" / "validate.py")!r}, init_globals={{"snakemake": smk}})
    """)
    )
    env = {**os.environ, "BIOMOL_DL_TRACKING": "0"}
    proc = subprocess.run([sys.executable, str(runner)], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    shown = "data/my.csv" if named_logs else str(BROKEN / "all_invalid.csv")
    assert last.startswith(f"biomol-dl: {shown}: no valid rows remain"), last
    assert "no valid rows remain" in Path(logs["log"]).read_text()
    if named_logs:
        assert f"every reason is in {logs['rejects']} (summary: {logs['summary']})" in last
        rejects = pd.read_csv(logs["rejects"])
        summary = json.loads(Path(logs["summary"]).read_text())
        assert summary["kept"] == 0 and summary["rejected"] == summary["rows_in"] == len(rejects)
        assert summary["source"]["name"] == "data/my.csv"
    else:
        assert not Path(logs["rejects"]).exists()


@pytest.mark.slow
def test_failed_validation_keeps_its_diagnostics_in_the_log_folder(tmp_path, tiny_config):
    """A real Snakemake run where every row is rejected: the job fails, Snakemake deletes its
    outputs, the named logs keep rejects and summary, and the error names data/bad.csv (the
    path as written in the config) and where the reasons are."""
    from conftest import snakemake

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.csv").write_text("id,smiles,y\na,CC O,1\nb,C1CC,2\n")
    config = {
        **tiny_config,
        "datasets": {
            "bad": {"kind": "smiles", "source": {"type": "path", "path": "data/bad.csv"},
                    "input_column": "smiles", "id_column": "id", "label_columns": ["y"],
                    "task": "regression", "split": {"strategy": "random"}, "seeds": [0],
                    "models": ["rf_morgan"]},
        },
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(
        tmp_path, tmp_path / "config.yaml", "--cores", "1", "results/bad/validate/clean.csv",
        check=False, env={"BIOMOL_DL_TRACKING": "0"},
    )  # fmt: skip
    assert proc.returncode != 0
    assert not (tmp_path / "results" / "bad" / "validate" / "rejects.csv").exists()
    rejects = pd.read_csv(tmp_path / "logs" / "validate" / "bad.rejects.csv")
    assert [r.split(":")[0] for r in rejects["reason"]] == [
        "whitespace_in_smiles",
        "invalid_smiles",
    ]
    summary = json.loads((tmp_path / "logs" / "validate" / "bad.summary.json").read_text())
    assert summary["rows_in"] == summary["rejected"] == 2
    message = next(
        line
        for line in (tmp_path / "logs" / "validate" / "bad.log").read_text().splitlines()
        if "no valid rows remain" in line
    )
    assert "data/bad.csv: no valid rows remain" in message and "resources" not in message
    assert "every reason is in logs/validate/bad.rejects.csv" in message


REAL = [
    (
        "esol",
        "esol/delaney-processed.csv",
        "smiles",
        ["measured log solubility in mols per litre"],
        "regression",
        "8c06a76f0c6487d29ab0f903e6a7a7139f189ab3c1178f159c8be8964602f189",
    ),
    (
        "tox21",
        "tox21/tox21.csv",
        "smiles",
        ["NR-AR", "NR-AhR", "SR-ARE", "SR-p53"],
        "multitask_binary",
        "b58cc1f683e78e3c7a1bf7116e9aac0119804018d100f7b8cdb0857941c31aca",
    ),
    (
        "bbbp",
        "bbbp/bbbp.csv",
        "smiles",
        ["p_np"],
        "binary",
        "a61e17872cbec0743a6147dc802a1f7550acfe8dc1053f881f4c42a3ce2dc597",
    ),
]


@pytest.mark.parametrize(
    ("name", "rel", "column", "labels", "task", "sha"), REAL, ids=[r[0] for r in REAL]
)
def test_real_datasets_through_the_mirror(
    tmp_path, monkeypatch, name, rel, column, labels, task, sha
):
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED}")
    from biomol_dl.sources import fetch_dataset

    monkeypatch.delenv("BIOMOL_DL_MIRROR", raising=False)
    source = {
        "type": "url",
        "url": f"https://example.invalid/{Path(rel).name}",
        "sha256": sha,
        "mirror_path": rel,
    }
    raw = tmp_path / "raw.csv"
    provenance = fetch_dataset(
        source, raw, tmp_path / "prov.json", mirror=[str(SHARED)], cache_dir=tmp_path / "dl"
    )
    assert provenance["mirror_used"] and provenance["raw_sha256"] == sha
    spec = {
        "kind": "smiles",
        "source": source,
        "input_column": column,
        "label_columns": labels,
        "task": task,
    }
    outs = [tmp_path / n for n in ("c.csv", "r.csv", "s.json")]
    summary = run_validation(raw, spec, *outs, provenance=tmp_path / "prov.json")
    assert summary["kept"] + summary["rejected"] == summary["rows_in"]
    assert summary["rows_in"] == len(pd.read_csv(raw))
    assert summary["source"]["origin"] == source["url"]
    if name == "esol":
        # Some ESOL SMILES end in a space; none may be rejected for it.
        padded = (pd.read_csv(raw)[column].str.strip() != pd.read_csv(raw)[column]).sum()
        assert summary["input_stats"]["whitespace_stripped"] == padded > 0
        assert "invalid_smiles" not in summary["by_reason"]
    if name == "tox21":
        assert summary["by_reason"]["invalid_smiles"] == 8
        clean = pd.read_csv(outs[0])
        assert clean[labels].isna().any().all()  # missing labels stay missing
    if name == "bbbp":
        # BBBP repeats molecules, some with both labels: every copy of those is rejected.
        assert summary["by_reason"].get("duplicate_conflict", 0) > 0
    for label_stats in summary["label_stats"].values():
        assert not any(isinstance(v, float) and math.isnan(v) for v in label_stats.values())
