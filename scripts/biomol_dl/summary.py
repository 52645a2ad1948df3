"""The summary rule: every metrics.json -> one long table and one mean +/- sd table.

`summary.csv` (dataset, model, seed, split, metric, value) is what the report and any notebook
start from; `summary_wide.csv` is the at-a-glance view: one row per dataset x model x split, each
metric as mean and sd across seeds, models ordered by the dataset's primary metric on the
validation split (as the report chooses models). The `test_calibrated` "split" holds the
uncertainty metrics on test after calibration fitted on validation (biomol_dl.evaluate).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from biomol_dl.metrics import LOWER_IS_BETTER

PATH_RE = re.compile(r"results/(?P<dataset>[^/]+)/evaluate/(?P<model>[^/]+)/seed(?P<seed>\d+)/")


def collect(metrics_files: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in metrics_files:
        match = PATH_RE.search(Path(path).as_posix())
        if not match:
            raise ValueError(f"{path}: not a results/<dataset>/evaluate/<model>/seed<N>/ path")
        result = json.loads(Path(path).read_text())
        for split, block in result.items():
            for metric, value in block["mean"].items():
                rows.append({**match.groupdict(), "split": split, "metric": metric, "value": value})
    df = pd.DataFrame(rows, columns=["dataset", "model", "seed", "split", "metric", "value"])
    df["seed"] = df["seed"].astype(int)
    return df.sort_values(["dataset", "model", "seed", "split", "metric"], kind="stable")


def wide(
    long: pd.DataFrame, tasks: dict[str, str], primary: dict[str, str], rank_split: str = "val"
) -> pd.DataFrame:
    """Mean and sd per dataset x model x split; models ordered by `rank_split`'s primary metric
    (validation: the test split is reported, never used to order), test where a dataset has
    no validation metrics."""
    agg = (
        long.groupby(["dataset", "model", "split", "metric"])["value"]
        .agg(mean="mean", sd="std", n_seeds="count")
        .reset_index()
    )
    table = agg.pivot_table(
        index=["dataset", "model", "split"], columns="metric", values=["mean", "sd"]
    )
    table.columns = [f"{metric}_{stat}" for stat, metric in table.columns]
    table = table.reset_index()
    seeds = long.groupby(["dataset", "model"])["seed"].nunique().rename("n_seeds").reset_index()
    table = table.merge(seeds, on=["dataset", "model"])
    ordered = []
    for dataset, part in table.groupby("dataset", sort=True):
        metric = primary.get(tasks.get(dataset, ""), "")
        key = f"{metric}_mean"
        if key in part:
            ascending = metric in LOWER_IS_BETTER
            split = rank_split if (part["split"] == rank_split).any() else "test"
            ranked = part[part["split"] == split].sort_values(key, ascending=ascending)["model"]
            order = {m: i for i, m in enumerate(ranked)}
            part = part.assign(_o=part["model"].map(order)).sort_values(["_o", "split"])
            part = part.drop(columns="_o").assign(primary_metric=metric)
        ordered.append(part)
    cols = ["dataset", "model", "split", "n_seeds", "primary_metric"]
    out = pd.concat(ordered, ignore_index=True) if ordered else table
    return out[[c for c in cols if c in out] + sorted(c for c in out if c not in cols)]


def run_summary(metrics_files, tasks, primary, out_long, out_wide) -> pd.DataFrame:
    long = collect(metrics_files)
    long.to_csv(out_long, index=False)
    table = wide(long, tasks, primary)
    table.to_csv(out_wide, index=False, float_format="%.4f")
    return table
