"""The rnn family (bidirectional GRU / LSTM) on SMILES tokens and on residue tokens: padding and
packing change nothing, it overfits a handful of examples, and model.pt alone predicts new
SMILES with the train rows' vocabulary. The family is one module (models/rnn.py) plus its
network (models/nets/rnn.py): the worked example of docs/ARCHITECTURE.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from conftest_plm import SEQUENCES  # noqa: E402

from biomol_dl import train_job, training  # noqa: E402
from biomol_dl.config import ConfigError  # noqa: E402
from biomol_dl.features.protein import AminoAcidTokenFeaturizer, OneHotFeaturizer  # noqa: E402
from biomol_dl.features.tokens import SmilesTokenFeaturizer  # noqa: E402
from biomol_dl.models.base import Functions  # noqa: E402

rnn = Functions("rnn")
SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "OC1CCCCC1", "ClC(Cl)Cl", "CCCCCCCC", "CC#N"]
SMALL = {"embed_dim": 16, "hidden": 16, "layers": 2, "head_hidden": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features(kind: str) -> dict:
    if kind == "smiles":
        return SmilesTokenFeaturizer().featurize_table(SMILES)
    featurizer = AminoAcidTokenFeaturizer() if kind == "aa_tokens" else OneHotFeaturizer()
    return featurizer.featurize_table(SEQUENCES)


@pytest.mark.parametrize(
    ("kind", "cell"), [("smiles", "gru"), ("aa_tokens", "lstm"), ("onehot", "gru")]
)
def test_padding_changes_nothing(kind, cell):
    features = _features(kind)
    params = {**SMALL, "cell": cell, "dropout": 0.3}  # eval() must switch dropout off
    n = len(features["tokens"])
    torch.manual_seed(0)
    model = rnn.build_model(features, 2, params)
    data = rnn.build_datasets(features, np.zeros((n, 1), np.float32), params)
    rnn.prepare_model(model, data, params)
    model.eval()
    (batch,) = list(rnn.make_loader(data, batch_size=n, shuffle=False, seed=0, params=params))
    assert (~batch["mask"]).any()  # the batch really is padded
    with torch.no_grad():
        together = model(batch)
        alone = [
            model(next(iter(rnn.make_loader(torch.utils.data.Subset(data, [i]), batch_size=1,
                                            shuffle=False, seed=0, params=params))))
            for i in range(n)
        ]  # fmt: skip
    torch.testing.assert_close(together, torch.cat(alone), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["smiles", "aa_tokens"])
def test_overfits_a_handful(kind):
    features = _features(kind)
    n = len(features["tokens"])
    y = np.linspace(-1.5, 1.5, n, dtype=np.float32)[np.random.default_rng(0).permutation(n), None]
    cfg, rest = training.TrainConfig.from_params(
        {"epochs": 120, "batch_size": 4, "lr": 1e-2, "patience": 0, "device": "cpu",
         "schedule": "constant", **SMALL, "dropout": 0.0}
    )  # fmt: skip
    training.set_seed(0)
    model = rnn.build_model(features, 1, rest)
    data = rnn.build_datasets(features, y, rest)
    rnn.prepare_model(model, data, rest)
    result = training.fit(
        model, lambda e: rnn.make_loader(data, batch_size=4, shuffle=True, seed=e, params=rest),
        None, task="regression", config=cfg, y_train=y,
    )  # fmt: skip
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    assert last < 0.05 * first, f"train loss {first:.3f} -> {last:.3f}"


def test_checkpoint_predicts_new_smiles(tmp_path):
    ids = [f"m{i}" for i in range(len(SMILES))]
    y = np.arange(len(SMILES), dtype=float) / 4
    pd.DataFrame({"id": ids, "input": SMILES, "row": range(1, 9), "y": y}).to_csv(
        tmp_path / "clean.csv", index=False
    )
    split = ["train"] * 5 + ["val", "test", "test"]
    pd.DataFrame({"id": ids, "split": split}).to_csv(tmp_path / "split.csv", index=False)
    spec = {"type": "smiles_tokens"}
    features = SmilesTokenFeaturizer().featurize_table(SMILES)
    torch.save({**features, "ids": ids, "spec": spec}, tmp_path / "features.pt")
    train_job.run_training(
        rnn, clean_csv=tmp_path / "clean.csv", split_csv=tmp_path / "split.csv",
        features_pt=tmp_path / "features.pt",
        model_spec={"name": "r", "family": "rnn", "featurizer": "tok", "featurizer_spec": spec,
                    "params": {**SMALL, "epochs": 3, "batch_size": 4, "device": "cpu"}},
        task="regression", label_columns=["y"], seed=0, out_model=tmp_path / "model.pt",
        out_predictions=tmp_path / "pred.csv", out_history=tmp_path / "history.csv",
    )  # fmt: skip
    pred = pd.read_csv(tmp_path / "pred.csv")
    _, ckpt = train_job.load_trained(tmp_path / "model.pt", rnn)
    assert "N" in ckpt["extra"]["vocab"] and "#" not in ckpt["extra"]["vocab"]  # train rows only
    again = train_job.predict_inputs(tmp_path / "model.pt", rnn, SMILES)
    np.testing.assert_allclose(again["y_pred"], pred["y_pred"], rtol=1e-5, atol=1e-6)
    novel = train_job.predict_inputs(tmp_path / "model.pt", rnn, ["[Se]CC" + "C" * 80])
    assert np.isfinite(novel["y_pred"]).all()


def test_bad_params_fail_naming_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown cell 'rnn'; valid: gru, lstm"):
        rnn.family({"cell": "rnn"})
    with pytest.raises(ConfigError, match="hiden"):
        rnn.family({"hiden": 3})
