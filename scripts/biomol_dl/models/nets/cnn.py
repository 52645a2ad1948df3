"""The network of model family `cnn` (models/cnn.py): a residual dilated 1D CNN over one-hot
residues, for protein property prediction without pretraining (torch).

The one-hot input is built on the fly from residue indices. Padding never reaches a real
position: padded positions are zeroed before every convolution, which is exactly the zero padding
a convolution applies at the end of an unpadded sequence, so a sequence predicts the same alone
or in a padded batch. Pooling is a masked mean and max over residues.
"""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    """Pre-norm residual block: LayerNorm -> GELU -> dilated conv -> dropout, added back."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(
            channels,
            channels,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size // 2),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # x: [B, C, L]; keep: [B, 1, L] float, 0 at padding (zeroed so it acts as conv padding)
        h = nn.functional.gelu(self.norm(x.transpose(1, 2)).transpose(1, 2)) * keep
        return (x + self.drop(self.conv(h))) * keep


class ResidualCNN(nn.Module):
    """One-hot residues -> input conv -> residual dilated blocks -> masked mean+max -> MLP head."""

    def __init__(
        self,
        vocab_size: int,
        n_outputs: int,
        *,
        pad_index: int = 0,
        channels: int = 128,
        kernel_size: int = 5,
        blocks: int = 4,
        dropout: float = 0.1,
        head_hidden: int = 128,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(
                f"cnn: kernel_size must be odd (same-length convolutions), got {kernel_size}"
            )
        self.vocab_size, self.pad_index = vocab_size, pad_index
        self.inp = nn.Conv1d(vocab_size, channels, kernel_size, padding=kernel_size // 2)
        self.blocks = nn.ModuleList(
            _Block(channels, kernel_size, 2 ** (i % 4), dropout) for i in range(blocks)
        )
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Sequential(
            nn.Linear(2 * channels, head_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, n_outputs),
        )

    def forward(self, batch: dict) -> torch.Tensor:
        tokens, mask = batch["tokens"].long(), batch["mask"]
        keep = mask.unsqueeze(1).to(self.inp.weight.dtype)
        x = nn.functional.one_hot(tokens, self.vocab_size).to(keep.dtype).transpose(1, 2) * keep
        x = self.inp(x) * keep
        for block in self.blocks:
            x = block(x, keep)
        h = self.norm(x.transpose(1, 2))  # [B, L, C]
        m = mask.unsqueeze(-1)
        mean = h.masked_fill(~m, 0.0).sum(1) / m.sum(1).clamp(min=1)
        peak = h.masked_fill(~m, torch.finfo(h.dtype).min).amax(1)
        return self.head(torch.cat([mean, peak], dim=-1))
