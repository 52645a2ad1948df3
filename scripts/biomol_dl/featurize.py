"""The featurize rule: clean table -> one cached feature file per dataset and featurizer."""

from __future__ import annotations

import time
from pathlib import Path

from biomol_dl.features import build_featurizer
from biomol_dl.io import read_table
from biomol_dl.logutil import get

log = get(__name__)


def run_featurize(clean_csv: str | Path, spec: dict, out_pt: str | Path, threads: int = 1) -> dict:
    import torch

    clean = read_table(clean_csv)
    featurizer = build_featurizer(spec)
    start = time.perf_counter()
    features = featurizer.featurize_table(clean["input"].tolist(), threads=threads)
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
