"""The MLP family's network, dataset and loader (torch); the family itself is models/mlp.py.

Input handling, fitted on the TRAIN rows only (`prepare_model`) and stored as model buffers so
model.pt carries it: non-finite entries (RDKit descriptors give NaN / inf for some molecules) are
replaced by the train mean of that column (0 if the column has no finite train value); with
standard scaling, each column is centred and divided by its train sd (constant columns by 1) and
then clipped, so heavy-tailed descriptors cannot dominate the first layer.

A packed bit cache (Morgan bits, features/fingerprints.py) stays packed in memory and is unpacked
one batch at a time (`PackedBitDataset`), so a large library costs 1 bit per feature, not 4 bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
_CHUNK = 4096  # rows per pass when fitting input statistics: bounded memory on big tables


class VectorDataset(torch.utils.data.Dataset):
    """Rows of X with their labels; `__getitems__` lets a DataLoader slice whole batches."""

    def __init__(self, X: torch.Tensor, y: np.ndarray):
        self.X = X
        self.y = torch.as_tensor(np.asarray(y, dtype=np.float32))

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.X[i], "y": self.y[i]}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"x": self.X[idx], "y": self.y[idx]}

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The examples `idx` as one flat vector each (the network's input before casting)."""
        return self.X[idx].flatten(1)


class PackedBitDataset(VectorDataset):
    """Rows of a packed bit matrix (uint8 [N, ceil(n_bits / 8)]), unpacked to float32 per batch."""

    def __init__(self, X_bits: torch.Tensor, n_bits: int, y: np.ndarray):
        super().__init__(X_bits, y)
        self.n_bits = int(n_bits)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.rows(torch.tensor([i]))[0], "y": self.y[i]}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"x": self.rows(idx), "y": self.y[idx]}

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        from biomol_dl.features.fingerprints import unpack_bits

        return unpack_bits(self.X[idx], self.n_bits)


def _collate(batch: Any) -> dict[str, torch.Tensor]:
    if isinstance(batch, dict):  # already a batch, from __getitems__
        return batch
    return torch.utils.data.default_collate(batch)


def build_datasets(features: Mapping[str, Any], y: np.ndarray) -> VectorDataset:
    """One example per row of features["X"] or of the packed features["X_bits"] (index i =
    clean-table row i)."""
    from biomol_dl.features.fingerprints import BITS_KEY

    if BITS_KEY in features:
        X_bits = features[BITS_KEY]
        if X_bits.shape[0] != len(y):
            raise ValueError(
                f"mlp: features have {X_bits.shape[0]} rows for {len(y)} labelled rows"
            )
        return PackedBitDataset(X_bits, features["n_bits"], y)
    X = features.get("X")
    if not torch.is_tensor(X) or X.dim() < 2:
        raise ValueError("mlp: the features need an 'X' tensor [N, D] (a fixed-length featurizer)")
    if X.shape[0] != len(y):
        raise ValueError(f"mlp: features X has {X.shape[0]} rows for {len(y)} labelled rows")
    return VectorDataset(X, y)


def make_loader(
    dataset_subset, *, batch_size: int, shuffle: bool, seed: int, batch_norm: bool, pin_memory: bool
):
    """A DataLoader whose order depends only on `seed`."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    n = len(dataset_subset)
    return torch.utils.data.DataLoader(
        dataset_subset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=_collate,
        pin_memory=bool(pin_memory),
        # BatchNorm cannot train on a batch of one; drop the ragged tail only when training
        drop_last=bool(shuffle and batch_norm and n > batch_size and n % batch_size == 1),
    )


class MLP(nn.Module):
    """Impute -> (standardize, clip) -> [Linear -> (BatchNorm) -> activation -> Dropout]* -> Linear."""

    def __init__(self, in_dim: int, n_outputs: int, settings: Mapping[str, Any]):
        super().__init__()
        self.input_clip = settings["input_clip"]
        # filled by prepare_model from the train rows; buffers so they travel in the state dict
        self.register_buffer("x_fill", torch.zeros(in_dim))
        self.register_buffer("x_shift", torch.zeros(in_dim))
        self.register_buffer("x_scale", torch.ones(in_dim))
        self.register_buffer("standardized", torch.tensor(False))
        layers: list[nn.Module] = []
        width = in_dim
        for h in settings["hidden"]:
            layers.append(nn.Linear(width, h))
            if settings["batch_norm"]:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[settings["activation"]]())
            if settings["dropout"]:
                layers.append(nn.Dropout(settings["dropout"]))
            width = h
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = batch["x"].flatten(1).float()
        x = torch.where(torch.isfinite(x), x, self.x_fill)
        x = (x - self.x_shift) / self.x_scale
        if self.input_clip is not None and bool(self.standardized):
            x = x.clamp(-self.input_clip, self.input_clip)
        return self.net(x)


def build_model(features: Mapping[str, Any], n_outputs: int, settings: Mapping[str, Any]) -> MLP:
    """An MLP for the features' row size (works on the feature_meta stub too)."""
    from biomol_dl.features.fingerprints import n_features

    return MLP(n_features(features), n_outputs, settings)


def _train_rows(train_subset) -> Iterator[torch.Tensor]:
    """Chunks of the train rows of X as float64 [n, D]."""
    if isinstance(train_subset, torch.utils.data.Subset) and isinstance(
        train_subset.dataset, VectorDataset
    ):
        dataset = train_subset.dataset
        idx = torch.as_tensor(train_subset.indices, dtype=torch.long)
    elif isinstance(train_subset, VectorDataset):
        dataset, idx = train_subset, torch.arange(len(train_subset))
    else:
        raise TypeError(
            f"mlp.prepare_model: expected a VectorDataset subset, got {type(train_subset)}"
        )
    for start in range(0, len(idx), _CHUNK):
        yield dataset.rows(idx[start : start + _CHUNK]).double()


@torch.no_grad()
def prepare_model(model: MLP, train_subset, input_scaling: str) -> None:
    """Fit imputation and input scaling on the train rows (two passes, chunked)."""
    total = torch.zeros_like(model.x_fill, dtype=torch.float64)
    count = torch.zeros_like(total)
    binary = True
    for x in _train_rows(train_subset):
        finite = torch.isfinite(x)
        total += torch.where(finite, x, 0.0).sum(0)
        count += finite.sum(0)
        binary = binary and bool(((x == 0) | (x == 1) | ~finite).all())
    mean = torch.where(count > 0, total / count.clamp(min=1), 0.0)
    squares = torch.zeros_like(total)
    for x in _train_rows(train_subset):
        squares += torch.where(torch.isfinite(x), (x - mean) ** 2, 0.0).sum(0)
    sd = torch.sqrt(squares / count.clamp(min=1))
    sd = torch.where(torch.isfinite(sd) & (sd > 1e-12), sd, 1.0)
    standardize = input_scaling == "standard" or (input_scaling == "auto" and not binary)
    model.x_fill.copy_(mean.float())
    model.standardized.fill_(standardize)
    if standardize:
        model.x_shift.copy_(mean.float())
        model.x_scale.copy_(sd.float())
