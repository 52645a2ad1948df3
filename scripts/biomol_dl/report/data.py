"""The data summary of a dataset for the report: what validation kept and why rows went, the
label distribution, and the split sizes of every seed.

Reads results/<dataset>/validate/summary.json and results/<dataset>/split/seed<N>.json, the
files the validate and split rules already write; nothing is recomputed here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUMMARY_KEYS = (
    "rows_in",
    "kept",
    "rejected",
    "by_reason",
    "kind",
    "task",
    "input_column",
    "label_columns",
    "classes",
    "positive_label",
    "label_stats",
    "input_stats",
)


def _load(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the JSON summary ({err})") from None


def dataset_summary(validate_summary: str | Path, split_infos: Sequence[str | Path]) -> dict:
    """Validation counts, label distribution and split sizes, as plain JSON-able values.

    Returns the validate summary's SUMMARY_KEYS plus `duplicates` (policy, rows merged,
    conflicts), `source` (file name and origin) and `splits`: one entry per seed with
    strategy, seed_dependent and the train / val / test sizes.
    """
    summary = _load(validate_summary)
    missing = [k for k in ("rows_in", "kept", "rejected", "task") if k not in summary]
    if missing:
        raise ValueError(f"{validate_summary}: not a validate summary (no {', '.join(missing)})")
    out = {k: summary.get(k) for k in SUMMARY_KEYS}
    out["by_reason"] = dict(sorted((summary.get("by_reason") or {}).items(), key=lambda kv: -kv[1]))
    dup = summary.get("duplicates") or {}
    out["duplicates"] = {k: dup.get(k) for k in ("policy", "rows_merged", "conflicts")}
    source = summary.get("source") or {}
    out["source"] = {k: source.get(k) for k in ("origin", "type", "sha256") if source.get(k)}
    splits = []
    for path in split_infos:
        info = _load(path)
        sizes = info.get("sizes") or {}
        splits.append(
            {
                "seed": info.get("seed"),
                "strategy": info.get("strategy"),
                "seed_dependent": info.get("seed_dependent"),
                **{name: sizes.get(name) for name in ("train", "val", "test")},
            }
        )
    out["splits"] = sorted(splits, key=lambda s: (s["seed"] is None, s["seed"]))
    return out
