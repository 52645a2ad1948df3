"""Pretrained protein language models: find them, load them, embed with them, add LoRA adapters.

For the `plm_tokens` / `plm_embedding` featurizers and the `plm_frozen` / `plm_lora` families.
A config names a model (`model:`) in one of three ways, tried in this order:

- "antiberty": the embedded default, AntiBERTy (BERT, 8 layers, hidden 512, 25.8 M parameters,
  trained on antibody sequences) whose weights ship inside the antiberty==0.1.3 wheel. Only its
  files are read; the package's own code is never imported (its runner breaks under
  transformers 5).
- a local folder holding config.json, weights (*.safetensors or pytorch_model*.bin) and
  tokenizer files, e.g. made with `save_pretrained` on a machine with internet;
- a HuggingFace hub id such as "facebook/esm2_t6_8M_UR50D", downloaded (or taken from the HF
  cache, so HF_HUB_OFFLINE=1 works once cached) with `huggingface_hub.snapshot_download`.

Anything that cannot be resolved raises `PLMError` with one line saying which model and how to
provide it. Every job records the model's name, folder and a sha256 over its weight files.
Sequences go to tokenizers space-separated ("M K V ..."), the convention of ProtBert, ProtT5 and
AntiBERTy, which ESM tokenizers also accept.

Forward passes over a table (`embed_sequences`, `states_entering`: the hidden states entering a
layer, the LoRA family's frozen-layer cache) run at a `precision` (`resolve_precision`): fp32,
bf16 autocast (CUDA; CPUs with native bf16) or int8 dynamic quantization (CPU), and log an
estimate of their total time after the first batch. Inside `time_limit(minutes, job)` (the
featurize job's runtime) a CPU pass whose estimate exceeds that limit raises `PLMError` right
after its first batch, with one line naming the job, the estimate, the limit and what to change.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomol_dl.hashing import sha256_file, sha256_manifest
from biomol_dl.logutil import get
from biomol_dl.residues import STANDARD as STANDARD_RESIDUES

log = get(__name__)

EMBEDDED_DEFAULT = "antiberty"
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model")
# Attention projections of BERT-style encoders (BERT, ESM, ProtBert, AntiBERTy); PEFT has no
# defaults for these model types.
DEFAULT_LORA_TARGETS = {"bert": ["query", "key", "value"], "esm": ["query", "key", "value"]}
HOW_TO_PROVIDE = (
    "name a local folder with config.json, weights and tokenizer files (save_pretrained on a "
    f"machine with internet) or use the embedded default model: {EMBEDDED_DEFAULT}"
)


class PLMError(RuntimeError):
    """A pretrained model that cannot be found or used; the message is one line."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a configured model lives on disk.

    spec: the name as configured; source: embedded | folder | hub; model_dir: config + weights;
    tokenizer_dir: tokenizer files (the same folder except for the embedded AntiBERTy).
    """

    spec: str
    source: str
    model_dir: Path
    tokenizer_dir: Path
    config: dict = field(compare=False, repr=False, default_factory=dict)

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    def describe(self) -> dict:
        """Name, source, folder and weights sha256, for checkpoints and MLflow params."""
        return {
            "model": self.spec,
            "source": self.source,
            "path": str(self.model_dir),
            "model_type": self.model_type,
            "weights_sha256": weights_sha256(self.model_dir),
        }


# --- resolving -----------------------------------------------------------------------------------


def resolve_model(spec: str, *, revision: str | None = None) -> ResolvedModel:
    """Find the model a config names (see the module docstring); raise PLMError if it cannot."""
    if not isinstance(spec, str) or not spec.strip():
        raise PLMError(f"pretrained model must be a name, folder or hub id, got {spec!r}")
    spec = spec.strip()
    if spec.lower() == EMBEDDED_DEFAULT:
        return _embedded_antiberty()
    path = Path(spec).expanduser()
    if path.exists():
        return _local_folder(spec, path, "folder")
    if _looks_like_path(spec):
        raise PLMError(f"pretrained model folder {spec} does not exist; {HOW_TO_PROVIDE}")
    return _local_folder(spec, _download(spec, revision), "hub")


def _looks_like_path(spec: str) -> bool:
    hub_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", spec)
    return hub_id is None or spec.startswith((".", "~")) or spec.endswith(".")


def _embedded_antiberty() -> ResolvedModel:
    # find_spec on a top-level name locates the package without running its __init__.
    found = importlib.util.find_spec("antiberty")
    if found is None or not found.submodule_search_locations:
        raise PLMError(
            "the embedded default model 'antiberty' needs the antiberty==0.1.3 package (its wheel "
            "carries the weights); install it, or name a local model folder or a hub id instead"
        )
    root = Path(next(iter(found.submodule_search_locations))) / "trained_models"
    model_dir = root / "AntiBERTy_md_smooth"
    missing = [p for p in (root / "vocab.txt", model_dir / "config.json") if not p.exists()]
    if missing or not _weight_files(model_dir):
        raise PLMError(
            f"the installed antiberty package at {root.parent} lacks its model files "
            f"({', '.join(str(p) for p in missing) or 'weights'}); reinstall antiberty==0.1.3"
        )
    return ResolvedModel(EMBEDDED_DEFAULT, "embedded", model_dir, root, _read_config(model_dir))


def _local_folder(spec: str, path: Path, source: str) -> ResolvedModel:
    if not path.is_dir():
        raise PLMError(
            f"pretrained model {spec}: {path} is a file, not a model folder; {HOW_TO_PROVIDE}"
        )
    missing = []
    if not (path / "config.json").exists():
        missing.append("config.json")
    if not _weight_files(path):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        missing.append(f"tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    if missing:
        raise PLMError(
            f"pretrained model folder {path} lacks {'; '.join(missing)}; {HOW_TO_PROVIDE}"
        )
    return ResolvedModel(spec, source, path.resolve(), path.resolve(), _read_config(path))


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise PLMError(f"cannot read {folder / 'config.json'}: {exc}") from None


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    small = ["*.json", "*.txt", "*.model"]
    try:
        folder = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=[*small, "*.safetensors"])
        )
        if not _weight_files(folder):  # older repos carry only pytorch_model.bin
            folder = Path(
                snapshot_download(
                    repo_id, revision=revision, allow_patterns=[*small, "pytorch_model*.bin"]
                )
            )
    except Exception as exc:  # offline, unknown id, gated repo, network: all end the same way
        reason = (str(exc).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
        raise PLMError(
            f"pretrained model {repo_id!r} is not a local folder and could not be fetched from the "
            f"HuggingFace hub ({type(exc).__name__}: {reason}); {HOW_TO_PROVIDE}"
        ) from None
    log.info("pretrained model %s from the HuggingFace hub cache: %s", repo_id, folder)
    return folder


def _weight_files(folder: Path) -> list[Path]:
    return sorted({p for pattern in WEIGHT_GLOBS for p in folder.glob(pattern) if p.is_file()})


# --- weights hash --------------------------------------------------------------------------------


def weights_sha256(model_dir: str | Path) -> str:
    """sha256 of the weight file, or of the sorted "name sha256" lines when there are several."""
    files = _weight_files(Path(model_dir))
    if not files:
        raise PLMError(f"no weight files (*.safetensors, pytorch_model*.bin) in {model_dir}")
    return sha256_file(files[0]) if len(files) == 1 else sha256_manifest(files)


# --- tokenizer -----------------------------------------------------------------------------------


def load_tokenizer(resolved: ResolvedModel) -> Any:
    """The model's tokenizer, checked to know every standard amino acid."""
    from transformers import AutoTokenizer, BertTokenizer

    with _quiet_transformers():
        if resolved.source == "embedded" or resolved.model_type == "bert":
            # Bert tokenizers lowercase by default, which turns every residue into [UNK]. And
            # BertTokenizer(vocab_file=...) ignores the file in transformers 5: use from_pretrained.
            tokenizer = BertTokenizer.from_pretrained(
                str(resolved.tokenizer_dir), do_lower_case=False, local_files_only=True
            )
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                str(resolved.tokenizer_dir), local_files_only=True
            )
    ids = tokenizer(" ".join(STANDARD_RESIDUES), add_special_tokens=False)["input_ids"]
    unknown = [
        aa for aa, i in zip(STANDARD_RESIDUES, ids, strict=False) if i == tokenizer.unk_token_id
    ]
    if len(ids) != len(STANDARD_RESIDUES) or unknown:
        raise PLMError(
            f"the tokenizer of pretrained model {resolved.spec} does not map the 20 amino acids to "
            f"one token each (unknown: {''.join(unknown) or '-'}, {len(ids)} tokens); is it a "
            "protein model?"
        )
    if tokenizer.pad_token_id is None:
        raise PLMError(f"the tokenizer of pretrained model {resolved.spec} has no padding token")
    return tokenizer


def tokenize(tokenizer: Any, sequences: list[str]) -> list[list[int]]:
    """Token ids (special tokens included) of residue strings, fed space-separated."""
    if not sequences:
        return []
    return tokenizer([" ".join(s) for s in sequences], add_special_tokens=True)["input_ids"]


def residue_limit(resolved: ResolvedModel, tokenizer: Any, max_length: int | None) -> int:
    """How many residues per sequence to keep: `max_length`, or what the model allows (<= 1022).

    Models with learned absolute positions (BERT, AntiBERTy: 512 tokens) cannot take more; ESM's
    rotary positions can, but were trained on at most 1022 residues.
    """
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    max_pos = resolved.config.get("max_position_embeddings")
    absolute = resolved.config.get("position_embedding_type", "absolute") == "absolute"
    limit = max_pos - n_special if max_pos else None
    if max_length is None:
        return min(limit, 1022) if limit else 1022
    if absolute and limit is not None and int(max_length) > limit:
        raise PLMError(
            f"max_length={max_length} residues is more than pretrained model {resolved.spec} can "
            f"take ({limit} residues + {n_special} special tokens); lower max_length"
        )
    return int(max_length)


def special_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokens that are not residues (CLS, EOS, PAD, ...); the unknown token counts as
    a residue (it stands for X / rare amino acids)."""
    return sorted({int(i) for i in tokenizer.all_special_ids} - {tokenizer.unk_token_id})


# --- model ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load report and progress bars; we log our own one-line summary."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _quantization_config(quantization: str | None) -> Any:
    if not quantization:
        return None
    if quantization not in ("8bit", "4bit"):
        raise PLMError(f"unknown quantization {quantization!r}; valid: 8bit, 4bit or null")
    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        # Quantization only saves memory; the run stays valid, so warn instead of failing.
        log.warning("quantization needs CUDA + bitsandbytes; loading in full precision")
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def load_model(
    resolved: ResolvedModel,
    *,
    quantization: str | None = None,
    gradient_checkpointing: bool = False,
) -> Any:
    """The pretrained encoder (no LM head, no pooler) in eval mode, on CPU unless quantized.

    quantization: null | 8bit | 4bit (CUDA + bitsandbytes only; otherwise full precision with a
    warning). `model.quantized` tells which one applied.
    """
    from transformers import AutoModel

    qconfig = _quantization_config(quantization)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if qconfig is not None:
        kwargs.update(quantization_config=qconfig, device_map={"": 0})
    with _quiet_transformers():
        try:
            model, info = AutoModel.from_pretrained(
                str(resolved.model_dir), add_pooling_layer=False, output_loading_info=True, **kwargs
            )
        except TypeError:  # encoders without a pooler do not take add_pooling_layer
            model, info = AutoModel.from_pretrained(
                str(resolved.model_dir), output_loading_info=True, **kwargs
            )
    if info.get("missing_keys"):
        # Randomly initialised encoder weights would make "pretrained" results meaningless.
        raise PLMError(
            f"pretrained model {resolved.spec}: {len(info['missing_keys'])} encoder weights are "
            f"missing from {resolved.model_dir} (e.g. {sorted(info['missing_keys'])[0]})"
        )
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "loaded pretrained model %s (%s, %s, %.1f M parameters; %d pretraining-head "
        "weights not used) from %s",
        resolved.spec,
        resolved.source,
        type(model).__name__,
        n_params / 1e6,
        len(info.get("unexpected_keys") or ()),
        resolved.model_dir,
    )
    model.quantized = quantization if qconfig is not None else None
    if gradient_checkpointing:
        if getattr(model, "supports_gradient_checkpointing", False):
            # transformers 5 renamed it; the old name still works in 4.x-era installs
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable({"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
        else:
            log.warning("%s does not support gradient checkpointing; option ignored", resolved.spec)
    return model.eval()


def pool(hidden: Any, mask: Any, how: str = "mean") -> Any:
    """Per-sequence vectors from token states [B, L, H] and a residue mask [B, L]."""
    import torch

    if how == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1)
    if how == "max":
        return hidden.masked_fill(~m, torch.finfo(hidden.dtype).min).amax(dim=1)
    if how == "mean":
        # masked_fill, not a product: a padded position may hold inf / NaN in half precision.
        return hidden.masked_fill(~m, 0.0).sum(dim=1) / m.sum(dim=1).clamp(min=1)
    raise ValueError(f"unknown pooling {how!r}; valid: mean, max, cls")


def residue_mask(input_ids: Any, attention_mask: Any, specials: list[int]) -> Any:
    """True where a token is a residue: attended and not a special token."""
    import torch

    special = torch.tensor(specials, dtype=input_ids.dtype, device=input_ids.device)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


# --- precision ----------------------------------------------------------------------------------
# What a protein LM's forward passes run in. bf16 is autocast (weights stay fp32, matrix products
# in bf16); int8 is dynamic quantization of the Linear layers (int8 weights, activations quantized
# per batch), for inference only. torch.ao.quantization.quantize_dynamic is deprecated in torch
# 2.13 in favour of torchao, but torchao 0.18's int8 CPU path (Int8DynamicActivationInt8Weight)
# ran slower than fp32 here, eager or under torch.compile (BENCHMARKS.md, issue 16), while
# quantize_dynamic's fbgemm kernels run 2-3x faster than fp32: it stays until torch removes it.

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX), which is when autocast pays."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: Any) -> str:
    """The precision a PLM actually runs in on `device`: fp32 | bf16 | fp16 | int8.

    auto: bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU. bf16 on a CPU without
    native bf16 falls back to fp32 with a warning (emulated bf16 is slower than fp32). int8 is a
    CPU path; on CUDA the model runs in bf16 / fp16 instead, said in the log.
    """
    import torch

    if precision not in (*PRECISIONS, "fp16"):
        raise PLMError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if device.type == "cuda":
        half = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if precision == "int8":
            log.info("precision int8 is dynamic quantization for CPUs; on CUDA running in %s", half)
        return "fp32" if precision == "fp32" else half
    if precision in ("auto", "fp32", "fp16"):
        if precision == "fp16":
            log.info("precision fp16 applies on CUDA only; running in fp32 on %s", device)
        return "fp32"
    if precision == "bf16" and not cpu_supports_bf16():
        log.warning(
            "precision bf16: this CPU has no native bf16 (avx512_bf16 / AMX), running in fp32"
        )
        return "fp32"
    return precision


def autocast(device: Any, used: str) -> Any:
    """The autocast context of a resolved precision (bf16 / fp16), else a null context."""
    import torch

    if used in ("bf16", "fp16"):
        dtype = torch.bfloat16 if used == "bf16" else torch.float16
        return torch.autocast(torch.device(device).type, dtype=dtype)
    return contextlib.nullcontext()


def quantize_int8(module: Any) -> Any:
    """A copy of `module` whose Linear layers are dynamically quantized to int8 (CPU inference)."""
    import torch

    with warnings.catch_warnings():
        # the deprecation of torch.ao.quantization: see the comment above PRECISIONS
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")
        return torch.ao.quantization.quantize_dynamic(
            module, {torch.nn.Linear}, dtype=torch.qint8, inplace=False
        )


def for_inference(model: Any, precision: str, device: Any) -> tuple[Any, str]:
    """(model, precision used): the model on `device`, int8-quantized when that is the precision."""
    used = resolve_precision(precision, device)
    if used == "int8" and not getattr(model, "int8_quantized", False):
        model = quantize_int8(model.to("cpu").eval())
        model.int8_quantized = True
        log.info("int8: dynamic quantization of the Linear layers of %s", type(model).__name__)
    return model.to(device).eval(), used


# --- forward passes over a table -----------------------------------------------------------------


def encoder_layers(model: Any) -> Any:
    """The ModuleList of an encoder's transformer layers (BERT, ESM: `encoder.layer`)."""
    import torch

    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for name, module in model.named_modules():
        if (
            isinstance(module, torch.nn.ModuleList)
            and name.rsplit(".", 1)[-1] in ("layer", "layers")
            and (n is None or len(module) == n)
        ):
            return module
    raise PLMError(f"cannot find the encoder layers of {type(model).__name__}")


# The time limit of the job the forward passes run in: (minutes, job name, rule, when it was
# set), or None. Set by the featurize job (biomol_dl.featurize) around its featurizer; read by
# _table_batches. A context variable, so the featurizers between the two need not carry it.
_TIME_LIMIT: contextvars.ContextVar = contextvars.ContextVar("plm_time_limit", default=None)


@contextlib.contextmanager
def time_limit(minutes: float | None, job: str, rule: str = "featurize"):
    """Within it, a forward pass over a table on CPU (`embed_sequences`, `states_entering`) whose
    estimate exceeds `minutes` fails after its first batch (`check_time_limit`). minutes: the
    job's runtime (None: no limit, e.g. outside a workflow job); job: its name in the message;
    rule: the rule whose runtime --set-resources would raise."""
    import time

    limit = None if minutes is None else (float(minutes), job, rule, time.perf_counter())
    token = _TIME_LIMIT.set(limit)
    try:
        yield
    finally:
        _TIME_LIMIT.reset(token)


def check_time_limit(
    what: str, minutes: float, sequences_s: float, n: int, used: str, device: Any
) -> None:
    """Raise PLMError when `minutes` (the estimate of a whole pass over `n` sequences, made from
    its first batch at `sequences_s`) plus the time the job has already spent exceeds the limit
    of the enclosing `time_limit`. Nothing without one, and nothing on CUDA: there the first
    batch carries the device's warm-up (the plm_lora cost probe skips CUDA too).

    The estimate is compared as it is logged: the tokens/s of the first, longest batch applied to
    every token. That is an upper bound (attention costs more per token in longer sequences, and
    the first batch carries any warm-up; only the padding of later batches, small as they are
    sorted by length, is left out), and close: embedding the 4577 AMP peptides with AntiBERTy
    was estimated at 6.8 min and took 6.9 (fp32; int8: 2.6 and 2.4, BENCHMARKS.md). A job that
    fails may thus have needed somewhat less: stopping it costs one batch and a flag to raise
    the runtime, where letting it run costs hours.
    """
    import time

    limit = _TIME_LIMIT.get()
    if limit is None or str(device).startswith("cuda"):
        return
    runtime, job, rule, since = limit
    spent = (time.perf_counter() - since) / 60
    if spent + minutes <= runtime:
        return
    hints = []
    if used == "fp32":
        hints.append("precision: int8 (or bf16 on a CPU with native bf16)")
    elif used == "bf16":
        hints.append("precision: int8")
    needed = _minutes_needed(spent + minutes)
    hints += [
        "a GPU (device: auto or cuda)",
        "a smaller max_length",
        f"a longer runtime (--set-resources {rule}:runtime={needed})",
    ]
    raise PLMError(
        f"{job}: {what}: all {n} sequences are estimated at {minutes:.1f} min ({sequences_s:.1f} "
        f"sequences/s in the first, longest batch at {used}; an upper bound), which with "
        f"{spent:.1f} min already spent exceeds the job's runtime of {runtime:g} min; use "
        f"{', or '.join(hints)}"
    )


def _minutes_needed(minutes: float) -> int:
    """A runtime to suggest: the estimate plus a quarter, rounded up to 10 minutes."""
    import math

    return int(math.ceil(minutes * 1.25 / 10) * 10)


def _table_batches(
    model: Any,
    tokenizer: Any,
    sequences: list[str],
    *,
    batch_tokens: int,
    device: Any,
    used: str,
    forward,
    what: str,
):
    """Yield (rows, ids, mask, forward's result) over the sequences, longest first (an
    out-of-memory error shows up at once, not after an hour), at most `batch_tokens` padded
    tokens a batch; logs a time estimate after the first (longest) batch, checks it against the
    job's time limit (`check_time_limit`), and logs progress after."""
    import time

    import torch

    from biomol_dl.batching import collate_tokens, plan_batches

    encoded = tokenize(tokenizer, sequences)
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches = plan_batches(
        lengths[order], batch_size=max(1, len(order)), max_tokens=batch_tokens, shuffle=False
    )
    device = torch.device(device)
    model.eval()
    start, done = time.perf_counter(), 0
    with torch.inference_mode(), autocast(device, used):
        for b, batch in enumerate(batches):
            rows = order[batch]
            examples = [{"ids": torch.tensor(encoded[r]), "y": torch.zeros(0)} for r in rows]
            padded = collate_tokens(examples, "ids", tokenizer.pad_token_id)
            ids, attn = padded["ids"].to(device), padded["mask"].to(device)
            yield rows, ids, attn, forward(ids, attn)
            done += len(rows)
            elapsed = max(time.perf_counter() - start, 1e-9)
            if b == 0 and len(batches) > 1:
                tokens_s = len(rows) * ids.shape[1] / elapsed
                minutes = float(lengths.sum()) / tokens_s / 60
                log.info(
                    "%s: first (longest) batch %.1f sequences/s at %s; all %d sequences: about "
                    "%.1f min (an upper bound: later batches are shorter)",
                    what,
                    len(rows) / elapsed,
                    used,
                    len(sequences),
                    minutes,
                )
                check_time_limit(what, minutes, len(rows) / elapsed, len(sequences), used, device)
            if (b + 1) % max(1, len(batches) // 10) == 0 or b + 1 == len(batches):
                log.info("%s: %d/%d sequences (%.1f/s)", what, done, len(sequences), done / elapsed)


def embed_sequences(
    model: Any,
    tokenizer: Any,
    sequences: list[str],
    *,
    pooling: str = "mean",
    layer: int = -1,
    batch_tokens: int = 8192,
    device: Any = "cpu",
    precision: str = "auto",
) -> Any:
    """Pooled embeddings [N, H] (float32, CPU) of residue strings, in input order.

    Batches of at most `batch_tokens` padded tokens, longest first. precision: see
    `resolve_precision` (int8 runs a quantized copy of the model).
    """
    import torch

    model, used = for_inference(model, precision, device)
    specials = special_ids(tokenizer)

    def forward(ids, attn):
        result = model(input_ids=ids, attention_mask=attn.long(), output_hidden_states=layer != -1)
        hidden = result.last_hidden_state if layer == -1 else result.hidden_states[layer]
        return pool(hidden.float(), residue_mask(ids, attn, specials), pooling).cpu()

    out: Any = None
    batches = _table_batches(model, tokenizer, sequences, batch_tokens=batch_tokens,
                             device=device, used=used, forward=forward, what="embedded")  # fmt: skip
    for rows, _, _, pooled in batches:
        if out is None:
            out = torch.zeros(len(sequences), pooled.shape[1])
        out[torch.as_tensor(rows)] = pooled
    return out if out is not None else torch.zeros(0, 0)


class _Entered(Exception):
    """Raised by the pre-hook of the cache layer: what enters it is all that is needed."""


def states_entering(
    model: Any,
    tokenizer: Any,
    sequences: list[str],
    *,
    layer: int,
    batch_tokens: int = 8192,
    device: Any = "cpu",
    precision: str = "auto",
) -> list:
    """The hidden states entering encoder layer `layer` (0-based; 1 = the output of the first
    layer): one fp16 tensor [tokens, H] per sequence, special tokens included, in input order.

    The frozen layers below `layer` run in eval mode (no dropout); the layers from `layer` up
    are never computed. For the LoRA family's cache (models/plm_lora.py).
    """
    import torch

    layers = encoder_layers(model)
    if not 1 <= int(layer) < len(layers):
        raise PLMError(
            f"cache_layer={layer}: must be between 1 and {len(layers) - 1} (the model has "
            f"{len(layers)} layers; the cache holds what enters that layer)"
        )
    model, used = for_inference(model, precision, device)
    captured: list = []

    def capture(module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])
        raise _Entered

    def forward(ids, attn):
        captured.clear()
        try:
            model(input_ids=ids, attention_mask=attn.long())
        except _Entered:
            pass
        return captured[0].float().cpu()

    handle = encoder_layers(model)[int(layer)].register_forward_pre_hook(capture, with_kwargs=True)
    parts: dict[int, Any] = {}
    fp16_max = torch.finfo(torch.float16).max
    try:
        batches = _table_batches(model, tokenizer, sequences, batch_tokens=batch_tokens,
                                 device=device, used=used, forward=forward,
                                 what=f"states entering layer {layer}")  # fmt: skip
        for rows, _, attn, hidden in batches:
            biggest = float(hidden.abs().max())
            if not biggest <= fp16_max:
                raise PLMError(
                    f"hidden states entering layer {layer} reach {biggest:.3g}, beyond fp16; "
                    "choose another cache_layer"
                )
            for j, r in enumerate(rows.tolist()):
                parts[r] = hidden[j, : int(attn[j].sum())].half()
    finally:
        handle.remove()
    return [parts[i] for i in range(len(sequences))]


# --- LoRA ----------------------------------------------------------------------------------------


def apply_lora(
    model: Any,
    *,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.1,
    target_modules: list[str] | None = None,
    layers_to_transform: list[int] | None = None,
    model_type: str = "",
) -> Any:
    """Wrap a pretrained encoder with LoRA adapters (PEFT); only the adapters require grad.

    target_modules: names of the Linear layers to adapt; default query/key/value for BERT-style
    and ESM encoders, required for any other model type. layers_to_transform: encoder layer
    indices to adapt (default all).
    """
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets = list(target_modules or DEFAULT_LORA_TARGETS.get(model_type, []))
    if not targets:
        raise PLMError(
            f"name lora target_modules for model type {model_type!r} (e.g. the "
            "attention projections); there is no default for it"
        )
    linear = {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__.startswith("Linear")
    }
    unknown = [t for t in targets if t not in linear]
    if unknown:
        raise PLMError(
            f"lora target_modules {unknown} are not Linear layers of the model; "
            f"available: {', '.join(sorted(linear))}"
        )
    if getattr(model, "quantized", None):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        r=int(r),
        lora_alpha=alpha,
        lora_dropout=float(dropout),
        target_modules=targets,
        bias="none",
        layers_to_transform=list(layers_to_transform) if layers_to_transform else None,
    )
    with warnings.catch_warnings():
        # peft 0.21 probes a transformers attribute that transformers 5 deprecates; not ours to fix
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        return get_peft_model(model, config)


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts of any module (e.g. a LoRA encoder plus its head).

    PEFT's count, which also counts a 4-bit bitsandbytes weight by the values it packs (twice its
    storage elements); without 4-bit layers it is the plain sum of `numel()`.
    """
    from peft import PeftModel

    # get_nb_trainable_parameters only walks self.named_parameters(), so it serves any module.
    return PeftModel.get_nb_trainable_parameters(model)


def checkpoint_report(model_pt: str | Path) -> tuple[dict, dict]:
    """(params, metrics) about the pretrained model behind a trained plm_* model.pt, for MLflow.

    params: plm.model / source / path / weights_sha256 (+ quantization, precision, cache layer,
    pooling, layer when known); metrics: trainable_fraction for LoRA. The training loop logs parameter counts, peak
    memory and examples/s itself.
    """
    import torch

    ckpt = torch.load(model_pt, map_location="cpu", weights_only=True)
    info = dict((ckpt.get("extra") or {}).get("plm") or {})
    meta = ckpt.get("feature_meta") or {}
    keys = (
        "model",
        "source",
        "path",
        "model_type",
        "weights_sha256",
        "quantization",
        "precision",
        "cache_layer",
        "cache_precision",
        "pooling",
        "layer",
        "max_length",
        "length_policy",
    )
    params = {
        f"plm.{k}": info.get(k, meta.get(k)) for k in keys if info.get(k, meta.get(k)) is not None
    }
    metrics = {k: info[k] for k in ("trainable_fraction",) if k in info}
    return params, metrics
