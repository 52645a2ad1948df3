"""Preemption through the real Snakemake scheduler: a training job killed mid-run (SIGTERM, as
SLURM sends on preemption or time limit, and SIGKILL) is re-run by Snakemake, resumes from the
checkpoint outside its declared outputs, and ends with the predictions of an uninterrupted run."""

from __future__ import annotations

import copy
import signal
import subprocess
import time

import pandas as pd
import psutil
import pytest
from conftest import BIN, SNAKEFILE, snakemake, workstation_env, write_config

TARGET = "results/tiny_logbb/train/mlp_morgan/seed0/predictions.csv"


def _config(tiny_config: dict) -> dict:
    config = copy.deepcopy(tiny_config)
    config["datasets"] = {"tiny_logbb": config["datasets"]["tiny_logbb"]}
    config["datasets"]["tiny_logbb"]["models"] = ["mlp_morgan"]
    # Many short epochs, so there is a mid-run moment to interrupt.
    config["models"]["mlp_morgan"]["params"] = {
        "hidden": [256],
        "epochs": 80,
        "batch_size": 4,
        "patience": 80,
        "schedule": "cosine",
    }
    return config


def _training_process(parent: psutil.Process) -> psutil.Process | None:
    for child in parent.children(recursive=True):
        try:
            # the rule's script: scripts/train.py for every family (Snakemake runs a copy named
            # .snakemake/scripts/tmpXXXX.train.py), formerly scripts/train_mlp.py
            if any(part.endswith("train.py") or "train_mlp" in part for part in child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_config):
    """The uninterrupted run both kill tests compare against."""
    workdir = tmp_path_factory.mktemp("reference")
    snakemake(workdir, write_config(workdir, _config(tiny_config)), "--cores", "1", TARGET)
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_training_job_resumes_to_the_same_result(tmp_path, tiny_config, reference, sig):
    config = _config(tiny_config)

    work = tmp_path / "interrupted"
    work.mkdir()
    configfile = write_config(work, config)
    cmd = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(work),
        "--configfile",
        str(configfile),
        "--cores",
        "1",
        TARGET,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=workstation_env()
    )
    resume_file = work / "results" / "_resume" / "tiny_logbb" / "mlp_morgan" / "seed0" / "last.pt"
    deadline = time.monotonic() + 300
    victim = None
    while time.monotonic() < deadline and proc.poll() is None:
        victim = victim or _training_process(psutil.Process(proc.pid))
        if victim is not None and resume_file.exists():
            time.sleep(0.5)  # a few more epochs
            victim.send_signal(sig)
            break
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=300)
    assert victim is not None and proc.returncode != 0, output[-3000:]
    assert resume_file.exists(), "the resume checkpoint must survive the failed job"
    assert not (work / TARGET).exists()
    log = (work / "logs" / "train_mlp" / "tiny_logbb" / "mlp_morgan_seed0.log").read_text()
    if sig == signal.SIGTERM:
        assert "exiting with status 143" in log

    snakemake(work, configfile, "--cores", "1", TARGET)
    log = (work / "logs" / "train_mlp" / "tiny_logbb" / "mlp_morgan_seed0.log").read_text()
    assert "resuming from epoch" in log
    resumed = pd.read_csv(work / TARGET)
    expected = pd.read_csv(reference / TARGET)
    pd.testing.assert_frame_equal(resumed, expected)
    history = pd.read_csv(work / TARGET.replace("predictions", "history"))
    assert len(history) == len(pd.read_csv(reference / TARGET.replace("predictions", "history")))
    assert not resume_file.exists(), "a finished job clears its resume state"
