"""The model of family `plm_lora` (models/plm_lora.py): a pretrained protein language model with
LoRA adapters (PEFT) and a pooled prediction head (torch, transformers, peft).

With features from `plm_tokens` with `cache_layer: k`, the encoder's layers below k are replaced
by `_FromCache` stand-ins that hand on the cached states of the batch (`batch["states"]`): the
model's own code still builds the attention mask and (ESM) rotary positions and applies the
final layer norm, and layers k and up keep their names (encoder.layer.k...), so adapters and
checkpoints look the same as without the cache.
"""

from __future__ import annotations

import copy

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
    cache_layer = features.get("cache_layer")
    n_layers = len(plm.encoder_layers(base))
    layers = p["layers_to_transform"]
    layers = [layers] if isinstance(layers, int) else layers
    if cache_layer is not None:
        layers = check_cached_layers(layers, int(cache_layer), n_layers)
    encoder = plm.apply_lora(
        base,
        r=p["lora_r"],
        alpha=p["lora_alpha"],
        dropout=p["lora_dropout"],
        target_modules=p["target_modules"],
        layers_to_transform=layers,
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
        int8_inference=bool(p.get("int8_inference")),
    )
    trainable, total = plm.count_parameters(model)
    if cache_layer is not None:
        model.use_cache(int(cache_layer))
    model.base_info = {
        **resolved.describe(),
        "quantization": base.quantized,
        "cache_layer": cache_layer,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_fraction": trainable / total,
    }
    log.info(
        "plm_lora on %s: %d of %d parameters train (%.2f%%: LoRA r=%s on %s of %s + head)%s",
        spec,
        trainable,
        total,
        100 * trainable / total,
        p["lora_r"],
        ",".join(sorted(encoder.peft_config["default"].target_modules)),
        f"layers {','.join(map(str, layers))}" if layers else f"all {n_layers} layers",
        f"; layers 0-{cache_layer - 1} come from the features' cache" if cache_layer else "",
    )
    return model


def check_cached_layers(layers: list[int] | None, cache_layer: int, n_layers: int) -> list[int]:
    """The layers LoRA adapts when layers below `cache_layer` are cached: all of them at or above
    it by default; a layer below it cannot train (its output is fixed in the cache)."""
    if not 1 <= cache_layer < n_layers:
        raise ValueError(
            f"plm_lora: the features cache the states entering layer {cache_layer}, but the model "
            f"has {n_layers} layers"
        )
    if layers is None:
        return list(range(cache_layer, n_layers))
    below = sorted(i for i in layers if i < cache_layer)
    if below:
        raise ValueError(
            f"plm_lora: layers_to_transform {below} lie below the featurizer's cache_layer "
            f"{cache_layer}, whose states are fixed; adapt layers {cache_layer}-{n_layers - 1} "
            "or lower cache_layer"
        )
    return list(layers)


class _Holder:
    """The cached states of the current batch, shared by the stand-ins (and by the int8 copy)."""

    states: torch.Tensor | None = None

    def __deepcopy__(self, memo):
        return self


class _FromCache(nn.Module):
    """Stands in for a cached encoder layer: returns the batch's cached states entering the first
    trained layer, whatever it is given (the layers below it are gone)."""

    def __init__(self, holder: _Holder):
        super().__init__()
        self.holder = holder

    def forward(self, hidden_states, *args, **kwargs):
        if self.holder.states is None:
            raise RuntimeError("plm_lora: a cached model needs batches with cached states")
        return self.holder.states.to(hidden_states.dtype)


class LoRARegressor(nn.Module):
    """Pretrained encoder with LoRA adapters -> residue mean (or CLS) pooling -> head.

    Outputs [B, n_outputs]: standardized regression values, or logits (binary, multitask,
    multiclass), as the training loop expects. With `int8_inference`, forward passes without
    gradients in eval mode (validation, predictions) run on CPU through a copy of the encoder
    with the adapters merged in and its Linear layers quantized to int8, remade whenever a
    trained weight has changed since.
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
        int8_inference: bool = False,
    ):
        super().__init__()
        self.encoder, self.pooling, self.pad_id, self.specials = encoder, pooling, pad_id, specials
        layers: list[nn.Module] = [nn.Dropout(head_dropout)]
        if head_hidden:
            layers += [nn.Linear(hidden_size, head_hidden), nn.GELU(), nn.Dropout(head_dropout)]
        layers.append(nn.Linear(head_hidden or hidden_size, n_outputs))
        self.head = nn.Sequential(*layers)
        self.int8_inference = int8_inference
        self.cache_layer: int | None = None
        self._holder = _Holder()
        self._int8: tuple | None = None  # (weights version, quantized copy of the encoder)

    def use_cache(self, cache_layer: int) -> None:
        """Replace the encoder layers below `cache_layer` by stand-ins reading batch["states"]."""
        layers = plm.encoder_layers(self.encoder)
        for i in range(cache_layer):
            layers[i] = _FromCache(self._holder)
        self.cache_layer = cache_layer

    def forward(self, batch: dict) -> torch.Tensor:
        mask = batch["mask"]
        ids = batch["input_ids"].long().masked_fill(~mask, self.pad_id)
        if self.cache_layer is not None:
            if "states" not in batch:
                raise ValueError(
                    "plm_lora: this model reads cached states (plm_tokens cache_layer "
                    f"{self.cache_layer}); the batch has none"
                )
            self._holder.states = batch["states"]
        try:
            hidden = self._encoder()(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        finally:
            self._holder.states = None
        residues = plm.residue_mask(ids, mask, self.specials)
        pooled = plm.pool(hidden, residues, self.pooling)
        return self.head(pooled.to(self.head[-1].weight.dtype))

    def _encoder(self) -> nn.Module:
        if not self.int8_inference or self.training or torch.is_grad_enabled():
            return self.encoder
        if self.head[-1].weight.device.type != "cpu":
            return self.encoder  # int8 dynamic quantization is a CPU path
        version = tuple(p._version for p in self.encoder.parameters() if p.requires_grad)
        if self._int8 is None or self._int8[0] != version:
            merged = copy.deepcopy(self.encoder).merge_and_unload()
            self._int8 = (version, plm.quantize_int8(merged.eval()))
        return self._int8[1]


# --- what an epoch costs -------------------------------------------------------------------------

PROBE_BATCHES = 2  # timed training steps (after one untimed warm-up step)


def estimate_cost(family, model: nn.Module, train_subset) -> dict | None:
    """Minutes per epoch and for the whole job, from timing real training steps on the train
    rows (forward + backward at the loop's precision, CPU only) and one no-grad forward pass.

    The job estimate is an upper bound: every epoch runs (no early stop), val and test rows are
    predicted each epoch at the forward-pass rate. Gradients are cleared after; weights do not
    change. None on CUDA (the probe would claim a device before the loop does).
    """
    import math
    import time

    from biomol_dl import training

    cfg, _ = training.TrainConfig.from_params(family.loop)
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        log.info("plm_lora cost estimate: not measured on CUDA")
        return None
    device = torch.device("cpu")
    precision = training.resolve_precision(cfg.precision, device)
    loader = family.make_loader(train_subset, batch_size=cfg.batch_size, shuffle=True, seed=0)
    batches = list(zip(range(PROBE_BATCHES + 1), loader, strict=False))
    if not batches:
        return None
    was_training = model.training
    model.train()
    times = []
    for _, batch in batches:
        t0 = time.perf_counter()
        with plm.autocast(device, precision):
            out = model(batch)
        out.float().square().mean().backward()
        times.append(time.perf_counter() - t0)
    for p in model.parameters():
        p.grad = None
    model.eval()
    with torch.no_grad(), plm.autocast(device, precision):
        model(batches[-1][1])  # with int8_inference: makes the quantized copy, not timed
        t0 = time.perf_counter()
        model(batches[-1][1])
        forward_s = time.perf_counter() - t0
    model.train(was_training)
    step_s = sum(times[1:]) / len(times[1:]) if len(times) > 1 else times[0]
    n_probe = int(batches[-1][1]["y"].shape[0])
    n_train, n_all = len(train_subset), len(getattr(train_subset, "dataset", train_subset))
    n_batches = len(loader)
    epoch_min = (n_batches * step_s + (n_all - n_train) * forward_s / n_probe) / 60
    job_min = cfg.epochs * epoch_min + n_all * forward_s / n_probe / 60
    cost = {
        "epoch_minutes": epoch_min,
        "job_minutes": job_min,
        "epochs": cfg.epochs,
        "train_sequences_per_s": cfg.batch_size / step_s if step_s else math.inf,
        "precision": precision,
        "cache_layer": model.cache_layer,
        "threads": torch.get_num_threads(),
    }
    log.info(
        "plm_lora cost estimate: %.1f min per epoch (%d train batches at %.2f s, %.1f train "
        "sequences/s, %s, %s, %d threads; timed over %d steps), at most %.0f min for %d epochs",
        epoch_min, n_batches, step_s, cost["train_sequences_per_s"], precision,
        f"cache below layer {model.cache_layer}" if model.cache_layer else "no cache",
        cost["threads"], max(1, len(times) - 1), job_min, cfg.epochs,
    )  # fmt: skip
    return cost


def check_cost(cost: dict, runtime_minutes: float) -> None:
    """Fail at once when the estimate exceeds the rule's runtime, naming what to change."""
    if cost["job_minutes"] > runtime_minutes:
        hints = []
        if not cost["cache_layer"]:
            hints.append("set cache_layer on the plm_tokens featurizer")
        if cost["precision"] == "fp32":
            hints.append("set precision: bf16")
        hints += ["lower epochs", "raise the rule's runtime"]
        raise RuntimeError(
            f"plm_lora: estimated {cost['job_minutes']:.0f} min ({cost['epochs']} epochs at "
            f"{cost['epoch_minutes']:.1f} min) exceeds the rule's runtime of "
            f"{runtime_minutes:.0f} min; {', '.join(hints)}"
        )
