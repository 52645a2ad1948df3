"""Tables for BENCHMARKS.md's hyperparameter search section, from one benchmark workdir.

For whoever re-runs that section. Run with the project venv from the repository root, after the
workdir's studies (results/<dataset>/search/<study>/best.json), its results/summary.csv and,
optionally, chemprop_side_by_side.py's runs (chemprop/<dataset>/seed<N>/metrics.json):

    python scripts/bench/search_summary.py --workdir ../bench_search_freesolv --dataset freesolv

Prints, as Markdown: the test metric (mean ± sd over seeds, and per seed) of each model and of
chemprop; each study's trials complete / pruned / failed, best validation value and parameters,
and its trials' wall times (Snakemake's benchmark files of rule search_trial).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pandas as pd


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def model_rows(workdir: Path, dataset: str, metric: str) -> dict[str, dict[int, float]]:
    """{model: {seed: test metric}} from results/summary.csv and chemprop's metrics.json."""
    rows: dict[str, dict[int, float]] = {}
    summary = workdir / "results" / "summary.csv"
    long = pd.read_csv(summary) if summary.is_file() else pd.DataFrame(
        columns=["dataset", "model", "seed", "split", "metric", "value"])  # fmt: skip
    part = long[(long["dataset"] == dataset) & (long["split"] == "test")]
    part = part[part["metric"] == metric]
    for (model, seed), value in part.groupby(["model", "seed"])["value"].first().items():
        rows.setdefault(str(model), {})[int(seed)] = float(value)
    for path in sorted((workdir / "chemprop" / dataset).glob("seed*/metrics.json")):
        seed = int(path.parent.name.removeprefix("seed"))
        test = json.loads(path.read_text())["test"]["mean"]
        rows.setdefault("chemprop 2.3.1", {})[seed] = float(test[metric])
    return rows


def trial_seconds(
    workdir: Path, dataset: str, study: str, n_trials: int, column: str = "s"
) -> list[float]:
    """Each counted slot's (0 .. n_trials - 1) wall seconds ("s") or CPU seconds ("cpu_time")
    from Snakemake's benchmark file of its job (the last attempt's row)."""
    found = []
    folder = workdir / "results" / "benchmarks" / "search_trial" / dataset
    for slot in range(n_trials):
        path = folder / f"{study}_trial{slot}.tsv"
        if not path.is_file():
            continue
        table = pd.read_csv(path, sep="\t")
        found.append(float(table[column].iloc[-1]))
    return found


def _spread(seconds: list[float]) -> str:
    if not seconds:
        return "—"
    return (f"{statistics.median(seconds):.0f} ({min(seconds):.0f}-{max(seconds):.0f}), "
            f"{sum(seconds):.0f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--metric", default="rmse")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()

    rows = model_rows(workdir, args.dataset, args.metric)
    seeds = sorted({s for per_seed in rows.values() for s in per_seed})
    print(f"| model | test {args.metric.upper()} (mean ± sd) | "
          + " | ".join(f"seed {s}" for s in seeds) + " |")  # fmt: skip
    print("|---|---|" + "---|" * len(seeds))
    for model, per_seed in rows.items():
        cells = [f"{per_seed[s]:.3f}" if s in per_seed else "—" for s in seeds]
        print(f"| {model} | {_mean_sd(list(per_seed.values()))} | " + " | ".join(cells) + " |")

    print()
    print(
        "| study | trials | complete / pruned / failed | failed attempts | best val "
        f"{args.metric} | trial wall s: median (min-max), sum | trial CPU s | best params |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for best_json in sorted((workdir / "results" / args.dataset / "search").glob("*/best.json")):
        best = json.loads(best_json.read_text())
        study = best_json.parent.name
        counted = best["counted"]
        wall = _spread(trial_seconds(workdir, args.dataset, study, best["n_trials"]))
        cpu = _spread(trial_seconds(workdir, args.dataset, study, best["n_trials"], "cpu_time"))
        params = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in (best["best_params"] or {}).items()
        )
        value = "—" if best["best_value"] is None else f"{best['best_value']:.3f}"
        print(f"| {study} ({best['sampler']}, {best['pruner']}) | {best['n_trials']} | "
              f"{counted['complete']} / {counted['pruned']} / {counted['fail']} | "
              f"{best['failed_attempts']} | {value} | {wall} | {cpu} | {params} |")  # fmt: skip


if __name__ == "__main__":
    main()
