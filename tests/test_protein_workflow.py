"""The protein path as a user runs it: the tiny peptide data through the real workflow with every
protein model family, the pretrained model a tiny random ESM-2 saved as a local folder (the same
code path as a downloaded hub snapshot)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from conftest import snakemake, write_config
from conftest_plm import make_tiny_esm

FAMILIES = {
    "cnn_onehot": ("cnn", "onehot", {"channels": 16, "blocks": 1}),
    "transformer_aa": ("seq_transformer", "aa_tokens", {"d_model": 32, "heads": 2, "layers": 1}),
    "esm_frozen": ("plm_frozen", "esm_embedding", {"hidden": [32]}),
    "esm_lora": ("plm_lora", "esm_tokens", {"lora_r": 4, "lora_alpha": 8}),
}


@pytest.mark.slow
def test_every_protein_family_runs_through_the_workflow(tmp_path, tiny_config):
    esm = make_tiny_esm(tmp_path / "tiny_esm")
    config = copy.deepcopy(tiny_config)
    config["datasets"] = {"tiny_peptides": config["datasets"]["tiny_peptides"]}
    config["featurizers"].update(
        {
            "onehot": {"type": "onehot", "max_length": 120},
            "aa_tokens": {"type": "aa_tokens", "max_length": 120},
            "esm_tokens": {"type": "plm_tokens", "model": str(esm)},
            "esm_embedding": {"type": "plm_embedding", "model": str(esm)},
        }
    )
    for name, (family, featurizer, params) in FAMILIES.items():
        config["models"][name] = {
            "family": family,
            "featurizer": featurizer,
            "params": {**params, "epochs": 2, "batch_size": 16},
            "threads": 1,
        }
    config["datasets"]["tiny_peptides"]["models"] = ["rf_kmer", *FAMILIES]
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakemake(workdir, write_config(workdir, config), "--cores", "2", "results/summary.csv",
              env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    test_auc = summary.query("split == 'test' and metric == 'roc_auc'").set_index("model")["value"]
    assert set(test_auc.index) == {"rf_kmer", *FAMILIES}
    assert test_auc.between(0, 1).all()
    lora_log = (workdir / "logs/train_plm_lora/tiny_peptides/esm_lora_seed0.log").read_text()
    assert "epoch" in lora_log
