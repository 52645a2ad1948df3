"""Transfer learning: corpora exclude exactly the listed molecules, pretraining writes an encoder
that records its featurizer and architecture, fine-tuning loads it (a frozen encoder does not
change, a reloaded model predicts the same), mismatches fail in one line, and the real workflow
builds corpus -> pretrain -> fine-tune and re-runs exactly what a corpus edit affects."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")
Chem = pytest.importorskip("rdkit.Chem")

from conftest import ROOT, snakemake  # noqa: E402
from test_gnn import SMILES, write_job  # noqa: E402
from test_rerun import job, planned_jobs  # noqa: E402

from biomol_dl import config as bdl_config  # noqa: E402
from biomol_dl import pretrain, train_job, training  # noqa: E402
from biomol_dl.corpus import build_corpus  # noqa: E402
from biomol_dl.features.graph import MolGraphFeaturizer  # noqa: E402
from biomol_dl.models.base import Functions  # noqa: E402
from biomol_dl.transfer import ENCODER_FORMAT  # noqa: E402

gnn = Functions("gnn")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"arch": "dmpnn", "hidden": 16, "depth": 2, "epochs": 3, "batch_size": 4,
         "device": "cpu"}  # fmt: skip


# ------------------------------------------------------------------------------- corpora


def _csv(path, column, values):
    pd.DataFrame({column: values}).to_csv(path, index=False)
    return {"type": "path", "path": str(path)}


def test_corpus_excludes_exactly_the_listed_molecules(tmp_path):
    excluded = pd.DataFrame({"id": ["a", "b", "c"], "input": ["CCO", "c1ccccc1O", "C[C@H](N)O"]})
    excluded.to_csv(tmp_path / "clean.csv", index=False)
    rows = [
        "OCC",  # CCO written another way: excluded (InChIKey)
        "CCCC",  # kept
        "CCCC",  # duplicate of the row above
        "Oc1ccccc1",  # phenol: excluded
        "C[C@@H](N)O",  # the other enantiomer: kept by inchikey, gone by connectivity
        "C1CC1 x",  # a space inside: rejected, never parsed as a prefix
        "[Na+].[Cl-].CCN",  # salt: the largest fragment (ethylamine) is kept
        "c1ccccc1",  # kept
    ]
    source = _csv(tmp_path / "corpus.csv", "smiles", rows)
    entry = {"sources": [{"source": source, "input_column": "smiles"}],
             "validation": {"largest_fragment": True}}  # fmt: skip
    out = {k: tmp_path / f"{k}.out" for k in ("molecules", "rejects", "summary")}
    summary = build_corpus(entry, *out.values(), exclude_tables={"ds": tmp_path / "clean.csv"})
    molecules = pd.read_csv(out["molecules"])
    assert molecules["input"].tolist() == ["CCCC", "C[C@@H](N)O", "CCN", "c1ccccc1"]
    rejects = pd.read_csv(out["rejects"])
    assert rejects["row"].tolist() == [1, 3, 4, 6]
    reasons = [r.split(":")[0] for r in rejects["reason"]]
    assert reasons == ["excluded", "duplicate", "excluded", "whitespace_in_smiles"], rejects[
        "reason"
    ]
    assert summary["kept"] + summary["rejected"] == summary["rows_in"] == len(rows)
    assert "dataset ds" in rejects["reason"][0] and "row 2" in rejects["reason"][1]

    stereo = build_corpus({**entry, "exclude_match": "connectivity"}, *out.values(),
                          exclude_tables={"ds": tmp_path / "clean.csv"})  # fmt: skip
    assert stereo["kept"] == 3 and "C[C@@H](N)O" not in set(pd.read_csv(out["molecules"])["input"])

    sampled = build_corpus({**entry, "max_molecules": 2}, *out.values())
    assert sampled["kept"] == 2 and sampled["by_reason"]["not_sampled"] == 4
    assert sampled["kept"] + sampled["rejected"] == len(rows)


# ------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    """An encoder pretrained for real on 16 molecules' descriptors (a few epochs)."""
    tmp = tmp_path_factory.mktemp("encoder")
    spec = {"type": "graph", "add_descriptors": True}
    features = MolGraphFeaturizer(add_descriptors=True).featurize_table(SMILES)
    features["ids"] = [f"m{i}" for i in range(len(SMILES))]
    torch.save(features, tmp / "features.pt")
    pd.DataFrame({"id": features["ids"], "input": SMILES}).to_csv(tmp / "mols.csv", index=False)
    params = {**SMALL, "batch_norm": True}
    pretrain.run_pretraining(
        molecules_csv=tmp / "mols.csv",
        features_pt=tmp / "features.pt",
        spec={"name": "pt", "corpus": "c", "family": "gnn", "featurizer": "graph",
              "featurizer_spec": {"type": "graph"}, "params": params,
              "objective": {"val_fraction": 0.2}},
        out_encoder=tmp / "encoder.pt",
        out_history=tmp / "history.csv",
    )  # fmt: skip
    assert spec  # the corpus featurizer adds descriptors; the encoder records the plain spec
    return tmp / "encoder.pt"


def test_encoder_records_featurizer_architecture_and_targets(encoder_file):
    ckpt = torch.load(encoder_file, weights_only=True)
    assert ckpt["format"] == ENCODER_FORMAT and ckpt["featurizer_spec"] == {"type": "graph"}
    assert ckpt["encoder_signature"] == {
        "arch": "dmpnn",
        "hidden": 16,
        "depth": 2,
        "batch_norm": True,
        "attention_pooling": False,
    }
    assert ckpt["state_dict"] and all(k.startswith("encoder.") for k in ckpt["state_dict"])
    d = ckpt["descriptors"]
    assert len(d["names"]) == len(d["mean"]) > 50 and "MolWt" in d["names"]
    assert ckpt["corpus"]["molecules"] == 16 and len(ckpt["history"]) >= 1


def _init_job(tmp_path, encoder_file, init, params):
    write_job(tmp_path, {"type": "graph"})
    out = tmp_path / "ft"
    train_job.run_training(
        gnn,
        clean_csv=tmp_path / "clean.csv",
        split_csv=tmp_path / "split.csv",
        features_pt=tmp_path / "features.pt",
        model_spec={"name": "ft", "family": "gnn", "featurizer": "graph",
                    "featurizer_spec": {"type": "graph"}, "params": params, "init": init},
        task="regression", label_columns=["logp"], seed=0,
        out_model=out / "model.pt", out_predictions=out / "predictions.csv",
        out_history=out / "history.csv", init_file=encoder_file,
    )  # fmt: skip
    return out


def test_frozen_encoder_does_not_change_and_reload_predicts_the_same(tmp_path, encoder_file):
    params = {**SMALL, "batch_norm": True}
    out = _init_job(tmp_path, encoder_file, {"pretrained": "pt", "freeze_encoder": True}, params)
    ckpt = torch.load(out / "model.pt", weights_only=True)
    source = torch.load(encoder_file, weights_only=True)["state_dict"]
    for key, value in source.items():  # weights and batch-norm statistics alike
        assert torch.equal(ckpt["state_dict"][key], value), key
    assert ckpt["init"]["frozen_parameters"] > 0 and ckpt["init"]["loaded_tensors"] == len(source)
    head = [k for k in ckpt["state_dict"] if k.startswith("head.")]
    fresh = gnn.build_model(ckpt["feature_meta"], 1, params)
    assert any(not torch.equal(ckpt["state_dict"][k], fresh.state_dict()[k]) for k in head)

    predictions = pd.read_csv(out / "predictions.csv")
    again = train_job.predict_inputs(out / "model.pt", gnn, SMILES)
    np.testing.assert_allclose(again["y_pred"], predictions["y_pred"], rtol=1e-5, atol=1e-6)


def test_fine_tuned_encoder_moves_at_its_own_rate(tmp_path, encoder_file):
    params = {**SMALL, "batch_norm": True, "schedule": "constant"}
    out = _init_job(tmp_path, encoder_file, {"pretrained": "pt", "encoder_lr_ratio": 0.1}, params)
    ckpt = torch.load(out / "model.pt", weights_only=True)
    source = torch.load(encoder_file, weights_only=True)["state_dict"]
    assert not torch.equal(ckpt["state_dict"]["encoder.W_h.weight"], source["encoder.W_h.weight"])
    assert ckpt["init"]["lr_scales"] == {"encoder.": 0.1, "pool.": 0.1}
    model = gnn.build_model(ckpt["feature_meta"], 1, params)
    optimizer = training._make_optimizer(model, list(model.parameters()),
                                         training.TrainConfig(lr=0.01), ckpt["init"]["lr_scales"])  # fmt: skip
    rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert rates[id(model.encoder.W_h.weight)] == pytest.approx(0.001)
    assert rates[id(model.head[-1].weight)] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("params", "featurizer", "message"),
    [
        ({**SMALL, "hidden": 24, "batch_norm": True}, {"type": "graph"},
         "architecture mismatch with ft: hidden: 16 vs 24"),
        ({**SMALL, "batch_norm": True}, {"type": "graph", "atom_features": ["element", "degree"]},
         "featurizer mismatch"),
    ],
)  # fmt: skip
def test_mismatched_checkpoint_fails_with_one_line(tmp_path, encoder_file, params, featurizer,
                                                    message):  # fmt: skip
    write_job(tmp_path, featurizer)
    family = gnn.family(params)
    model = family.build_model(torch.load(tmp_path / "features.pt", weights_only=True), 1)
    spec = {"name": "ft", "featurizer_spec": featurizer, "params": params}
    with pytest.raises(ValueError, match=message) as err:
        pretrain.apply_init(family, model, {"pretrained": "pt"}, encoder_file, spec)
    assert "\n" not in str(err.value) and str(encoder_file) in str(err.value)


# ----------------------------------------------------------------------------- the config


def _config(**changes):
    cfg = {
        "featurizers": {"graph": {"type": "graph"}, "g2": {"type": "graph", "elements": ["C"]}},
        "corpora": {"c": {"sources": [{"source": {"type": "path", "path": "x.csv"},
                                       "input_column": "smiles"}], "exclude": ["ds"]}},
        "pretrain": {"pt": {"corpus": "c", "featurizer": "graph", "params": {"hidden": 16}}},
        "models": {
            "a": {"family": "gnn", "featurizer": "graph", "params": {"hidden": 16},
                  "init": {"pretrained": "pt"}},
            "b": {"family": "gnn", "featurizer": "graph", "params": {"hidden": 16}},
        },
        "datasets": {
            name: {"kind": "smiles", "source": {"type": "path", "path": "x.csv"},
                   "input_column": "smiles", "label_columns": ["y"], "task": "regression",
                   "split": {"strategy": "random"}, "models": models}
            for name, models in (("ds", ["a"]), ("other", ["b"]))
        },
    }  # fmt: skip
    for path, value in changes.items():
        *keys, last = path.split("__")
        node = cfg
        for key in keys:
            node = node[key]
        node[last] = value
    return cfg


def test_the_config_is_loaded_and_checked():
    bdl_config.load_config(_config())  # the valid one
    cases = {
        "models__a__params__hidden": (32, "models.a.init.pretrained': architecture mismatch"),
        "models__a__featurizer": ("g2", "featurizer mismatch: pretrain entry 'pt'"),
        "models__a__init": ({"pretrained": "nope"}, "unknown pretrain entry 'nope'"),
        "corpora__c__exclude": (["nope"], "corpora.c.exclude.0': unknown dataset"),
        "models__b__init": ({"model": "ds/a", "frozen_head_layers": 2},
                            "models.b.init.frozen_head_layers"),
        "pretrain__pt__params__descriptors": (True, "descriptors are what pretraining predicts"),
        "datasets__other__exclude": (["nope"], "datasets.other.exclude.0': unknown dataset"),
        "datasets__ds__exclude": (["ds"], "datasets.ds.exclude.0': a dataset cannot exclude itself"),
    }  # fmt: skip
    for key, (value, message) in cases.items():
        with pytest.raises(bdl_config.ConfigError, match=message.replace(".", r"\.")):
            bdl_config.load_config(_config(**{key: value}))
    # a model of `other` starting from a model of `ds`, but also trained on `ds`: leaks test rows
    leak = _config(models__b__init={"model": "ds/a"})
    leak["datasets"]["ds"]["models"] = ["a", "b"]
    with pytest.raises(bdl_config.ConfigError, match="leaks test rows"):
        bdl_config.load_config(leak)
    cycle = _config(models__a__init={"model": "other/b"}, models__b__init={"model": "ds/a"})
    with pytest.raises(bdl_config.ConfigError, match="cycle"):
        bdl_config.load_config(cycle)
    both = _config(datasets__ds__exclude=["other"], datasets__other__exclude=["ds"])
    with pytest.raises(bdl_config.ConfigError, match="exclude lists form a cycle"):
        bdl_config.load_config(both)


def test_a_dataset_leaves_out_exactly_the_excluded_molecules(tmp_path):
    """`exclude` on a dataset: each row holding an excluded dataset's molecule (any SMILES of it)
    is an `excluded` reject naming that dataset; kept + rejected = rows in."""
    from biomol_dl.validate import run_validation

    pd.DataFrame({"id": ["a", "b"], "input": ["CCO", "C[C@H](N)O"]}).to_csv(
        tmp_path / "other.csv", index=False
    )
    raw = pd.DataFrame({"smiles": ["OCC", "CCN", "C[C@@H](N)O", "c1ccccc1", "CC O"],
                        "y": ["1", "2", "3", "4", "5"]})  # fmt: skip
    raw.to_csv(tmp_path / "raw.csv", index=False)
    spec = {"kind": "smiles", "input_column": "smiles", "label_columns": ["y"],
            "task": "regression", "exclude": ["other"]}  # fmt: skip
    out = [tmp_path / n for n in ("clean.csv", "rejects.csv", "summary.json")]
    tables = {"other": tmp_path / "other.csv"}
    summary = run_validation(tmp_path / "raw.csv", spec, *out, exclude_tables=tables)
    rejects = pd.read_csv(out[1])
    assert pd.read_csv(out[0])["input"].tolist() == ["CCN", "C[C@@H](N)O", "c1ccccc1"]
    assert (
        rejects["row"].tolist() == [1, 5] and rejects["reason"][0] == "excluded: in dataset other"
    )
    assert summary["kept"] + summary["rejected"] == 5 and summary["exclude"]["removed"] == 1
    connectivity = run_validation(tmp_path / "raw.csv", {**spec, "exclude_match": "connectivity"},
                                  *out, exclude_tables=tables)  # fmt: skip
    assert pd.read_csv(out[1])["reason"].str.startswith("excluded").sum() == 2  # + the stereoisomer
    assert connectivity["exclude"] == {"datasets": ["other"], "match": "connectivity", "removed": 2}


# ---------------------------------------------------------------------------- workflow


def test_corpus_pretrain_fine_tune_through_the_workflow(tmp_path):
    """Real Snakemake: a 40-molecule corpus pretrains a D-MPNN, a logBB model fine-tunes from it
    and a BBB classifier's model seeds a frozen one; a corpus edit re-runs exactly its chain."""
    tiny = pd.read_csv(ROOT / "tests" / "data" / "tiny_logbb.csv")
    tiny.to_csv(tmp_path / "logbb.csv", index=False)
    b3db = pd.read_csv(
        __import__("importlib.util").util.find_spec("B3DB").submodule_search_locations[0]
        + "/B3DB_classification.tsv", sep="\t", nrows=80,
    )  # fmt: skip
    b3db[["SMILES"]][:40].to_csv(tmp_path / "corpus.csv", index=False)
    # The BBB classifier's data: 40 other B3DB molecules and 20 of logBB's, which `exclude` drops.
    bbb = pd.concat([
        pd.DataFrame({"name": "b3db" + b3db["NO."][40:].astype(str), "smiles": b3db["SMILES"][40:],
                      "bbb": (b3db["BBB+/BBB-"][40:] == "BBB+").astype(int)}),
        tiny[:20].assign(bbb=(tiny["logBB"][:20] > -1).astype(int))[["name", "smiles", "bbb"]],
    ])  # fmt: skip
    bbb.to_csv(tmp_path / "bbb.csv", index=False)
    net = {"hidden": 16, "depth": 2, "epochs": 2, "batch_size": 16, "patience": 2}
    dataset = {"kind": "smiles", "input_column": "smiles", "id_column": "name",
               "split": {"strategy": "random", "fractions": [0.7, 0.15, 0.15]}, "seeds": [0]}  # fmt: skip
    config = {
        "featurizers": {"graph": {"type": "graph"}},
        "corpora": {"c": {"sources": [{"source": {"type": "path", "path": str(tmp_path / "corpus.csv")},
                                       "input_column": "SMILES"}],
                          "exclude": ["logbb"]}},
        "pretrain": {"pt": {"corpus": "c", "featurizer": "graph", "params": net, "threads": 1}},
        "models": {
            "gnn_pt": {"family": "gnn", "featurizer": "graph", "params": net, "threads": 1,
                       "init": {"pretrained": "pt", "encoder_lr_ratio": 0.5}},
            "gnn_bbb": {"family": "gnn", "featurizer": "graph", "params": net, "threads": 1},
            "gnn_from_bbb": {"family": "gnn", "featurizer": "graph", "params": net, "threads": 1,
                             "init": {"model": "bbb/gnn_bbb", "seed": 0, "freeze_encoder": True,
                                      "frozen_head_layers": 1}},
        },
        "datasets": {
            "logbb": {**dataset, "source": {"type": "path", "path": str(tmp_path / "logbb.csv")},
                      "label_columns": ["logBB"], "task": "regression",
                      "models": ["gnn_pt", "gnn_from_bbb"]},
            "bbb": {**dataset, "source": {"type": "path", "path": str(tmp_path / "bbb.csv")},
                    "label_columns": ["bbb"], "task": "binary", "models": ["gnn_bbb"],
                    "exclude": ["logbb"]},
        },
    }  # fmt: skip
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {"BIOMOL_DL_TRACKING": "0"}
    # the summary needs every model trained and evaluated; the report rules are not this test's
    proc = snakemake(tmp_path, configfile, "--cores", "2", "results/summary.csv", env=env)
    ran = planned_jobs(proc.stdout + proc.stderr)
    assert {job("corpus", corpus="c"), job("pretrain", pretrain="pt"),
            job("train_gnn", dataset="bbb", model="gnn_bbb", seed=0)} <= ran  # fmt: skip

    corpus = pd.read_csv(tmp_path / "results/_corpora/c/molecules.csv")
    logbb_keys = {Chem.MolToInchiKey(Chem.MolFromSmiles(s)) for s in tiny["smiles"]}
    assert not logbb_keys & set(corpus["inchikey"]) and len(corpus) > 20
    bbb_clean = pd.read_csv(tmp_path / "results/bbb/validate/clean.csv")
    assert not logbb_keys & {Chem.MolToInchiKey(Chem.MolFromSmiles(s)) for s in bbb_clean["input"]}
    reasons = pd.read_csv(tmp_path / "results/bbb/validate/rejects.csv")["reason"]
    assert reasons.str.startswith("excluded: in dataset logbb").sum() >= 20
    model = torch.load(tmp_path / "results/logbb/train/gnn_from_bbb/seed0/model.pt",
                       weights_only=True)  # fmt: skip
    source = torch.load(tmp_path / "results/bbb/train/gnn_bbb/seed0/model.pt", weights_only=True)
    assert model["init"]["loaded_head_layers"] == 1
    for key in ("encoder.W_i.weight", "head.1.weight"):  # frozen: encoder, first head layer
        assert torch.equal(model["state_dict"][key], source["state_dict"][key])
    summary = pd.read_csv(tmp_path / "results/summary.csv")
    assert {"gnn_pt", "gnn_from_bbb"} <= set(summary["model"])

    def planned_after(edited: dict) -> set[str]:
        (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
        dry = snakemake(tmp_path, tmp_path / "edited.yaml", "--cores", "1", "--dry-run",
                        "results/summary.csv", env=env)  # fmt: skip
        return planned_jobs(dry.stdout + dry.stderr)

    edited = copy.deepcopy(config)
    edited["corpora"]["c"]["max_molecules"] = 30
    assert planned_after(edited) == {
        job("corpus", corpus="c"), job("featurize_corpus", corpus="c", featurizer="graph"),
        job("pretrain", pretrain="pt"), job("train_gnn", dataset="logbb", model="gnn_pt", seed=0),
        job("evaluate", dataset="logbb", model="gnn_pt", seed=0), "summary",
    }  # fmt: skip

    # without `exclude`, the BBB set and everything built from it (the frozen logBB model) re-run
    del edited["corpora"]["c"]["max_molecules"], edited["datasets"]["bbb"]["exclude"]
    assert planned_after(edited) == {
        job("validate", dataset="bbb"), job("split", dataset="bbb", seed=0),
        job("featurize", dataset="bbb", featurizer="graph"),
        job("train_gnn", dataset="bbb", model="gnn_bbb", seed=0),
        job("evaluate", dataset="bbb", model="gnn_bbb", seed=0),
        job("train_gnn", dataset="logbb", model="gnn_from_bbb", seed=0),
        job("evaluate", dataset="logbb", model="gnn_from_bbb", seed=0), "summary",
    }  # fmt: skip
