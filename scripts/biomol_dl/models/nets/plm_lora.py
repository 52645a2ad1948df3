"""The model of family `plm_lora` (models/plm_lora.py): a pretrained protein language model with
LoRA adapters (PEFT) and a pooled prediction head (torch, transformers, peft).
"""

from __future__ import annotations

import torch
from torch import nn

from biomol_dl import plm
from biomol_dl.logutil import get

log = get(__name__)


def build_model(features: dict, n_outputs: int, p: dict) -> nn.Module:
    """The base model named by the features, with LoRA adapters and a head; p: every param."""
    spec = str(features["model"])
    if p["model"] not in (None, spec):
        raise ValueError(
            f"plm_lora: params.model {p['model']!r} differs from the model the "
            f"tokens were made with ({spec!r}); set it on the plm_tokens featurizer"
        )
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
