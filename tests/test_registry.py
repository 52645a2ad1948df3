"""The best model of each dataset in the MLflow model registry: chosen on validation, all seeds
as one pyfunc model, whose predict() returns what the predict rule writes, rejects included."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from biomol_dl import registry
from biomol_dl.predict import run_predict

EXAMPLE = ROOT / "tests" / "data" / "predict_example.csv"
PEPTIDES = pd.DataFrame(
    {
        "peptide_id": ["p1", "p2", "p3", "p4"],
        "sequence": ["GLWSTIKNVGKEAAIAAGKAVLGSL", "AC1DE", "", "KKLLKKLLKKLLKKA"],
    }
)


def test_the_best_model_is_chosen_on_validation_never_on_test(tmp_path):
    board = tmp_path / "leaderboard.csv"
    pd.DataFrame(
        {
            "model": ["best_on_test", "best_on_val", "no_val"],
            "val_rmse_mean": [0.9, 0.7, np.nan],
            "test_rmse_mean": [0.5, 0.8, 0.1],
        }
    ).to_csv(board, index=False)
    assert registry.choose_best(board, "rmse") == ("best_on_val", 0.7)
    pd.DataFrame({"model": ["a", "b"], "val_roc_auc_mean": [0.6, 0.8]}).to_csv(board, index=False)
    assert registry.choose_best(board, "roc_auc") == ("b", 0.8)  # higher is better
    with pytest.raises(ValueError, match="no val_accuracy_mean column"):
        registry.choose_best(board, "accuracy")
    assert registry.registered_name("esol") == "biomol-dl.esol"


def _predict_rule(tiny_run, tmp_path, dataset, record, table, id_column):
    """The predict rule's function on `table`, with the registered model's own seed files."""
    results = tiny_run / "results" / dataset
    spec = json.loads((tiny_run / record["model_dir"] / "data" / "data" / "spec.json").read_text())
    files = {
        s: next((results / "train" / record["model"] / f"seed{s}").glob("model.*"))
        for s in record["seeds"]
    }
    table.to_csv(tmp_path / "input.csv", index=False)
    run_predict(
        input_path=tmp_path / "input.csv", input_column=spec["input_column"],
        id_column=id_column, kind=spec["kind"], validation=spec["validation"], task=spec["task"],
        validate_summary=results / "validate" / "summary.json", family=record["family"],
        model_files=files, out_predictions=tmp_path / "predictions.csv",
        out_rejects=tmp_path / "rejects.csv", out_summary=tmp_path / "summary.json",
    )  # fmt: skip
    return (
        pd.read_csv(tmp_path / "predictions.csv", dtype={"id": str}),
        pd.read_csv(tmp_path / "rejects.csv", dtype={"id": str}),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "table", "id_column"),
    [
        ("tiny_logbb", pd.read_csv(EXAMPLE, dtype=str), "name"),
        ("tiny_peptides", PEPTIDES, "peptide_id"),
    ],
)
def test_the_registered_pyfunc_predicts_what_the_predict_rule_writes(
    tiny_run, tmp_path, dataset, table, id_column
):
    import mlflow

    record = json.loads((tiny_run / "results" / "registry" / dataset / "registry.json").read_text())
    report = json.loads((tiny_run / "results" / "report" / dataset / "report.json").read_text())
    assert report["ranking"]["rank_split"] == "val"
    assert record["model"] == report["ranking"]["best_model"] and record["registered"]
    assert record["registered_name"] == f"biomol-dl.{dataset}"

    # mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in os.environ, which every later
    # Snakemake run of the session would inherit: put the variable back as it was, too.
    before, env_before = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{tiny_run}/results/mlflow/mlflow.db")
    try:
        client = mlflow.MlflowClient()
        versions = client.search_model_versions(f"name = '{record['registered_name']}'")
        version = max(versions, key=lambda v: int(v.version))
        assert version.tags["model"] == record["model"]
        model = mlflow.pyfunc.load_model(f"models:/{record['registered_name']}/{version.version}")
    finally:
        mlflow.set_tracking_uri(before)
        if env_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_before
    got = model.predict(table)

    predicted, rejects = _predict_rule(tiny_run, tmp_path, dataset, record, table, id_column)
    assert len(rejects) >= 1  # the inputs hold invalid rows: they come back, with reasons
    assert set(got["row"]) == set(range(1, len(table) + 1))  # every row in, one answer out
    mine = got[got["status"] == "predicted"]
    assert (mine["reason"] == "").all()
    by_row = ["row", "task"]
    pd.testing.assert_frame_equal(
        mine[list(predicted.columns)].sort_values(by_row).reset_index(drop=True),
        predicted.sort_values(by_row).reset_index(drop=True),
        check_dtype=False,
    )
    theirs = got[got["status"] == "rejected"].reset_index(drop=True)
    assert theirs["row"].tolist() == rejects["row"].tolist()
    assert theirs["id"].tolist() == rejects["id"].tolist()
    assert theirs["reason"].tolist() == rejects["reason"].tolist()
