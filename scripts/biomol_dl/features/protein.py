"""Protein sequence featurizers, and the padded, length-bucketed batching the sequence models share.

For the protein models (cnn, seq_transformer, plm_frozen, plm_lora) and the RF/MLP baselines:

- `onehot`: residue indices (one-hot is built on the fly by the CNN, which keeps the feature
  file at one byte per residue) plus lengths and padding masks, and a flattened position-wise
  one-hot `X` (uint8) for the RF/MLP baselines.
- `kmer`: normalized k-mer composition (k = 1, 2, 3 or a list of them) as `X`.
- `aa_tokens`: residue tokens with a leading `<cls>`, for the transformer trained from scratch.
- `plm_tokens`: token ids from a pretrained protein language model's own tokenizer (for LoRA).
- `plm_embedding`: frozen mean-pooled embeddings of a pretrained model, computed once, as `X`.

Inputs are the validated sequences of the clean table, in its order. Sequences longer than
`max_length` follow a stated policy (`truncate` keeps the N-terminal part, `crop_center` keeps the
middle, `reject` fails); the number affected is logged and returned as `n_truncated`, which the
featurize rule records in MLflow. A character outside the alphabet raises, naming the sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from biomol_dl.logutil import get

log = get(__name__)

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# Ambiguous / rare residue codes that validation may let through; they become the unknown residue.
NONSTANDARD = "BZJUO"
UNKNOWN = "X"
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
        width = int(lengths.max()) if len(encoded) else 0
        tokens = torch.full((len(encoded), width), self.pad_index, dtype=torch.uint8)
        for i, ids in enumerate(encoded):
            tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.uint8)
        mask = torch.arange(width)[None, :] < lengths[:, None]
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


class PLMTokenFeaturizer:
    """Token ids from a pretrained protein LM's tokenizer (residues space-separated), for LoRA.

    `model` is what `biomol_dl.plm.resolve_model` takes: "antiberty" (embedded default), a local
    folder, or a HuggingFace hub id. `max_length` counts residues (special tokens come on top);
    its default is what the model's position embeddings allow (at most 1022 residues).
    """

    def __init__(
        self,
        model: str = "antiberty",
        max_length: int | None = None,
        length_policy: str = "truncate",
    ):
        check_policy(length_policy, max_length)
        self.model, self.max_length, self.length_policy = model, max_length, length_policy

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
        width = int(lengths.max()) if encoded else 0
        dtype = torch.int16 if len(tokenizer) < 2**15 else torch.int32
        ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=dtype)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e, dtype=dtype)
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
        return {
            "input_ids": ids,
            "attention_mask": torch.arange(width)[None, :] < lengths[:, None],
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


class PLMEmbeddingFeaturizer:
    """Frozen per-sequence embeddings of a pretrained protein LM, computed once and cached as `X`.

    `pooling`: mean (over residue tokens, special tokens left out), max, or cls; `layer`: which
    hidden layer (-1 = last). Sequences are batched by length, at most `batch_tokens` padded tokens
    per forward pass. Runs on CUDA when available (`device: auto`), in bf16 there unless
    `precision: fp32`.
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
        if precision not in ("auto", "fp32"):
            raise ValueError(f"plm_embedding: precision must be auto or fp32, got {precision!r}")
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
        model = plm.load_model(resolved).to(device)
        X = plm.embed_sequences(
            model,
            tokenizer,
            clipped,
            pooling=self.pooling,
            layer=self.layer,
            batch_tokens=self.batch_tokens,
            device=device,
            precision=self.precision,
        )
        return {
            "X": X.float().cpu(),
            "feature_names": [f"emb_{j}" for j in range(X.shape[1])],
            "model": str(self.model),
            "weights_sha256": plm.weights_sha256(resolved.model_dir),
            "pooling": self.pooling,
            "layer": self.layer,
            "max_length": int(max_length),
            "length_policy": self.length_policy,
            "n_truncated": int(n_truncated),
            "n_nonstandard_residues": int(n_nonstandard),
            "embedding_dim": int(X.shape[1]),
        }


# --- batching variable-length token sequences (cnn, seq_transformer, plm_lora) -------------------


class TokenExamples:
    """Examples `{ids_key: 1-D ids, "y": [T]}` of a padded token table, index i = clean row i."""

    def __init__(self, ids: Any, lengths: Any, y: np.ndarray, ids_key: str = "tokens"):
        import torch

        self.ids, self.lengths, self.ids_key = ids, torch.as_tensor(lengths), ids_key
        self.y = torch.as_tensor(np.asarray(y, dtype=np.float32))
        if len(self.y) != len(self.ids):
            raise ValueError(f"{len(self.y)} label rows for {len(self.ids)} token rows")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {self.ids_key: self.ids[i, : int(self.lengths[i])], "y": self.y[i]}


def plan_batches(
    lengths: Sequence[int],
    *,
    batch_size: int,
    max_tokens: int | None = None,
    shuffle: bool,
    seed: int = 0,
    bucket_batches: int = 50,
) -> list[list[int]]:
    """Group example positions into batches.

    Training (`shuffle`): a seeded permutation is cut into buckets of `bucket_batches` batches,
    sorted by length inside each bucket (so a batch holds similar lengths and little padding) and
    the batch order shuffled. Evaluation keeps the input order so predictions line up with rows.
    A batch is closed at `batch_size` examples or when its padded size would pass `max_tokens`.
    """
    n = len(lengths)
    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(int(seed))
    order = np.arange(n)
    if shuffle and n:
        order = rng.permutation(n)
        n_buckets = max(1, -(-n // max(1, batch_size * bucket_batches)))
        order = np.concatenate(
            [
                chunk[np.argsort(-lengths[chunk], kind="stable")]
                for chunk in np.array_split(order, n_buckets)
            ]
        )
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order.tolist():
        longest_if_added = max(longest, int(lengths[i]))
        full = len(current) >= batch_size or (
            max_tokens is not None and (len(current) + 1) * longest_if_added > max_tokens
        )
        if current and full:
            batches.append(current)
            current, longest_if_added = [], int(lengths[i])
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    if shuffle:
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches


def collate_tokens(examples: list[dict], ids_key: str, pad_id: int, mask_key: str = "mask") -> dict:
    """Pad a list of examples into `{ids_key: [B, L] long, mask_key: [B, L] bool, "y": [B, T]}`."""
    import torch

    lengths = [len(ex[ids_key]) for ex in examples]
    width = max(lengths)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    for row, ex in enumerate(examples):
        ids[row, : lengths[row]] = ex[ids_key].long()
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return {ids_key: ids, mask_key: mask, "y": torch.stack([ex["y"] for ex in examples])}


class BucketLoader:
    """Re-iterable batches planned once from the seed (the loop builds one loader per epoch with
    `seed * 1000 + epoch`, so the order depends only on (seed, epoch) and a resumed run repeats it).
    """

    def __init__(
        self,
        examples: Sequence[dict],
        collate: Callable[[list[dict]], dict],
        *,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int,
        max_tokens: int | None = None,
        bucket_batches: int = 50,
    ):
        self.examples, self.collate = examples, collate
        self.batches = plan_batches(
            lengths,
            batch_size=int(batch_size),
            max_tokens=max_tokens,
            shuffle=shuffle,
            seed=seed,
            bucket_batches=bucket_batches,
        )

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield self.collate([self.examples[i] for i in batch])


def token_loader(
    examples: Sequence[dict],
    *,
    ids_key: str,
    pad_id: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    params: dict,
    mask_key: str = "mask",
) -> BucketLoader:
    """A `BucketLoader` over token examples.

    params (all optional): max_tokens, bucket_batches, pin_memory (train_job sets it on CUDA so
    the copy to the GPU can overlap compute).
    """
    lengths = [len(examples[i][ids_key]) for i in range(len(examples))]
    pin = bool(params.get("pin_memory", False))

    def collate(batch: list[dict]) -> dict:
        out = collate_tokens(batch, ids_key, pad_id, mask_key)
        return {k: v.pin_memory() for k, v in out.items()} if pin else out

    return BucketLoader(
        examples,
        collate,
        lengths=lengths,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        max_tokens=params.get("max_tokens"),
        bucket_batches=int(params.get("bucket_batches", 50)),
    )


# --- params and inputs of the sequence model families --------------------------------------------

# params every token family takes (batching), and what train_job adds
LOADER_KEYS = {"max_tokens", "bucket_batches", "n_classes", "pin_memory"}


def settings(family: str, defaults: dict, params: dict) -> dict:
    """Defaults + params; an unknown key fails (a typo would otherwise be silently ignored)."""
    unknown = sorted(set(params) - set(defaults) - LOADER_KEYS)
    if unknown:
        raise ValueError(
            f"{family}: unknown params {unknown}; valid: {sorted(set(defaults) | LOADER_KEYS)} "
            "(+ training-loop keys)"
        )
    return {**defaults, **{k: v for k, v in params.items() if k in defaults}}


def token_features(features: dict, family: str) -> None:
    """Fail with one line unless the features come from a residue-token featurizer."""
    missing = [k for k in ("tokens", "lengths") if k not in features]
    if missing:
        raise ValueError(
            f"model family {family} needs residue tokens (featurizer onehot or aa_tokens); the "
            f"features file has {', '.join(sorted(k for k in features if not k.startswith('n_')))}"
        )
