"""What the residue-token families (cnn, seq_transformer, plm_lora) share: one example per
sequence of token ids, batched by length (biomol_dl.batching's TokenExamples and token_loader).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from biomol_dl.models.base import Family


class TokenFamily(Family):
    """A family whose examples are token-id sequences under `ids_key` of the features."""

    ids_key: ClassVar[str] = "tokens"

    def check_features(self, features: Mapping[str, Any]) -> None:
        """Fail with one line unless the features come from a featurizer this family takes."""
        from biomol_dl.features.protein import token_features

        token_features(features, self.name)

    def build_datasets(self, features: Mapping[str, Any], y: Any):
        from biomol_dl.batching import TokenExamples

        self.check_features(features)
        key = self.ids_key
        return TokenExamples(features[key], features["lengths"], y, ids_key=key)

    def make_loader(self, subset: Sequence, *, batch_size, shuffle, seed, pin_memory=False):
        from biomol_dl.batching import token_loader

        batching = {"max_tokens": self.params.max_tokens,
                    "bucket_batches": self.params.bucket_batches, "pin_memory": pin_memory}  # fmt: skip
        # pad id 0: the models put their own padding under the mask
        return token_loader(subset, ids_key=self.ids_key, pad_id=0, batch_size=batch_size,
                            shuffle=shuffle, seed=seed, params=batching)  # fmt: skip
