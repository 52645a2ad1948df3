"""Featurizer registry: config names -> featurizer classes.

A featurizer is a small callable object built from its config params. `len(featurizer)` is its
feature size (where one exists); `featurizer.featurize_table(inputs, threads)` turns the validated
inputs (canonical SMILES or sequences, in clean-table order) into the dict that the `featurize` rule
saves with `torch.save` and training jobs load with `torch.load(..., weights_only=True)`.
Fixed-length features are `X` [N, D, ...] or, for bit vectors, packed `X_bits` with `n_bits`
(read them through features.fingerprints.n_features / dense_rows / unpack_bits).
Entries are "module:Class" strings so looking a name up imports only that featurizer's stack.
"""

from __future__ import annotations

import importlib
from typing import Any

# type: (input kind, "module:Class"), the one list of featurizer types (the schema's `type`
# enum is kept equal to it by tests/test_families.py)
_TYPES: dict[str, tuple[str, str]] = {
    # molecules
    "morgan": ("smiles", "biomol_dl.features.fingerprints:MorganFeaturizer"),
    "rdkit2d": ("smiles", "biomol_dl.features.fingerprints:RDKit2DFeaturizer"),
    "graph": ("smiles", "biomol_dl.features.graph:MolGraphFeaturizer"),
    "smiles_tokens": ("smiles", "biomol_dl.features.tokens:SmilesTokenFeaturizer"),
    # proteins
    "onehot": ("protein", "biomol_dl.features.protein:OneHotFeaturizer"),
    "kmer": ("protein", "biomol_dl.features.protein:KmerFeaturizer"),
    "aa_tokens": ("protein", "biomol_dl.features.protein:AminoAcidTokenFeaturizer"),
    "plm_tokens": ("protein", "biomol_dl.features.protein:PLMTokenFeaturizer"),
    "plm_embedding": ("protein", "biomol_dl.features.protein:PLMEmbeddingFeaturizer"),
}
FEATURIZERS: dict[str, str] = {name: target for name, (_, target) in _TYPES.items()}
KINDS: dict[str, str] = {name: kind for name, (kind, _) in _TYPES.items()}


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
