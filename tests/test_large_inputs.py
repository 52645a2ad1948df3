"""Large libraries: packed fingerprint caches, the random forest's progress log, and prediction in
chunks that writes the same files as one pass."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from biomol_dl import predict as predict_module
from biomol_dl.features import build_featurizer
from biomol_dl.features.fingerprints import dense_rows, n_features, unpack_bits
from biomol_dl.predict import run_predict, validate_inputs

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "OC(=O)c1ccccc1", "CCCCCC",
          "c1ccncc1", "CC(C)O", "NCCO", "ClC(Cl)Cl", "CC#N", "C1CCOC1"]  # fmt: skip


def test_morgan_bits_are_cached_packed_and_read_back_as_the_dense_values():
    featurizer = build_featurizer({"type": "morgan", "n_bits": 2048})
    features = featurizer.featurize_table(SMILES)
    dense = np.stack([featurizer(s) for s in SMILES])  # float32 0/1, one molecule at a time
    packed = features["X_bits"]
    assert "X" not in features and packed.dtype == torch.uint8 and packed.shape == (12, 256)
    assert packed.numpy().nbytes * 32 == dense.nbytes  # 1 bit per feature, not 4 bytes
    assert n_features(features) == 2048
    np.testing.assert_array_equal(dense_rows(features), dense)
    np.testing.assert_array_equal(dense_rows(features, np.array([3, 0])), dense[[3, 0]])
    np.testing.assert_array_equal(unpack_bits(packed[2:5], 2048).numpy(), dense[2:5])
    # an n_bits that is not a multiple of 8 keeps its width
    odd = build_featurizer({"type": "morgan", "n_bits": 100}).featurize_table(SMILES[:2])
    assert odd["X_bits"].shape == (2, 13) and dense_rows(odd).shape == (2, 100)
    # counts stay dense, in the smallest integer type that holds them
    counts = build_featurizer({"type": "morgan", "counts": True}).featurize_table(SMILES)
    assert counts["X"].dtype == torch.uint8 and int(counts["X"].sum()) > int(packed.sum() > 0)


def test_the_mlp_sees_a_packed_cache_as_the_dense_one():
    from biomol_dl.models import mlp
    from biomol_dl.train_job import feature_meta

    packed = build_featurizer({"type": "morgan", "n_bits": 64}).featurize_table(SMILES)
    dense = {"X": torch.from_numpy(dense_rows(packed))}
    y = np.arange(12, dtype=np.float32)[:, None]
    batches = []
    for features in (packed, dense):
        ds = mlp.build_datasets(features, y, {})
        loader = mlp.make_loader(ds, batch_size=5, shuffle=True, seed=3, params={})
        batches.append(torch.cat([b["x"] for b in loader]))
        model = mlp.build_model(features, 1, {"hidden": [8]})
        mlp.prepare_model(model, torch.utils.data.Subset(ds, list(range(8))), {})
        assert model.net[0].in_features == 64 and not bool(model.standardized)  # 0/1: unscaled
    torch.testing.assert_close(batches[0], batches[1], rtol=0, atol=0)
    stub = feature_meta({**packed, "ids": list(SMILES)}, 12)
    assert stub["X_bits"].shape == (0, 8) and mlp.build_model(stub, 1, {}).net[0].in_features == 64
    # a model saved from a dense cache (feature_meta "X" [0, 64]) predicts packed inputs alike
    old = mlp.build_model({"X": torch.zeros(0, 64)}, 1, {"hidden": [8]}).eval()
    ds = mlp.build_datasets(packed, y, {})
    with torch.no_grad():
        torch.testing.assert_close(old(ds.__getitems__(list(range(12)))), old({"x": dense["X"]}))


def test_the_forest_grows_in_logged_steps_into_the_forest_of_one_fit(caplog):
    from sklearn.ensemble import RandomForestClassifier

    from biomol_dl.models.rf import fit_forest

    rng = np.random.default_rng(0)
    X, y = rng.random((60, 5), dtype=np.float32), rng.integers(0, 2, 60)
    once = RandomForestClassifier(n_estimators=25, random_state=4, n_jobs=2).fit(X, y)
    with caplog.at_level(logging.INFO, logger="biomol_dl.models.rf"):
        stepped = fit_forest(
            RandomForestClassifier(n_estimators=25, random_state=4, n_jobs=2), X, y, name="t"
        )
    lines = [r.getMessage() for r in caplog.records if "trees built" in r.getMessage()]
    assert len(lines) == 9 and lines[0].startswith("task t: 3/25 trees built")
    assert "25/25 trees built" in lines[-1] and "n_jobs=2" in lines[-1]
    assert stepped.n_estimators == 25 and not stepped.warm_start
    np.testing.assert_array_equal(stepped.predict_proba(X), once.predict_proba(X))


@pytest.fixture(scope="module")
def forest(tmp_path_factory):
    """A two-task random forest (10 trees) trained with run_rf on a packed Morgan cache."""
    from biomol_dl.models.rf import run_rf

    folder = tmp_path_factory.mktemp("rf")
    ids = [f"m{i}" for i in range(len(SMILES))]
    clean = pd.DataFrame({"id": ids, "input": SMILES, "a": [0, 1] * 6, "b": [1, 1, 0] * 4})
    clean.loc[2, "b"] = np.nan
    clean.to_csv(folder / "clean.csv", index=False)
    split = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    pd.DataFrame({"id": ids, "split": split}).to_csv(folder / "split.csv", index=False)
    spec = {"featurizer": "morgan", "featurizer_spec": {"type": "morgan", "n_bits": 256},
            "params": {"n_estimators": 10}}  # fmt: skip
    features = build_featurizer(spec["featurizer_spec"]).featurize_table(SMILES)
    dense = {**features, "X": torch.from_numpy(dense_rows(features))}
    del dense["X_bits"]
    out = {}
    for name, feats in (("packed", features), ("dense", dense)):
        torch.save({**feats, "ids": ids}, folder / f"{name}.pt")
        run_rf(clean_csv=folder / "clean.csv", split_csv=folder / "split.csv",
               features_pt=folder / f"{name}.pt", model_spec=spec, task="multitask_binary",
               label_columns=["a", "b"], seed=1, out_model=folder / f"{name}.skops",
               out_predictions=folder / f"{name}_pred.csv", out_history=folder / "h.csv")  # fmt: skip
        out[name] = folder / f"{name}.skops"
    # the packed cache trains the forest the dense one does
    packed_pred = pd.read_csv(folder / "packed_pred.csv")
    pd.testing.assert_frame_equal(packed_pred, pd.read_csv(folder / "dense_pred.csv"))
    return out["packed"]


@pytest.mark.parametrize("ids", ["given", "none", "repeated"])
def test_predicting_in_chunks_writes_the_files_of_one_pass(forest, tmp_path, monkeypatch, ids):
    smiles = ["CCO", "C1CC(", " CCN", "c1ccccc1", "", "CC(=O)O", "[2H]OC", "CCCl", "C1CC",
              "OCC.Cl", "N#N"]  # fmt: skip
    names = ["a", "b", "", "d", "e", "f", " ", "h", "i", "j", "k"]
    if ids == "repeated":
        names[7] = "a"
    table = pd.DataFrame({"name": names, "smiles": smiles})
    path = tmp_path / "new.csv"
    table.to_csv(path, index=False)
    sizes = []
    real = predict_module.predict_one
    monkeypatch.setattr(
        predict_module,
        "predict_one",
        lambda family, file, inputs, **kw: sizes.append(len(inputs)) or real(family, file, inputs, **kw),
    )  # fmt: skip
    files = {}
    for chunk_rows in (3, 1000):
        out = tmp_path / f"chunk{chunk_rows}"
        run_predict(
            input_path=path, input_column="smiles", id_column=None if ids == "none" else "name",
            kind="smiles", validation={"largest_fragment": True}, task="multitask_binary",
            validate_summary=None, family="rf", model_files={0: forest, 3: forest},
            out_predictions=out / "predictions.csv", out_rejects=out / "rejects.csv",
            out_summary=out / "summary.json", chunk_rows=chunk_rows,
        )  # fmt: skip
        files[chunk_rows] = {f.name: f.read_text() for f in sorted(out.iterdir())}
    assert list(files[3]) == ["predictions.csv", "rejects.csv", "summary.json"]  # no part files
    for name in files[3]:
        assert files[3][name] == files[1000][name], name
    chunked, one_pass = sizes[:-2], sizes[-2:]  # the 3-row run; the two seeds of the 1000-row one
    # 2 valid rows in each 3-row chunk, for each seed (repeated ids too: renamed after the pass)
    assert chunked == [2] * 8 and one_pass == [8, 8]
    pred = pd.read_csv(tmp_path / "chunk3" / "predictions.csv", keep_default_na=False)
    assert pred["task"].tolist() == ["a"] * 8 + ["b"] * 8  # task-major, as from one pass
    assert pred["row"].tolist()[:8] == [1, 3, 4, 6, 7, 8, 10, 11]
    rejects = pd.read_csv(tmp_path / "chunk3" / "rejects.csv")
    assert rejects["row"].tolist() == [2, 5, 9]


def test_chunk_sizes_match_validation_input_stats():
    smiles = ["CCO", "[2H]C([2H])Cl", "OCC.Cl", "[H]C", "c1ccc[nH]1", "CC(=O)[O-].[Na+]"]
    for validation in ({}, {"largest_fragment": True}, {"canonical": False}):
        clean, _, summary = validate_inputs(
            pd.DataFrame({"s": smiles}), kind="smiles", validation=validation, input_column="s",
            id_column=None, source_name="x.csv",
        )  # fmt: skip
        sizes = predict_module._input_sizes(clean["input"], "smiles")
        assert predict_module._spread(sizes) == summary["input_stats"]["heavy_atoms"]
    seqs = pd.DataFrame({"s": ["ACDK", "MKV", "GGGGG", "AC"]})
    clean, _, summary = validate_inputs(
        seqs, kind="protein", validation={}, input_column="s", id_column=None, source_name="p.csv"
    )
    sizes = predict_module._input_sizes(clean["input"], "protein")
    assert predict_module._spread(sizes) == summary["input_stats"]["length"]
