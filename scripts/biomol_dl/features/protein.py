"""Protein sequence featurizers.

For the protein models (cnn, seq_transformer, plm_frozen, plm_lora) and the RF/MLP baselines:

- `onehot`: residue indices (one-hot is built on the fly by the CNN, which keeps the feature
  file at one byte per residue) plus lengths and padding masks, and a flattened position-wise
  one-hot `X` (uint8) for the RF/MLP baselines.
- `kmer`: normalized k-mer composition (k = 1, 2, 3 or a list of them) as `X`.
- `aa_tokens`: residue tokens with a leading `<cls>`, for the transformer trained from scratch.
- `plm_tokens`: token ids from a pretrained protein language model's own tokenizer (for LoRA),
  optionally with the frozen layers' output cached per sequence (`cache_layer`).
- `plm_embedding`: frozen mean-pooled embeddings of a pretrained model, computed once, as `X`
  (fp32, bf16 or int8: `precision`).

Inputs are the validated sequences of the clean table, in its order. Sequences longer than
`max_length` follow a stated policy (`truncate` keeps the N-terminal part, `crop_center` keeps the
middle, `reject` fails); the number affected is logged and returned as `n_truncated`, which the
featurize rule records in MLflow. A character outside the alphabet raises, naming the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biomol_dl.batching import pad_ids, padding_mask
from biomol_dl.logutil import get
from biomol_dl.residues import NONSTANDARD, UNKNOWN
from biomol_dl.residues import STANDARD as AMINO_ACIDS

log = get(__name__)

LENGTH_POLICIES = ("truncate", "crop_center", "reject")


def check_policy(length_policy: str, max_length: int | None) -> None:
    if length_policy not in LENGTH_POLICIES:
        raise ValueError(
            f"unknown length_policy {length_policy!r}; valid: {', '.join(LENGTH_POLICIES)}"
        )
    if max_length is not None and int(max_length) < 1:
        raise ValueError(f"max_length must be a positive integer or null, got {max_length!r}")


def clip_sequences(
    sequences: Sequence[str], max_length: int | None, length_policy: str, what: str
) -> tuple[list[str], int]:
    """Apply the length policy; return the clipped sequences and how many were shortened."""
    check_policy(length_policy, max_length)
    if max_length is None:
        return list(sequences), 0
    out, n_clipped = [], 0
    for i, seq in enumerate(sequences):
        if len(seq) <= max_length:
            out.append(seq)
            continue
        if length_policy == "reject":
            n_long = sum(len(s) > max_length for s in sequences)
            raise ValueError(
                f"{what}: sequence {i + 1} of the clean table has {len(seq)} residues, more than "
                f"max_length={max_length} ({n_long} sequence(s) are too long); raise max_length or "
                "use length_policy truncate / crop_center"
            )
        n_clipped += 1
        if length_policy == "crop_center":
            start = (len(seq) - max_length) // 2
            out.append(seq[start : start + max_length])
        else:
            out.append(seq[:max_length])
    if n_clipped:
        log.warning(
            "%s: %d of %d sequences are longer than max_length=%d and were shortened (%s)",
            what,
            n_clipped,
            len(out),
            max_length,
            length_policy,
        )
    else:
        log.info("%s: no sequence is longer than max_length=%d", what, max_length)
    return out, n_clipped


def check_residues(seq: str, index: int, what: str) -> int:
    """Raise on characters that are not residue letters; return the count of nonstandard codes."""
    n_nonstandard = 0
    for pos, char in enumerate(seq):
        if char in AMINO_ACIDS:
            continue
        if char in NONSTANDARD or char == UNKNOWN:
            n_nonstandard += 1
            continue
        raise ValueError(
            f"{what}: sequence {index + 1} of the clean table has {char!r} at position {pos + 1}; "
            f"allowed: {AMINO_ACIDS} and {UNKNOWN}{NONSTANDARD} (validation should have caught it)"
        )
    return n_nonstandard


class _ResidueTokens:
    """Residue -> index encoding shared by `onehot` and `aa_tokens` (index 0 is padding)."""

    specials: tuple[str, ...] = ("<pad>",)
    name = "residue tokens"

    def __init__(self, max_length: int | None = 1024, length_policy: str = "truncate"):
        check_policy(length_policy, max_length)
        self.max_length = None if max_length is None else int(max_length)
        self.length_policy = length_policy
        self.vocab = [*self.specials, *AMINO_ACIDS, UNKNOWN]
        self.index = {tok: i for i, tok in enumerate(self.vocab)}
        for char in NONSTANDARD:
            self.index[char] = self.index[UNKNOWN]

    @property
    def pad_index(self) -> int:
        return self.index["<pad>"]

    def encode(self, seq: str) -> list[int]:
        """Token ids of one (already clipped) sequence, special tokens included."""
        prefix = [self.index["<cls>"]] if "<cls>" in self.specials else []
        return prefix + [self.index[c] for c in seq]

    def decode(self, ids: Sequence[int]) -> str:
        """Residues of a list of token ids, special tokens and padding left out."""
        return "".join(self.vocab[i] for i in ids if self.vocab[i] not in self.specials)

    def _encode_table(self, inputs: list[str]) -> dict:
        import torch

        n_nonstandard = sum(check_residues(s, i, self.name) for i, s in enumerate(inputs))
        clipped, n_truncated = clip_sequences(
            inputs, self.max_length, self.length_policy, self.name
        )
        encoded = [self.encode(s) for s in clipped]
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        tokens = pad_ids(encoded, self.pad_index, torch.uint8)
        width = tokens.shape[1]
        mask = padding_mask(lengths, width)
        if n_nonstandard:
            log.info(
                "%s: %d nonstandard residue codes (%s) encoded as %s",
                self.name,
                n_nonstandard,
                NONSTANDARD,
                UNKNOWN,
            )
        log.info(
            "%s: %d sequences, lengths %d-%d tokens",
            self.name,
            len(encoded),
            int(lengths.min()) if len(encoded) else 0,
            width,
        )
        return {
            "tokens": tokens,
            "lengths": lengths,
            "mask": mask,
            "vocab": list(self.vocab),
            "vocab_size": len(self.vocab),
            "pad_index": self.pad_index,
            "max_length": self.max_length,
            "length_policy": self.length_policy,
            "n_truncated": int(n_truncated),
            "n_nonstandard_residues": int(n_nonstandard),
        }


class OneHotFeaturizer(_ResidueTokens):
    """Residue indices for the sequence models, plus (`flat`, default) a one-hot `X` for RF / MLP.

    `len(f)` is the one-hot channel count (20 amino acids + X). `X` is uint8 [N, W * 21] with
    W = the longest (clipped) sequence of the table: position-wise one-hot makes sense for
    aligned, equal-length variants (mutant scans such as GB1), and W no wider than the data keeps
    RF from sampling all-zero columns. The RF and MLP families cast it to float. `flat: false`
    skips it when only the CNN / transformer use the features.
    """

    name = "onehot"

    def __init__(
        self, max_length: int | None = 1024, length_policy: str = "truncate", flat: bool = True
    ):
        super().__init__(max_length, length_policy)
        self.flat = bool(flat)

    def __len__(self) -> int:
        return len(self.vocab) - len(self.specials)

    def featurize_table(self, inputs: list[str], threads: int = 1) -> dict:
        out = self._encode_table(inputs)
        if self.flat:
            import torch

            n, width = out["tokens"].shape
            X = torch.zeros(n, width, len(self), dtype=torch.uint8)
            channel = out["tokens"].long() - len(self.specials)  # padding -> -1, never used
            rows, cols = torch.nonzero(out["mask"], as_tuple=True)
            X[rows, cols, channel[rows, cols]] = 1
            out["X"] = X.reshape(n, -1)
            out["feature_names"] = [
                f"pos{p + 1}_{aa}" for p in range(width) for aa in self.vocab[len(self.specials) :]
            ]
        return out


class AminoAcidTokenFeaturizer(_ResidueTokens):
    """Residue tokens with a leading `<cls>` for the transformer trained from scratch.

    `encode` / `decode` round-trip a sequence (nonstandard codes come back as X).
    """

    specials = ("<pad>", "<cls>")
    name = "aa_tokens"

    def __len__(self) -> int:
        return len(self.vocab)

    def featurize_table(self, inputs: list[str], threads: int = 1) -> dict:
        return self._encode_table(inputs)


class KmerFeaturizer:
    """Normalized k-mer composition: for each k, counts of every k-mer of the 20 amino acids
    divided by the number of k-mers in the sequence. k-mers containing X (or B, Z, J, U, O) are
    skipped, so a block sums to 1 minus their share.
    """

    def __init__(self, k: int | list[int] = 2):
        ks = [k] if isinstance(k, int) else list(k)
        if not ks or any(int(v) not in (1, 2, 3) for v in ks):
            raise ValueError(f"kmer: k must be 1, 2, 3 or a list of them, got {k!r}")
        self.ks = sorted({int(v) for v in ks})

    def __len__(self) -> int:
        return sum(20**k for k in self.ks)

    def feature_names(self) -> list[str]:
        from itertools import product

        return [f"kmer_{''.join(p)}" for k in self.ks for p in product(AMINO_ACIDS, repeat=k)]

    def featurize_table(self, inputs: list[str], threads: int = 1) -> dict:
        import torch

        lookup = np.full(128, 20, dtype=np.int64)
        lookup[[ord(c) for c in AMINO_ACIDS]] = np.arange(20)
        X = np.zeros((len(inputs), len(self)), dtype=np.float32)
        n_short = 0
        n_nonstandard = 0
        for i, seq in enumerate(inputs):
            n_nonstandard += check_residues(seq, i, "kmer")
            idx = lookup[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
            offset = 0
            for k in self.ks:
                n_windows = len(idx) - k + 1
                if n_windows <= 0:
                    n_short += 1
                    offset += 20**k
                    continue
                windows = np.lib.stride_tricks.sliding_window_view(idx, k)
                ok = (windows < 20).all(axis=1)
                codes = windows[ok] @ (20 ** np.arange(k - 1, -1, -1))
                X[i, offset : offset + 20**k] = np.bincount(codes, minlength=20**k) / n_windows
                offset += 20**k
        if n_short:
            log.warning(
                "kmer: %d (sequence, k) pairs had fewer than k residues: zero block", n_short
            )
        log.info("kmer: %d sequences, k=%s, %d features", len(inputs), self.ks, len(self))
        return {
            "X": torch.from_numpy(X),
            "feature_names": self.feature_names(),
            "n_too_short": int(n_short),
            "n_nonstandard_residues": int(n_nonstandard),
        }


def _check_precision(what: str, precision: str) -> None:
    from biomol_dl.plm import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(
            f"{what}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        )


class PLMTokenFeaturizer:
    """Token ids from a pretrained protein LM's tokenizer (residues space-separated), for LoRA.

    `model` is what `biomol_dl.plm.resolve_model` takes: "antiberty" (embedded default), a local
    folder, or a HuggingFace hub id. `max_length` counts residues (special tokens come on top);
    its default is what the model's position embeddings allow (at most 1022 residues).

    `cache_layer: k` also stores, per sequence, the hidden states entering encoder layer k (fp16,
    `cache_states`): the frozen layers below k then run once here instead of every epoch, and the
    LoRA family trains layers k and up only. `precision` (auto | fp32 | bf16 | int8), `device`
    and `batch_tokens` say how those frozen layers run (see biomol_dl.plm.resolve_precision).
    """

    def __init__(
        self,
        model: str = "antiberty",
        max_length: int | None = None,
        length_policy: str = "truncate",
        cache_layer: int | None = None,
        precision: str = "auto",
        device: str = "auto",
        batch_tokens: int = 8192,
    ):
        check_policy(length_policy, max_length)
        self.model, self.max_length, self.length_policy = model, max_length, length_policy
        if cache_layer is not None and int(cache_layer) < 1:
            raise ValueError(f"plm_tokens: cache_layer must be >= 1 or null, got {cache_layer!r}")
        _check_precision("plm_tokens", precision)
        self.cache_layer = None if cache_layer is None else int(cache_layer)
        self.precision, self.device, self.batch_tokens = precision, device, int(batch_tokens)

    def featurize_table(self, inputs: list[str], threads: int = 1) -> dict:
        import torch

        from biomol_dl import plm

        resolved = plm.resolve_model(self.model)
        tokenizer = plm.load_tokenizer(resolved)
        max_length = plm.residue_limit(resolved, tokenizer, self.max_length)
        n_nonstandard = sum(check_residues(s, i, "plm_tokens") for i, s in enumerate(inputs))
        clipped, n_truncated = clip_sequences(inputs, max_length, self.length_policy, "plm_tokens")
        encoded = plm.tokenize(tokenizer, clipped)
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        dtype = torch.int16 if len(tokenizer) < 2**15 else torch.int32
        ids = pad_ids(encoded, tokenizer.pad_token_id, dtype)
        width = ids.shape[1]
        n_unknown = (
            int((ids == tokenizer.unk_token_id).sum()) if tokenizer.unk_token_id is not None else 0
        )
        if n_unknown:
            log.warning(
                "plm_tokens: %d residues are unknown to the %s tokenizer (%s)",
                n_unknown,
                self.model,
                tokenizer.unk_token,
            )
        log.info(
            "plm_tokens: %d sequences with the %s tokenizer, up to %d tokens",
            len(encoded),
            self.model,
            width,
        )
        out = {
            "input_ids": ids,
            "attention_mask": padding_mask(lengths, width),
            "lengths": lengths,
            "pad_token_id": int(tokenizer.pad_token_id),
            "special_ids": sorted(int(t) for t in tokenizer.all_special_ids),
            "model": str(self.model),
            "max_length": int(max_length),
            "length_policy": self.length_policy,
            "n_truncated": int(n_truncated),
            "n_unknown_tokens": n_unknown,
            "n_nonstandard_residues": int(n_nonstandard),
        }
        if self.cache_layer is not None:
            out.update(self._cache(resolved, tokenizer, clipped, lengths))
        return out

    def _cache(self, resolved, tokenizer, clipped: list[str], lengths) -> dict:
        """The frozen layers' output for every sequence (fp16), with what made it."""
        from biomol_dl import plm
        from biomol_dl.training import select_device

        device = select_device(self.device)
        used = plm.resolve_precision(self.precision, device)
        model = plm.load_model(resolved).to(device)
        states = plm.states_entering(model, tokenizer, clipped, layer=self.cache_layer,
                                     batch_tokens=self.batch_tokens, device=device,
                                     precision=used)  # fmt: skip
        got = [len(s) for s in states]
        if got != lengths.tolist():
            raise RuntimeError("plm_tokens: cached states and token ids differ in length")
        size = sum(s.numel() * s.element_size() for s in states)
        log.info(
            "plm_tokens: cached the states entering layer %d of %d (%s, stored fp16): %.1f MB",
            self.cache_layer,
            resolved.config.get("num_hidden_layers"),
            used,
            size / 1e6,
        )
        return {
            "cache_states": states,
            "cache_layer": self.cache_layer,
            "cache_precision": used,
            "cache_mb": size / 1e6,
            "weights_sha256": plm.weights_sha256(resolved.model_dir),
        }


class PLMEmbeddingFeaturizer:
    """Frozen per-sequence embeddings of a pretrained protein LM, computed once and cached as `X`.

    `pooling`: mean (over residue tokens, special tokens left out), max, or cls; `layer`: which
    hidden layer (-1 = last). Sequences are batched by length, at most `batch_tokens` padded tokens
    per forward pass. Runs on CUDA when available (`device: auto`). `precision`: auto (bf16 on
    CUDA, fp32 on CPU), fp32, bf16 (autocast; on CPUs with native bf16, else fp32 with a
    warning), int8 (dynamic quantization of the Linear layers, CPU); the one used is stored as
    `precision`.
    """

    def __init__(
        self,
        model: str = "antiberty",
        pooling: str = "mean",
        layer: int = -1,
        batch_tokens: int = 8192,
        max_length: int | None = None,
        length_policy: str = "truncate",
        device: str = "auto",
        precision: str = "auto",
    ):
        check_policy(length_policy, max_length)
        if pooling not in ("mean", "max", "cls"):
            raise ValueError(f"plm_embedding: unknown pooling {pooling!r}; valid: mean, max, cls")
        self.model, self.pooling, self.layer = model, pooling, int(layer)
        self.batch_tokens, self.max_length, self.length_policy = (
            int(batch_tokens),
            max_length,
            length_policy,
        )
        self.device = device
        _check_precision("plm_embedding", precision)
        self.precision = precision

    def featurize_table(self, inputs: list[str], threads: int = 1) -> dict:
        from biomol_dl import plm

        resolved = plm.resolve_model(self.model)
        tokenizer = plm.load_tokenizer(resolved)
        max_length = plm.residue_limit(resolved, tokenizer, self.max_length)
        n_nonstandard = sum(check_residues(s, i, "plm_embedding") for i, s in enumerate(inputs))
        clipped, n_truncated = clip_sequences(
            inputs, max_length, self.length_policy, "plm_embedding"
        )
        from biomol_dl.training import select_device

        device = select_device(self.device)
        used = plm.resolve_precision(self.precision, device)
        model = plm.load_model(resolved).to(device)
        X = plm.embed_sequences(
            model,
            tokenizer,
            clipped,
            pooling=self.pooling,
            layer=self.layer,
            batch_tokens=self.batch_tokens,
            device=device,
            precision=used,
        )
        return {
            "X": X.float().cpu(),
            "feature_names": [f"emb_{j}" for j in range(X.shape[1])],
            "model": str(self.model),
            "weights_sha256": plm.weights_sha256(resolved.model_dir),
            "pooling": self.pooling,
            "layer": self.layer,
            "precision": used,
            "max_length": int(max_length),
            "length_policy": self.length_policy,
            "n_truncated": int(n_truncated),
            "n_nonstandard_residues": int(n_nonstandard),
            "embedding_dim": int(X.shape[1]),
        }


# --- inputs of the sequence model families ---------------------------------------------------


def token_features(features: dict, family: str) -> None:
    """Fail with one line unless the features come from a residue-token featurizer."""
    missing = [k for k in ("tokens", "lengths") if k not in features]
    if missing:
        raise ValueError(
            f"model family {family} needs residue tokens (featurizer onehot or aa_tokens); the "
            f"features file has {', '.join(sorted(k for k in features if not k.startswith('n_')))}"
        )
