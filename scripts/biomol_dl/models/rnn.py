"""Model family `rnn`: a bidirectional GRU or LSTM over SMILES tokens or residue tokens.

For config authors. Features: `smiles_tokens` (molecules; the vocabulary is built from the
train rows, like the SMILES transformer's) or `aa_tokens` / `onehot` (proteins; length-bucketed
batches). Sequences are packed, so padding never enters the recurrence, and pooled (mean and
max) over their real tokens. The networks are models/nets/rnn.py (imported when used: this
module imports no torch).

params (besides the training-loop keys of `TrainConfig`):
  cell (gru | lstm), embed_dim (64), hidden (128, per direction), layers (2), dropout (0.1),
  head_hidden (128); SMILES only: augment (false: a fresh randomized SMILES of each molecule
  every epoch), min_count (1: rarer train tokens become <unk>); residues only: max_tokens,
  bucket_batches (see biomol_dl.batching).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from biomol_dl.models._tokens import TokenFamily
from biomol_dl.models.base import TokenParams, register

CELLS = ("gru", "lstm")


@dataclass(frozen=True)
class RNNParams(TokenParams):
    cell: str = "gru"
    embed_dim: int = 64
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.1
    head_hidden: int = 128
    augment: bool = False
    min_count: int = 1

    def check(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; valid: {', '.join(CELLS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


@register("rnn")
class RNNFamily(TokenFamily):
    """Bidirectional GRU / LSTM on packed token sequences with masked mean + max pooling."""

    Params = RNNParams
    featurizers = ("smiles_tokens", "aa_tokens", "onehot")

    def build_datasets(self, features: Mapping[str, Any], y: Any):
        from biomol_dl.models.nets import rnn, smiles_transformer

        if rnn.is_smiles(features):
            return smiles_transformer.build_datasets(features, y)
        return super().build_datasets(features, y)

    def make_loader(self, subset: Sequence, *, batch_size, shuffle, seed, pin_memory=False):
        from biomol_dl.models.nets import smiles_transformer

        if len(subset) and isinstance(subset[0]["tokens"], list):  # SMILES token strings
            return smiles_transformer.make_loader(
                subset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                augment=self.params.augment, pin_memory=pin_memory,
            )  # fmt: skip
        return super().make_loader(
            subset, batch_size=batch_size, shuffle=shuffle, seed=seed, pin_memory=pin_memory
        )

    def build_model(self, features: Mapping[str, Any], n_outputs: int):
        from biomol_dl.models.nets import rnn

        if not rnn.is_smiles(features):
            self.check_features(features)
        return rnn.build_model(features, n_outputs, dataclasses.asdict(self.params))

    def prepare_model(self, model, train_subset: Sequence) -> None:
        from biomol_dl.models.nets import rnn, smiles_transformer

        if isinstance(model, rnn.SmilesRNN):
            smiles_transformer.prepare_model(model, train_subset, self.params.min_count)

    def extra_checkpoint(self, model) -> dict:
        from biomol_dl.models.nets import rnn, smiles_transformer

        if isinstance(model, rnn.SmilesRNN):
            return smiles_transformer.extra_checkpoint(model)
        return {}
