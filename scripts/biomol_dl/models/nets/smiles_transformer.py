"""The `smiles_transformer` family's network, dataset and loader (torch); the family and its
params are models/smiles_transformer.py. `cfg` below is every param, defaults filled.

The vocabulary: built by `prepare_model` from the TRAIN rows' tokens only (SmilesTokenizer.fit);
every other token becomes <unk>. It lives in the model's state dict, so model.pt alone maps
any new SMILES: batches carry a stable 63-bit hash of every token (blake2b), never a
vocabulary index, and the model looks the hashes up in two buffers (sorted token hashes and
their ids). The embedding table has room for every token type of the feature file
(`n_token_types`) so it can be sized before the train rows are known; rows of types the train
split lacks are never used. The vocabulary strings also go into model.pt's "extra"
(extra_checkpoint) for people reading it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from biomol_dl.features.tokens import CLS, EOS, PAD, SPECIAL_TOKENS, UNK, SmilesTokenizer
from biomol_dl.logutil import get

log = get(__name__)

_EMPTY = np.iinfo(np.int64).max  # hash-table slots not in use (sorts last, matches nothing)


_hash_cache: dict[str, int] = {}


def token_hash(token: str) -> int:
    """A stable, process-independent 63-bit hash of a token (Python's hash() is salted)."""
    value = _hash_cache.get(token)
    if value is None:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little") & (2**63 - 1)
        _hash_cache[token] = value
    return value


# --------------------------------------------------------------------------- data


class SmilesDataset(torch.utils.data.Dataset):
    """Per molecule: its token strings and labels; hashes are made when batches are."""

    def __init__(self, token_lists: Sequence[Sequence[str]], y: torch.Tensor):
        self.tokens = token_lists
        self.y = y

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"tokens": self.tokens[i], "y": self.y[i]}


def build_datasets(features: Mapping[str, Any], y: np.ndarray) -> SmilesDataset:
    """One example per clean-table row: its token strings and its labels y [T]."""
    if "tokens" not in features:
        raise ValueError("smiles_transformer: the feature file lacks 'tokens'; use a "
                         "`type: smiles_tokens` featurizer")  # fmt: skip
    y_t = torch.from_numpy(np.array(y, dtype=np.float32))  # a copy: y may be read-only
    if y_t.ndim == 1:
        y_t = y_t[:, None]
    if len(y_t) != len(features["tokens"]):
        raise ValueError(f"smiles_transformer: {len(y_t)} label rows but "
                         f"{len(features['tokens'])} molecules in the feature file")  # fmt: skip
    return SmilesDataset(features["tokens"], y_t)


class _Collate:
    """Token lists -> {"tokens": hashes [B, L], "mask": real tokens [B, L], "y": [B, T]}."""

    def __init__(self, augment: bool, seed: int):
        self.rng = np.random.default_rng(seed) if augment else None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from biomol_dl.features.tokens import randomized_smiles, tokenize

        sequences = []
        for item in items:
            tokens = item["tokens"]
            if self.rng is not None:
                seed = int(self.rng.integers(2**31 - 1))
                tokens = tokenize(randomized_smiles("".join(tokens), seed))
            sequences.append([CLS, *tokens, EOS])
        length = max(map(len, sequences))
        hashes = torch.zeros((len(items), length), dtype=torch.int64)
        mask = torch.zeros((len(items), length), dtype=torch.bool)
        for i, sequence in enumerate(sequences):
            hashes[i, : len(sequence)] = torch.tensor([token_hash(t) for t in sequence])
            mask[i, : len(sequence)] = True
        return {"tokens": hashes, "mask": mask, "y": torch.stack([item["y"] for item in items])}


def make_loader(
    dataset_subset: Sequence,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    augment: bool,
    pin_memory: bool = False,
):
    """Padded batches whose order (and augmentation, for shuffled training loaders) depends only
    on `seed`. Only a shuffled loader augments: validation, test and prediction see the SMILES
    as stored."""
    collate = _Collate(bool(augment) and shuffle, int(seed))
    return torch.utils.data.DataLoader(
        dataset_subset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(int(seed)),
        collate_fn=collate,
        pin_memory=bool(pin_memory),
    )


# --------------------------------------------------------------------------- model


class SmilesTransformer(nn.Module):
    """Token hashes -> vocabulary ids -> embeddings + positions -> encoder -> pool -> head."""

    def __init__(self, capacity: int, max_len: int, n_outputs: int, cfg: Mapping[str, Any]):
        super().__init__()
        d_model, dropout = int(cfg["d_model"]), float(cfg["dropout"])
        self.pooling = cfg["pooling"]
        self.max_len = max_len
        self.n_truncated = 0
        # The vocabulary as a hash table; set_vocab fills it (prepare_model, or load_state_dict).
        self.register_buffer("vocab_hash", torch.full((capacity,), _EMPTY, dtype=torch.int64))
        self.register_buffer("vocab_id", torch.zeros(capacity, dtype=torch.int64))
        self.vocab: list[str] = []
        self.set_vocab(list(SPECIAL_TOKENS))
        self.embed = nn.Embedding(capacity, d_model, padding_idx=0)
        self.position = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, int(cfg["heads"]), int(cfg["ff_dim"] or 4 * d_model), dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, int(cfg["layers"]), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        hidden = int(cfg["head_hidden"] or d_model)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(d_model, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs),
        )  # fmt: skip

    def set_vocab(self, vocab: Sequence[str]) -> None:
        """Make `vocab` (special tokens first) the model's vocabulary: token i -> embedding i."""
        if len(vocab) > self.vocab_hash.numel():
            raise ValueError(f"smiles_transformer: {len(vocab)} tokens do not fit the embedding "
                             f"table ({self.vocab_hash.numel()})")  # fmt: skip
        hashes = torch.tensor([token_hash(t) for t in vocab], dtype=torch.int64)
        if hashes.unique().numel() != len(vocab):
            raise ValueError("smiles_transformer: two vocabulary tokens share a hash")
        order = torch.argsort(hashes)
        self.vocab_hash.fill_(_EMPTY)
        self.vocab_id.zero_()
        self.vocab_hash[: len(vocab)] = hashes[order]
        self.vocab_id[: len(vocab)] = order
        self.vocab = list(vocab)

    def token_ids(self, hashes: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids of token hashes; <unk> for tokens outside the vocabulary."""
        slot = torch.searchsorted(self.vocab_hash, hashes).clamp(max=self.vocab_hash.numel() - 1)
        known = self.vocab_hash[slot] == hashes
        unk = SPECIAL_TOKENS.index(UNK)
        return torch.where(known, self.vocab_id[slot], torch.full_like(hashes, unk))

    def truncate(self, hashes: torch.Tensor, mask: torch.Tensor):
        """Keep the first max_len - 1 tokens of longer SMILES and end them with <eos>.

        Here rather than in the loader, because only the model knows its max_len (a loader built
        for model.pt's predictions sees the hyperparameters, not the feature file it was sized on).
        """
        cut = mask[:, self.max_len :].any(dim=1)
        hashes, mask = hashes[:, : self.max_len].clone(), mask[:, : self.max_len]
        hashes[cut, -1] = token_hash(EOS)
        before = self.n_truncated
        self.n_truncated += int(cut.sum())
        if before == 0 or before // 1000 != self.n_truncated // 1000:
            log.warning("%d SMILES longer than max_len=%d tokens truncated so far",
                        self.n_truncated, self.max_len)  # fmt: skip
        return hashes, mask

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        hashes, mask = batch["tokens"], batch["mask"]
        if hashes.shape[1] > self.max_len:
            hashes, mask = self.truncate(hashes, mask)
        ids = self.token_ids(hashes).masked_fill(~mask, SPECIAL_TOKENS.index(PAD))
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.embed(ids) + self.position(positions)[None]
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)


def build_model(
    features: Mapping[str, Any], n_outputs: int, cfg: Mapping[str, Any]
) -> SmilesTransformer:
    """A transformer sized from the feature file's token types and longest SMILES."""
    if "n_token_types" not in features or "n_tokens" not in features:
        raise ValueError("smiles_transformer: the feature file lacks n_token_types / n_tokens; "
                         "use a `type: smiles_tokens` featurizer")  # fmt: skip
    capacity = int(features["n_token_types"]) + len(SPECIAL_TOKENS)
    max_len = int(cfg["max_len"] or math.ceil(1.5 * int(features["n_tokens"])) + 2)
    return SmilesTransformer(capacity, max_len, int(n_outputs), cfg)


def prepare_model(model: SmilesTransformer, train_subset: Sequence, min_count: int) -> None:
    """Build the vocabulary from the train rows' tokens (the only rows allowed to shape it)."""
    token_lists = (train_subset[i]["tokens"] for i in range(len(train_subset)))
    tokenizer = SmilesTokenizer.fit(token_lists, min_count=int(min_count))
    model.set_vocab(tokenizer.vocab)
    log.info("SMILES vocabulary from %d train molecules: %d tokens (specials included)",
             len(train_subset), len(tokenizer))  # fmt: skip


def extra_checkpoint(model: SmilesTransformer) -> dict[str, Any]:
    """The vocabulary as strings, for readers of model.pt (the model itself uses its buffers)."""
    return {"vocab": list(model.vocab), "special_tokens": [PAD, UNK, CLS, EOS]}
