"""Large libraries: packed fingerprint caches, the random forest's progress log, and prediction in
chunks that writes the same files as one pass."""

from __future__ import annotations

import json
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


def _predict_files(forest, path, out, chunk_rows, id_column="name", input_column="smiles"):
    run_predict(
        input_path=path, input_column=input_column, id_column=id_column, kind="smiles",
        validation={}, task="multitask_binary", validate_summary=None, family="rf",
        model_files={0: forest}, out_predictions=out / "predictions.csv",
        out_rejects=out / "rejects.csv", out_summary=out / "summary.json", chunk_rows=chunk_rows,
    )  # fmt: skip
    return {f.name: f.read_text() for f in sorted(out.iterdir())}


@pytest.mark.parametrize("fmt", ["csv.gz", "sdf", "parquet"])
def test_a_streamed_input_predicts_as_one_pass(forest, tmp_path, monkeypatch, fmt):
    import gzip

    from rdkit import Chem

    from biomol_dl import io as io_module

    smiles = ["CCO", "c1ccccc1", "CC(=O)O", "CCCl", "C1CC(", "N#N", "CCN", "OCC", "CCOC"]
    # repeats across chunks, one whose renaming collides with a given id (a_row7 is taken)
    names = ["a", "b", "a", "", "c", "a_row7", "a", "b", " "]
    if fmt == "sdf":
        blocks = []
        for name, smi in zip(names, smiles, strict=True):
            mol = Chem.MolFromSmiles(smi) if smi != "C1CC(" else None
            block = Chem.MolToMolBlock(mol) if mol is not None else "broken\n\nno end\n"
            body = block.split("\n", 1)[1] if mol is not None else block
            blocks.append(f"{name}\n{body}$$$$\n")
        path = tmp_path / "new.sdf"
        path.write_text("".join(blocks))
        id_column = "id"
    else:
        table = pd.DataFrame({"name": names, "smiles": smiles})
        path = tmp_path / f"new.{fmt}"
        if fmt == "parquet":
            table.to_parquet(path)
        else:
            path.write_bytes(gzip.compress(table.to_csv(index=False).encode()))
        id_column = "name"
    # the predict path reads the stream only, never the whole table
    monkeypatch.setattr(io_module, "read_raw_table", None)
    chunked = _predict_files(forest, path, tmp_path / "c2", 2, id_column)
    whole = _predict_files(forest, path, tmp_path / "c100", 100, id_column)
    assert chunked == whole
    pred = pd.read_csv(tmp_path / "c2" / "predictions.csv", keep_default_na=False)
    rejects = pd.read_csv(tmp_path / "c2" / "rejects.csv", keep_default_na=False)
    assert rejects["row"].tolist() == [5]  # the unparsable molecule keeps its row number
    if fmt == "sdf":
        assert rejects["reason"][0].startswith("invalid_molblock: record 5")
    expected = ["a", "b", "a_row3", "row4", "a_row7", "a_row7_", "b_row8", "row9"]
    assert pred["id"].tolist()[:8] == expected
    summary = json.loads((tmp_path / "c2" / "summary.json").read_text())
    assert summary["ids"]["renamed"] == 3 and summary["ids"]["filled_from_row"] == 2


@pytest.mark.parametrize("spec", [{"type": "morgan", "n_bits": 64},
                                  {"type": "morgan", "counts": True, "n_bits": 64},
                                  {"type": "rdkit2d", "names": ["MolWt", "TPSA", "NumHDonors"]}])  # fmt: skip
def test_featurizing_in_chunks_writes_the_cache_of_one_pass(tmp_path, spec):
    from biomol_dl.featurize import run_featurize

    # the long chain has a Morgan count above 255: its chunk widens the whole table to int32
    inputs = [*SMILES[:7], "C" * 300, *SMILES[7:]]
    ids = [f"m{i}" for i in range(len(inputs))]
    pd.DataFrame({"id": ids, "input": inputs, "y": range(len(inputs))}).to_csv(
        tmp_path / "clean.csv", index=False
    )
    files = []
    for chunk_rows in (3, 100):
        out = tmp_path / f"chunk{chunk_rows}" / "features.pt"  # torch.save names it inside
        out.parent.mkdir()
        run_featurize(tmp_path / "clean.csv", spec, out, chunk_rows=chunk_rows)
        files.append(out.read_bytes())
    assert files[0] == files[1]
    features = torch.load(tmp_path / "chunk3" / "features.pt", weights_only=False)
    assert features["ids"] == ids
    if spec.get("counts"):
        assert features["X"].dtype == torch.int32 and int(features["X"].max()) > 255
