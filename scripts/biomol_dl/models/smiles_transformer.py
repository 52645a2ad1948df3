"""Model family `smiles_transformer`: a transformer encoder over SMILES tokens.

For config authors and for train_job. Features come from the `smiles_tokens` featurizer
(features/tokens.py); the network is in models/nets/smiles_transformer.py (imported when used:
this module imports no torch). Model params:

    d_model: 128       token / position embedding width
    heads: 4           attention heads (d_model must be divisible by heads)
    layers: 4          encoder layers (nn.TransformerEncoder, pre-norm, GELU)
    ff_dim: null       feed-forward width (default 4 * d_model)
    dropout: 0.1       in the encoder layers and the head
    pooling: cls | mean     the <cls> token's state, or the mean over real (unpadded) tokens
    head_hidden: null  hidden width of the two-layer head (default d_model)
    augment: false     train on a fresh randomized SMILES of every molecule each epoch (RDKit
                       doRandom, seeded by the loader seed, so epochs stay reproducible)
    max_len: null      positions the model can take, <cls> and <eos> included (default: the
                       longest SMILES of the feature file * 1.5 + 2, room for randomized
                       SMILES); a longer input is truncated and counted in the log
    min_count: 1       a train token seen fewer times becomes <unk>

The vocabulary is built by `prepare_model` from the TRAIN rows' tokens only and lives in the
model's state dict (see models/nets/smiles_transformer.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from biomol_dl.models.base import Family, TorchParams, register

POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class SmilesTransformerParams(TorchParams):
    d_model: int = 128
    heads: int = 4
    layers: int = 4
    ff_dim: int | None = None
    dropout: float = 0.1
    pooling: str = "cls"
    head_hidden: int | None = None
    augment: bool = False
    max_len: int | None = None
    min_count: int = 1

    def check(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


@register("smiles_transformer")
class SmilesTransformerFamily(Family):
    """Regex SMILES tokens -> transformer encoder with padding masks -> pooled head."""

    Params = SmilesTransformerParams
    featurizers = ("smiles_tokens",)

    def build_datasets(self, features: Mapping[str, Any], y: Any):
        from biomol_dl.models.nets import smiles_transformer as st

        return st.build_datasets(features, y)

    def make_loader(self, subset: Sequence, *, batch_size, shuffle, seed, pin_memory=False):
        from biomol_dl.models.nets import smiles_transformer as st

        return st.make_loader(subset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                              augment=self.params.augment, pin_memory=pin_memory)  # fmt: skip

    def build_model(self, features: Mapping[str, Any], n_outputs: int):
        from biomol_dl.models.nets import smiles_transformer as st

        return st.build_model(features, n_outputs, dataclasses.asdict(self.params))

    def prepare_model(self, model, train_subset: Sequence) -> None:
        from biomol_dl.models.nets import smiles_transformer as st

        st.prepare_model(model, train_subset, self.params.min_count)

    def extra_checkpoint(self, model) -> dict:
        from biomol_dl.models.nets import smiles_transformer as st

        return st.extra_checkpoint(model)
