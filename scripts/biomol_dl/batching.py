"""Batches of variable-length token sequences, for the token families (cnn, seq_transformer,
plm_lora) and for `plm.embed_sequences`.

Examples are index-aligned with the clean table (`TokenExamples`); `plan_batches` groups them by
length (seeded, so a resumed run repeats the order), `collate_tokens` pads a batch with
`torch.nn.utils.rnn.pad_sequence` and adds the padding mask; `token_loader` puts both together.
This module imports neither the featurizers nor the pretrained-model code, so both can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def pad_ids(rows: Sequence[Any], pad_id: int, dtype: Any = None) -> Any:
    """[N, W] tensor of 1-D id rows (tensors or int lists) padded at the end with pad_id, W the
    longest row; rows given as lists become `dtype` (default torch.long). [0, 0] for no rows."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    dtype = torch.long if dtype is None else dtype
    tensors = [r if isinstance(r, torch.Tensor) else torch.tensor(r, dtype=dtype) for r in rows]
    if not tensors:
        return torch.full((0, 0), pad_id, dtype=dtype)
    return pad_sequence(tensors, batch_first=True, padding_value=pad_id)


def padding_mask(lengths: Sequence[int] | Any, width: int) -> Any:
    """[N, width] bool, True on the first lengths[i] positions of row i."""
    import torch

    return torch.arange(width)[None, :] < torch.as_tensor(lengths)[:, None]


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

    ids = pad_ids([ex[ids_key].long() for ex in examples], pad_id)
    mask = padding_mask([len(ex[ids_key]) for ex in examples], ids.shape[1])
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
