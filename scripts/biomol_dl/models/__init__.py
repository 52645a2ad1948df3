"""Model-family registry: the `family` of a config model entry -> how it is trained.

Each family has its own training rule (`train_<family>`, in workflow/rules/) so it can declare its
own threads, memory and GPU request, and one rule script `scripts/train_<family>.py`.
`gpu` marks families whose rule asks for a `gpu` resource (CUDA when present, CPU otherwise).
"""

from __future__ import annotations

FAMILIES: dict[str, dict] = {
    "rf": {"kind": "any", "gpu": False, "torch": False},
    "mlp": {"kind": "any", "gpu": True, "torch": True},
    "gnn": {"kind": "smiles", "gpu": True, "torch": True},
    "smiles_transformer": {"kind": "smiles", "gpu": True, "torch": True},
    "cnn": {"kind": "protein", "gpu": True, "torch": True},
    "seq_transformer": {"kind": "protein", "gpu": True, "torch": True},
    "plm_frozen": {"kind": "protein", "gpu": True, "torch": True},
    "plm_lora": {"kind": "protein", "gpu": True, "torch": True},
}


def check_family(name: str) -> dict:
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; valid families: {', '.join(FAMILIES)}")
    return FAMILIES[name]
