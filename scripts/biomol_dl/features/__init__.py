"""Featurizer registry: config names -> featurizer classes.

A featurizer is a small callable object built from its config params. `len(featurizer)` is its
feature size (where one exists); `featurizer.featurize_table(inputs, threads)` turns the validated
inputs (canonical SMILES or sequences, in clean-table order) into the dict that the `featurize` rule
saves with `torch.save` and training jobs load with `torch.load(..., weights_only=True)`.
Entries are "module:Class" strings so looking a name up imports only that featurizer's stack.
"""

from __future__ import annotations

import importlib
from typing import Any

FEATURIZERS: dict[str, str] = {
    # molecules
    "morgan": "biomol_dl.features.fingerprints:MorganFeaturizer",
    "rdkit2d": "biomol_dl.features.fingerprints:RDKit2DFeaturizer",
    "graph": "biomol_dl.features.graph:MolGraphFeaturizer",
    "smiles_tokens": "biomol_dl.features.tokens:SmilesTokenFeaturizer",
    # proteins
    "onehot": "biomol_dl.features.protein:OneHotFeaturizer",
    "kmer": "biomol_dl.features.protein:KmerFeaturizer",
    "aa_tokens": "biomol_dl.features.protein:AminoAcidTokenFeaturizer",
    "plm_tokens": "biomol_dl.features.protein:PLMTokenFeaturizer",
    "plm_embedding": "biomol_dl.features.protein:PLMEmbeddingFeaturizer",
}

KINDS: dict[str, str] = {
    "morgan": "smiles",
    "rdkit2d": "smiles",
    "graph": "smiles",
    "smiles_tokens": "smiles",
    "onehot": "protein",
    "kmer": "protein",
    "aa_tokens": "protein",
    "plm_tokens": "protein",
    "plm_embedding": "protein",
}


def get_featurizer_class(type_name: str) -> type:
    """Return the featurizer class for a config `type`, failing with the list of valid names."""
    if type_name not in FEATURIZERS:
        raise KeyError(
            f"unknown featurizer type {type_name!r}; valid types: {', '.join(sorted(FEATURIZERS))}"
        )
    module_name, class_name = FEATURIZERS[type_name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_featurizer(spec: dict[str, Any]) -> Any:
    """Build a featurizer from its config entry: `{"type": "morgan", "radius": 2, ...}`."""
    params = {k: v for k, v in spec.items() if k != "type"}
    return get_featurizer_class(spec["type"])(**params)
