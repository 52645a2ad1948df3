"""Protein model families (cnn, seq_transformer, plm_frozen, plm_lora) against the training loop:
padding changes nothing, each overfits a handful of sequences, LoRA trains only adapters + head
and its model.pt (adapters + head only) reloads to the same predictions; LoRA on cached frozen
layers matches the full forward pass, int8 inference, the cost estimate, and ESM-2 by hub id
through frozen, int8 and cached-LoRA jobs."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from conftest_plm import SEQUENCES, make_hub_cache, make_tiny_bert, make_tiny_esm

from biomol_dl import plm, train_job, training
from biomol_dl.features.protein import (
    AminoAcidTokenFeaturizer,
    OneHotFeaturizer,
    PLMTokenFeaturizer,
)
from biomol_dl.models.base import Functions, get_family

cnn, plm_frozen, plm_lora, seq_transformer = (
    Functions(name) for name in ("cnn", "plm_frozen", "plm_lora", "seq_transformer")
)

TARGETS = np.array([[0.3], [-1.2], [2.0], [0.7], [-0.4], [1.1]], dtype=np.float32)
SMALL = {
    "cnn": {"channels": 16, "kernel_size": 3, "blocks": 2, "head_hidden": 16, "dropout": 0.0},
    "seq_transformer": {"d_model": 16, "heads": 2, "layers": 1, "dropout": 0.0},
    "plm_lora": {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "head_dropout": 0.0},
}


@pytest.fixture(scope="module")
def esm_dir(tmp_path_factory):
    return make_tiny_esm(tmp_path_factory.mktemp("tiny_esm"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def hash_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BIOMOL_DL_CACHE", str(tmp_path / "cache"))  # not the user's ~/.cache


def _features(family, esm_dir=None) -> dict:
    if family == "plm_lora":
        return PLMTokenFeaturizer(model=str(esm_dir)).featurize_table(SEQUENCES)
    featurizer = AminoAcidTokenFeaturizer() if family == "seq_transformer" else OneHotFeaturizer()
    return featurizer.featurize_table(SEQUENCES)


MODULES = {"cnn": cnn, "seq_transformer": seq_transformer, "plm_lora": plm_lora}


@pytest.mark.parametrize("family", ["cnn", "seq_transformer", "plm_lora"])
def test_padding_changes_nothing(family, esm_dir):
    module = MODULES[family]
    features = _features(family, esm_dir)
    torch.manual_seed(0)
    dropout = "lora_dropout" if family == "plm_lora" else "dropout"  # eval() must switch it off
    model = module.build_model(features, 2, SMALL[family] | {dropout: 0.1}).eval()
    with torch.no_grad():  # LoRA's B starts at zero: make the adapters matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    data = module.build_datasets(features, np.zeros((6, 1), np.float32), {})
    (batch,) = list(module.make_loader(data, batch_size=6, shuffle=False, seed=0, params={}))
    assert (~batch["mask"]).any()  # the batch really is padded
    with torch.no_grad():
        together = model(batch)
        alone = [
            model(
                next(
                    iter(
                        module.make_loader(
                            torch.utils.data.Subset(data, [i]),
                            batch_size=1,
                            shuffle=False,
                            seed=0,
                            params={},
                        )
                    )
                )
            )
            for i in range(6)
        ]
    torch.testing.assert_close(together, torch.cat(alone), atol=2e-5, rtol=1e-4)


def _overfit(module, features, params, epochs, lr):
    cfg, rest = training.TrainConfig.from_params(
        {
            "epochs": epochs,
            "batch_size": 3,
            "lr": lr,
            "patience": 0,
            "device": "cpu",
            "schedule": "constant",
            **params,
        }
    )
    torch.manual_seed(0)
    model = module.build_model(features, 1, rest)
    data = module.build_datasets(features, TARGETS, rest)
    module.prepare_model(model, data, rest)
    trainable = module.trainable_parameters(model)
    result = training.fit(
        model,
        lambda e: module.make_loader(data, batch_size=3, shuffle=True, seed=e, params=rest),
        None,
        task="regression",
        config=cfg,
        y_train=TARGETS,
        parameters=trainable,
    )
    preds = training.predict(
        model,
        module.make_loader(data, batch_size=6, shuffle=False, seed=0, params=rest),
        task="regression",
        target_scaler=result.target_scaler,
    )
    return model, preds


@pytest.mark.parametrize(
    ("family", "epochs", "lr"),
    [("cnn", 80, 3e-3), ("seq_transformer", 80, 3e-3), ("plm_lora", 60, 1e-2)],
)
def test_overfits_a_handful_of_sequences(family, epochs, lr, esm_dir):
    module = MODULES[family]
    model, preds = _overfit(module, _features(family, esm_dir), SMALL[family], epochs, lr)
    rmse = float(np.sqrt(np.mean((preds - TARGETS) ** 2)))
    assert rmse < 0.15 * TARGETS.std(), (family, rmse)
    if family == "plm_lora":  # the adapters learned too, not only the head
        lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
        assert lora_b and all(p.abs().sum() > 0 for p in lora_b)


def test_lora_trains_only_adapters_and_head(esm_dir):
    features = _features("plm_lora", esm_dir)
    model = plm_lora.build_model(
        features, 3, {"lora_r": 2, "target_modules": ["query", "value"], "layers_to_transform": [1]}
    )
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {
        n for n, _ in model.named_parameters() if "lora_" in n or n.startswith("head.")
    }
    assert any(".layer.1.attention.self.query.lora_A" in n for n in names)
    assert not any(".layer.0." in n or ".key." in n for n in names)
    assert {id(p) for p in plm_lora.trainable_parameters(model)} == {
        id(p) for n, p in model.named_parameters() if n in names
    }
    info = plm_lora.extra_checkpoint(model, {})["plm"]
    assert info["trainable_params"] == sum(
        p.numel() for n, p in model.named_parameters() if n in names
    )
    assert 0 < info["trainable_fraction"] < 0.2 and info["source"] == "folder"
    with pytest.raises(Exception, match="target_modules.*not Linear layers"):
        plm_lora.build_model(features, 1, {"target_modules": ["qkv"]})


def _write_job_inputs(tmp_path, features: dict) -> dict:
    ids = [f"p{i}" for i in range(len(SEQUENCES))]
    pd.DataFrame({"id": ids, "input": SEQUENCES, "row": range(1, 7), "y": TARGETS[:, 0]}).to_csv(
        tmp_path / "clean.csv", index=False
    )
    pd.DataFrame({"id": ids, "split": ["train"] * 4 + ["val", "test"]}).to_csv(
        tmp_path / "split.csv", index=False
    )
    torch.save({**features, "ids": ids}, tmp_path / "features.pt")
    return {
        "clean_csv": tmp_path / "clean.csv",
        "split_csv": tmp_path / "split.csv",
        "features_pt": tmp_path / "features.pt",
    }


def test_lora_checkpoint_holds_adapters_only_and_reloads_exactly(tmp_path, esm_dir):
    features = _features("plm_lora", esm_dir)
    spec = {
        "name": "lora",
        "family": "plm_lora",
        "featurizer": "esm_tokens",
        "featurizer_spec": {"type": "plm_tokens", "model": str(esm_dir)},
        "params": {**SMALL["plm_lora"], "epochs": 3, "batch_size": 2, "lr": 1e-2, "device": "cpu"},
    }
    out = {k: tmp_path / f"{k}.x" for k in ("model", "predictions", "history")}
    train_job.run_training(
        plm_lora,
        **_write_job_inputs(tmp_path, features),
        model_spec=spec,
        task="regression",
        label_columns=["y"],
        seed=0,
        out_model=out["model"],
        out_predictions=out["predictions"],
        out_history=out["history"],
    )
    ckpt = torch.load(out["model"], weights_only=True)
    keys = [k for k in ckpt["state_dict"] if k.endswith("weight")]
    assert keys and all("lora_" in k or k.startswith("head.") for k in keys), keys
    assert ckpt["extra"]["plm"]["weights_sha256"] == ckpt["extra"]["plm"]["weights_sha256"].lower()
    assert len(ckpt["extra"]["plm"]["weights_sha256"]) == 64

    model, ckpt = train_job.load_trained(out["model"], plm_lora)
    plm_lora.check_checkpoint(model, ckpt)
    data = plm_lora.build_datasets(features, TARGETS, {})
    loader = plm_lora.make_loader(data, batch_size=2, shuffle=False, seed=0, params={})
    scaler = training.TargetScaler.from_dict(ckpt["target_scaler"])
    reloaded = training.predict(model, loader, task="regression", target_scaler=scaler)
    written = pd.read_csv(out["predictions"])["y_pred"].to_numpy()
    np.testing.assert_allclose(reloaded[:, 0], written, rtol=0, atol=1e-12)

    fresh = plm_lora.build_model(features, 1, dict(ckpt["hyperparameters"])).eval()
    untrained = training.predict(fresh, loader, task="regression", target_scaler=scaler)
    assert np.abs(untrained - reloaded).max() > 1e-4  # the saved adapters + head are what count

    ckpt["extra"]["plm"]["weights_sha256"] = "0" * 64
    with pytest.raises(Exception, match="provide the original base model"):
        plm_lora.check_checkpoint(model, ckpt)


def test_plm_frozen_fits_embeddings_and_checks_them():
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(5.0, 3.0, size=(6, 12)), dtype=torch.float32)
    features = {"X": X, "embedding_dim": 12}
    _, preds = _overfit(plm_frozen, features, {"hidden": [32], "dropout": 0.0}, 100, 1e-2)
    assert float(np.sqrt(np.mean((preds - TARGETS) ** 2))) < 0.15 * TARGETS.std()
    with pytest.raises(ValueError, match="needs the plm_embedding featurizer"):
        plm_frozen.build_model({"tokens": X}, 1, {})
    X[3, 5] = float("nan")
    with pytest.raises(ValueError, match="embedding of clean-table row 4 is not finite"):
        plm_frozen.build_datasets(features, TARGETS, {})


@pytest.mark.parametrize("family", ["cnn", "seq_transformer", "plm_lora"])
def test_unknown_params_fail(family, esm_dir):
    with pytest.raises(ValueError, match=rf"'{family}\.params\.chanels': unknown key 'chanels'"):
        MODULES[family].build_model(_features(family, esm_dir), 1, {"chanels": 8})


@pytest.mark.parametrize(
    ("task", "y"),
    [
        ("binary", [[0], [1], [1], [0], [1], [0]]),
        ("multiclass", [[0], [2], [1], [2], [0], [1]]),
        ("multitask_binary", [[0, 1], [1, np.nan], [np.nan, 0], [0, 0], [1, 1], [0, np.nan]]),
    ],
)
def test_lora_head_serves_every_task(task, y, esm_dir):
    y = np.asarray(y, dtype=np.float32)
    features = _features("plm_lora", esm_dir)
    n_outputs = 3 if task == "multiclass" else y.shape[1]
    cfg, rest = training.TrainConfig.from_params(
        {"epochs": 2, "batch_size": 3, "device": "cpu", **SMALL["plm_lora"]}
    )
    model = plm_lora.build_model(features, n_outputs, rest)
    data = plm_lora.build_datasets(features, y, rest)
    training.fit(
        model,
        lambda e: plm_lora.make_loader(data, batch_size=3, shuffle=True, seed=e, params=rest),
        None,
        task=task,
        config=cfg,
        y_train=y,
        parameters=plm_lora.trainable_parameters(model),
    )
    loader = plm_lora.make_loader(data, batch_size=4, shuffle=False, seed=0, params=rest)
    probs = training.predict(model, loader, task=task)
    assert probs.shape == (6, n_outputs) and ((probs >= 0) & (probs <= 1)).all()
    if task == "multiclass":
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="differs from the model the tokens were made with"):
        plm_lora.build_model(features, n_outputs, {"model": "antiberty"})


# --- CPU levers (issue 16): cached frozen layers, int8 inference, the cost estimate ------------


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _loss_and_grads(features, params: dict) -> tuple[float, dict]:
    """Loss and gradients of one batch of all sequences, dropout off, adapters made non-zero."""
    torch.manual_seed(0)
    model = plm_lora.build_model(features, 1, params).eval()
    generator = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would leave A's gradients zero
            p.data = 0.1 * torch.randn(p.shape, generator=generator)
    data = plm_lora.build_datasets(features, TARGETS, params)
    batch = next(iter(plm_lora.make_loader(data, batch_size=6, shuffle=False, seed=0, params={})))
    loss = (model(batch) - batch["y"]).square().mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads


@pytest.mark.parametrize("arch", ["esm", "bert"])
def test_cached_frozen_layers_give_the_full_forward_loss_and_gradients(arch, esm_dir, bert_dir):
    folder = str(esm_dir if arch == "esm" else bert_dir)
    n_layers = 2 if arch == "esm" else 3
    params = {**SMALL["plm_lora"], "layers_to_transform": [n_layers - 1]}
    full = PLMTokenFeaturizer(model=folder).featurize_table(SEQUENCES)
    cached = PLMTokenFeaturizer(model=folder, cache_layer=n_layers - 1).featurize_table(SEQUENCES)
    assert cached["cache_states"][0].dtype == torch.float16
    assert [len(s) for s in cached["cache_states"]] == full["lengths"].tolist()
    loss_full, grads_full = _loss_and_grads(full, params)
    loss_cached, grads_cached = _loss_and_grads(cached, {**params, "layers_to_transform": None})
    # the only difference is the cache's fp16 rounding: 1e-3 relative on loss and gradients
    assert grads_full.keys() == grads_cached.keys() and any("lora_A" in k for k in grads_full)
    assert loss_cached == pytest.approx(loss_full, rel=1e-3)
    for name, g in grads_full.items():
        scale = float(g.abs().max())
        assert scale > 0 and float((grads_cached[name] - g).abs().max()) <= 1e-3 * scale, name
    model = plm_lora.build_model(cached, 1, params)
    names = [n for n, _ in model.named_parameters()]
    assert not any(".layer.0." in n for n in names)  # the cached layers are gone
    assert model.base_info["cache_layer"] == n_layers - 1
    with pytest.raises(ValueError, match=r"layers_to_transform \[0\] lie below"):
        plm_lora.build_model(cached, 1, {**params, "layers_to_transform": [0]})


def test_int8_inference_follows_the_trained_weights(esm_dir):
    features = _features("plm_lora", esm_dir)
    params = {**SMALL["plm_lora"], "int8_inference": True}
    torch.manual_seed(0)
    model = plm_lora.build_model(features, 1, params).eval()
    data = plm_lora.build_datasets(features, TARGETS, params)
    batch = next(iter(plm_lora.make_loader(data, batch_size=6, shuffle=False, seed=0, params={})))
    with torch.no_grad():
        int8 = model(batch)
        copy = model._int8[1]
        assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in copy.modules())
        model.int8_inference = False
        fp32 = model(batch)
        model.int8_inference = True
    assert float((int8 - fp32).abs().max()) < 0.05 * float(fp32.abs().max()) + 1e-3
    lora_b = next(p for n, p in model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        lora_b.add_(1.0)  # a training step: the int8 copy must be made again
        changed = model(batch)
    assert model._int8[1] is not copy and not torch.allclose(changed, int8)
    model.train()
    assert model(batch).requires_grad  # training never runs through the int8 copy


def test_cost_estimate_is_logged_and_fails_fast_over_the_runtime(esm_dir, caplog):
    from biomol_dl.models.plm_lora import PLMLoRAFamily

    features = _features("plm_lora", esm_dir)
    family = PLMLoRAFamily({**SMALL["plm_lora"], "epochs": 3, "batch_size": 2, "device": "cpu"})
    model = family.build_model(features, 1)
    train = torch.utils.data.Subset(family.build_datasets(features, TARGETS), [0, 1, 2, 3])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with caplog.at_level(logging.INFO, logger="biomol_dl"):
        family.prepare_model(model, train)
    assert (
        "plm_lora cost estimate:" in caplog.text and "min per epoch (2 train batches" in caplog.text
    )
    assert all(torch.equal(before[n], p) and p.grad is None for n, p in model.named_parameters())
    family.job_runtime = 1e-9  # what train_job.main sets from the job's resources
    with pytest.raises(RuntimeError, match=r"exceeds the rule's runtime of 0 min; set cache_layer"):
        family.prepare_model(model, train)


def test_esm2_by_hub_id_through_int8_frozen_and_cached_lora(tmp_path, esm_dir, monkeypatch):
    import huggingface_hub

    hub = "facebook/esm2_t6_8M_UR50D"
    make_hub_cache(tmp_path / "hub", hub, esm_dir)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert plm.resolve_model(hub).source == "hub"
    loop = {"epochs": 2, "batch_size": 2, "lr": 1e-2, "device": "cpu"}
    jobs = {
        "plm_frozen": ({"type": "plm_embedding", "model": hub, "precision": "int8"},
                       {"hidden": [8], "dropout": 0.0, **loop}),
        "plm_lora": ({"type": "plm_tokens", "model": hub, "cache_layer": 1},
                     {**SMALL["plm_lora"], "int8_inference": True, **loop}),
    }  # fmt: skip
    for family, (featurizer, params) in jobs.items():
        from biomol_dl.features import build_featurizer

        features = build_featurizer(featurizer).featurize_table(SEQUENCES)
        spec = {"name": family, "family": family, "featurizer": "f", "featurizer_spec": featurizer,
                "params": params}  # fmt: skip
        folder = tmp_path / family
        folder.mkdir()
        out = {k: folder / f"{k}.x" for k in ("model", "predictions", "history")}
        train_job.run_training(family, **_write_job_inputs(folder, features), model_spec=spec,
                               task="regression", label_columns=["y"], seed=0,
                               out_model=out["model"], out_predictions=out["predictions"],
                               out_history=out["history"])  # fmt: skip
        written = pd.read_csv(out["predictions"])["y_pred"].to_numpy()
        # the predict rule's path: featurize new inputs as the checkpoint says, then the model
        again = get_family(family)().predict(out["model"], SEQUENCES)["y_pred"].to_numpy()
        np.testing.assert_allclose(again, written, rtol=1e-5, atol=1e-6, err_msg=family)
    assert features["cache_layer"] == 1


def test_cached_lora_trains_in_bf16_on_a_cpu_that_has_it(esm_dir):
    features = PLMTokenFeaturizer(model=str(esm_dir), cache_layer=1).featurize_table(SEQUENCES)
    cfg, rest = training.TrainConfig.from_params(
        {**SMALL["plm_lora"], "epochs": 3, "lr": 1e-2, "device": "cpu", "precision": "bf16"}
    )
    torch.manual_seed(0)
    model = plm_lora.build_model(features, 1, rest)
    data = plm_lora.build_datasets(features, TARGETS, rest)
    lora_b = next(p for n, p in model.named_parameters() if "lora_B" in n)
    result = training.fit(
        model,
        lambda e: plm_lora.make_loader(data, batch_size=3, shuffle=True, seed=e, params=rest),
        None,
        task="regression",
        config=cfg,
        y_train=TARGETS,
        parameters=plm_lora.trainable_parameters(model),
    )
    assert result.precision == ("bf16" if plm.cpu_supports_bf16() else "fp32")
    assert all(np.isfinite(row["train_loss"]) for row in result.history)
    assert lora_b.abs().sum() > 0  # the adapters above the cache trained
