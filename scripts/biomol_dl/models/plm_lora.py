"""Model family `plm_lora`: a pretrained protein language model fine-tuned with LoRA adapters
(PEFT) plus a pooled prediction head, on the tokens of featurizer `plm_tokens`.

Only the adapters and the head train; model.pt keeps only them (`trainable_parameters`), plus the
base model's name, folder and weights sha256 (`extra_checkpoint`). Reloading resolves the same
base model, checks its hash (`check_checkpoint`), applies fresh adapters and loads the saved ones,
which reproduces the predictions exactly. Batches group sequences of similar length
(`max_tokens` caps padded tokens per batch); gradient accumulation and bf16 autocast (CUDA, and
CPUs with native bf16) come from the training loop (`accumulate`, `precision`). The model is
models/nets/plm_lora.py (imported when used: this module imports no torch).

On a CPU, two levers: tokens from `plm_tokens` with `cache_layer: k` carry the states entering
layer k, computed once by the featurize rule, so each epoch runs (and backpropagates through)
layers k and up only; `int8_inference` runs validation and predictions through an int8 copy.
Before training, `prepare_model` times a few real training steps and logs the estimated minutes
per epoch; a job whose estimate exceeds the rule's runtime fails at once, naming what to change.

params (besides the training-loop keys of `TrainConfig`):
  lora_r (8), lora_alpha (16), lora_dropout (0.1), target_modules (null: query/key/value for
  BERT/ESM), layers_to_transform (null: all layers; with a cache, those at or above it),
  pooling (mean over residues | cls), int8_inference (false),
  head_hidden (0: a linear head), head_dropout (0.1), gradient_checkpointing (false),
  quantization (null | 8bit | 4bit: CUDA + bitsandbytes only), max_tokens (null),
  bucket_batches (50), model (optional: must equal the featurizer's model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from biomol_dl.models._tokens import TokenFamily
from biomol_dl.models.base import TokenParams, register

POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class PLMLoRAParams(TokenParams):
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: list[str] | str | None = None
    layers_to_transform: list[int] | int | None = None
    pooling: str = "mean"
    head_hidden: int = 0
    head_dropout: float = 0.1
    gradient_checkpointing: bool = False
    quantization: str | None = None
    model: str | None = None
    int8_inference: bool = False

    def check(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")


@register("plm_lora")
class PLMLoRAFamily(TokenFamily):
    """LoRA fine-tuning of a protein language model with a pooled head."""

    Params = PLMLoRAParams
    featurizers = ("plm_tokens",)
    ids_key = "input_ids"

    def check_features(self, features: Mapping[str, Any]) -> None:
        if "input_ids" not in features or "model" not in features:
            raise ValueError(
                "model family plm_lora needs the plm_tokens featurizer; the features file "
                f"has {', '.join(sorted(features))}"
            )

    def build_datasets(self, features: Mapping[str, Any], y: Any):
        examples = super().build_datasets(features, y)
        if "cache_states" not in features:
            return examples
        return _WithStates(examples, features["cache_states"])

    def make_loader(self, subset, *, batch_size, shuffle, seed, pin_memory=False):
        if not len(subset) or "states" not in subset[0]:
            return super().make_loader(subset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                       pin_memory=pin_memory)  # fmt: skip
        from biomol_dl.batching import BucketLoader, collate_tokens

        def collate(examples: list[dict]) -> dict:
            from torch.nn.utils.rnn import pad_sequence

            out = collate_tokens(examples, self.ids_key, 0)
            out["states"] = pad_sequence(
                [ex["states"] for ex in examples], batch_first=True
            ).float()
            return {k: v.pin_memory() for k, v in out.items()} if pin_memory else out

        lengths = [len(subset[i][self.ids_key]) for i in range(len(subset))]
        return BucketLoader(subset, collate, lengths=lengths, batch_size=batch_size,
                            shuffle=shuffle, seed=seed, max_tokens=self.params.max_tokens,
                            bucket_batches=self.params.bucket_batches)  # fmt: skip

    def prepare_model(self, model, train_subset) -> None:
        """Time a few training steps and log the estimated cost; fail if it exceeds the runtime."""
        from biomol_dl.models.nets.plm_lora import check_cost, estimate_cost

        cost = estimate_cost(self, model, train_subset)
        if cost is not None:
            check_cost(cost, self.job_runtime or self.runtime)

    def build_model(self, features: Mapping[str, Any], n_outputs: int):
        from biomol_dl.models.nets import plm_lora

        self.check_features(features)
        return plm_lora.build_model(features, n_outputs, dataclasses.asdict(self.params))

    def feature_meta(self, features: Mapping[str, Any], n_examples: int) -> dict:
        from biomol_dl.train_job import feature_meta

        meta = feature_meta(features, n_examples)
        meta.pop("cache_states", None)  # per example; never in model.pt
        return meta

    def trainable_parameters(self, model) -> list:
        """The LoRA adapters and the head; everything else is the frozen pretrained model."""
        return [p for p in model.parameters() if p.requires_grad]

    def extra_checkpoint(self, model) -> dict:
        """Base model name, source, folder, weights sha256 and parameter counts, for model.pt."""
        return {"plm": dict(model.base_info)}

    def check_checkpoint(self, model, checkpoint: Mapping[str, Any]) -> None:
        """Refuse to attach saved adapters to a base model whose weights differ from training's."""
        from biomol_dl import plm

        saved = (checkpoint.get("extra") or {}).get("plm", {}).get("weights_sha256")
        current = model.base_info["weights_sha256"]
        if saved and saved != current:
            raise plm.PLMError(
                f"the adapters in this model.pt were trained on {model.base_info['model']} with "
                f"weights sha256 {saved[:12]}..., but the model found now "
                f"({model.base_info['path']}) has {current[:12]}...; provide the original base "
                "model"
            )

    def report(self, model_file) -> tuple[dict, dict]:
        """Which pretrained model this job used (name, folder, weights sha256), for the job's run."""
        from biomol_dl import plm

        return plm.checkpoint_report(model_file)


class _WithStates:
    """Token examples plus each sequence's cached states (`states`, fp16 [tokens, H])."""

    def __init__(self, examples, states: list):
        if len(states) != len(examples):
            raise ValueError(f"{len(states)} cached state rows for {len(examples)} token rows")
        self.examples, self.states = examples, states

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return {**self.examples[i], "states": self.states[i]}
