"""Model family `plm_frozen`: the MLP family (models/mlp.py) on frozen pretrained-LM embeddings
(featurizer `plm_embedding`), the baseline that LoRA fine-tuning (`plm_lora`) has to beat.

The embeddings are computed once by the featurize rule; only the MLP trains, with the MLP's
params and input standardization on the train rows (see models/mlp.py). A family of its own so
that the config says which models are PLM baselines and so the features are checked to be
embeddings (finite, from plm_embedding).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from biomol_dl.models import mlp


def _check(features: dict) -> None:
    if "X" not in features or "embedding_dim" not in features:
        raise ValueError(
            "model family plm_frozen needs the plm_embedding featurizer (an `X` of "
            f"embeddings); the features file has {', '.join(sorted(features))}"
        )


def build_datasets(features: dict, y: np.ndarray, params: dict) -> Any:
    _check(features)
    finite = torch.isfinite(features["X"]).all(dim=1)
    if not finite.all():
        bad = int((~finite).nonzero()[0, 0])
        raise ValueError(f"plm_frozen: the embedding of clean-table row {bad + 1} is not finite")
    return mlp.build_datasets(features, y, params)


def make_loader(dataset_subset: Any, *, batch_size: int, shuffle: bool, seed: int, params: dict):
    return mlp.make_loader(
        dataset_subset, batch_size=batch_size, shuffle=shuffle, seed=seed, params=params
    )


def build_model(features: dict, n_outputs: int, params: dict) -> torch.nn.Module:
    _check(features)
    return mlp.build_model(features, n_outputs, params)


def prepare_model(model: torch.nn.Module, train_subset: Any, params: dict) -> None:
    """Fit the MLP's input standardization on the train rows."""
    mlp.prepare_model(model, train_subset, params)


def report(model_pt) -> tuple[dict, dict]:
    """Which pretrained model this job used (name, folder, weights sha256), for the job's run."""
    from biomol_dl import plm

    return plm.checkpoint_report(model_pt)
