"""Prediction for new inputs: the same validation as the dataset, the same featurizer, the
evaluate rule's numbers reproduced from the saved models, ensembles across seeds, and the
predict rule run by Snakemake on tests/data/predict_example.csv."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, snakemake, write_config

from biomol_dl.config import ConfigError, load_config
from biomol_dl.io import DataError
from biomol_dl.predict import combine, input_format, run_predict, validate_inputs
from biomol_dl.report import targets

EXAMPLE = ROOT / "tests" / "data" / "predict_example.csv"


def outputs(tmp_path):
    return {
        "out_predictions": tmp_path / "predictions.csv",
        "out_rejects": tmp_path / "rejects.csv",
        "out_summary": tmp_path / "summary.json",
    }


# ----------------------------------------------------------------------------- validation


def test_inputs_are_validated_like_the_dataset_with_rejects_and_reasons():
    table = pd.DataFrame(
        {
            "name": ["ok", "bad", "", "ok"],
            "smiles": ["OCC", "C1CC(", "c1ccccc1", "CCO"],
        }
    )
    clean, rejects, summary = validate_inputs(
        table, kind="smiles", validation={}, input_column="smiles", id_column="name",
        source_name="new.csv",
    )  # fmt: skip
    # canonical SMILES like the validate rule; duplicates kept; empty id -> row<N>; repeated id
    # renamed as the validate rule does
    assert clean["input"].tolist() == ["CCO", "c1ccccc1", "CCO"]
    assert clean["id"].tolist() == ["ok", "row3", "ok_row4"]
    assert clean["row"].tolist() == [1, 3, 4]
    assert rejects[["row", "id", "column", "value"]].values.tolist() == [
        [2, "bad", "smiles", "C1CC("]
    ]
    assert rejects["reason"].iloc[0].startswith("invalid_smiles")
    assert (summary["rows_in"], summary["kept"], summary["rejected"]) == (4, 3, 1)

    # the dataset's policy applies: a protein dataset that rejects ambiguous residues
    seqs = pd.DataFrame({"sequence": ["ACDK", "acdx", "ACD1"]})
    clean, rejects, _ = validate_inputs(
        seqs, kind="protein", validation={"ambiguous": "reject"}, input_column="sequence",
        id_column=None, source_name="peptides.csv",
    )  # fmt: skip
    assert clean["input"].tolist() == ["ACDK"]
    reasons = [r.split(":")[0] for r in rejects["reason"]]
    assert reasons == ["non_standard_residue", "invalid_character"]


def test_missing_column_and_unknown_format_fail_in_one_line(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("name,smi\na,CCO\n")
    with pytest.raises(DataError, match="smiles"):
        run_predict(
            input_path=path, input_column="smiles", id_column=None, kind="smiles",
            validation={}, task="regression", validate_summary=None, family="rf",
            model_files={0: "unused"}, **outputs(tmp_path),
        )  # fmt: skip
    with pytest.raises(DataError, match="unsupported format 'xlsx'"):
        input_format(tmp_path / "new.xlsx")
    assert input_format(tmp_path / "x.fasta") == "fasta" and input_format("x.txt", "tsv") == "tsv"
    assert input_format(tmp_path / "new.sdf.gz") == "sdf"  # as a dataset source's: by name


# ----------------------------------------------------------------------------- ensembles


def test_ensemble_mean_and_sd_across_seeds():
    frames = {
        s: pd.DataFrame({"input": ["a", "b"], "task": "y", "y_pred": [v, v * 2]})
        for s, v in [(0, 0.1), (3, 0.3), (7, 0.5)]
    }
    out = combine(frames, "binary")
    values = np.array([[0.1, 0.2], [0.3, 0.6], [0.5, 1.0]])
    assert np.allclose(out["y_pred"], values.mean(axis=0))
    assert np.allclose(out["y_sd"], values.std(axis=0, ddof=1))
    assert out["label"].tolist() == [0, 1]
    assert out["seed3"].tolist() == [0.3, 0.6] and (out["n_models"] == 3).all()

    single = combine({0: frames[0]}, "regression")
    assert single["y_sd"].isna().all() and "label" not in single

    probs = {
        s: pd.DataFrame({"input": ["a"], "task": "c", "y_pred": [0], "p_0": [p0], "p_1": [0.1],
                         "p_2": [0.9 - p0]})
        for s, p0 in [(0, 0.6), (1, 0.2)]
    }  # fmt: skip
    out = combine(probs, "multiclass", classes=["low", "mid", "high"])
    assert out["p_0"].iloc[0] == pytest.approx(0.4) and out["p_2"].iloc[0] == pytest.approx(0.5)
    assert out["y_pred"].iloc[0] == 2 and out["label"].iloc[0] == "high"
    assert out["p_0_sd"].iloc[0] == pytest.approx(np.std([0.6, 0.2], ddof=1))
    with pytest.raises(ValueError, match="different rows"):
        combine({0: frames[0], 1: frames[0].iloc[:1]}, "binary")


# ----------------------------------------------------------------------------- trained models


def model_path(run, dataset, model, seed=0):
    """The one model file (its family's model_file) a training job wrote."""
    (path,) = (run / "results" / dataset / "train" / model / f"seed{seed}").glob("model.*")
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "model", "kind", "task"),
    [
        ("tiny_logbb", "rf_morgan", "smiles", "regression"),
        ("tiny_logbb", "mlp_morgan", "smiles", "regression"),
        ("tiny_peptides", "rf_kmer", "protein", "binary"),
        ("tiny_peptides", "mlp_kmer", "protein", "binary"),
    ],
)
def test_predicting_the_test_split_reproduces_the_evaluate_rule(
    tiny_run, tmp_path, dataset, model, kind, task
):
    results = tiny_run / "results" / dataset
    clean = pd.read_csv(results / "validate" / "clean.csv", dtype={"id": str, "input": str})
    split = pd.read_csv(results / "split" / "seed0.csv", dtype=str)
    test = clean[clean["id"].isin(split.loc[split["split"] == "test", "id"])]
    assert len(test) > 5
    new = tmp_path / "test_rows.csv"
    test[["id", "input"]].to_csv(new, index=False)
    summary = run_predict(
        input_path=new, input_column="input", id_column="id", kind=kind, validation={},
        task=task, validate_summary=results / "validate" / "summary.json",
        family=model.split("_")[0], model_files={0: model_path(tiny_run, dataset, model)},
        **outputs(tmp_path),
    )  # fmt: skip
    assert summary["rejected"] == 0
    ours = pd.read_csv(tmp_path / "predictions.csv", dtype={"id": str})
    theirs = pd.read_csv(results / "train" / model / "seed0" / "predictions.csv", dtype={"id": str})
    theirs = theirs[theirs["split"] == "test"]
    merged = ours.merge(theirs, on=["id", "task"], suffixes=("", "_evaluate"), validate="1:1")
    assert len(merged) == len(test)
    # predictions.csv of the forest is written with 6 significant digits
    np.testing.assert_allclose(merged["y_pred"], merged["y_pred_evaluate"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_an_ensemble_of_identical_models_has_zero_spread(tiny_run, tmp_path):
    model = model_path(tiny_run, "tiny_logbb", "mlp_morgan")
    run_predict(
        input_path=EXAMPLE, input_column="smiles", id_column="name", kind="smiles",
        validation={}, task="regression", validate_summary=None, family="mlp",
        model_files={0: model, 1: model}, **outputs(tmp_path),
    )  # fmt: skip
    out = pd.read_csv(tmp_path / "predictions.csv")
    assert (out["n_models"] == 2).all() and np.allclose(out["y_sd"], 0, atol=1e-7)
    assert np.allclose(out["seed0"], out["seed1"]) and np.allclose(out["y_pred"], out["seed0"])


@pytest.mark.slow
def test_predict_rule_on_the_example_file(tiny_run, tiny_config):
    config = copy.deepcopy(tiny_config)
    config["predict"] = {
        "example": {"dataset": "tiny_logbb", "model": "rf_morgan", "input": str(EXAMPLE),
                    "id_column": "name"},
        "example_mlp": {"dataset": "tiny_logbb", "model": "mlp_morgan", "input": str(EXAMPLE),
                        "seeds": [0]},
        "peptides": {"dataset": "tiny_peptides", "model": "rf_kmer",
                     "input": str(ROOT / "tests" / "data" / "tiny_peptides.csv")},
    }  # fmt: skip
    configfile = tiny_run / "config_predict.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [f"results/predict/{name}/predictions.csv" for name in config["predict"]]
    snakemake(tiny_run, configfile, "--cores", "2", *targets)

    out = tiny_run / "results" / "predict" / "example"
    pred = pd.read_csv(out / "predictions.csv")
    names = pd.read_csv(EXAMPLE)["name"].tolist()
    assert pred["id"].tolist() == [n for n in names if n != "broken_ring"]
    assert pred["row"].tolist() == [1, 2, 3, 4, 6]
    assert pred["y_pred"].notna().all() and (pred["n_models"] == 1).all()
    rejects = pd.read_csv(out / "rejects.csv")
    assert rejects["id"].tolist() == ["broken_ring"] and rejects["row"].tolist() == [5]
    assert rejects["reason"].iloc[0].startswith("invalid_smiles")
    # without id_column, ids are row<N>
    mlp = pd.read_csv(tiny_run / "results" / "predict" / "example_mlp" / "predictions.csv")
    assert mlp["id"].tolist() == ["row1", "row2", "row3", "row4", "row6"]
    assert (tiny_run / "logs" / "predict" / "example.log").is_file()
    # how far to trust each row: the interval / calibrated probability fitted on validation
    # by the evaluate rule, and the nearest training molecule or sequence
    for frame in (pred, mlp):
        assert ((frame["y_lo"] < frame["y_pred"]) & (frame["y_pred"] < frame["y_hi"])).all()
        assert frame["similarity"].between(0, 1).all()
        assert (frame["in_domain"] == (frame["similarity"] >= 0.3)).all()
    trust = json.loads((out / "summary.json").read_text())["trust"]
    assert trust["coverage"] == 0.9 and trust["domain"]["threshold"] == 0.3
    peptides = pd.read_csv(tiny_run / "results" / "predict" / "peptides" / "predictions.csv")
    assert peptides["p_calibrated"].between(0, 1).all()
    assert set(peptides["set"].fillna("")) <= {"", "0", "1", "0|1"}
    assert peptides["similarity"].max() == 1.0  # the training sequences themselves


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"dataset": "nope", "model": "rf_morgan"}, "'predict.bad.dataset': unknown dataset"),
        ({"dataset": "tiny_logbb", "model": "rf_kmer"}, "'predict.bad.model': 'rf_kmer' is not"),
        ({"dataset": "tiny_logbb", "model": "rf_morgan", "seeds": [5]}, "'predict.bad.seeds'"),
    ],
)
def test_bad_predict_entries_name_their_key(tiny_config, entry, message):
    config = load_config(copy.deepcopy(tiny_config))
    config["predict"] = {"bad": {"input": "x.csv", **entry}}
    with pytest.raises(ConfigError, match=re.escape(message)):
        targets.predict_specs(config)


def test_predict_entries_resolve_to_model_files_and_dataset_defaults(tiny_config):
    config = copy.deepcopy(tiny_config)
    config["predict"] = {"new": {"dataset": "tiny_peptides", "model": "mlp_kmer", "input": "p.csv"}}
    spec = targets.predict_specs(load_config(config))["new"]
    assert spec["models"] == ["results/tiny_peptides/train/mlp_kmer/seed0/model.pt"]
    assert spec["input_column"] == "sequence" and spec["kind"] == "protein"
    assert spec["seeds"] == [0] and spec["family"] == "mlp" and spec["id_column"] is None


def test_a_bad_predict_entry_fails_the_workflow_before_any_job(tmp_path, tiny_config):
    config = copy.deepcopy(tiny_config)
    config["predict"] = {"bad": {"input": str(EXAMPLE), "dataset": "tiny_logbb", "model": "x"}}
    proc = snakemake(tmp_path, write_config(tmp_path, config), "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "predict.bad.model" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
