"""The `gnn` family's networks, datasets and loader (torch, torch_geometric); the family and its
params are models/gnn.py. `cfg` below is GNNParams.settings(): every param, defaults filled.

Layers come from torch_geometric (GCNConv, GINEConv, GATv2Conv, AttentiveFP,
AttentionalAggregation); `dmpnn` is the one written here, because PyG has no directed-edge layer.

D-MPNN (Yang et al. 2019, chemprop's `BondMessagePassing`): hidden states live on directed bonds.
With x_v the atom features and e_vw the bond features of the edge v -> w,
    h0_vw = ReLU(W_i [x_v, e_vw])                                 chemprop W_i (no bias)
    m_vw  = sum_{k in N(v), k != w} h_kv = (sum of all h_kv into v) - h_wv
    h_vw  = ReLU(h0_vw + W_h m_vw)    repeated depth - 1 times    chemprop W_h (no bias)
    h_v   = ReLU(W_o [x_v, sum_{k in N(v)} h_kv])                 chemprop W_o (with bias)
then mean pooling over atoms and a feed-forward head, as chemprop's defaults (hidden 300,
depth 3). The reverse of edge e is e ^ 1 because the featurizer stores bond k as edges 2k and
2k + 1, a layout PyG batching keeps (every molecule has an even number of edges); sums over
incoming edges use torch_geometric.utils.scatter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

DESCRIPTOR_CLIP = 10.0  # standardized descriptors beyond +-10 sd are heavy tails, not signal


# --------------------------------------------------------------------------- data


def build_datasets(features: Mapping[str, Any], y: np.ndarray, cfg: Mapping[str, Any]) -> list:
    """One torch_geometric `Data` per clean-table row: x, edge_index, edge_attr, y [1, T]
    (+ desc [1, D] when the model uses descriptors). Tensors are views of the feature file's."""
    from torch_geometric.data import Data

    _check_graph_features(features, cfg)
    x, edge_index, edge_attr = features["x"], features["edge_index"], features["edge_attr"]
    atom_ptr, edge_ptr = features["atom_ptr"].tolist(), features["edge_ptr"].tolist()
    n = len(atom_ptr) - 1
    y_t = torch.from_numpy(np.array(y, dtype=np.float32))  # a copy: y may be read-only
    if y_t.ndim == 1:
        y_t = y_t[:, None]
    if len(y_t) != n:
        raise ValueError(f"gnn: {len(y_t)} label rows but {n} molecules in the feature file")
    desc = features["descriptors"].float() if cfg["descriptors"] else None
    data = []
    for i in range(n):
        a0, a1, e0, e1 = atom_ptr[i], atom_ptr[i + 1], edge_ptr[i], edge_ptr[i + 1]
        item = Data(x=x[a0:a1], edge_index=edge_index[:, e0:e1], edge_attr=edge_attr[e0:e1],
                    y=y_t[i : i + 1])  # fmt: skip
        if desc is not None:
            item.desc = desc[i : i + 1]
        data.append(item)
    return data


def _check_graph_features(features: Mapping[str, Any], cfg: Mapping[str, Any]) -> None:
    missing = [k for k in ("x", "edge_index", "edge_attr", "atom_ptr", "edge_ptr")
               if k not in features]  # fmt: skip
    if missing:
        raise ValueError(f"gnn: the feature file lacks {missing}; use a `type: graph` featurizer")
    if cfg["descriptors"] and "descriptors" not in features:
        raise ValueError(
            "gnn: descriptors: true needs the graph featurizer's add_descriptors: true"
        )
    edge_index = features["edge_index"]
    if edge_index.shape[1] % 2 or not torch.equal(edge_index[:, 0::2], edge_index[:, 1::2].flip(0)):
        raise ValueError("gnn: edges must come in reverse pairs (2k, 2k + 1), as features/graph.py "
                         "writes them")  # fmt: skip


def make_loader(
    dataset_subset: Sequence,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    pin_memory: bool = False,
):
    """torch_geometric DataLoader whose order depends only on `seed`."""
    from torch_geometric.loader import DataLoader

    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset_subset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        generator=generator,
        pin_memory=bool(pin_memory),
    )


# --------------------------------------------------------------------------- model


class DMPNNEncoder(nn.Module):
    """Directed-bond message passing (see the module docstring); returns atom states [N, hidden]."""

    def __init__(self, atom_dim: int, bond_dim: int, hidden: int, depth: int, dropout: float,
                 batch_norm: bool):  # fmt: skip
        super().__init__()
        self.depth = depth
        self.W_i = nn.Linear(atom_dim + bond_dim, hidden, bias=False)
        self.W_h = nn.Linear(hidden, hidden, bias=False)
        self.W_o = nn.Linear(atom_dim + hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        norm = nn.BatchNorm1d if batch_norm else nn.Identity
        self.edge_norms = nn.ModuleList([norm(hidden) for _ in range(max(depth - 1, 0))])
        self.atom_norm = norm(hidden)

    def forward(self, x, edge_index, edge_attr):
        from torch_geometric.utils import scatter

        src, dst = edge_index
        reverse = torch.arange(src.numel(), device=src.device) ^ 1
        h0 = torch.relu(self.W_i(torch.cat([x[src], edge_attr], dim=1)))
        h = h0
        for norm in self.edge_norms:
            incoming = scatter(h, dst, dim=0, dim_size=x.size(0), reduce="sum")
            message = incoming[src] - h[reverse]
            h = self.dropout(torch.relu(norm(h0 + self.W_h(message))))
        incoming = scatter(h, dst, dim=0, dim_size=x.size(0), reduce="sum")
        return self.dropout(torch.relu(self.atom_norm(self.W_o(torch.cat([x, incoming], dim=1)))))


class ConvEncoder(nn.Module):
    """A stack of PyG convolutions (gcn, gine, gatv2) over atom states [N, hidden]."""

    def __init__(self, arch: str, atom_dim: int, bond_dim: int, hidden: int, depth: int,
                 dropout: float, batch_norm: bool, heads: int):  # fmt: skip
        super().__init__()
        from torch_geometric.nn import GATv2Conv, GCNConv, GINEConv

        self.arch = arch
        self.embed = nn.Linear(atom_dim, hidden)
        self.convs = nn.ModuleList()
        for _ in range(depth):
            if arch == "gcn":  # GCN has no edge features: bond types are invisible to it
                conv = GCNConv(hidden, hidden)
            elif arch == "gine":
                mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
                conv = GINEConv(mlp, train_eps=True, edge_dim=bond_dim)
            else:
                conv = GATv2Conv(hidden, hidden // heads, heads=heads, edge_dim=bond_dim,
                                 dropout=dropout)  # fmt: skip
            self.convs.append(conv)
        norm = nn.BatchNorm1d if batch_norm else nn.Identity
        self.norms = nn.ModuleList([norm(hidden) for _ in range(depth)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, edge_index, edge_attr):
        h = self.embed(x)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            out = conv(h, edge_index) if self.arch == "gcn" else conv(h, edge_index, edge_attr)
            h = h + self.dropout(torch.relu(norm(out)))  # residual: deeper stacks stay trainable
        return h


class GNN(nn.Module):
    """Encoder -> pooling (-> + standardized descriptors) -> feed-forward head -> [B, n_outputs]."""

    def __init__(self, atom_dim: int, bond_dim: int, n_outputs: int, n_descriptors: int,
                 cfg: Mapping[str, Any]):  # fmt: skip
        super().__init__()
        hidden, depth, dropout = int(cfg["hidden"]), int(cfg["depth"]), float(cfg["dropout"])
        self.arch = cfg["arch"]
        if self.arch == "dmpnn":
            self.encoder = DMPNNEncoder(atom_dim, bond_dim, hidden, depth, dropout,
                                        bool(cfg["batch_norm"]))  # fmt: skip
        elif self.arch == "attentivefp":
            from torch_geometric.nn.models import AttentiveFP

            self.encoder = AttentiveFP(atom_dim, hidden, hidden, edge_dim=bond_dim,
                                       num_layers=depth, num_timesteps=int(cfg["timesteps"]),
                                       dropout=dropout)  # fmt: skip
        else:
            self.encoder = ConvEncoder(self.arch, atom_dim, bond_dim, hidden, depth, dropout,
                                       bool(cfg["batch_norm"]), int(cfg["heads"]))  # fmt: skip
        self.pooling = cfg["pooling"]
        self.norm_scale = float(cfg["norm_scale"])
        if self.pooling == "attention" and self.arch != "attentivefp":
            from torch_geometric.nn import AttentionalAggregation

            self.pool = AttentionalAggregation(nn.Linear(hidden, 1))
        self.n_descriptors = n_descriptors
        # Train-row statistics, set by prepare_model; buffers so they travel in the state dict.
        self.register_buffer("desc_mean", torch.zeros(n_descriptors))
        self.register_buffer("desc_sd", torch.ones(n_descriptors))
        width = int(cfg["head_hidden"] or hidden)
        layers: list[nn.Module] = []
        size = hidden + n_descriptors
        for _ in range(int(cfg["head_layers"]) - 1):
            layers += [nn.Dropout(dropout), nn.Linear(size, width), nn.ReLU()]
            size = width
        layers += [nn.Dropout(dropout), nn.Linear(size, n_outputs)]
        self.head = nn.Sequential(*layers)

    def embed(self, batch) -> torch.Tensor:
        """The molecule embedding [B, hidden (+ descriptors)] the head sees."""
        from torch_geometric.nn import global_add_pool, global_mean_pool

        x, edge_index, edge_attr = batch.x, batch.edge_index, batch.edge_attr
        index, size = batch.batch, batch.num_graphs
        if self.arch == "attentivefp":
            g = self.encoder(x, edge_index, edge_attr, index)
        else:
            h = self.encoder(x, edge_index, edge_attr)
            if self.pooling == "mean":
                g = global_mean_pool(h, index, size)
            elif self.pooling == "sum":
                g = global_add_pool(h, index, size)
            elif self.pooling == "norm":
                g = global_add_pool(h, index, size) / self.norm_scale
            else:
                g = self.pool(h, index, dim_size=size)
        if self.n_descriptors:
            g = torch.cat([g, self.standardize(batch.desc)], dim=1)
        return g

    def standardize(self, desc: torch.Tensor) -> torch.Tensor:
        z = (desc - self.desc_mean) / self.desc_sd
        return torch.nan_to_num(z, nan=0.0).clamp(-DESCRIPTOR_CLIP, DESCRIPTOR_CLIP)

    def forward(self, batch) -> torch.Tensor:
        return self.head(self.embed(batch))


def build_model(features: Mapping[str, Any], n_outputs: int, cfg: Mapping[str, Any]) -> GNN:
    """A GNN sized from the feature file (atom / bond / descriptor widths), untrained."""
    atom_dim = int(features.get("atom_dim", features["x"].shape[1]))
    bond_dim = int(features.get("bond_dim", features["edge_attr"].shape[1]))
    n_descriptors = 0
    if cfg["descriptors"]:
        if "descriptors" not in features:
            raise ValueError("gnn: descriptors: true needs the graph featurizer's "
                             "add_descriptors: true")  # fmt: skip
        n_descriptors = int(features["descriptors"].shape[1])
    return GNN(atom_dim, bond_dim, int(n_outputs), n_descriptors, cfg)


def feature_meta(features: Mapping[str, Any], n_examples: int) -> dict[str, Any]:
    """What model.pt needs of a graph feature file to rebuild the model: sizes, names, settings,
    and empty tensors of the right widths; none of the per-atom / per-edge data.

    The family's feature_meta hook: train_job's generic stub empties tensors with n_examples rows, but x,
    edge_index and edge_attr have one row / column per atom or edge, so it would copy the whole
    featurized dataset into every model.pt.
    """
    flat = {"x": (0, 0), "edge_index": (1, 0), "edge_attr": (0, 0), "atom_ptr": (0, 1),
            "edge_ptr": (0, 1), "descriptors": (0, 0)}  # fmt: skip
    meta: dict[str, Any] = {}
    for key, value in features.items():
        if key in flat and torch.is_tensor(value):
            dim, keep = flat[key]
            shape = list(value.shape)
            shape[dim] = keep
            meta[key] = value.new_zeros(shape)
        elif isinstance(value, list | tuple) and len(value) == n_examples and key == "ids":
            meta[key] = []
        else:
            meta[key] = value
    return meta


def prepare_model(model: GNN, train_subset: Sequence) -> None:
    """Fit the descriptor standardization on the train rows (NaN-aware; sd 0 -> 1)."""
    if not model.n_descriptors or len(train_subset) == 0:
        return
    desc = torch.cat([train_subset[i].desc for i in range(len(train_subset))]).double()
    mean = torch.nanmean(desc, dim=0)
    sd = torch.sqrt(torch.nanmean((desc - mean) ** 2, dim=0))
    mean = torch.nan_to_num(mean, nan=0.0)
    sd = torch.where(torch.isfinite(sd) & (sd > 0), sd, torch.ones_like(sd))
    model.desc_mean.copy_(mean.float())
    model.desc_sd.copy_(sd.float())
