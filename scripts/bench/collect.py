"""Benchmark tables (markdown) from a benchmark workdir: test metrics and wall time, mean +/- sd.

For BENCHMARKS.md. Run with the project venv after run_benchmarks.py:

    python scripts/bench/collect.py --workdir ../bench --dataset esol --metrics rmse mae r2 spearman

Reads results/<dataset>/evaluate/<model>/seed<N>/metrics.json (ours) and
chemprop/<dataset>/seed<N>/metrics.json (chemprop, scored by the same biomol_dl code), the wall
time and peak RSS of every call from timings.jsonl (ours: one Snakemake call per model and seed,
train + evaluate jobs; chemprop: its CLI under /usr/bin/time), and the training throughput
(molecules/s over the epochs run, validation pass included) from history.csv / epochs.json, and
the same at the median epoch (train rows / median epoch seconds), which a busy machine disturbs
least.
sd is the sample standard deviation (n - 1) over seeds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import pandas as pd


def mean_sd(values: list[float], digits: int = 3) -> str:
    values = [float(v) for v in values if v is not None and not pd.isna(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def our_throughput(workdir: Path, dataset: str, model: str, seed: int) -> tuple:
    """(molecules/s over all epochs, median epoch seconds) from history.csv; Nones for a random
    forest, whose one history row is its fit time, not an epoch."""
    history = workdir / "results" / dataset / "train" / model / f"seed{seed}" / "history.csv"
    split = workdir / "results" / dataset / "split" / f"seed{seed}.csv"
    if not history.exists():
        return None, None
    hist = pd.read_csv(history)
    if "train_loss" not in hist or hist["seconds"].sum() == 0:
        return None, None
    n_train = int((pd.read_csv(split)["split"] == "train").sum())
    return n_train * len(hist) / float(hist["seconds"].sum()), float(hist["seconds"].median())


def train_job_seconds(workdir: Path, dataset: str, model: str, seed: int) -> float | None:
    """The training job's own wall time ("done: ... N s wall" in its log): from the job's start
    to model.pt, so without Snakemake's scheduling, the evaluate job and featurization (cached
    once per dataset)."""
    for log in (workdir / "logs").glob(f"train_*/{dataset}/{model}_seed{seed}.log"):
        found = re.findall(r"done: .*?([\d.]+) s wall", log.read_text())
        if found:
            return float(found[-1])
    return None


def collect(workdir: Path, dataset: str, metrics: list[str]) -> pd.DataFrame:
    timings: dict[tuple, dict] = {}
    tfile = workdir / "timings.jsonl"
    if tfile.exists():
        for line in tfile.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("dataset") == dataset and "model" in rec:
                timings[(rec["model"], rec["seed"])] = rec  # the last call wins
    rows = []
    evaluate = workdir / "results" / dataset / "evaluate"
    runs = [(p.parent.parent.name, p) for p in sorted(evaluate.glob("*/seed*/metrics.json"))]
    runs += [
        ("chemprop", p) for p in sorted((workdir / "chemprop" / dataset).glob("seed*/metrics.json"))
    ]
    for model, path in runs:
        seed = int(path.parent.name.removeprefix("seed"))
        test = json.loads(path.read_text())["test"]["mean"]
        row = {"model": model, "seed": seed, **{m: test.get(m) for m in metrics}}
        if model == "chemprop":
            timing = json.loads((path.parent / "timing.json").read_text())
            epoch_s = [e["seconds"] for e in json.loads((path.parent / "epochs.json").read_text())]
            row.update(wall_s=timing["wall_seconds"], peak_rss_mb=timing["peak_rss_mb"],
                       epochs=timing["epochs_run"], train_mol_per_s=timing["examples_per_second"],
                       epoch_s_median=statistics.median(epoch_s))  # fmt: skip
        else:
            rec = timings.get((model, seed), {})
            hist = path.parents[3] / "train" / model / path.parent.name / "history.csv"
            epochs = len(pd.read_csv(hist)) if hist.exists() else None
            rate, epoch_s = our_throughput(workdir, dataset, model, seed)
            row["train_job_s"] = train_job_seconds(workdir, dataset, model, seed)
            row.update(wall_s=rec.get("wall_seconds"), peak_rss_mb=rec.get("peak_rss_mb"),
                       epochs=epochs, train_mol_per_s=rate, epoch_s_median=epoch_s)  # fmt: skip
        split = workdir / "results" / dataset / "split" / f"seed{seed}.csv"
        n_train = int((pd.read_csv(split)["split"] == "train").sum())
        median = row.get("epoch_s_median")
        row["mol_per_s_median_epoch"] = n_train / median if median else None
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame, metrics: list[str]) -> str:
    head = ["model", "seeds", *[f"test {m}" for m in metrics], "wall s / run", "train job s", "peak RSS MB",
            "epochs run", "train mol/s", "median epoch s", "mol/s at median epoch"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, part in df.groupby("model", sort=False):
        cells = [model, str(len(part))]
        cells += [mean_sd(part[m].tolist()) for m in metrics]
        cells += [mean_sd(part["wall_s"].tolist(), 1), mean_sd(part["train_job_s"].tolist(), 1)]
        cells += [mean_sd(part["peak_rss_mb"].tolist(), 0)]
        cells += [mean_sd(part["epochs"].tolist(), 1), mean_sd(part["train_mol_per_s"].tolist(), 0)]
        cells += [mean_sd(part["epoch_s_median"].tolist(), 2)]
        cells += [mean_sd(part["mol_per_s_median_epoch"].tolist(), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--seeds-csv", type=Path, help="also write the per-seed rows here")
    args = parser.parse_args(argv)
    df = collect(args.workdir, args.dataset, args.metrics)
    if args.seeds_csv:
        df.to_csv(args.seeds_csv, index=False)
    print(markdown(df, args.metrics))


if __name__ == "__main__":
    main()
