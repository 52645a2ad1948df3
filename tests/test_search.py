"""Hyperparameter search (biomol_dl.search): a study's trials as Snakemake jobs.

One real workflow run on the tiny config (its validate / split / featurize outputs copied from the
session's `tiny_run`, so only the search runs): a study of 6 trials of a small MLP, 2 at once,
during which the first trial's process is killed with SIGKILL. The re-run, asking for 7 trials,
records that trial FAIL, retries its slot, runs only the one new slot, finishes the study and
trains `mlp_morgan__tuned` with the best parameters. The unit tests reuse that run's files
in-process: pruning fires, a slot whose trial is done adds no trial, the study's runs in MLflow.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, SNAKEFILE, snakemake, workstation_env, write_config
from test_rerun import planned_jobs

from biomol_dl import search
from biomol_dl.config import load_config

DATASET, MODEL = "tiny_logbb", "mlp_morgan"
STUDY = f"results/{DATASET}/search/{MODEL}"
SEARCH = {
    "n_trials": 6,
    "startup_trials": 2,
    "warmup_epochs": 0,
    "space": {
        "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
        "hidden": {"type": "int", "low": 4, "high": 64},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    },
}
TUNED = f"results/{DATASET}/train/{MODEL}__tuned/seed0/model.pt"


def search_config(tiny_config: dict, **changes) -> dict:
    config = copy.deepcopy(tiny_config)
    config["datasets"] = {DATASET: config["datasets"][DATASET]}
    config["models"][MODEL]["search"] = {**copy.deepcopy(SEARCH), **changes}
    return config


def _kill_first_trial(journal: Path, proc: subprocess.Popen, log: Path, timeout=300) -> int:
    """SIGKILL the process of the first trial that records its pid in the study's journal."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if journal.exists():
            found = re.search(r'"pid": ?(\d+)', journal.read_text())
            if found:
                pid = int(found.group(1))
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.1)
    raise AssertionError(f"no trial started:\n{log.read_text()[-6000:]}")


@pytest.fixture(scope="module")
def search_run(tiny_run, tiny_config, tmp_path_factory):
    """(workdir, config, seconds of the first run, output of the second run)."""
    workdir = tmp_path_factory.mktemp("search") / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    shutil.rmtree(workdir / "results" / "mlflow", ignore_errors=True)
    config = search_config(tiny_config)
    configfile = write_config(workdir, config)
    cmd = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", "--keep-going", f"{STUDY}/best.json"]  # fmt: skip
    env = workstation_env()
    t0 = time.perf_counter()
    log = workdir / "first_run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _kill_first_trial(workdir / STUDY / "study.journal", proc, log)
        proc.wait(timeout=600)
    seconds = time.perf_counter() - t0
    assert proc.returncode != 0, "the killed trial's job should have failed the first run"
    assert "search_trial" in log.read_text()
    # the re-run asks for one more trial: the killed slot is retried, slot 6 is new
    configfile = write_config(workdir, search_config(tiny_config, n_trials=7))
    t0 = time.perf_counter()
    second = snakemake(workdir, configfile, "--cores", "2", TUNED, env={"BIOMOL_DL_TRACKING": "0"})
    print(f"first run {seconds:.1f} s, second {time.perf_counter() - t0:.1f} s")
    return workdir, config, seconds, second.stdout + second.stderr


def _records(workdir: Path, n: int = 7) -> list[dict]:
    return [json.loads((workdir / STUDY / f"trials/{i}.json").read_text()) for i in range(n)]


def test_study_of_six_trials_two_at_once_survives_a_sigkill(search_run):
    workdir, config, seconds, second = search_run
    best = json.loads((workdir / STUDY / "best.json").read_text())
    records = _records(workdir)
    # seven slots (six, then one more), each counting one trial, complete or pruned; the
    # killed one recorded FAIL and never counted
    assert sum(best["counted"].values()) == 7 and best["counted"]["fail"] == 0
    assert best["counted"]["complete"] >= 1
    assert best["failed_attempts"] == 1 and best["trials_in_storage"] == 8
    assert len({r["number"] for r in records}) == 7
    killed = [r for r in records if r["attempts"]]
    assert len(killed) == 1 and killed[0]["attempts"][0]["state"] == "fail"
    assert "killed" in killed[0]["attempts"][0]["failed_reason"]
    # the re-run ran the killed slot and the new one only, not the five that had finished
    jobs = {j for j in planned_jobs(second) if j.startswith("search_trial[")}
    assert jobs == {
        f"search_trial[dataset={DATASET}, model={MODEL}, trial={i}]" for i in {killed[0]["slot"], 6}
    }
    # parallel trials proposed distinct points
    points = {json.dumps(r["params"], sort_keys=True) for r in records}
    assert len(points) == 7
    # the best trial is the best counted complete trial on validation rmse
    complete = [r for r in records if r["state"] == "complete"]
    assert best["best_value"] == min(r["value"] for r in complete)
    assert set(best["best_params"]) == set(SEARCH["space"])
    print(f"first run (6 trials, 2 at once, one killed): {seconds:.1f} s; {best['counted']}")


def test_tuned_model_trains_with_the_best_params(search_run):
    import torch

    workdir, *_ = search_run
    best = json.loads((workdir / STUDY / "best.json").read_text())
    ckpt = torch.load(workdir / TUNED, weights_only=True)
    assert ckpt["hyperparameters"]["hidden"] == best["best_params"]["hidden"]
    assert ckpt["hyperparameters"]["dropout"] == pytest.approx(best["best_params"]["dropout"])
    assert ckpt["train_config"]["lr"] == pytest.approx(best["best_params"]["lr"])
    history = (workdir / f"results/{DATASET}/train/{MODEL}__tuned/seed0/history.csv").read_text()
    assert history.startswith("epoch")


def test_the_tuned_model_run_logs_the_params_it_trains_with(search_run, tmp_path, monkeypatch):
    """The tracking run of `<name>__tuned` records the study's best parameters, not the untuned
    entry the rule's params hold."""
    import contextlib

    from biomol_dl import rule_params, tracking, train_job
    from biomol_dl.job import Job

    workdir, config, *_ = search_run
    loaded = load_config(copy.deepcopy(config))
    logged = {}

    @contextlib.contextmanager
    def recording_run(job, params=None, **_):
        logged.update(params if params is not None else job.params)
        yield _Quiet()

    monkeypatch.setattr(tracking, "job_run", recording_run)
    results, out = workdir / "results" / DATASET, tmp_path / "out"
    model = f"{MODEL}__tuned"
    train_job.main(Job(
        rule="train_mlp", wildcards={"dataset": DATASET, "model": model, "seed": "0"},
        input={"clean": str(results / "validate/clean.csv"), "split": str(results / "split/seed0.csv"),
               "features": str(results / "featurize/morgan.pt"), "tuned": str(workdir / STUDY / "best.json")},
        output={n: str(out / f) for n, f in (("model", "model.pt"), ("predictions", "predictions.csv"),
                                            ("history", "history.csv"))},
        log={"log": str(tmp_path / "train.log")},
        params={"family": "mlp", "model": rule_params.train_model_spec(loaded, model),
                "task": "regression", "label_columns": loaded["datasets"][DATASET]["label_columns"]},
    ))  # fmt: skip
    best = json.loads((workdir / STUDY / "best.json").read_text())["best_params"]
    assert logged["model"]["params"]["hidden"] == best["hidden"]
    assert rule_params.train_model_spec(loaded, model)["params"].get("hidden") != best["hidden"]


class _Quiet:
    """A tracking run that records nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _spec(workdir: Path, config: dict) -> dict:
    loaded = load_config(copy.deepcopy(config))
    spec = search.study_spec(loaded, DATASET, MODEL)
    return {**spec, "storage": str(workdir / spec["storage"])}


def _inputs(workdir: Path) -> dict:
    results = workdir / "results" / DATASET
    return {
        "clean_csv": str(results / "validate/clean.csv"),
        "split_csvs": {0: str(results / "split/seed0.csv")},
        "features_pt": str(results / "featurize/morgan.pt"),
    }


def test_a_done_slot_adds_no_trial(search_run, tmp_path):
    workdir, config, *_ = search_run
    spec = _spec(workdir, config)
    before = len(search.open_study(spec).get_trials())
    record = search.run_slot(spec, 0, out_record=str(tmp_path / "0.json"),
                             resume_root=str(tmp_path), **_inputs(workdir))  # fmt: skip
    assert len(search.open_study(spec).get_trials()) == before
    assert record["number"] == _records(workdir)[0]["number"]


def test_pruning_fires_on_the_per_epoch_validation_value(search_run, tmp_path):
    import optuna

    workdir, config, *_ = search_run
    spec = {**_spec(workdir, config), "storage": str(tmp_path / "study.journal")}
    study = search.open_study(spec)
    dists = search.distributions(spec["space"])
    for params in (
        {"lr": 1e-3, "hidden": 8, "dropout": 0.1},
        {"lr": 2e-3, "hidden": 9, "dropout": 0.2},
    ):
        # two finished trials with an impossible validation rmse of 0.0 at every epoch
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=0.0,
            intermediate_values={epoch: 0.0 for epoch in range(1, 6)},
        ))  # fmt: skip
    record = search.run_slot(spec, 0, out_record=str(tmp_path / "0.json"),
                             resume_root=str(tmp_path / "resume"), **_inputs(workdir))  # fmt: skip
    assert record["state"] == "pruned"
    assert list(record["intermediate"]) == ["1"]  # stopped after the first epoch
    assert not (tmp_path / "resume" / f"trial{record['number']}").exists()


def test_study_and_trials_in_mlflow(search_run):
    """One parent run per study; one child per trial job of the first run, under it."""
    from mlflow.tracking import MlflowClient

    workdir, *_ = search_run
    client = MlflowClient(f"sqlite:///{workdir}/results/mlflow/mlflow.db")
    exp = client.get_experiment_by_name(f"biomol-dl/{DATASET}")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    studies = [r for r in runs if r.data.tags.get("biomol_dl.kind") == "study"]
    assert len(studies) == 1
    trials = [r for r in runs if r.data.tags.get("rule") == "search_trial"]
    assert len(trials) == 6  # the killed job's run included (KILLED once the spool is synced)
    assert {r.data.tags.get("mlflow.parentRunId") for r in trials} == {studies[0].info.run_id}
    finished = [r for r in trials if r.info.status == "FINISHED"]
    assert len(finished) == 5
    assert all(r.data.tags.get("trial.state") in ("complete", "pruned") for r in finished)


def test_a_trial_that_raises_is_recorded_failed_and_retried(tiny_config, tmp_path):
    config = search_config(tiny_config, retries=1)
    spec = {**_spec(tmp_path, config), "storage": str(tmp_path / "study.journal")}
    missing = {"clean_csv": str(tmp_path / "none.csv"), "split_csvs": {0: "none.csv"},
               "features_pt": "none.pt"}  # fmt: skip
    record = search.run_slot(spec, 3, out_record=str(tmp_path / "3.json"),
                             resume_root=str(tmp_path), retries=1, **missing)  # fmt: skip
    assert record["state"] == "fail" and "none.csv" in record["failed_reason"]
    assert [a["state"] for a in record["attempts"]] == ["fail"]  # one retry, then given up
    trials = search.open_study(spec).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 2  # a new point


def test_report_marks_the_tuned_model_and_shows_its_search(tiny_config):
    from biomol_dl.report import targets

    config = load_config(search_config(tiny_config))
    models = targets.report_models(config, DATASET)
    assert models[f"{MODEL}__tuned"]["tuned"].startswith("tuned: 6 trials of tpe search")
    assert models[MODEL]["tuned"] is None
    layout = targets.report_layout(config)[DATASET]
    assert layout["studies"] == {f"{MODEL}__tuned": f"{STUDY}/history.png"}
    # the searched model trains with its own params; `search` reaches no train rule
    from biomol_dl.rule_params import train_model_spec

    assert "search" not in train_model_spec(config, MODEL)
    assert search.study_spec(config, DATASET, MODEL) == search.study_spec(
        load_config(search_config(tiny_config, n_trials=50)), DATASET, MODEL
    )  # n_trials is no part of a study: raising it keeps the study and its slots


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid"])
def test_parallel_slots_get_distinct_points_from_each_sampler(sampler, tiny_config, tmp_path):
    """Six slots asking at once (their trials still running) get six different points: the
    grid's six, or distinct draws (per-slot sampler seeds; TPE's constant liar)."""
    space = {"dropout": {"type": "categorical", "choices": [0.0, 0.1, 0.2]},
             "hidden": {"type": "categorical", "choices": [[8], [16, 8]]}}  # fmt: skip
    if sampler != "grid":
        space["lr"] = {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
    config = search_config(tiny_config, sampler=sampler, pruner="successive_halving", space=space)
    spec = {**_spec(tmp_path, config), "storage": str(tmp_path / "study.journal")}
    dists = search.distributions(spec["space"])
    points = set()
    for slot in range(6):  # what run_slot asks, with no trial told yet
        seeded = search.open_study(spec, sampler_seed=search.sampler_seed(spec, slot, 0))
        params = search.trial_params(spec["space"], seeded.ask(dists).params)
        assert params["hidden"] in ([8], [16, 8])  # list choices decoded
        points.add(json.dumps(params, sort_keys=True))
    assert len(points) == 6


def test_grid_study_tells_every_point_through_ask_and_tell(tiny_config, tmp_path):
    """Optuna's GridSampler stops the study at its last point, which raises under ask / tell;
    every slot, the one with the grid's last point included, must tell its value."""
    space = {"dropout": {"type": "categorical", "choices": [0.0, 0.1]},
             "hidden": {"type": "categorical", "choices": [[8], [16, 8]]}}  # fmt: skip
    config = search_config(tiny_config, sampler="grid", pruner="none", n_trials=4, space=space)
    spec = {**_spec(tmp_path, config), "storage": str(tmp_path / "study.journal")}
    dists = search.distributions(spec["space"])
    for slot in range(4):
        study = search.open_study(spec, sampler_seed=search.sampler_seed(spec, slot, 0))
        trial = study.ask(dists)
        study.tell(trial, float(slot))
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert states == ["COMPLETE"] * 4
    assert len({json.dumps(t.params, sort_keys=True) for t in study.get_trials()}) == 4


def test_history_plot_shows_pruned_trials_at_their_last_value():
    """A pruned trial has no value in the study; the plot puts it at its last reported one.
    Trials no slot counts are drawn apart and never make the best-so-far line."""
    import pandas as pd

    from biomol_dl.report import plots

    nan = float("nan")
    trials = pd.DataFrame({
        "number": [0, 1, 2, 3], "state": ["complete", "pruned", "fail", "complete"],
        "counted": ["True", "True", "True", "False"],  # as read back from trials.csv
        "value": [1.0, nan, nan, 0.5], "last_value": [1.0, 2.5, nan, 0.5],
    })  # fmt: skip
    best = {"metric": "rmse", "direction": "minimize", "importances": {}}
    fig = plots.study_figure(trials, best, title="t")
    points = {
        c.get_label(): c.get_offsets().tolist() for c in fig.axes[0].collections if c.get_label()
    }
    assert points["pruned (1)"] == [[1.0, 2.5]]
    assert points["complete (1)"] == [[0.0, 1.0]]
    assert "failed (1)" in points
    assert points["not counted (1)"] == [[3.0, 0.5]]  # a slot beyond n_trials: not the best
    (best_line,) = fig.axes[0].lines
    assert best_line.get_ydata().tolist() == [1.0]
