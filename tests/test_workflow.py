"""The workflow as a user runs it: the default DAG dry-runs, bad configs fail early, and the tiny
config runs for real through the Snakemake scheduler to its summary table."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import yaml
from conftest import ROOT, snakemake, write_config


def test_default_config_dry_run(tmp_path):
    proc = snakemake(tmp_path, ROOT / "config" / "config.yaml", "--cores", "2", "--dry-run")
    out = proc.stdout + proc.stderr
    for rule in (
        "fetch",
        "validate",
        "split",
        "featurize",
        "train_rf",
        "train_mlp",
        "evaluate",
        "summary",
    ):
        assert rule in out, f"rule {rule} missing from the default DAG"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda c: c["datasets"]["tiny_logbb"].update(task="regresion"),
            "datasets.tiny_logbb.task",
        ),
        (lambda c: c["datasets"]["tiny_logbb"].update(models=["nope"]), "unknown model 'nope'"),
        (lambda c: c["models"]["rf_morgan"].update(featurizer="ecfp"), "unknown featurizer 'ecfp'"),
        (
            lambda c: c["datasets"]["tiny_logbb"]["split"].update(fractions=[0.5, 0.2, 0.2]),
            "sums to 0.9",
        ),
        (
            lambda c: c["datasets"]["tiny_peptides"].update(models=["rf_morgan"]),
            "cannot take protein",
        ),
    ],
)
def test_invalid_config_fails_before_any_job(tmp_path, tiny_config, mutate, message):
    config = copy.deepcopy(tiny_config)
    mutate(config)
    proc = snakemake(tmp_path, write_config(tmp_path, config), "--cores", "1", "-n", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_tiny_config_runs_to_summary(tiny_run, tiny_config):
    summary = pd.read_csv(tiny_run / "results" / "summary.csv")
    expected = {
        (dataset, model)
        for dataset, spec in tiny_config["datasets"].items()
        for model in spec["models"]
    }
    assert set(zip(summary["dataset"], summary["model"], strict=True)) == expected
    test_rmse = summary.query("dataset == 'tiny_logbb' and split == 'test' and metric == 'rmse'")
    assert test_rmse["value"].notna().all() and (test_rmse["value"] > 0).all()
    wide = pd.read_csv(tiny_run / "results" / "summary_wide.csv")
    assert {"rmse_mean", "roc_auc_mean"} <= set(wide.columns)
    # Uncertainty calibrated on validation, scored on test: the forest's own sd (spread across
    # trees) and the MLP's MC dropout give normalized intervals; probabilities get ECE and sets.
    calibrated = summary[summary["split"] == "test_calibrated"]
    by = calibrated.groupby(["dataset", "model"])["metric"].agg(set)
    for model in ("rf_morgan", "mlp_morgan"):
        assert {"interval_coverage", "abs_interval_coverage", "sd_spearman", "ence"} <= by[
            "tiny_logbb", model
        ]
    assert {"ece", "raw_ece", "set_coverage"} <= by["tiny_peptides", "rf_kmer"]
    metrics = json.loads(
        (tiny_run / "results/tiny_logbb/evaluate/rf_morgan/seed0/metrics.json").read_text()
    )
    assert metrics["test_calibrated"]["fitted_on"] == "val"
    board = pd.read_csv(tiny_run / "results" / "report" / "tiny_logbb" / "leaderboard.csv")
    assert board["test_calibrated_interval_coverage_mean"].notna().all()
    for dataset, model, plot in (("tiny_logbb", "rf_morgan", "coverage"),
                                 ("tiny_peptides", "mlp_kmer", "reliability")):  # fmt: skip
        manifest = tiny_run / "results" / "report" / dataset / "plots" / model / "plots.json"
        assert plot in {p["name"] for p in json.loads(manifest.read_text())["plots"]}
    # Validation accounts for every input row.
    for dataset in tiny_config["datasets"]:
        info = json.loads(
            (tiny_run / "results" / dataset / "validate" / "summary.json").read_text()
        )
        assert info["kept"] + info["rejected"] == info["rows_in"]
    # Every long step reports progress in its log.
    logs = list((tiny_run / "logs").rglob("*.log"))
    assert any("train_mlp" in str(p) and "epoch" in p.read_text() for p in logs)


def test_thousand_job_grid_builds_its_dag(tmp_path):
    """The 1,000+ job grid (BENCHMARKS.md times it) resolves into a DAG and dry-runs."""
    import re

    config = yaml.safe_load((ROOT / "config" / "benchmarks" / "grid_1000.yaml").read_text())
    proc = snakemake(tmp_path, write_config(tmp_path, config), "--cores", "2", "--dry-run")
    total = int(re.search(r"^total\s+(\d+)", proc.stdout, re.M).group(1))
    assert total >= 1000
