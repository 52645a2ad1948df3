"""The `rnn` family's networks (torch); the family and its params are models/rnn.py.

A bidirectional GRU or LSTM over token ids, run on packed sequences (padding never enters the
recurrence), pooled over the real tokens only (mean and max, concatenated), then a two-layer
head. Two inputs:

- residue tokens (`aa_tokens`, `onehot`): batches of vocabulary ids and a mask
  (biomol_dl.batching), the vocabulary fixed by the featurizer;
- SMILES tokens (`smiles_tokens`): batches of token hashes and a mask, mapped to ids by a
  vocabulary built from the train rows only and kept in the model's state dict, exactly as the
  SMILES transformer does (its hashed-vocabulary methods are reused, not copied).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from biomol_dl.features.tokens import PAD, SPECIAL_TOKENS
from biomol_dl.models.nets import smiles_transformer as st

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RecurrentEncoder(nn.Module):
    """Token ids [B, L] + mask [B, L] -> bidirectional RNN -> masked mean + max pool -> head."""

    def __init__(self, vocab_size: int, n_outputs: int, cfg: Mapping[str, Any], pad_index: int):
        super().__init__()
        hidden, dropout, layers = int(cfg["hidden"]), float(cfg["dropout"]), int(cfg["layers"])
        self.embed = nn.Embedding(vocab_size, int(cfg["embed_dim"]), padding_idx=pad_index)
        self.rnn = CELLS[cfg["cell"]](
            int(cfg["embed_dim"]), hidden, num_layers=layers, batch_first=True,
            bidirectional=True, dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(
            nn.Linear(4 * hidden, int(cfg["head_hidden"])), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(int(cfg["head_hidden"]), n_outputs),
        )  # fmt: skip

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, 4 * hidden]: mean and max of the RNN states over each sequence's real tokens."""
        lengths = mask.sum(1).clamp(min=1).cpu()  # pack_padded_sequence wants them on the CPU
        packed = pack_padded_sequence(
            self.drop(self.embed(ids)), lengths, batch_first=True, enforce_sorted=False
        )
        states, _ = self.rnn(packed)
        h, _ = pad_packed_sequence(states, batch_first=True, total_length=ids.shape[1])
        real = mask[:, : h.shape[1]].unsqueeze(-1)
        mean = h.masked_fill(~real, 0.0).sum(1) / real.sum(1).clamp(min=1)
        top = h.masked_fill(~real, torch.finfo(h.dtype).min).amax(1)
        return torch.cat([mean, top], dim=-1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.drop(self.encode(batch["tokens"].long(), batch["mask"])))


class SmilesRNN(RecurrentEncoder):
    """The recurrent encoder on SMILES token hashes, with the train rows' vocabulary inside."""

    # The SMILES transformer's hashed vocabulary: buffers vocab_hash / vocab_id, set_vocab
    # (called by prepare_model and load_state_dict's owner), token_ids (hashes -> ids, <unk>).
    set_vocab = st.SmilesTransformer.set_vocab
    token_ids = st.SmilesTransformer.token_ids

    def __init__(self, capacity: int, n_outputs: int, cfg: Mapping[str, Any]):
        super().__init__(capacity, n_outputs, cfg, pad_index=SPECIAL_TOKENS.index(PAD))
        self.register_buffer("vocab_hash", torch.full((capacity,), st._EMPTY, dtype=torch.int64))
        self.register_buffer("vocab_id", torch.zeros(capacity, dtype=torch.int64))
        self.vocab: list[str] = []
        self.set_vocab(list(SPECIAL_TOKENS))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["mask"]
        ids = self.token_ids(batch["tokens"]).masked_fill(~mask, SPECIAL_TOKENS.index(PAD))
        return self.head(self.drop(self.encode(ids, mask)))


def is_smiles(features: Mapping[str, Any]) -> bool:
    """Features of the smiles_tokens featurizer (token strings), not residue ids."""
    return "n_token_types" in features


def build_model(features: Mapping[str, Any], n_outputs: int, cfg: Mapping[str, Any]) -> nn.Module:
    if is_smiles(features):
        return SmilesRNN(int(features["n_token_types"]) + len(SPECIAL_TOKENS), n_outputs, cfg)
    vocab_size = int(features.get("vocab_size") or len(features["vocab"]))
    return RecurrentEncoder(vocab_size, n_outputs, cfg, pad_index=int(features.get("pad_index", 0)))
