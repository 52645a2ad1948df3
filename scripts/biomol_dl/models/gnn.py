"""Model family `gnn`: graph neural networks on molecular graphs (features/graph.py).

For config authors and for train_job. The networks are in models/nets/gnn.py (imported when
used: this module imports no torch). Model params (config `models.<name>.params`, next to the
training-loop keys of TrainConfig):

    arch: dmpnn | gcn | gine | gatv2 | attentivefp     (default dmpnn)
    hidden: 300        width of atom / bond hidden states and of the graph embedding
    depth: 3           message-passing steps (layers)
    dropout: 0.0       after every message-passing layer and in the head
    pooling: mean | sum | norm | attention   atoms -> molecule (default mean); norm = sum /
                       norm_scale (chemprop 2's default aggregation); attention =
                       AttentionalAggregation; attentivefp brings its own attentive readout and
                       takes no pooling
    norm_scale: 100    the divisor of `norm` pooling (chemprop's NormAggregation default)
    batch_norm: false  BatchNorm1d after every message-passing layer
    descriptors: false concatenate the RDKit 2D descriptors of the featurizer (add_descriptors:
                       true), standardized with train-row mean / sd, before the head
    head_layers: 2     layers of the feed-forward head (the last one outputs n_outputs)
    head_hidden: null  width of the head's hidden layers (default: hidden)
    heads: 4           attention heads (gatv2; hidden must be divisible by heads)
    timesteps: 2       readout steps (attentivefp)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from biomol_dl.models.base import Family, TorchParams, register

ARCHS = ("dmpnn", "gcn", "gine", "gatv2", "attentivefp")
POOLINGS = ("mean", "sum", "norm", "attention")


@dataclass(frozen=True)
class GNNParams(TorchParams):
    arch: str = "dmpnn"
    hidden: int = 300
    depth: int = 3
    dropout: float = 0.0
    pooling: str | None = None
    norm_scale: float = 100.0
    batch_norm: bool = False
    descriptors: bool = False
    head_layers: int = 2
    head_hidden: int | None = None
    heads: int = 4
    timesteps: int = 2

    def check(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(ARCHS)}")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
        if self.arch == "attentivefp" and self.pooling is not None:
            raise ValueError("attentivefp has its own attentive readout; remove `pooling`")
        if self.arch == "gatv2" and self.hidden % self.heads:
            raise ValueError(f"gatv2 needs hidden ({self.hidden}) divisible by heads "
                             f"({self.heads})")  # fmt: skip
        for key in ("hidden", "depth", "head_layers", "heads", "timesteps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}")
        if not self.norm_scale > 0:
            raise ValueError(f"norm_scale must be > 0, got {self.norm_scale!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def settings(self) -> dict[str, Any]:
        """Every param with pooling resolved (what nets.gnn takes)."""
        cfg = dataclasses.asdict(self)
        cfg["pooling"] = self.pooling or "mean"
        return cfg


@register("gnn")
class GNNFamily(Family):
    """D-MPNN (chemprop-style), GCN, GINE, GATv2 or AttentiveFP on molecular graphs."""

    Params = GNNParams
    featurizers = ("graph",)
    encoder_modules = ("encoder", "pool")  # message passing and, when attention, the pooling

    def encoder_signature(self) -> dict[str, Any]:
        p = self.params.settings()
        keys = ["arch", "hidden", "depth", "batch_norm"]
        keys += {"gatv2": ["heads"], "attentivefp": ["timesteps"]}.get(p["arch"], [])
        signature = {k: p[k] for k in keys}
        signature["attention_pooling"] = p["pooling"] == "attention"
        return signature

    def build_datasets(self, features: Mapping[str, Any], y: Any) -> list:
        from biomol_dl.models.nets import gnn

        return gnn.build_datasets(features, y, self.params.settings())

    def make_loader(self, subset: Sequence, *, batch_size, shuffle, seed, pin_memory=False):
        from biomol_dl.models.nets import gnn

        return gnn.make_loader(subset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                               pin_memory=pin_memory)  # fmt: skip

    def build_model(self, features: Mapping[str, Any], n_outputs: int):
        from biomol_dl.models.nets import gnn

        return gnn.build_model(features, n_outputs, self.params.settings())

    def prepare_model(self, model, train_subset: Sequence) -> None:
        from biomol_dl.models.nets import gnn

        gnn.prepare_model(model, train_subset)

    def feature_meta(self, features: Mapping[str, Any], n_examples: int) -> dict:
        from biomol_dl.models.nets import gnn

        return gnn.feature_meta(features, n_examples)
