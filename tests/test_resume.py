"""Resumable training: a run killed mid-way (SIGTERM or SIGKILL) and started again finishes with
exactly the history, predictions and weights of an uninterrupted run (CPU, same seed).

Each run is a real subprocess so the signals are real. The family is the MLP with dropout (so the
torch RNG state matters) wrapped in a loader that can signal its own process at a given
(epoch, batch), which makes the kill point deterministic; one test signals from outside instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
EPOCHS = 5

DRIVER = textwrap.dedent(
    """
    import os, signal, sys, time, types
    from pathlib import Path
    from biomol_dl import logutil, train_job
    from biomol_dl.models import mlp

    data, out, resume, lr = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    kill = os.environ.get("KILL_AT")  # "epoch,batch,SIGNAME": signal this process there
    kill = kill and (int(kill.split(",")[0]), int(kill.split(",")[1]), kill.split(",")[2])
    pause = float(os.environ.get("BATCH_SLEEP", "0"))

    def make_loader(subset, *, batch_size, shuffle, seed, params):
        loader = mlp.make_loader(subset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                 params=params)
        if not shuffle:
            return loader
        epoch = seed % 1000

        class Watched:
            def __len__(self):
                return len(loader)

            def __iter__(self):
                for number, batch in enumerate(loader, 1):
                    time.sleep(pause)
                    if kill and (epoch, number) == kill[:2]:
                        os.kill(os.getpid(), getattr(signal, kill[2]))
                    yield batch

        return Watched()

    family = types.SimpleNamespace(
        __name__="biomol_dl.models.mlp", build_datasets=mlp.build_datasets,
        build_model=mlp.build_model, prepare_model=mlp.prepare_model, make_loader=make_loader,
    )
    logutil.configure(None)
    train_job.run_training(
        family, clean_csv=data / "clean.csv", split_csv=data / "split.csv",
        features_pt=data / "features.pt",
        model_spec={"name": "mlp_t", "family": "mlp", "featurizer": "fp",
                    "featurizer_spec": {"type": "morgan"},
                    "params": {"epochs": EPOCHS, "batch_size": 16, "lr": lr,
                               "hidden": [32, 16], "dropout": 0.25, "batch_norm": True,
                               "warmup_epochs": 1, "accumulate": 2, "patience": 0}},
        task="multitask_binary", label_columns=["t1", "t2"], seed=7,
        out_model=out / "model.pt", out_predictions=out / "predictions.csv",
        out_history=out / "history.csv", resume_dir=None if resume == "-" else resume, threads=1,
    )
    """
).replace("EPOCHS", str(EPOCHS))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume_data")
    rng = np.random.default_rng(3)
    n, d = 120, 10
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X @ rng.normal(size=(d, 2)) > 0).astype(float)
    y[rng.random(y.shape) < 0.2] = np.nan
    ids = [f"m{i}" for i in range(n)]
    split = np.where(np.arange(n) < 90, "train", np.where(np.arange(n) < 105, "val", "test"))
    clean = pd.DataFrame({"id": ids, "input": "C", "row": np.arange(1, n + 1)})
    clean["t1"], clean["t2"] = y[:, 0], y[:, 1]
    clean.to_csv(folder / "clean.csv", index=False)
    pd.DataFrame({"id": ids, "split": split}).to_csv(folder / "split.csv", index=False)
    torch.save({"ids": ids, "X": torch.from_numpy(X)}, folder / "features.pt")
    (folder / "driver.py").write_text(DRIVER)
    return folder


def start(data, out, resume, *, lr=3e-3, kill=None, pause=0.0):
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "BIOMOL_DL_TRACKING": "0"}
    env.pop("KILL_AT", None)
    if kill:
        env["KILL_AT"] = kill
    env["BATCH_SLEEP"] = str(pause)
    args = [sys.executable, str(data / "driver.py"), str(data), str(out), str(resume), str(lr)]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc, timeout=120):
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    rc, output = finish(start(data, out, "-"))
    assert rc == 0, output
    return out


def assert_same_run(out, reference):
    for name in ("history.csv", "predictions.csv"):
        got, want = pd.read_csv(out / name), pd.read_csv(reference / name)
        if name == "history.csv":
            got, want = got.drop(columns="seconds"), want.drop(columns="seconds")
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    got = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    want = torch.load(reference / "model.pt", weights_only=True)["state_dict"]
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got)


def resume_state(resume_dir):
    return torch.load(Path(resume_dir) / "last.pt", weights_only=True)


def test_reference_run_trains(reference):
    history = pd.read_csv(reference / "history.csv")
    assert len(history) == EPOCHS
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_sigterm_mid_epoch_then_resume_is_exact(data, reference, tmp_path):
    out, resume = tmp_path / "out", tmp_path / "resume"
    rc, output = finish(start(data, out, resume, kill="3,4,SIGTERM"))
    assert rc == 143, output
    assert "Traceback" not in output
    assert not (out / "model.pt").exists()
    state = resume_state(resume)
    # stops after the optimizer step that follows the signal (accumulate = 2: batch 4)
    assert (state["loop"]["epoch"], state["loop"]["batch"]) == (2, 4)
    assert len(state["loop"]["history"]) == 2

    rc, output = finish(start(data, out, resume))
    assert rc == 0, output
    assert "resuming from epoch 2 (batch 4 of epoch 3)" in output
    assert_same_run(out, reference)
    assert not (resume / "last.pt").exists()  # a finished run leaves no resume state


def test_sigkill_then_resume_from_last_epoch_is_exact(data, reference, tmp_path):
    out, resume = tmp_path / "out", tmp_path / "resume"
    rc, output = finish(start(data, out, resume, kill="4,3,SIGKILL"))
    assert rc == -signal.SIGKILL, output
    assert resume_state(resume)["loop"]["epoch"] == 3  # the end-of-epoch-3 checkpoint
    rc, output = finish(start(data, out, resume))
    assert rc == 0, output
    assert "resuming from epoch 3" in output
    assert_same_run(out, reference)


def test_external_sigterm_after_a_checkpoint_then_resume_is_exact(data, reference, tmp_path):
    out, resume = tmp_path / "out", tmp_path / "resume"
    proc = start(data, out, resume, pause=0.05)  # ~0.3 s per epoch: time to signal it
    deadline = time.monotonic() + 60
    while not (resume / "last.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    rc, output = finish(proc)
    assert rc == 143, output
    assert resume_state(resume)["loop"]["epoch"] >= 1
    rc, output = finish(start(data, out, resume))
    assert rc == 0, output
    assert "resuming from epoch" in output
    assert_same_run(out, reference)


def test_changed_hyperparameters_start_fresh(tmp_path, caplog):
    from biomol_dl import training
    from biomol_dl.models import mlp

    X = torch.randn(24, 5, generator=torch.Generator().manual_seed(0))
    y = X[:, :1].numpy()
    ds = mlp.build_datasets({"X": X}, y, {})
    results = []
    for lr in (3e-3, 1e-3):
        model = mlp.build_model({"X": X}, 1, {"hidden": [4]})
        results.append(
            training.fit(
                model,
                mlp.make_loader(ds, batch_size=8, shuffle=False, seed=0, params={}),
                None,
                task="regression",
                config=training.TrainConfig(epochs=2, lr=lr),
                y_train=y,
                resume_dir=tmp_path,
                keep_resume_state=True,
            )
        )
    assert "other settings (train.lr: 0.003 -> 0.001); starting fresh" in caplog.text
    assert results[1].resumed_from_epoch is None and len(results[1].history) == 2


def test_sigterm_without_resume_dir_exits_143(data, tmp_path):
    rc, output = finish(start(data, tmp_path / "out", "-", kill="1,2,SIGTERM"))
    assert rc == 143, output
    assert not (tmp_path / "out" / "model.pt").exists()
