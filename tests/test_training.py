"""The training loop, the training glue and the MLP family on tiny synthetic problems (CPU)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from biomol_dl import train_job, training
from biomol_dl.models import mlp


def write_problem(folder, task: str, n: int = 96, d: int = 12, seed: int = 0):
    """clean.csv, split.csv and a fingerprint-like features.pt for a learnable problem."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    signal = X @ rng.normal(size=(d, 3))
    if task == "regression":
        cols, y = ["logS"], signal[:, :1] * 2.0 + 5.0
    elif task == "multitask_binary":
        cols, y = ["t1", "t2", "t3"], (signal > 0).astype(float)
        y[rng.random(y.shape) < 0.25] = np.nan  # missing labels
    elif task == "binary":
        cols, y = ["active"], (signal[:, :1] > 0).astype(float)
    else:
        cols, y = ["cls"], np.digitize(signal[:, :1], [-1.0, 1.0]).astype(float)
    ids = [f"mol{i}" for i in range(n)]
    clean = pd.DataFrame({"id": ids, "input": ["C"] * n, "row": np.arange(1, n + 1)})
    for j, col in enumerate(cols):
        clean[col] = y[:, j]
    clean.to_csv(folder / "clean.csv", index=False)
    split = np.array(["train"] * n, dtype=object)
    split[n * 6 // 10 : n * 8 // 10] = "val"
    split[n * 8 // 10 :] = "test"
    pd.DataFrame({"id": ids, "split": split}).to_csv(folder / "split.csv", index=False)
    torch.save({"ids": ids, "X": torch.from_numpy(X)}, folder / "features.pt")
    return cols


def train(folder, task, cols, params=None, seed=0, resume_dir=None, tag=""):
    spec = {
        "name": "mlp_test",
        "family": "mlp",
        "featurizer": "fp",
        "featurizer_spec": {"type": "morgan", "n_bits": 12},
        "params": {"epochs": 8, "batch_size": 16, "hidden": [32], "patience": 5, **(params or {})},
    }
    out = folder / f"out{tag}"
    summary = train_job.run_training(
        mlp,
        clean_csv=folder / "clean.csv",
        split_csv=folder / "split.csv",
        features_pt=folder / "features.pt",
        model_spec=spec,
        task=task,
        label_columns=cols,
        seed=seed,
        out_model=out / "model.pt",
        out_predictions=out / "predictions.csv",
        out_history=out / "history.csv",
        resume_dir=resume_dir,
        threads=1,
    )
    return out, summary


def tensors(n=16, d=8, t=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, :t] * 3.0 + 1.0).numpy()
    return X, y


# ----------------------------------------------------------------------------- config


def test_from_params_splits_training_and_model_keys():
    cfg, rest = training.TrainConfig.from_params(
        {"epochs": 3, "lr": "1e-3", "hidden": [8], "dropout": 0.2, "grad_clip": None}
    )
    assert (cfg.epochs, cfg.lr, cfg.grad_clip) == (3, 1e-3, None)
    assert rest == {"hidden": [8], "dropout": 0.2}


@pytest.mark.parametrize(
    "params, word",
    [({"epochs": 0}, "epochs"), ({"schedule": "linear"}, "schedule"), ({"lr": "fast"}, "lr")],
)
def test_from_params_rejects_bad_values(params, word):
    with pytest.raises(ValueError, match=word):
        training.TrainConfig.from_params(params)


def test_mlp_rejects_unknown_param():
    with pytest.raises(ValueError, match="hiden"):
        mlp.build_model({"X": torch.zeros(0, 4)}, 1, {"hiden": [8]})


# ----------------------------------------------------------------------------- loss masking


def test_masked_loss_ignores_nan_labels():
    scaler = training.TargetScaler.identity(3)
    loss_fn = training._Loss("multitask_binary", scaler, None, None, "cpu")
    out = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, math.nan]] * 2 + [[math.nan, 1.0, 0.0]] * 2)
    total, count = loss_fn(out, y)
    (total / count).backward()
    mask = ~torch.isnan(y)
    assert count.item() == mask.sum().item()
    assert torch.isfinite(out.grad).all()
    assert (out.grad[~mask] == 0).all() and (out.grad[mask] != 0).all()
    # same value as a loss over the labelled entries alone
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out[mask], y[mask])
    assert torch.allclose(total / count, expected)


def test_masked_labels_change_nothing_in_training(tmp_path):
    """Dropping a label (NaN) in a task trains exactly as if that entry never existed."""
    X, _ = tensors(24, 6)
    rng = np.random.default_rng(1)
    y = (rng.random((24, 2)) > 0.5).astype(np.float32)
    y[:5, 1] = np.nan
    preds = []
    for fill in (0.0, 1.0):  # the hidden truth behind the NaN: must not matter
        truth = y.copy()
        truth[:5, 1] = fill
        masked = np.where(np.isnan(y), np.nan, truth)
        ds = mlp.build_datasets({"X": X}, masked, {})
        torch.manual_seed(0)
        model = mlp.build_model({"X": X}, 2, {"hidden": [8], "dropout": 0.0})
        cfg = training.TrainConfig(epochs=3, batch_size=8, patience=0, seed=0)
        training.fit(
            model,
            lambda e, ds=ds: mlp.make_loader(ds, batch_size=8, shuffle=True, seed=e, params={}),
            None,
            task="multitask_binary",
            config=cfg,
            y_train=masked,
        )
        loader = mlp.make_loader(ds, batch_size=8, shuffle=False, seed=0, params={})
        preds.append(training.predict(model, loader, task="multitask_binary"))
    np.testing.assert_array_equal(preds[0], preds[1])


# ----------------------------------------------------------------------------- fit / predict


def test_mlp_overfits_sixteen_examples():
    X, y = tensors(16, 8)
    ds = mlp.build_datasets({"X": X}, y, {})
    model = mlp.build_model({"X": X}, 1, {"hidden": [64, 64], "dropout": 0.0})
    mlp.prepare_model(model, torch.utils.data.Subset(ds, list(range(16))), {})
    cfg = training.TrainConfig(epochs=150, batch_size=16, lr=1e-2, patience=0, seed=0)
    loader = mlp.make_loader(ds, batch_size=16, shuffle=False, seed=0, params={})
    result = training.fit(model, loader, loader, task="regression", config=cfg, y_train=y)
    assert result.history[-1]["train_loss"] < 0.01  # standardized units: < 1 % of the variance
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 20
    pred = training.predict(model, loader, task="regression", target_scaler=result.target_scaler)
    assert np.sqrt(np.mean((pred - y) ** 2)) < 0.1 * y.std()  # back in the original units


def test_regression_targets_standardized_with_train_rows_only():
    y = np.array([[1.0, np.nan], [3.0, 10.0], [5.0, 10.0]])
    scaler = training.TargetScaler.fit(y)
    assert scaler.mean == [3.0, 10.0]
    assert scaler.sd[0] == pytest.approx(np.std([1, 3, 5]))
    assert scaler.sd[1] == 1.0  # constant column: no division by zero


def test_mlp_input_scaling_imputes_and_clips():
    X = torch.tensor([[1.0, 0.0], [3.0, 1.0], [math.nan, 0.0], [1e30, 1.0]])
    ds = mlp.build_datasets({"X": X}, np.zeros((4, 1)), {})
    model = mlp.build_model({"X": X}, 1, {"hidden": [4]})
    mlp.prepare_model(model, torch.utils.data.Subset(ds, [0, 1, 2]), {})  # row 3 is not train
    assert model.x_fill.tolist() == [2.0, pytest.approx(1 / 3)]
    assert bool(model.standardized)
    model.eval()
    out = model({"x": torch.tensor([[math.inf, 0.0], [1e30, 0.0]])})
    assert torch.isfinite(out).all()


def test_binary_fingerprints_are_not_rescaled():
    X = (torch.rand(20, 16, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    ds = mlp.build_datasets({"X": X}, np.zeros((20, 1)), {})
    model = mlp.build_model({"X": X}, 1, {})
    mlp.prepare_model(model, ds, {})
    assert not bool(model.standardized)
    assert (model.x_scale == 1).all() and (model.x_shift == 0).all()


def test_same_seed_gives_identical_results(tmp_path):
    cols = write_problem(tmp_path, "regression")
    runs = [train(tmp_path, "regression", cols, {"dropout": 0.3}, tag=str(i)) for i in range(2)]
    histories = [pd.read_csv(out / "history.csv").drop(columns="seconds") for out, _ in runs]
    pd.testing.assert_frame_equal(histories[0], histories[1])
    preds = [pd.read_csv(out / "predictions.csv") for out, _ in runs]
    pd.testing.assert_frame_equal(preds[0], preds[1])
    other, _ = train(tmp_path, "regression", cols, {"dropout": 0.3}, seed=1, tag="seed1")
    assert not pd.read_csv(other / "predictions.csv").equals(preds[0])


# ----------------------------------------------------------------------------- the glue


@pytest.mark.parametrize("task", ["regression", "multitask_binary", "multiclass", "binary"])
def test_run_training_writes_the_contract_files(tmp_path, task):
    cols = write_problem(tmp_path, task)
    out, summary = train(tmp_path, task, cols, {"class_weights": task != "regression"})
    clean = pd.read_csv(tmp_path / "clean.csv")
    preds = pd.read_csv(out / "predictions.csv")
    n_tasks = 1 if task == "multiclass" else len(cols)
    assert list(preds.columns[:5]) == ["id", "split", "task", "y_true", "y_pred"]
    assert len(preds) == len(clean) * n_tasks
    assert set(preds["split"]) == {"train", "val", "test"}
    for col in cols if task != "multiclass" else []:
        part = preds[preds["task"] == col]
        assert part["id"].tolist() == clean["id"].tolist()
        np.testing.assert_allclose(part["y_true"], clean[col])  # NaN where missing
    if task in ("binary", "multitask_binary"):
        assert preds["y_pred"].between(0, 1).all()
    if task == "multiclass":
        probs = preds[[c for c in preds.columns if c.startswith("p_")]]
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
        assert (preds["y_pred"] == probs.to_numpy().argmax(axis=1)).all()
    history = pd.read_csv(out / "history.csv")
    metric = {"regression": "rmse", "multiclass": "accuracy"}.get(task, "roc_auc")
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "val_loss",
        f"val_{metric}",
        "lr",
        "seconds",
    ]
    column = history[f"val_{metric}"]
    best_row = column.idxmin() if metric == "rmse" else column.idxmax()  # first best epoch wins
    assert summary["best_epoch"] == history.loc[best_row, "epoch"]


def test_checkpoint_roundtrip_gives_identical_predictions(tmp_path):
    cols = write_problem(tmp_path, "multitask_binary")
    out, _ = train(tmp_path, "multitask_binary", cols)
    features = torch.load(tmp_path / "features.pt", weights_only=True)
    model, ckpt = train_job.load_trained(out / "model.pt", mlp)  # from model.pt alone
    assert ckpt["task"] == "multitask_binary" and ckpt["label_columns"] == cols
    y = np.full((len(features["ids"]), 3), np.nan, dtype=np.float32)
    ds = mlp.build_datasets(features, y, ckpt["hyperparameters"])
    # float32 sums depend on the batch composition, so predict with the batch size training used
    batch_size = ckpt["train_config"]["batch_size"]
    loader = mlp.make_loader(ds, batch_size=batch_size, shuffle=False, seed=0, params={})
    preds = training.predict(model, loader, task="multitask_binary")
    written = pd.read_csv(out / "predictions.csv")
    np.testing.assert_allclose(preds.T.reshape(-1), written["y_pred"], rtol=0, atol=1e-12)


def test_regression_checkpoint_keeps_scaler_and_input_scaling(tmp_path):
    cols = write_problem(tmp_path, "regression")
    out, _ = train(tmp_path, "regression", cols)
    model, ckpt = train_job.load_trained(out / "model.pt", mlp)
    assert bool(model.standardized) and ckpt["target_scaler"]["mean"][0] != 0
    features = torch.load(tmp_path / "features.pt", weights_only=True)
    ds = mlp.build_datasets(features, np.zeros((len(features["ids"]), 1)), {})
    loader = mlp.make_loader(ds, batch_size=16, shuffle=False, seed=0, params={})
    scaler = training.TargetScaler.from_dict(ckpt["target_scaler"])
    preds = training.predict(model, loader, task="regression", target_scaler=scaler)
    written = pd.read_csv(out / "predictions.csv")["y_pred"].to_numpy()
    np.testing.assert_allclose(preds[:, 0], written, rtol=0, atol=1e-9)


def test_feature_ids_must_match_clean_order(tmp_path):
    cols = write_problem(tmp_path, "regression")
    features = torch.load(tmp_path / "features.pt", weights_only=True)
    features["ids"] = features["ids"][::-1]
    torch.save(features, tmp_path / "features.pt")
    with pytest.raises(ValueError, match=r"features\.pt: example 0 has id 'mol95'"):
        train(tmp_path, "regression", cols)


def test_bad_label_names_file_line_and_column(tmp_path):
    cols = write_problem(tmp_path, "regression")
    clean = pd.read_csv(tmp_path / "clean.csv")
    clean["logS"] = clean["logS"].astype(object)
    clean.loc[3, "logS"] = "high"
    clean.to_csv(tmp_path / "clean.csv", index=False)
    with pytest.raises(ValueError, match=r"clean\.csv: line 5, column 'logS': label 'high'"):
        train(tmp_path, "regression", cols)


def test_split_must_cover_every_clean_id(tmp_path):
    cols = write_problem(tmp_path, "regression")
    split = pd.read_csv(tmp_path / "split.csv").iloc[1:]
    split.to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(ValueError, match="no split, e.g. 'mol0'"):
        train(tmp_path, "regression", cols)


@pytest.mark.parametrize("schedule", ["plateau", "constant", "exponential"])
def test_other_schedules_and_accumulation(tmp_path, schedule):
    cols = write_problem(tmp_path, "regression")
    params = {"schedule": schedule, "warmup_epochs": 1, "accumulate": 2, "batch_norm": True}
    out, _ = train(tmp_path, "regression", cols, params)
    history = pd.read_csv(out / "history.csv")
    assert history["lr"].iloc[0] == pytest.approx(1e-3)  # warmup ends with epoch 1
    assert np.isfinite(history["train_loss"]).all()


def scheduled_lrs(cfg, steps_per_epoch: int, steps: int) -> list[float]:
    """The rates the torch scheduler of `fit` gives optimizer steps 0 .. steps-1, over cfg.lr."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, training._LrFactor(cfg, steps_per_epoch)
    )
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"] / cfg.lr)
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_then_cosine_reaches_zero():
    cfg = training.TrainConfig(epochs=4, warmup_epochs=1, schedule="cosine")
    factors = scheduled_lrs(cfg, 10, 40)
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[-1] < 0.01


def test_exponential_decays_geometrically_to_the_final_ratio():
    # chemprop's schedule: warmup to lr, then lr * ratio**progress, ending at lr * ratio
    cfg = training.TrainConfig(epochs=5, warmup_epochs=1, schedule="exponential",
                               final_lr_ratio=0.1)  # fmt: skip
    factors = scheduled_lrs(cfg, 10, 50)
    assert factors[9] == pytest.approx(1.0)
    steps = [b / a for a, b in zip(factors[10:], factors[11:], strict=False)]
    assert max(steps) == pytest.approx(min(steps)) and steps[0] < 1.0  # one constant ratio
    assert factors[-1] == pytest.approx(0.1 ** (39 / 40))
    with pytest.raises(ValueError, match="final_lr_ratio"):
        training.TrainConfig(final_lr_ratio=0.0).check()


def test_roc_auc_undefined_falls_back_to_val_loss(tmp_path):
    X, _ = tensors(20, 4)
    y = np.zeros((20, 1), dtype=np.float32)
    y[:8] = 1.0
    ds = mlp.build_datasets({"X": X}, y, {})
    train_rows = torch.utils.data.Subset(ds, list(range(12)))
    val_rows = torch.utils.data.Subset(ds, list(range(12, 20)))  # all negatives
    model = mlp.build_model({"X": X}, 1, {"hidden": [4]})
    cfg = training.TrainConfig(epochs=2, batch_size=4, patience=0)
    result = training.fit(
        model,
        mlp.make_loader(train_rows, batch_size=4, shuffle=False, seed=0, params={}),
        mlp.make_loader(val_rows, batch_size=4, shuffle=False, seed=0, params={}),
        task="binary",
        config=cfg,
        y_train=y[:12],
    )
    assert result.monitor == "val_loss"
    assert math.isnan(result.history[0]["val_roc_auc"])


def test_predict_inputs_featurizes_with_the_checkpoint_spec(tmp_path, monkeypatch):
    cols = write_problem(tmp_path, "regression", d=12)
    out, _ = train(tmp_path, "regression", cols)

    class FakeFeaturizer:  # stands in for the morgan featurizer another module provides
        def featurize_table(self, inputs, threads):
            return {"ids": list(inputs), "X": torch.ones(len(inputs), 12)}

    monkeypatch.setattr("biomol_dl.features.build_featurizer", lambda spec: FakeFeaturizer())
    frame = train_job.predict_inputs(out / "model.pt", mlp, ["CCO", "c1ccccc1"])
    assert list(frame.columns) == ["input", "task", "y_pred"]
    assert frame["input"].tolist() == ["CCO", "c1ccccc1"]
    assert frame["y_pred"].iloc[0] == frame["y_pred"].iloc[1]  # identical features


def test_finished_resume_state_restores_the_best_model(tmp_path):
    """Killed after training but before model.pt was written: no retraining, same model."""
    X, y = tensors(40, 6)
    ds = mlp.build_datasets({"X": X}, y, {})
    tr, va = torch.utils.data.Subset(ds, range(30)), torch.utils.data.Subset(ds, range(30, 40))
    preds = []
    for _ in range(2):
        torch.manual_seed(0)
        model = mlp.build_model({"X": X}, 1, {"hidden": [8]})
        result = training.fit(
            model,
            lambda e: mlp.make_loader(tr, batch_size=8, shuffle=True, seed=e, params={}),
            mlp.make_loader(va, batch_size=8, shuffle=False, seed=0, params={}),
            task="regression",
            config=training.TrainConfig(epochs=6, batch_size=8, seed=3),
            y_train=y[:30],
            resume_dir=tmp_path / "resume",
            keep_resume_state=True,
        )
        loader = mlp.make_loader(ds, batch_size=8, shuffle=False, seed=0, params={})
        preds.append(
            training.predict(model, loader, task="regression", target_scaler=result.target_scaler)
        )
    assert result.resumed_from_epoch == 6 and result.train_examples_seen == 0
    np.testing.assert_array_equal(preds[0], preds[1])
    training.clear_resume_state(tmp_path / "resume")
    assert not (tmp_path / "resume").exists()


def test_claim_gpu_gives_each_process_its_own_device(tmp_path):
    """Workstation GPU jobs (`--resources gpu=K`) each claim a different device via lock files."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import sys, time
        from biomol_dl.training import claim_gpu
        print(claim_gpu(3, {str(tmp_path)!r}), flush=True)
        time.sleep(float(sys.argv[1]))
        """
    )
    holders = [
        subprocess.Popen([sys.executable, "-c", code, "30"], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        held = [int(p.stdout.readline()) for p in holders]
        assert sorted(held) == [0, 1, 2]
        # All three held: a fourth job shares one and says so.
        fourth = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True)
        assert "all 3 GPUs are claimed" in fourth.stderr
        # The OS releases a lock when its holder dies, however it dies: that GPU is free again.
        holders[1].kill()
        holders[1].wait()
        again = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True)
        assert int(again.stdout) == held[1]
    finally:
        for p in holders:
            p.kill()
            p.wait()


@pytest.mark.parametrize("mode, metric", [("min", "rmse"), ("max", "roc_auc")])
def test_plateau_rule_decides_as_torch_reduce_lr_on_plateau(mode, metric):
    """_LrFactor's plateau scale follows ReduceLROnPlateau(factor 0.5, threshold 0) exactly."""
    from biomol_dl.metrics import better

    cfg = training.TrainConfig(schedule="plateau", patience=7)  # plateau patience 2
    factor = training._LrFactor(cfg, 10)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    torch_rule = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=0.5, patience=factor.patience - 1, threshold=0.0,
        min_lr=1e-3,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    best = None
    for value in np.round(rng.random(80), 1):  # ties: an equal value is no improvement
        improved = better(metric, value, best)
        best = value if improved else best
        factor.epoch_end(improved)
        torch_rule.step(value)
        assert factor.scale == optimizer.param_groups[0]["lr"]
    assert factor.scale == 1e-3  # it did reach the floor


def test_evaluation_runs_in_eval_mode_without_gradients():
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, batch):
            seen.append((self.training, torch.is_grad_enabled()))
            return self.linear(batch["x"])

    batches = [{"x": torch.randn(4, 2), "y": torch.randn(4, 1)}]
    cfg = training.TrainConfig(epochs=2, batch_size=4, patience=0)
    result = training.fit(
        Probe(), batches, batches, task="regression", config=cfg, y_train=np.ones((4, 1))
    )
    assert seen == [(True, True), (False, False)] * 2
    assert len(result.history) == 2


def test_resume_state_holds_the_scheduler_and_an_old_format_starts_fresh(tmp_path, caplog):
    X, y = tensors(32, 4)
    ds = mlp.build_datasets({"X": X}, y, {})
    tr, va = torch.utils.data.Subset(ds, range(24)), torch.utils.data.Subset(ds, range(24, 32))
    cfg = training.TrainConfig(epochs=3, batch_size=8, seed=1, schedule="plateau", patience=3)

    def run():
        torch.manual_seed(0)
        model = mlp.build_model({"X": X}, 1, {"hidden": [8]})
        return training.fit(
            model,
            lambda e: mlp.make_loader(tr, batch_size=8, shuffle=True, seed=e, params={}),
            mlp.make_loader(va, batch_size=8, shuffle=False, seed=0, params={}),
            task="regression",
            config=cfg,
            y_train=y[:24],
            resume_dir=tmp_path,
            keep_resume_state=True,
        )

    first = run()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["scheduler"]["last_epoch"] == 3 * 3  # 3 epochs of 3 steps: the next step's
    assert state["scheduler"]["lr_lambdas"][0]["steps_per_epoch"] == 3
    assert {"scale", "bad_epochs"} <= set(state["scheduler"]["lr_lambdas"][0])
    state["format"] = "biomol_dl.resume/1"  # what an older biomol_dl wrote
    del state["scheduler"]
    torch.save(state, tmp_path / "last.pt")
    again = run()
    assert "made by another biomol_dl version" in caplog.text
    assert again.resumed_from_epoch is None
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in first.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in again.history]


def test_resume_mid_epoch_with_epochs_of_varying_length_is_exact(tmp_path):
    """The steps per epoch of the schedule come from the first epoch and travel in last.pt, so a
    run resumed in a longer epoch keeps the rates of the uninterrupted run."""
    import os
    import signal

    X, y = tensors(40, 3)

    def batches(epoch, kill_at=None):
        rows = 24 if epoch % 2 else 32  # 3 batches in odd epochs, 4 in even ones
        for number, start in enumerate(range(0, rows, 8), 1):
            if (epoch, number) == kill_at:
                os.kill(os.getpid(), signal.SIGTERM)
            yield {"x": X[start : start + 8], "y": torch.from_numpy(y[start : start + 8])}

    class Epoch:
        def __init__(self, epoch, kill_at):
            self.epoch, self.kill_at = epoch, kill_at

        def __len__(self):
            return 3 if self.epoch % 2 else 4

        def __iter__(self):
            return batches(self.epoch, self.kill_at)

    def run(kill_at=None):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2))
        model.forward = lambda batch, f=model.forward: f(batch["x"])[:, :1]
        cfg = training.TrainConfig(epochs=4, batch_size=8, warmup_epochs=1, patience=0, seed=2)
        return training.fit(model, lambda e: Epoch(e, kill_at), None, task="regression",
                            config=cfg, y_train=y[:24], resume_dir=tmp_path / "resume")  # fmt: skip

    full = run()
    with pytest.raises(training.Preempted):
        run(kill_at=(2, 2))  # in epoch 2, which has 4 batches where epoch 1 had 3
    resumed = run()
    assert resumed.resumed_from_epoch == 1
    frames = [pd.DataFrame(r.history).drop(columns="seconds") for r in (full, resumed)]
    pd.testing.assert_frame_equal(*frames, check_exact=True)
