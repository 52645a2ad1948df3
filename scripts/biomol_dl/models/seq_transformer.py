"""Model family `seq_transformer`: a transformer encoder trained from scratch on residue tokens
(featurizer `aa_tokens`, or `onehot` with mean pooling).

The baseline that shows what pretraining buys. The network is models/nets/seq_transformer.py
(imported when used: this module imports no torch).

params (besides the training-loop keys of `TrainConfig`):
  d_model (128), heads (4), layers (3), ff_mult (4), dropout (0.1), pooling (mean | cls; cls
  needs aa_tokens' leading <cls>), max_tokens (null), bucket_batches (50).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from biomol_dl.models._tokens import TokenFamily
from biomol_dl.models.base import TokenParams, register

POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class SeqTransformerParams(TokenParams):
    d_model: int = 128
    heads: int = 4
    layers: int = 3
    ff_mult: int = 4
    dropout: float = 0.1
    pooling: str = "mean"

    def check(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")


@register("seq_transformer")
class SeqTransformerFamily(TokenFamily):
    """Pre-norm transformer encoder with sinusoidal positions and masked pooling."""

    Params = SeqTransformerParams
    featurizers = ("aa_tokens", "onehot")

    def build_model(self, features: Mapping[str, Any], n_outputs: int):
        from biomol_dl.models.nets.seq_transformer import SequenceTransformer

        self.check_features(features)
        p = self.params
        vocab = list(features.get("vocab") or [])
        if p.pooling == "cls" and "<cls>" not in vocab:
            raise ValueError(
                "seq_transformer: pooling cls needs the aa_tokens featurizer (a leading <cls>)"
            )
        vocab_size = int(features.get("vocab_size") or len(vocab))
        return SequenceTransformer(
            vocab_size, n_outputs, pad_index=int(features.get("pad_index", 0)),
            d_model=p.d_model, heads=p.heads, layers=p.layers, ff_mult=p.ff_mult,
            dropout=float(p.dropout), pooling=p.pooling,
        )  # fmt: skip
