"""Model family `plm_frozen`: the MLP family (models/mlp.py) on frozen pretrained-LM embeddings
(featurizer `plm_embedding`), the baseline that LoRA fine-tuning (`plm_lora`) has to beat.

The embeddings are computed once by the featurize rule; only the MLP trains, with the MLP's
params and input standardization on the train rows (see models/mlp.py). Predicting new inputs
embeds them with the checkpoint's featurizer spec, so at its `precision` (int8 included). A family of its own so
that the config says which models are PLM baselines and so the features are checked to be
embeddings (finite, from plm_embedding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from biomol_dl.models.base import register
from biomol_dl.models.mlp import MLPFamily


def _check(features: Mapping[str, Any]) -> None:
    if "X" not in features or "embedding_dim" not in features:
        raise ValueError(
            "model family plm_frozen needs the plm_embedding featurizer (an `X` of "
            f"embeddings); the features file has {', '.join(sorted(features))}"
        )


@register("plm_frozen")
class PLMFrozenFamily(MLPFamily):
    """An MLP head on mean-pooled embeddings of a frozen protein language model."""

    featurizers = ("plm_embedding",)

    def build_datasets(self, features: Mapping[str, Any], y: Any):
        import torch

        _check(features)
        finite = torch.isfinite(features["X"]).all(dim=1)
        if not finite.all():
            bad = int((~finite).nonzero()[0, 0])
            raise ValueError(
                f"plm_frozen: the embedding of clean-table row {bad + 1} is not finite"
            )
        return super().build_datasets(features, y)

    def build_model(self, features: Mapping[str, Any], n_outputs: int):
        _check(features)
        return super().build_model(features, n_outputs)

    def report(self, model_file) -> tuple[dict, dict]:
        """Which pretrained model this job used (name, folder, weights sha256), for the job's run."""
        from biomol_dl import plm

        return plm.checkpoint_report(model_file)
