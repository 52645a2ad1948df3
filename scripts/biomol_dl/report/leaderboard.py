"""Leaderboard of one dataset: every model x seed, mean +/- sd across seeds, a ranking by the
primary metric on the ranking split (validation by default: the test split is reported beside
it, never used to choose), and a paired comparison of every model with the best one. For
multitask datasets every task's own metrics are kept too (report.json's `per_task`).

For the report_dataset rule and for notebooks. Models come from the metrics files and their
families from the config, so a new model (or family) appears with no change here. Families listed
as baselines (default: rf) are always shown, whatever `top_k` hides.

The comparison pairs seeds: seed N of two models shares the split and the seed, so differences
are taken per seed (model minus best) on the ranking split's primary metric and tested with

  - a paired t-test (scipy.stats.ttest_rel) below 6 pairs: the two-sided Wilcoxon signed-rank
    test cannot reach p < 0.05 with fewer than 6 pairs (its smallest p is 2 / 2**5 = 0.0625 at 5);
  - the Wilcoxon signed-rank test (scipy.stats.wilcoxon) from 6 pairs on (no normality assumed);

unless `paired_test` forces one. Seeds share most of their training data, so they are not
independent samples and these p-values are optimistic (Nadeau & Bengio, 2003): read them beside
the mean difference, not instead of it.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomol_dl.logutil import get
from biomol_dl.metrics import LOWER_IS_BETTER
from biomol_dl.summary import PATH_RE, collect

log = get(__name__)

SPLITS = ("val", "test")
PAIRED_TESTS = ("auto", "t_test", "wilcoxon")
WILCOXON_MIN_PAIRS = 6
TEST_NAMES = {"t_test": "paired t-test", "wilcoxon": "Wilcoxon signed-rank", "none": "none"}


def per_seed_table(
    metrics_files: Sequence[str | Path], families: Mapping[str, str]
) -> pd.DataFrame:
    """Long table `model, family, seed, split, metric, value` for the val and test splits.

    metrics_files: results/<dataset>/evaluate/<model>/seed<N>/metrics.json paths (one dataset).
    """
    long = collect(list(metrics_files))
    datasets = sorted(set(long["dataset"]))
    if len(datasets) > 1:
        raise ValueError(f"metrics files of several datasets given: {', '.join(datasets)}")
    long = long[long["split"].isin(SPLITS)].drop(columns="dataset")
    return _with_families(long, families, ["model", "seed", "split", "metric"])


def calibrated_columns(metrics_files: Sequence[str | Path]) -> pd.DataFrame:
    """One row per model: `test_calibrated_<metric>_mean / _sd` over seeds, the uncertainty
    metrics on test after calibration fitted on validation (metrics.json `test_calibrated`)."""
    long = collect(list(metrics_files))
    long = long[long["split"] == "test_calibrated"]
    long = long.assign(value=pd.to_numeric(long["value"], errors="coerce"))
    if long.empty:
        return pd.DataFrame({"model": pd.Series(dtype=object)})
    agg = long.groupby(["model", "metric"])["value"].agg(mean="mean", sd="std").reset_index()
    table = agg.pivot_table(index="model", columns="metric", values=["mean", "sd"], dropna=False)
    table.columns = [f"test_calibrated_{metric}_{stat}" for stat, metric in table.columns]
    table = table.reset_index()[["model", *sorted(table.columns)]]
    return table.merge(calibration_settings(metrics_files), on="model", how="left")


def calibration_settings(metrics_files: Sequence[str | Path]) -> pd.DataFrame:
    """One row per model: the nominal coverage and the sd estimate its calibration used
    (`test_calibrated_coverage`, `test_calibrated_estimate`: the `uncertainty.estimate`, or
    none where the predictions had no sd), from the first seed's metrics.json that has them."""
    rows: dict[str, dict[str, Any]] = {}
    for path in metrics_files:
        match = PATH_RE.search(Path(path).as_posix())
        settings = (json.loads(Path(path).read_text()).get("test_calibrated") or {}).get("settings")
        if not match or not settings or match["model"] in rows:
            continue
        used = settings.get("estimate_used", "none") != "none"
        rows[match["model"]] = {
            "model": match["model"],
            "test_calibrated_coverage": settings.get("coverage"),
            "test_calibrated_estimate": settings.get("estimate", "auto") if used else "none",
        }
    columns = ["model", "test_calibrated_coverage", "test_calibrated_estimate"]
    return pd.DataFrame(list(rows.values()), columns=columns)


def per_task_table(
    metrics_files: Sequence[str | Path], families: Mapping[str, str]
) -> pd.DataFrame:
    """Long table `model, family, seed, split, task, metric, value`: each task's own metrics.

    For multitask datasets, where the leaderboard's row is the mean over tasks. Same files as
    per_seed_table.
    """
    rows = []
    for path in metrics_files:
        match = PATH_RE.search(Path(path).as_posix())
        if not match:
            raise ValueError(f"{path}: not a results/<dataset>/evaluate/<model>/seed<N>/ path")
        result = json.loads(Path(path).read_text())
        for split in SPLITS:
            for task, values in ((result.get(split) or {}).get("tasks") or {}).items():
                for metric, value in values.items():
                    rows.append({"model": match["model"], "seed": int(match["seed"]),
                                 "split": split, "task": str(task), "metric": metric,
                                 "value": value})  # fmt: skip
    long = pd.DataFrame(rows, columns=["model", "seed", "split", "task", "metric", "value"])
    return _with_families(long, families, ["model", "seed", "split", "task", "metric"])


def check_splits(metrics_files: Sequence[str | Path], split: str) -> None:
    """Fail with one line naming the file when a metrics.json lacks the ranking split."""
    for path in metrics_files:
        result = json.loads(Path(path).read_text())
        if not (result.get(split) or {}).get("mean"):
            have = ", ".join(k for k in result if (result.get(k) or {}).get("mean")) or "none"
            name = "validation" if split == "val" else split
            raise ValueError(
                f"{path}: no {name} ({split}) metrics to rank models by (splits with metrics: "
                f"{have}); the split gave this model no {name} rows, or set report.rank_split"
            )


def _with_families(long: pd.DataFrame, families: Mapping[str, str], order: list[str]):
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long.insert(1, "family", long["model"].map(lambda m: families.get(m, "unknown")))
    return long.sort_values(order, kind="stable").reset_index(drop=True)


def paired_test(
    model_values: Mapping[int, float], best_values: Mapping[int, float], method: str = "auto"
) -> dict[str, Any]:
    """Compare one model with the best on the seeds both have (finite values only).

    Returns n_pairs, mean_diff and sd_diff (model minus best), test (t_test | wilcoxon | none),
    test_name, p_value (NaN when no test ran) and a short note.
    """
    if method not in PAIRED_TESTS:
        raise ValueError(f"paired_test {method!r}: one of {', '.join(PAIRED_TESTS)}")
    seeds = sorted(
        s
        for s in set(model_values) & set(best_values)
        if math.isfinite(model_values[s]) and math.isfinite(best_values[s])
    )
    a = np.array([model_values[s] for s in seeds], dtype=float)
    b = np.array([best_values[s] for s in seeds], dtype=float)
    d = a - b
    n = len(seeds)
    out: dict[str, Any] = {
        "n_pairs": n,
        "mean_diff": float(d.mean()) if n else math.nan,
        "sd_diff": float(d.std(ddof=1)) if n > 1 else math.nan,
        "test": "none",
        "p_value": math.nan,
        "note": "",
    }
    if n < 2:
        out["note"] = "fewer than 2 paired seeds: no test"
        out["test_name"] = TEST_NAMES["none"]
        return out
    test = method if method != "auto" else ("wilcoxon" if n >= WILCOXON_MIN_PAIRS else "t_test")
    out["test"], out["test_name"] = test, TEST_NAMES[test]
    if test == "wilcoxon" and n < WILCOXON_MIN_PAIRS:
        out["note"] = f"Wilcoxon with {n} < {WILCOXON_MIN_PAIRS} pairs cannot reach p < 0.05"
    if np.all(d == 0):
        out["p_value"] = 1.0  # identical scores on every seed; scipy would return NaN
        return out
    from scipy import stats

    with warnings.catch_warnings():  # constant differences: scipy warns and returns inf / 0
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "t_test":
            p = stats.ttest_rel(a, b).pvalue
        else:
            p = stats.wilcoxon(d).pvalue
    out["p_value"] = float(p) if p is not None and np.isfinite(p) else math.nan
    return out


def _metric_order(metrics: set[str], primary: str) -> list[str]:
    return [primary] * (primary in metrics) + sorted(m for m in metrics if m != primary)


def build_leaderboard(
    per_seed: pd.DataFrame,
    *,
    primary_metric: str,
    rank_split: str = "val",
    baseline_families: Sequence[str] = ("rf",),
    top_k: int | None = None,
    paired_test_method: str = "auto",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per model, best first, and a dict describing the ranking.

    Row columns: rank, model, family, baseline, shown, n_seeds, <split>_<metric>_mean / _sd for
    val and test, and vs_best_{n_pairs, mean_diff, sd_diff, test, p_value, note}. `shown` is False
    for models beyond `top_k` that are not baselines (the HTML leaves them out; the CSV keeps all).
    """
    if rank_split not in SPLITS:
        raise ValueError(f"rank_split {rank_split!r}: one of {', '.join(SPLITS)}")
    if per_seed.empty:
        raise ValueError("no metrics to rank: the metrics files hold no val or test split")
    available = set(per_seed.loc[per_seed["split"] == rank_split, "metric"])
    if primary_metric not in available:
        raise ValueError(
            f"primary metric {primary_metric!r} is not among the {rank_split} metrics "
            f"({', '.join(sorted(available))}); set report.primary_metric for this task"
        )
    metrics = _metric_order(set(per_seed["metric"]), primary_metric)
    rows = []
    for model, part in per_seed.groupby("model", sort=True):
        row: dict[str, Any] = {
            "model": model,
            "family": part["family"].iloc[0],
            "n_seeds": int(part["seed"].nunique()),
        }
        for split in SPLITS:
            for metric in metrics:
                values = part.loc[(part["split"] == split) & (part["metric"] == metric), "value"]
                values = values.dropna()
                row[f"{split}_{metric}_mean"] = float(values.mean()) if len(values) else math.nan
                row[f"{split}_{metric}_sd"] = (
                    float(values.std(ddof=1)) if len(values) > 1 else math.nan
                )
        rows.append(row)
    table = pd.DataFrame(rows)

    key = f"{rank_split}_{primary_metric}_mean"
    higher = primary_metric not in LOWER_IS_BETTER
    # Undefined scores (NaN) rank last; equal scores keep alphabetical order.
    score = table[key].where(table[key].notna(), -math.inf if higher else math.inf)
    table = table.assign(_score=score).sort_values(
        ["_score", "model"], ascending=[not higher, True], kind="stable"
    )
    table = table.drop(columns="_score").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table.insert(3, "baseline", table["family"].isin(list(baseline_families)))
    shown = table["baseline"] | (table["rank"] <= (top_k if top_k else len(table)))
    table.insert(4, "shown", shown)

    best = table["model"].iloc[0] if table[key].notna().iloc[0] else None
    primary = per_seed[(per_seed["split"] == rank_split) & (per_seed["metric"] == primary_metric)]
    by_model = {
        m: dict(zip(part["seed"].astype(int), part["value"].astype(float), strict=True))
        for m, part in primary.groupby("model")
    }
    comparisons = []
    for model in table["model"]:
        if best is None or model == best:
            cmp = {"n_pairs": 0, "mean_diff": math.nan, "sd_diff": math.nan, "test": "none",
                   "test_name": "none", "p_value": math.nan,
                   "note": "reference (best)" if model == best else "no best model"}  # fmt: skip
        else:
            cmp = paired_test(by_model.get(model, {}), by_model[best], paired_test_method)
        comparisons.append({f"vs_best_{k}": v for k, v in cmp.items()})
    table = pd.concat([table, pd.DataFrame(comparisons)], axis=1)
    tests = sorted({c["vs_best_test"] for c in comparisons} - {"none"})
    info = {
        "primary_metric": primary_metric,
        "rank_split": rank_split,
        "higher_is_better": higher,
        "best_model": best,
        "metrics": metrics,
        "baseline_families": list(baseline_families),
        "top_k": top_k,
        "paired_test": paired_test_method,
        "tests_used": [TEST_NAMES[t] for t in tests],
        "comparison_note": comparison_note(tests, paired_test_method, rank_split, primary_metric),
    }
    return table, info


def comparison_note(tests: Sequence[str], method: str, split: str, metric: str) -> str:
    """One paragraph for readers: what was compared, with which test, and why."""
    if not tests:
        return (
            f"Paired comparison with the best model on {split} {metric}: not run (each model "
            "needs at least 2 seeds in common with the best one)."
        )
    names = " and ".join(TEST_NAMES[t] for t in tests)
    why = ""
    if method == "auto":
        why = (
            f" The test is chosen per comparison: a paired t-test below {WILCOXON_MIN_PAIRS} "
            f"paired seeds, where a two-sided Wilcoxon signed-rank test cannot reach p < 0.05, "
            f"and the Wilcoxon signed-rank test from {WILCOXON_MIN_PAIRS} on."
        )
    return (
        f"Each model is compared with the best one on {split} {metric}, paired by seed (same "
        f"split, same seed): mean difference (model minus best) and p-value of the {names}.{why} "
        "Seeds share most training data, so p-values are optimistic; no multiple-comparison "
        "correction is applied."
    )


def per_task_summary(per_task: pd.DataFrame) -> list[dict[str, Any]]:
    """Mean and sd over seeds of every task's metrics, per model and split (multitask datasets).

    Records {model, task, split, metric, mean, sd, n_seeds}; tasks in the metrics files' order.
    """
    if per_task.empty:
        return []
    values = pd.to_numeric(per_task["value"], errors="coerce")
    agg = (
        per_task.assign(value=values)
        .groupby(["model", "task", "split", "metric"], sort=False)["value"]
        .agg(
            mean="mean",
            sd=lambda v: v.std(ddof=1) if v.notna().sum() > 1 else math.nan,
            n_seeds="count",
        )  # fmt: skip
        .reset_index()
    )
    return _records(agg)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    return value


def run_dataset_report(
    *,
    dataset: str,
    metrics_files: Sequence[str | Path],
    validate_summary: str | Path,
    split_infos: Sequence[str | Path],
    models: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    out_leaderboard: str | Path,
    out_per_seed: str | Path,
    out_json: str | Path,
    out_png: str | Path,
    out_svg: str | Path,
) -> dict[str, Any]:
    """The report_dataset rule: leaderboard CSVs, the leaderboard chart and report.json.

    models: {model: {"family": ..., "seeds": [...]}} as configured for this dataset.
    settings: {"primary_metric", "rank_split", "baseline_families", "top_k", "paired_test"}.
    report.json holds everything the HTML report shows for the dataset: the data summary, the
    leaderboard rows, the per-seed rows, the ranking info and the MLflow run ids.
    """
    from biomol_dl.report import data, plots, runs

    families = {m: spec["family"] for m, spec in models.items()}
    check_splits(metrics_files, settings.get("rank_split", "val"))
    per_seed = per_seed_table(metrics_files, families)
    per_task = per_task_table(metrics_files, families)
    table, info = build_leaderboard(
        per_seed,
        primary_metric=settings["primary_metric"],
        rank_split=settings.get("rank_split", "val"),
        baseline_families=settings.get("baseline_families", ["rf"]),
        top_k=settings.get("top_k"),
        paired_test_method=settings.get("paired_test", "auto"),
    )
    # what each model started from (transfer learning), beside its family
    table["init"] = table["model"].map(lambda m: (models.get(m) or {}).get("init") or "")
    # a <name>__tuned model: the search its params came from (biomol_dl.search)
    table["tuned"] = table["model"].map(lambda m: (models.get(m) or {}).get("tuned") or "")
    table = table.merge(calibrated_columns(metrics_files), on="model", how="left")
    for path in (out_leaderboard, out_per_seed, out_json, out_png, out_svg):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_leaderboard, index=False, float_format="%.6g")
    per_seed.to_csv(out_per_seed, index=False, float_format="%.6g")
    plots.save(plots.leaderboard_figure(per_seed, table, info, dataset=dataset), out_png, out_svg)

    summary = data.dataset_summary(validate_summary, split_infos)
    run_ids = runs.model_run_ids(dataset, models)
    report = {
        "dataset": dataset,
        "task": summary["task"],
        "kind": summary["kind"],
        "data": summary,
        "ranking": info,
        "leaderboard": _records(table),
        "per_seed": _records(per_seed),
        "per_task": per_task_summary(per_task) if per_task["task"].nunique() > 1 else [],
        "run_ids": run_ids,
        "leaderboard_png": Path(out_png).name,
        "leaderboard_svg": Path(out_svg).name,
    }
    Path(out_json).write_text(json.dumps(_jsonable(report), indent=1) + "\n")
    top = table.iloc[0]
    key = f"{info['rank_split']}_{info['primary_metric']}_mean"
    log.info(
        "%s: %d models ranked by %s %s; best %s (%.4f)",
        dataset,
        len(table),
        info["rank_split"],
        info["primary_metric"],
        top["model"],
        top[key],
    )
    return report
