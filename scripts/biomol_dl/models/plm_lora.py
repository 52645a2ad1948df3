"""Model family `plm_lora`: a pretrained protein language model fine-tuned with LoRA adapters
(PEFT) plus a pooled prediction head, on the tokens of featurizer `plm_tokens`.

Only the adapters and the head train; model.pt keeps only them (`trainable_parameters`), plus the
base model's name, folder and weights sha256 (`extra_checkpoint`). Reloading resolves the same
base model, checks its hash (`check_checkpoint`), applies fresh adapters and loads the saved ones,
which reproduces the predictions exactly. Batches group sequences of similar length
(`max_tokens` caps padded tokens per batch); gradient accumulation and bf16 autocast on CUDA come
from the training loop (`accumulate`, `precision`).

params (besides the training-loop keys of `TrainConfig`):
  lora_r (8), lora_alpha (16), lora_dropout (0.1), target_modules (null: query/key/value for
  BERT/ESM), layers_to_transform (null: all layers), pooling (mean over residues | cls),
  head_hidden (0: a linear head), head_dropout (0.1), gradient_checkpointing (false),
  quantization (null | 8bit | 4bit: CUDA + bitsandbytes only), max_tokens (null),
  bucket_batches (50), model (optional: must equal the featurizer's model).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from biomol_dl import plm
from biomol_dl.features.protein import TokenExamples, settings, token_loader
from biomol_dl.logutil import get

log = get(__name__)

DEFAULTS = {
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.1,
    "target_modules": None,
    "layers_to_transform": None,
    "pooling": "mean",
    "head_hidden": 0,
    "head_dropout": 0.1,
    "gradient_checkpointing": False,
    "quantization": None,
}


def _check(features: dict) -> None:
    if "input_ids" not in features or "model" not in features:
        raise ValueError(
            "model family plm_lora needs the plm_tokens featurizer; the features file "
            f"has {', '.join(sorted(features))}"
        )


def build_datasets(features: dict, y: np.ndarray, params: dict) -> TokenExamples:
    _check(features)
    return TokenExamples(features["input_ids"], features["lengths"], y, ids_key="input_ids")


def make_loader(dataset_subset: Any, *, batch_size: int, shuffle: bool, seed: int, params: dict):
    # Padding value is irrelevant here: the model puts the tokenizer's pad id under the mask.
    return token_loader(
        dataset_subset,
        ids_key="input_ids",
        pad_id=0,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        params=params,
    )


def build_model(features: dict, n_outputs: int, params: dict) -> nn.Module:
    _check(features)
    p = settings("plm_lora", {**DEFAULTS, "model": None}, params)
    spec = str(features["model"])
    if p["model"] not in (None, spec):
        raise ValueError(
            f"plm_lora: params.model {params['model']!r} differs from the model the "
            f"tokens were made with ({spec!r}); set it on the plm_tokens featurizer"
        )
    if p["pooling"] not in ("mean", "cls"):
        raise ValueError(f"plm_lora: unknown pooling {p['pooling']!r}; valid: mean, cls")
    resolved = plm.resolve_model(spec)
    tokenizer = plm.load_tokenizer(resolved)
    base = plm.load_model(
        resolved,
        quantization=p["quantization"],
        gradient_checkpointing=bool(p["gradient_checkpointing"]),
    )
    encoder = plm.apply_lora(
        base,
        r=p["lora_r"],
        alpha=p["lora_alpha"],
        dropout=p["lora_dropout"],
        target_modules=p["target_modules"],
        layers_to_transform=p["layers_to_transform"],
        model_type=resolved.model_type,
    )
    model = LoRARegressor(
        encoder,
        int(base.config.hidden_size),
        n_outputs,
        pad_id=int(tokenizer.pad_token_id),
        specials=plm.special_ids(tokenizer),
        pooling=p["pooling"],
        head_hidden=int(p["head_hidden"]),
        head_dropout=float(p["head_dropout"]),
    )
    trainable, total = plm.count_parameters(model)
    model.base_info = {
        **resolved.describe(),
        "quantization": base.quantized,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_fraction": trainable / total,
    }
    log.info(
        "plm_lora on %s: %d of %d parameters train (%.2f%%: LoRA r=%s on %s + head)",
        spec,
        trainable,
        total,
        100 * trainable / total,
        p["lora_r"],
        ",".join(sorted(encoder.peft_config["default"].target_modules)),
    )
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA adapters and the head; everything else is the frozen pretrained model."""
    return [p for p in model.parameters() if p.requires_grad]


def extra_checkpoint(model: nn.Module, params: dict) -> dict:
    """Base model name, source, folder, weights sha256 and parameter counts, for model.pt."""
    return {"plm": dict(model.base_info)}


def check_checkpoint(model: nn.Module, checkpoint: dict) -> None:
    """Refuse to attach saved adapters to a base model whose weights differ from training's."""
    saved = (checkpoint.get("extra") or {}).get("plm", {}).get("weights_sha256")
    current = model.base_info["weights_sha256"]
    if saved and saved != current:
        raise plm.PLMError(
            f"the adapters in this model.pt were trained on {model.base_info['model']} with "
            f"weights sha256 {saved[:12]}..., but the model found now "
            f"({model.base_info['path']}) has {current[:12]}...; provide the original base model"
        )


class LoRARegressor(nn.Module):
    """Pretrained encoder with LoRA adapters -> residue mean (or CLS) pooling -> head.

    Outputs [B, n_outputs]: standardized regression values, or logits (binary, multitask,
    multiclass), as the training loop expects.
    """

    def __init__(
        self,
        encoder: nn.Module,
        hidden_size: int,
        n_outputs: int,
        *,
        pad_id: int,
        specials: list[int],
        pooling: str = "mean",
        head_hidden: int = 0,
        head_dropout: float = 0.1,
    ):
        super().__init__()
        self.encoder, self.pooling, self.pad_id, self.specials = encoder, pooling, pad_id, specials
        layers: list[nn.Module] = [nn.Dropout(head_dropout)]
        if head_hidden:
            layers += [nn.Linear(hidden_size, head_hidden), nn.GELU(), nn.Dropout(head_dropout)]
        layers.append(nn.Linear(head_hidden or hidden_size, n_outputs))
        self.head = nn.Sequential(*layers)

    def forward(self, batch: dict) -> torch.Tensor:
        mask = batch["mask"]
        ids = batch["input_ids"].long().masked_fill(~mask, self.pad_id)
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        residues = plm.residue_mask(ids, mask, self.specials)
        pooled = plm.pool(hidden, residues, self.pooling)
        return self.head(pooled.to(self.head[-1].weight.dtype))


def report(model_pt) -> tuple[dict, dict]:
    """Which pretrained model this job used (name, folder, weights sha256), for the job's run."""
    from biomol_dl import plm

    return plm.checkpoint_report(model_pt)
