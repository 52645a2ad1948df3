"""The featurize rule: clean table -> one cached feature file per dataset and featurizer.

Memory. The cache holds every row's features and ids, and training loads it whole, so the rule's
own output bounds what it needs; what it avoids is holding more than that. The clean table is
read for its `id` and `input` columns only (not the labels). The features are built
`chunk_rows` inputs at a time (CHUNK_ROWS) where a featurizer's output is a table of rows that
chunks can fill in place (ROW_CHUNKED: Morgan bits or counts, RDKit 2D descriptors, whose
float64 values would otherwise be held for the whole table beside the float32 cache): the cache
tensor is allocated once and each chunk's rows are copied into it, so the peak is the cache plus
one chunk, and the file is the one a single pass writes, byte for byte (tests/test_large_inputs.py
builds with tiny chunks). Other featurizers build in one call; each is bounded by its output
already: one-hot, k-mer and token featurizers fill one preallocated array, the graph featurizer
builds in chunks of its own (`chunk_size`) and joins them.

Time. A protein LM's forward passes (`plm_embedding`, the `cache_layer` of `plm_tokens`) can take
hours on a CPU. `runtime` (the job's runtime in minutes, a --set-resources override included;
None outside a workflow job) is handed to them through `biomol_dl.plm.time_limit`: after their
first, longest batch they estimate the whole pass and, when that exceeds the runtime, fail at
once with one line naming the job, the estimate and what to change.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from biomol_dl import plm
from biomol_dl.features import build_featurizer
from biomol_dl.io import read_table
from biomol_dl.logutil import get

log = get(__name__)

CHUNK_ROWS = 20_000
# featurizer type -> the keys of its output that are [n_inputs, ...] tensors; every other key
# (feature names, widths) is the same for every chunk
ROW_CHUNKED = {"morgan": ("X", "X_bits"), "rdkit2d": ("X",)}


def run_featurize(
    clean_csv: str | Path,
    spec: dict,
    out_pt: str | Path,
    threads: int = 1,
    chunk_rows: int = CHUNK_ROWS,
    runtime: float | None = None,
    name: str | None = None,
) -> dict:
    """Featurize the clean table into `out_pt`; stats for the job's run. runtime: the job's time
    limit in minutes, which a protein LM's pass is checked against (see the module docstring);
    name: the job in that check's message (default: `out_pt`)."""
    import torch

    with plm.time_limit(runtime, name or str(out_pt)):
        clean = read_table(clean_csv, columns=("id", "input"))
        featurizer = build_featurizer(spec)
        start = time.perf_counter()
        features = build_features(
            featurizer, spec.get("type"), clean["input"].tolist(), threads, chunk_rows
        )
        seconds = time.perf_counter() - start
    features["ids"] = clean["id"].tolist()
    features["spec"] = dict(spec)
    torch.save(features, out_pt)
    size = Path(out_pt).stat().st_size
    stats = {"n": len(clean), "seconds": seconds, "per_second": len(clean) / max(seconds, 1e-9),
             "cache_mb": size / 1e6}  # fmt: skip
    log.info(
        "%d inputs featurized in %.1f s (%.0f/s) -> %s (%.1f MB)",
        len(clean), seconds, stats["per_second"], out_pt, size / 1e6,
    )  # fmt: skip
    return {
        **stats,
        **{k: v for k, v in features.items() if k.startswith("n_") and isinstance(v, int)},
    }


def build_features(
    featurizer: Any, kind: str | None, inputs: list[str], threads: int, chunk_rows: int
) -> dict[str, Any]:
    """`featurizer.featurize_table(inputs)`, `chunk_rows` inputs at a time for the featurizers
    in ROW_CHUNKED (the same tensors as one call: a chunk of a wider integer type, a Morgan
    count above 255, widens the whole table as one call would), else in one call."""
    import torch

    step = max(1, int(chunk_rows))
    rows = ROW_CHUNKED.get(kind or "")
    if rows is None or len(inputs) <= step:
        return featurizer.featurize_table(inputs, threads=threads)
    n = len(inputs)
    out: dict[str, Any] = {}
    for lo in range(0, n, step):
        part = featurizer.featurize_table(inputs[lo : lo + step], threads=threads)
        if not out:  # the keys in the featurizer's order, the row tensors allocated for all
            out = {
                k: torch.empty((n, *v.shape[1:]), dtype=v.dtype) if k in rows else v
                for k, v in part.items()
            }
        for key in rows:
            if key not in part:
                continue
            wider = torch.promote_types(out[key].dtype, part[key].dtype)
            if wider != out[key].dtype:
                out[key] = out[key].to(wider)
            out[key][lo : lo + len(part[key])] = part[key]
        log.info("featurized %d/%d inputs in chunks of %d", min(n, lo + step), n, step)
    return out
