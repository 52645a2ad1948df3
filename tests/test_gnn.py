"""The gnn family against the training loop: every architecture overfits 16 molecules, D-MPNN
leaves the reverse bond out of its messages, batching changes nothing, descriptors are
standardized on the train rows, and model.pt reloads (and reruns) to the same predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")
Chem = pytest.importorskip("rdkit.Chem")

from biomol_dl import train_job, training  # noqa: E402
from biomol_dl.features.graph import MolGraphFeaturizer  # noqa: E402
from biomol_dl.models.base import Functions  # noqa: E402
from biomol_dl.models.nets.gnn import DESCRIPTOR_CLIP  # noqa: E402

gnn = Functions("gnn")

SMILES = [
    "CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "c1ccc2ccccc2c1", "OC1CCCCC1", "ClC(Cl)Cl",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "O=C(N)c1ccccc1", "CCCCCCCC", "Oc1ccc(Br)cc1", "C1CCOC1",
    "CC#N", "NC(=O)NC(N)=O", "CC(C)(C)OC(=O)N", "c1ccncc1",
]  # fmt: skip
SMALL = {"hidden": 32, "depth": 3, "dropout": 0.0}
ARCHS = [
    {"arch": "dmpnn"},
    {"arch": "dmpnn", "pooling": "attention", "batch_norm": True, "descriptors": True},
    {"arch": "gcn", "pooling": "sum"},
    {"arch": "dmpnn", "pooling": "norm"},
    {"arch": "gine"},
    {"arch": "gatv2", "heads": 4},
    {"arch": "attentivefp"},
]


def logp(smiles: list[str]) -> np.ndarray:
    """A target every GNN can learn: Crippen logP, computed here, never hard-coded."""
    from rdkit.Chem import Crippen

    return np.array([[Crippen.MolLogP(Chem.MolFromSmiles(s))] for s in smiles], np.float32)


@pytest.fixture(scope="module")
def features():
    featurizer = MolGraphFeaturizer(add_descriptors=True, descriptor_names=["MolWt", "TPSA", "Ipc"])
    return featurizer.featurize_table(SMILES)


def fit(features, params, epochs=60, y=None, seed=0):
    y = logp(SMILES) if y is None else y
    cfg, rest = training.TrainConfig.from_params(
        {"epochs": epochs, "batch_size": 8, "lr": 3e-3, "patience": 0, "device": "cpu",
         "schedule": "constant", "seed": seed, **params}
    )  # fmt: skip
    training.set_seed(seed)
    model = gnn.build_model(features, y.shape[1], rest)
    data = gnn.build_datasets(features, y, rest)
    gnn.prepare_model(model, data, rest)
    result = training.fit(
        model,
        lambda e: gnn.make_loader(data, batch_size=8, shuffle=True, seed=seed * 1000 + e,
                                  params=rest),
        None, task="regression", config=cfg, y_train=y,
    )  # fmt: skip
    loader = gnn.make_loader(data, batch_size=16, shuffle=False, seed=0, params=rest)
    preds = training.predict(model, loader, task="regression", target_scaler=result.target_scaler)
    return model, result, preds, y


@pytest.mark.parametrize("params", ARCHS, ids=lambda p: "-".join(map(str, p.values())))
def test_every_arch_overfits_16_molecules(features, params):
    torch.set_num_threads(1)
    _, result, preds, y = fit(features, {**SMALL, **params})
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    assert last < 0.1 * first, f"train loss {first:.3f} -> {last:.3f}"
    rmse = float(np.sqrt(np.mean((preds - y) ** 2)))
    assert rmse < 0.35 * float(y.std()), f"train RMSE {rmse:.3f} vs sd {y.std():.3f}"


def test_dmpnn_messages_leave_out_the_reverse_bond():
    """In a two-atom molecule the only message into a bond would be its own reverse: so W_h
    cannot matter there, while in a three-atom chain it does."""
    featurizer = MolGraphFeaturizer()
    for smiles, should_change in [("CO", False), ("CCO", True)]:
        feats = featurizer.featurize_table([smiles])
        torch.manual_seed(0)
        model = gnn.build_model(feats, 1, {"arch": "dmpnn", "hidden": 16}).eval()
        (batch,) = gnn.make_loader(gnn.build_datasets(feats, np.zeros((1, 1)), {}),
                                   batch_size=1, shuffle=False, seed=0, params={})  # fmt: skip
        with torch.no_grad():
            before = model(batch)
            model.encoder.W_h.weight.normal_(0, 1.0)
            after = model(batch)
        assert (not torch.allclose(before, after)) == should_change, smiles


@pytest.mark.parametrize("arch", ["dmpnn", "gatv2", "attentivefp"])
def test_batching_changes_nothing(features, arch):
    torch.manual_seed(0)
    params = {**SMALL, "arch": arch, "dropout": 0.2}  # eval() must switch dropout off
    model = gnn.build_model(features, 2, params).eval()
    data = gnn.build_datasets(features, np.zeros((16, 2), np.float32), params)
    with torch.no_grad():
        together = torch.cat([model(b) for b in gnn.make_loader(data, batch_size=5, shuffle=False,
                                                                 seed=0, params={})])  # fmt: skip
        alone = torch.cat([model(b) for b in gnn.make_loader(data, batch_size=1, shuffle=False,
                                                              seed=0, params={})])  # fmt: skip
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_norm_pooling_is_the_atom_sum_over_norm_scale(features):
    # chemprop 2's default aggregation: sum over atoms / 100
    torch.manual_seed(0)
    summed = gnn.build_model(features, 1, {**SMALL, "pooling": "sum"}).eval()
    normed = gnn.build_model(features, 1, {**SMALL, "pooling": "norm", "norm_scale": 50}).eval()
    normed.load_state_dict(summed.state_dict())
    data = gnn.build_datasets(features, np.zeros((16, 1), np.float32), SMALL)
    batch = next(iter(gnn.make_loader(data, batch_size=16, shuffle=False, seed=0, params={})))
    with torch.no_grad():
        torch.testing.assert_close(normed.embed(batch), summed.embed(batch) / 50)
    with pytest.raises(ValueError, match="norm_scale"):
        gnn({"pooling": "norm", "norm_scale": 0})


def test_descriptors_standardized_on_train_rows_only(features):
    params = {**SMALL, "descriptors": True}
    model = gnn.build_model(features, 1, params)
    data = gnn.build_datasets(features, np.zeros((16, 1), np.float32), params)
    train = torch.utils.data.Subset(data, list(range(8)))
    gnn.prepare_model(model, train, params)
    raw = features["descriptors"][:8].double()
    np.testing.assert_allclose(model.desc_mean.numpy(), raw.mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(model.desc_sd.numpy(), raw.std(0, unbiased=False).numpy(), rtol=1e-4)
    z = model.standardize(torch.tensor([[np.nan, 1e30, -1e30]]))
    assert z.tolist() == [[0.0, DESCRIPTOR_CLIP, -DESCRIPTOR_CLIP]]


def test_feature_meta_rebuilds_the_model_without_the_data(features):
    params = {**SMALL, "descriptors": True, "arch": "gine"}
    meta = gnn.feature_meta({**features, "ids": [str(i) for i in range(16)]}, 16)
    assert meta["x"].shape == (0, features["atom_dim"]) and meta["edge_index"].shape == (2, 0)
    assert meta["descriptors"].shape == (0, 3) and meta["ids"] == []
    assert meta["atom_feature_names"] == features["atom_feature_names"]
    full, rebuilt = gnn.build_model(features, 2, params), gnn.build_model(meta, 2, params)
    shapes = {k: v.shape for k, v in full.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}


def test_bad_params_fail_naming_the_valid_ones(features):
    with pytest.raises(ValueError, match="valid: dmpnn, gcn"):
        gnn.build_model(features, 1, {"arch": "schnet"})
    with pytest.raises(ValueError, match="unknown key 'hiden'; did you mean 'hidden'"):
        gnn.build_model(features, 1, {"hiden": 32})
    with pytest.raises(ValueError, match="divisible"):
        gnn.build_model(features, 1, {"arch": "gatv2", "hidden": 30, "heads": 4})
    plain = MolGraphFeaturizer().featurize_table(SMILES[:2])
    with pytest.raises(ValueError, match="add_descriptors"):
        gnn.build_model(plain, 1, {"descriptors": True})


def write_job(tmp_path, featurizer_spec, smiles=SMILES, task="regression"):
    """clean.csv, split.csv and the feature file, as the validate / split / featurize rules do."""
    from biomol_dl.featurize import run_featurize

    y = logp(smiles)[:, 0]
    if task == "binary":
        y = (y > np.median(y)).astype(int)
    ids = [f"m{i}" for i in range(len(smiles))]
    pd.DataFrame({"id": ids, "input": smiles, "row": range(1, len(smiles) + 1), "logp": y}).to_csv(
        tmp_path / "clean.csv", index=False
    )
    split = (["train"] * 10 + ["val"] * 3 + ["test"] * 3)[: len(smiles)]
    pd.DataFrame({"id": ids, "split": split}).to_csv(tmp_path / "split.csv", index=False)
    run_featurize(tmp_path / "clean.csv", featurizer_spec, tmp_path / "features.pt")
    return tmp_path


def run(tmp_path, family, featurizer_spec, params, seed=0, out="out", task="regression"):
    train_job.run_training(
        family,
        clean_csv=tmp_path / "clean.csv",
        split_csv=tmp_path / "split.csv",
        features_pt=tmp_path / "features.pt",
        model_spec={"name": "m", "family": family.__name__.rsplit(".", 1)[-1],
                    "featurizer": "f", "featurizer_spec": featurizer_spec, "params": params},
        task=task,
        label_columns=["logp"],
        seed=seed,
        out_model=tmp_path / out / "model.pt",
        out_predictions=tmp_path / out / "predictions.csv",
        out_history=tmp_path / out / "history.csv",
    )  # fmt: skip
    return tmp_path / out


def test_checkpoint_reloads_to_the_same_predictions_and_seeds_repeat(tmp_path):
    torch.set_num_threads(1)
    spec = {"type": "graph", "add_descriptors": True, "descriptor_names": ["MolWt", "TPSA"]}
    write_job(tmp_path, spec, task="binary")
    params = {**SMALL, "arch": "dmpnn", "descriptors": True, "pooling": "attention",
              "epochs": 4, "batch_size": 4, "device": "cpu"}  # fmt: skip
    first = run(tmp_path, gnn, spec, params, out="a", task="binary")
    again = run(tmp_path, gnn, spec, params, out="b", task="binary")
    other = run(tmp_path, gnn, spec, params, seed=1, out="c", task="binary")

    predictions = pd.read_csv(first / "predictions.csv")
    assert len(predictions) == 16 and set(predictions["split"]) == {"train", "val", "test"}
    pd.testing.assert_frame_equal(predictions, pd.read_csv(again / "predictions.csv"))
    history = pd.read_csv(first / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(
        history, pd.read_csv(again / "history.csv").drop(columns="seconds")
    )
    assert not np.allclose(predictions["y_pred"], pd.read_csv(other / "predictions.csv")["y_pred"])

    model, ckpt = train_job.load_trained(first / "model.pt", gnn)
    assert ckpt["family"] == "gnn" and ckpt["hyperparameters"]["arch"] == "dmpnn"
    assert model.desc_sd.ne(1).all()  # the train-row statistics travelled in the state dict
    fresh = train_job.predict_inputs(first / "model.pt", gnn, SMILES)
    np.testing.assert_allclose(fresh["y_pred"], predictions["y_pred"], rtol=1e-5, atol=1e-6)
