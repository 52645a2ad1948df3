"""Model family `cnn`: a residual dilated 1D CNN over one-hot residues (featurizer `onehot` or
`aa_tokens`), for protein property prediction without pretraining.

The network is models/nets/cnn.py (imported when used: this module imports no torch).

params (besides the training-loop keys of `TrainConfig`):
  channels (128), kernel_size (5, odd), blocks (4; dilations 1, 2, 4, 8, 1, ...), dropout (0.1),
  head_hidden (128), max_tokens (null: cap on padded residues per batch), bucket_batches (50).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from biomol_dl.models._tokens import TokenFamily
from biomol_dl.models.base import TokenParams, register


@dataclass(frozen=True)
class CNNParams(TokenParams):
    channels: int = 128
    kernel_size: int = 5
    blocks: int = 4
    dropout: float = 0.1
    head_hidden: int = 128

    def check(self) -> None:
        if self.kernel_size % 2 != 1:
            raise ValueError(
                f"kernel_size must be odd (same-length convolutions), got {self.kernel_size}"
            )


@register("cnn")
class CNNFamily(TokenFamily):
    """Residual dilated 1D CNN with masked mean + max pooling."""

    Params = CNNParams
    featurizers = ("onehot", "aa_tokens")

    def build_model(self, features: Mapping[str, Any], n_outputs: int):
        from biomol_dl.models.nets.cnn import ResidualCNN

        self.check_features(features)
        p = self.params
        vocab_size = int(features.get("vocab_size") or len(features["vocab"]))
        return ResidualCNN(
            vocab_size, n_outputs, pad_index=int(features.get("pad_index", 0)),
            channels=p.channels, kernel_size=p.kernel_size, blocks=p.blocks,
            dropout=float(p.dropout), head_hidden=p.head_hidden,
        )  # fmt: skip
