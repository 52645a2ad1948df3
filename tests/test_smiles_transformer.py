"""SMILES tokens and the smiles_transformer family: the tokenizer round-trips every benchmark
SMILES, the vocabulary comes from the train rows only, padding changes nothing, the model
overfits 16 molecules, augmentation is seeded, and model.pt alone predicts new SMILES."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
Chem = pytest.importorskip("rdkit.Chem")

from biomol_dl import train_job, training  # noqa: E402
from biomol_dl.features import build_featurizer  # noqa: E402
from biomol_dl.features.tokens import (  # noqa: E402
    SPECIAL_TOKENS,
    SmilesTokenFeaturizer,
    SmilesTokenizer,
    randomized_smiles,
    tokenize,
)
from biomol_dl.models.base import Functions  # noqa: E402
from biomol_dl.models.nets.smiles_transformer import token_hash  # noqa: E402

st = Functions("smiles_transformer")

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BENCHMARKS = {
    "esol": "esol/delaney-processed.csv",
    "lipophilicity": "lipophilicity/lipo.csv",
    "freesolv": "freesolv/freesolv.csv",
    "bbbp": "bbbp/bbbp.csv",
    "tox21": "tox21/tox21.csv",
}
SMILES = [
    "CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "c1ccc2ccccc2c1", "OC1CCCCC1", "ClC(Cl)Cl",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "O=C(N)c1ccccc1", "CCCCCCCC", "Oc1ccc(Br)cc1", "C1CCOC1",
    "CC#N", "NC(=O)NC(N)=O", "CC(C)(C)OC(=O)N", "c1ccncc1",
]  # fmt: skip
SMALL = {"d_model": 32, "heads": 4, "layers": 2, "dropout": 0.0}


def logp(smiles: list[str]) -> np.ndarray:
    from rdkit.Chem import Crippen

    return np.array([[Crippen.MolLogP(Chem.MolFromSmiles(s))] for s in smiles], np.float32)


def test_tokens_of_tricky_smiles():
    assert tokenize("C[C@@H](Cl)Br") == ["C", "[C@@H]", "(", "Cl", ")", "Br"]
    assert tokenize("c1cc[nH+]c1") == ["c", "1", "c", "c", "[nH+]", "c", "1"]
    assert tokenize("C%12CC%(123)C/C=C\\C") == ["C", "%12", "C", "C", "%(123)", "C", "/", "C",
                                               "=", "C", "\\", "C"]  # fmt: skip
    assert tokenize("[13CH3]C#N.[Na+]") == ["[13CH3]", "C", "#", "N", ".", "[Na+]"]
    assert tokenize("N->[Pt](<-N)(Cl)Cl")[1:3] == ["->", "[Pt]"]
    with pytest.raises(ValueError, match="position 2"):
        tokenize("CCX")


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_tokenizer_round_trips_every_benchmark_smiles(name):
    path = DATASETS / BENCHMARKS[name]
    if not path.exists():
        pytest.skip(f"{path} not present")
    smiles = pd.read_csv(path)["smiles"].astype(str).str.strip().tolist()  # as validate strips
    token_lists = [tokenize(s) for s in smiles]
    assert all("".join(t) == s for t, s in zip(token_lists, smiles, strict=True))
    tokenizer = SmilesTokenizer.fit(token_lists[: len(smiles) // 2])
    assert tokenizer.vocab[:4] == list(SPECIAL_TOKENS)
    for s in smiles:
        ids = tokenizer.encode(s)
        assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.eos_id
        if tokenizer.unk_id not in ids:
            assert tokenizer.decode(ids) == s


def test_unknown_tokens_and_vocabulary_order():
    tokenizer = SmilesTokenizer.fit([tokenize("CCO"), tokenize("CC")])
    assert tokenizer.vocab == [*SPECIAL_TOKENS, "C", "O"]  # most frequent first
    assert tokenizer.encode("CBr", add_special=False) == [4, tokenizer.unk_id]
    assert tokenizer.decode(tokenizer.encode("CCO")) == "CCO"


def test_randomized_smiles_is_the_same_molecule_and_seeded():
    smiles = "CC(C)Cc1ccc(cc1)C(C)C(=O)O"
    canonical = Chem.CanonSmiles(smiles)
    variants = {randomized_smiles(smiles, seed) for seed in range(8)}
    assert len(variants) > 1
    assert {Chem.CanonSmiles(v) for v in variants} == {canonical}
    assert randomized_smiles(smiles, 3) == randomized_smiles(smiles, 3)


@pytest.fixture(scope="module")
def features():
    return build_featurizer({"type": "smiles_tokens"}).featurize_table(SMILES)


def test_features_load_with_weights_only(tmp_path, features):
    torch.save(features, tmp_path / "tokens.pt")
    loaded = torch.load(tmp_path / "tokens.pt", weights_only=True)
    assert loaded["tokens"][7][:3] == ["C", "C", "("]
    assert loaded["n_tokens"] == max(len(tokenize(s)) for s in SMILES)
    meta = train_job.feature_meta(loaded, len(SMILES))
    assert meta["tokens"] == [] and meta["n_token_types"] == len(loaded["token_types"])


def test_vocabulary_comes_from_train_rows_only(features):
    model = st.build_model(features, 1, SMALL)
    data = st.build_datasets(features, np.zeros((16, 1), np.float32), {})
    train = torch.utils.data.Subset(data, [0, 1, 2])  # CCO, c1ccccc1, CC(=O)O: no N, Cl, Br
    st.prepare_model(model, train, SMALL)
    assert "N" not in model.vocab and "O" in model.vocab
    hashes = torch.tensor([[token_hash(t) for t in ["<cls>", "C", "N", "Br", "O"]]])
    ids = model.token_ids(hashes)[0].tolist()
    unk = SPECIAL_TOKENS.index("<unk>")
    assert ids[2] == ids[3] == unk and ids[1] != unk and ids[4] != unk
    assert ids[0] == SPECIAL_TOKENS.index("<cls>")
    assert st.extra_checkpoint(model, SMALL)["vocab"] == model.vocab


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_changes_nothing(features, pooling):
    torch.manual_seed(0)
    params = {**SMALL, "pooling": pooling, "dropout": 0.2}  # eval() must switch dropout off
    model = st.build_model(features, 2, params)
    data = st.build_datasets(features, np.zeros((16, 2), np.float32), params)
    st.prepare_model(model, data, params)
    model.eval()
    (batch,) = st.make_loader(data, batch_size=16, shuffle=False, seed=0, params=params)
    assert (~batch["mask"]).any()
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model(b) for b in st.make_loader(data, batch_size=1, shuffle=False,
                                                             seed=0, params=params)])  # fmt: skip
    torch.testing.assert_close(together, alone, atol=2e-5, rtol=1e-4)


def fit(features, params, epochs=60, seed=0):
    y = logp(SMILES)
    cfg, rest = training.TrainConfig.from_params(
        {"epochs": epochs, "batch_size": 8, "lr": 2e-3, "patience": 0, "device": "cpu",
         "schedule": "constant", "seed": seed, **params}
    )  # fmt: skip
    training.set_seed(seed)
    model = st.build_model(features, 1, rest)
    data = st.build_datasets(features, y, rest)
    st.prepare_model(model, data, rest)
    result = training.fit(
        model,
        lambda e: st.make_loader(data, batch_size=8, shuffle=True, seed=seed * 1000 + e,
                                 params=rest),
        None, task="regression", config=cfg, y_train=y,
    )  # fmt: skip
    loader = st.make_loader(data, batch_size=16, shuffle=False, seed=0, params=rest)
    preds = training.predict(model, loader, task="regression", target_scaler=result.target_scaler)
    return result, preds, y


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_overfits_16_molecules(features, pooling):
    torch.set_num_threads(1)
    result, preds, y = fit(features, {**SMALL, "pooling": pooling})
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    assert last < 0.1 * first, f"train loss {first:.3f} -> {last:.3f}"
    rmse = float(np.sqrt(np.mean((preds - y) ** 2)))
    assert rmse < 0.35 * float(y.std()), f"train RMSE {rmse:.3f} vs sd {y.std():.3f}"


def test_augmentation_only_in_shuffled_loaders_and_seeded(features):
    params = {**SMALL, "augment": True}
    data = st.build_datasets(features, np.zeros((16, 1), np.float32), params)

    def tokens(shuffle, seed):
        loader = st.make_loader(data, batch_size=16, shuffle=shuffle, seed=seed, params=params)
        return next(iter(loader))["tokens"]

    assert torch.equal(tokens(True, 5), tokens(True, 5))
    assert not torch.equal(tokens(True, 5), tokens(True, 6))
    plain = st.make_loader(data, batch_size=16, shuffle=False, seed=0, params=SMALL)
    assert torch.equal(tokens(False, 5), next(iter(plain))["tokens"])


def test_long_inputs_are_truncated_to_max_len(features):
    torch.manual_seed(0)
    params = {**SMALL, "max_len": 6}
    model = st.build_model(features, 1, params).eval()
    data = st.build_datasets(features, np.zeros((16, 1), np.float32), params)
    st.prepare_model(model, data, params)
    (batch,) = st.make_loader(data, batch_size=16, shuffle=False, seed=0, params=params)
    assert batch["tokens"].shape[1] > 6
    eos = token_hash("<eos>")
    cut = {"tokens": batch["tokens"][:, :6].clone(), "mask": batch["mask"][:, :6]}
    long = batch["mask"].sum(1) > 6
    cut["tokens"][long, 5] = eos
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(cut))
    assert model.n_truncated == int(long.sum()) > 0


def test_bad_params_fail_naming_the_valid_ones(features):
    with pytest.raises(ValueError, match="valid: cls, mean"):
        st.build_model(features, 1, {"pooling": "max"})
    with pytest.raises(ValueError, match="unknown key 'n_layers'; did you mean 'layers'"):
        st.build_model(features, 1, {"n_layers": 2})
    with pytest.raises(ValueError, match="smiles_tokens"):
        st.build_model({"X": torch.zeros(2, 3)}, 1, {})


def test_checkpoint_predicts_new_smiles_and_seeds_repeat(tmp_path):
    torch.set_num_threads(1)
    ids = [f"m{i}" for i in range(16)]
    y = logp(SMILES)[:, 0]
    pd.DataFrame({"id": ids, "input": SMILES, "row": range(1, 17), "logp": y}).to_csv(
        tmp_path / "clean.csv", index=False
    )
    split = ["train"] * 10 + ["val"] * 3 + ["test"] * 3
    pd.DataFrame({"id": ids, "split": split}).to_csv(tmp_path / "split.csv", index=False)
    spec = {"type": "smiles_tokens"}
    features = SmilesTokenFeaturizer().featurize_table(SMILES)
    torch.save({**features, "ids": ids, "spec": spec}, tmp_path / "features.pt")
    params = {**SMALL, "epochs": 3, "batch_size": 4, "device": "cpu", "augment": True}

    def run(out, seed=0):
        train_job.run_training(
            st, clean_csv=tmp_path / "clean.csv", split_csv=tmp_path / "split.csv",
            features_pt=tmp_path / "features.pt",
            model_spec={"name": "t", "family": "smiles_transformer", "featurizer": "tok",
                        "featurizer_spec": spec, "params": params},
            task="regression", label_columns=["logp"], seed=seed,
            out_model=tmp_path / out / "model.pt", out_predictions=tmp_path / out / "pred.csv",
            out_history=tmp_path / out / "history.csv",
        )  # fmt: skip
        return pd.read_csv(tmp_path / out / "pred.csv"), pd.read_csv(tmp_path / out / "history.csv")

    (pred_a, hist_a), (pred_b, hist_b) = run("a"), run("b")
    pd.testing.assert_frame_equal(pred_a, pred_b)
    pd.testing.assert_frame_equal(hist_a.drop(columns="seconds"), hist_b.drop(columns="seconds"))
    assert not np.allclose(pred_a["y_pred"], run("c", seed=1)[0]["y_pred"])

    model, ckpt = train_job.load_trained(tmp_path / "a" / "model.pt", st)
    assert ckpt["extra"]["vocab"][:4] == list(SPECIAL_TOKENS)
    train_tokens = {t for s in SMILES[:10] for t in tokenize(s)}
    assert set(ckpt["extra"]["vocab"][4:]) == train_tokens  # val / test tokens stayed out
    again = train_job.predict_inputs(tmp_path / "a" / "model.pt", st, SMILES)
    np.testing.assert_allclose(again["y_pred"], pred_a["y_pred"], rtol=1e-5, atol=1e-6)
    # a token the model never saw (Se) and a SMILES longer than any in training still predict
    novel = train_job.predict_inputs(tmp_path / "a" / "model.pt", st, ["[Se]CC" + "C" * 80])
    assert np.isfinite(novel["y_pred"]).all()
