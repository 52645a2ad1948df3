"""MLflow tracking of a real workflow run, as a user sees it in `mlflow ui`: the tiny pipeline
against the default SQLite store (spool mode) and against a real `mlflow server` on localhost
(every job writing itself, 8 at once), checked through the MLflow client."""

from __future__ import annotations

import copy
import hashlib
import re

import pytest
from conftest import ROOT, snakemake, write_config
from mlflow import MlflowClient
from mlflow_server import start_server

from biomol_dl import tracking

PREFIX = "biomol-dl"


def _job_counts(stdout: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table: rule -> number of jobs."""
    block = stdout.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


def _check_store(client: MlflowClient, config: dict, jobs: dict[str, int]) -> None:
    workflow_exp = client.get_experiment_by_name(f"{PREFIX}/workflow")
    parents = client.search_runs(
        [workflow_exp.experiment_id],
        "tags.`biomol_dl.kind` = 'workflow'",
        order_by=["attributes.start_time ASC"],
    )
    # The first invocation is the run under test (other tests may run more targets later).
    assert parents and all(p.info.status == "FINISHED" for p in parents)
    parent_id = parents[0].info.run_id
    runs = []
    for dataset in config["datasets"]:
        exp = client.get_experiment_by_name(f"{PREFIX}/{dataset}")
        assert exp is not None, f"no experiment for {dataset}"
        runs += client.search_runs([exp.experiment_id], max_results=1000)
    runs += client.search_runs([workflow_exp.experiment_id], max_results=1000)
    job_runs = [
        r
        for r in runs
        if r.data.tags.get("biomol_dl.kind") == "job"
        and r.data.tags.get("biomol_dl.workflow_run_id") == parent_id
    ]
    # Every job of every rule has exactly one finished run, none lost, none RUNNING.
    per_rule: dict[str, int] = {}
    for run in job_runs:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        per_rule[run.data.tags["rule"]] = per_rule.get(run.data.tags["rule"], 0) + 1
        dataset = run.data.tags.get("wildcard.dataset")
        if dataset:  # a dataset's jobs land in that dataset's experiment, nowhere else
            assert client.get_experiment(run.info.experiment_id).name == f"{PREFIX}/{dataset}"
    expected = {rule: n for rule, n in jobs.items() if rule not in {"all", "total"}}
    assert per_rule == expected
    # Per-epoch metrics of a training run, and its lineage back to the raw data's hash.
    train = next(r for r in job_runs if r.data.tags["rule"] == "train_mlp")
    history = client.get_metric_history(train.info.run_id, "val_loss")
    assert len(history) >= 2 and [m.step for m in history] == sorted(m.step for m in history)
    chain = tracking.lineage(train.info.run_id, uri=client.tracking_uri)
    rules = {step["rule"] for step in chain}
    assert {"train_mlp", "featurize", "split", "validate"} <= rules
    validate = next(step for step in chain if step["rule"] == "validate")
    raw_sha = validate["inputs"]["raw"]["sha256"]
    dataset = train.data.tags["wildcard.dataset"]
    source = ROOT / config["datasets"][dataset]["source"]["path"]
    assert raw_sha == hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.mark.slow
def test_default_store_holds_every_job(tiny_run, tiny_config):
    proc = snakemake(tiny_run, tiny_run / "config.yaml", "--cores", "2", "--dry-run", "--forceall")
    client = MlflowClient(f"sqlite:///{tiny_run}/results/mlflow/mlflow.db")
    _check_store(client, tiny_config, _job_counts(proc.stdout + proc.stderr))


@pytest.mark.slow
@pytest.mark.server
def test_tiny_pipeline_against_a_tracking_server(tmp_path, tiny_config):
    with start_server(tmp_path / "server") as server:
        config = copy.deepcopy(tiny_config)
        config["tracking"] = {"uri": server.url, "mode": "live"}
        workdir = tmp_path / "work"
        workdir.mkdir()
        configfile = write_config(workdir, config)
        proc = snakemake(workdir, configfile, "--cores", "8")
        assert not (workdir / "results" / "mlflow" / "mlflow.db").exists()
        _check_store(MlflowClient(server.url), config, _job_counts(proc.stdout + proc.stderr))
