"""Model family `mlp`: a feed-forward network on one fixed-length vector per example.

For config authors and for train_job. Works with any featurizer whose features dict has
`{"ids": [...], "X": tensor [N, D, ...]}` (rdkit2d descriptors, Morgan counts, kmer counts,
one-hot sequences (flattened), PLM embeddings) or packed bits `{"X_bits": uint8 [N, D / 8],
"n_bits": D}` (Morgan bits), unpacked one batch at a time. The network, dataset and loader are in
models/nets/mlp.py (imported when used: this module imports no torch).

Model params (config `models.<name>.params`, next to the training-loop keys of TrainConfig):
  hidden: [512, 256]   hidden layer widths (an int = one layer)
  dropout: 0.1         after every hidden activation
  batch_norm: false    BatchNorm1d before every activation (training then drops a last partial
                       batch, since a batch of one has no batch statistics)
  activation: relu     relu | gelu | silu
  input_scaling: auto  standard | none | auto (none when every train value is 0/1, i.e.
                       fingerprints, else standard)
  input_clip: 10.0     standardized inputs are clipped to +-input_clip (null = no clipping)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from biomol_dl.models.base import Family, Functions, TorchParams, register

ACTIVATIONS = ("relu", "gelu", "silu")
INPUT_SCALINGS = ("auto", "standard", "none")
FIXED_LENGTH = ("morgan", "rdkit2d", "kmer", "onehot", "plm_embedding")


@dataclass(frozen=True)
class MLPParams(TorchParams):
    hidden: list[int] | int = (512, 256)
    dropout: float = 0.1
    batch_norm: bool = False
    activation: str = "relu"
    input_scaling: str = "auto"
    input_clip: float | None = 10.0

    @property
    def widths(self) -> list[int]:
        hidden = self.hidden
        return [int(hidden)] if isinstance(hidden, int | float | str) else [int(h) for h in hidden]

    def check(self) -> None:
        if any(h < 1 for h in self.widths):
            raise ValueError(f"hidden={self.hidden!r}: widths must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: one of {', '.join(ACTIVATIONS)}")
        if self.input_scaling not in INPUT_SCALINGS:
            raise ValueError(
                f"input_scaling={self.input_scaling!r}: one of {', '.join(INPUT_SCALINGS)}"
            )

    def settings(self) -> dict[str, Any]:
        """What the network takes (nets.mlp.MLP)."""
        clip = None if self.input_clip is None else float(self.input_clip)
        return {"hidden": self.widths, "dropout": float(self.dropout),
                "batch_norm": self.batch_norm, "activation": self.activation, "input_clip": clip}  # fmt: skip


@register("mlp")
class MLPFamily(Family):
    """MLP on fixed-length features; inputs imputed and standardized on the train rows."""

    Params = MLPParams
    featurizers = FIXED_LENGTH

    def build_datasets(self, features: Mapping[str, Any], y: Any) -> Sequence:
        from biomol_dl.models.nets import mlp

        return mlp.build_datasets(features, y)

    def make_loader(self, subset, *, batch_size, shuffle, seed, pin_memory=False):
        from biomol_dl.models.nets import mlp

        return mlp.make_loader(subset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                               batch_norm=self.params.batch_norm, pin_memory=pin_memory)  # fmt: skip

    def build_model(self, features: Mapping[str, Any], n_outputs: int):
        from biomol_dl.models.nets import mlp

        return mlp.build_model(features, n_outputs, self.params.settings())

    def prepare_model(self, model, train_subset) -> None:
        from biomol_dl.models.nets import mlp

        mlp.prepare_model(model, train_subset, self.params.input_scaling)


# The family as functions of (..., params dict), for callers that hold one (tests, notebooks).
_functions = Functions(MLPFamily)
build_datasets = _functions.build_datasets
make_loader = _functions.make_loader
build_model = _functions.build_model
prepare_model = _functions.prepare_model
