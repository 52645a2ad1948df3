"""The network of model family `seq_transformer` (models/seq_transformer.py): a transformer
encoder trained from scratch on residue tokens (torch).

The baseline that shows what pretraining buys: same architecture family as a protein language
model, no pretraining. Padding is handled with a key padding mask and masked pooling, so a
sequence predicts the same alone or in a padded batch. Positions are sinusoidal (no maximum
length is baked into the weights).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid(length: int, dim: int, device: torch.device) -> torch.Tensor:
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class SequenceTransformer(nn.Module):
    """Token embedding + sinusoidal positions -> pre-norm transformer encoder -> pooled -> head."""

    def __init__(
        self,
        vocab_size: int,
        n_outputs: int,
        *,
        pad_index: int = 0,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 3,
        ff_mult: int = 4,
        dropout: float = 0.1,
        pooling: str = "mean",
    ):
        super().__init__()
        self.pooling, self.d_model = pooling, d_model
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_index)
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            ff_mult * d_model,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # No nested-tensor fast path: same numerics in training and evaluation.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, n_outputs)

    def forward(self, batch: dict) -> torch.Tensor:
        tokens, mask = batch["tokens"].long(), batch["mask"]
        x = self.embed(tokens) * math.sqrt(self.d_model)
        x = self.drop(x + sinusoid(tokens.shape[1], self.d_model, tokens.device).to(x.dtype))
        h = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            m = mask.unsqueeze(-1)
            pooled = h.masked_fill(~m, 0.0).sum(1) / m.sum(1).clamp(min=1)
        return self.head(self.drop(pooled))
