"""Tracking tells the truth when the Snakemake main process is SIGKILLed mid-training: the
orphaned training job (it lives on, its outputs stay marked incomplete and the next run re-makes
them) is never recorded FINISHED, and the re-run leaves exactly one FINISHED run per model and
seed. With the watchdog on, the orphan stops within seconds; with it off, the orphan finishes
and the next invocation's store writer marks its run orphaned from Snakemake's markers."""

from __future__ import annotations

import copy
import signal
import subprocess
import time

import psutil
import pytest
from conftest import BIN, SNAKEFILE, snakemake, workstation_env, write_config
from mlflow import MlflowClient

TARGET = "results/tiny_logbb/train/mlp_morgan/seed0/predictions.csv"
RESUME = "results/_resume/tiny_logbb/mlp_morgan/seed0/last.pt"


def _config(tiny_config: dict) -> dict:
    config = copy.deepcopy(tiny_config)
    config["datasets"] = {"tiny_logbb": config["datasets"]["tiny_logbb"]}
    config["datasets"]["tiny_logbb"]["models"] = ["mlp_morgan"]
    # Many short epochs (~10 s on an idle core): time to kill Snakemake mid-training.
    config["models"]["mlp_morgan"]["params"] = {
        "hidden": [256],
        "epochs": 200,
        "batch_size": 4,
        "patience": 200,
    }
    return config


def _trainer(main: psutil.Process) -> psutil.Process | None:
    for child in main.children(recursive=True):
        try:
            # The rule script of every train_<family> rule: .snakemake/scripts/tmp<...>.train.py
            if any(part.endswith("train.py") for part in child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _train_runs(work) -> list:
    client = MlflowClient(f"sqlite:///{work}/results/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("biomol-dl/tiny_logbb")
    return client.search_runs(
        [exp.experiment_id],
        "tags.rule = 'train_mlp' and tags.`wildcard.model` = 'mlp_morgan' "
        "and tags.`wildcard.seed` = '0'",
        order_by=["attributes.start_time ASC"],
    )


@pytest.mark.slow
@pytest.mark.parametrize("watchdog", ["0.5", "0"], ids=["watchdog", "no-watchdog"])
def test_orphan_of_a_killed_snakemake_is_never_finished(tmp_path, tiny_config, watchdog):
    work = tmp_path / "work"
    work.mkdir()
    configfile = write_config(work, _config(tiny_config))
    env = {"BIOMOL_DL_WATCHDOG_SECONDS": watchdog, "BIOMOL_DL_SYNC_SECONDS": "1"}
    cmd = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(work),
           "--configfile", str(configfile), "--cores", "1", TARGET]  # fmt: skip
    # Output to a file: an orphan keeps a pipe open after its parent is gone.
    with open(tmp_path / "first.log", "w") as log:
        main = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=workstation_env(env))  # fmt: skip
    deadline, trainer = time.monotonic() + 300, None
    while time.monotonic() < deadline and main.poll() is None:
        trainer = trainer or _trainer(psutil.Process(main.pid))
        if trainer is not None and (work / RESUME).exists():
            break  # an epoch or more done
        time.sleep(0.05)
    assert trainer is not None and main.poll() is None, (tmp_path / "first.log").read_text()
    main.send_signal(signal.SIGKILL)
    main.wait()

    if watchdog != "0":  # the watchdog stops the orphan: training never completes
        trainer.wait(timeout=60)
        log = (work / "logs/train_mlp/tiny_logbb/mlp_morgan_seed0.log").read_text()
        assert "exiting with status 143" in log  # its SIGTERM handler saved the resume state
        assert not (work / TARGET).exists()
    else:  # the orphan finishes and writes outputs that Snakemake has not accepted
        trainer.wait(timeout=300)
        assert (work / TARGET).exists()
        dry = snakemake(work, configfile, "--cores", "1", "-n", TARGET, check=False)
        assert "IncompleteFilesException" in dry.stdout + dry.stderr  # refused, not accepted

    snakemake(work, configfile, "--unlock")
    snakemake(work, configfile, "--cores", "1", "--rerun-incomplete", TARGET, env=env)
    runs = _train_runs(work)
    assert [r.info.status for r in runs] == ["KILLED", "FINISHED"], [r.info for r in runs]
    orphan, rerun = runs
    assert orphan.data.tags["biomol_dl.orphaned"] == "true"
    assert "orphaned" in orphan.data.tags["biomol_dl.killed_reason"]
    workflows = {r.data.tags["biomol_dl.workflow_run_id"] for r in runs}
    assert len(workflows) == 2, "the re-run's job belongs to the second invocation"
