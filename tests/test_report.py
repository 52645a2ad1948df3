"""The evaluation report: leaderboard statistics, plots per task, the HTML page (opened in headless
Chromium), run ids through tracking, and `snakemake --report` on the tiny config."""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import queue
import re
import shlex
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, snakemake

from biomol_dl.report import html, leaderboard, plots, runs

ARTIFACTS = ROOT / "test-artifacts"


# ----------------------------------------------------------------------------- synthetic inputs


def write_metrics(root: Path, dataset: str, model: str, seed: int, values: dict) -> Path:
    """metrics.json as the evaluate rule writes it; values: {split: {metric: value}}."""
    path = root / "results" / dataset / "evaluate" / model / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        split: {"n": 10, "tasks": {"y": dict(m)}, "mean": dict(m)} for split, m in values.items()
    }
    path.write_text(json.dumps(blob))
    return path


def grid_metrics(root: Path, scores: dict[str, list[float]], metric="rmse", dataset="ds"):
    files = []
    for model, per_seed in scores.items():
        for seed, value in enumerate(per_seed):
            values = {s: {metric: value + (0.1 if s == "val" else 0.0), "mae": value / 2}
                      for s in ("train", "val", "test")}  # fmt: skip
            files.append(write_metrics(root, dataset, model, seed, values))
    return files


# ----------------------------------------------------------------------------- leaderboard


def test_paired_test_picks_t_below_six_pairs_and_wilcoxon_from_six():
    from scipy import stats

    a = {0: 0.50, 1: 0.61, 2: 0.55}
    b = {0: 0.40, 1: 0.45, 2: 0.52}
    out = leaderboard.paired_test(a, b)
    assert out["test"] == "t_test" and out["n_pairs"] == 3
    assert out["p_value"] == pytest.approx(
        stats.ttest_rel([0.5, 0.61, 0.55], [0.4, 0.45, 0.52]).pvalue
    )
    assert out["mean_diff"] == pytest.approx(np.mean([0.1, 0.16, 0.03]))

    rng = np.random.default_rng(0)
    best = {s: float(v) for s, v in enumerate(rng.normal(0.5, 0.05, 8))}
    worse = {s: v + 0.05 + 0.01 * s for s, v in best.items()}
    out = leaderboard.paired_test(worse, best)
    assert out["test"] == "wilcoxon" and out["n_pairs"] == 8
    assert out["p_value"] == pytest.approx(
        stats.wilcoxon([0.05 + 0.01 * s for s in range(8)]).pvalue
    )
    assert out["p_value"] < 0.05

    forced = leaderboard.paired_test(a, b, "wilcoxon")
    assert forced["test"] == "wilcoxon" and "cannot reach" in forced["note"]
    assert leaderboard.paired_test({0: 1.0}, {0: 2.0})["test"] == "none"
    assert leaderboard.paired_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})["p_value"] == 1.0
    # seeds missing on one side or undefined (NaN) are not paired
    out = leaderboard.paired_test({0: 1.0, 1: math.nan, 2: 3.0, 3: 4.0}, {0: 0.5, 2: 2.0, 3: 3.0})
    assert out["n_pairs"] == 3


def test_leaderboard_ranks_by_direction_and_aggregates_over_seeds(tmp_path):
    scores = {"rf_fp": [0.80, 0.85, 0.90], "gnn_new": [0.60, 0.70, 0.65], "mlp_fp": [0.7, 0.9, 0.8]}
    families = {"rf_fp": "rf", "gnn_new": "gnn", "mlp_fp": "mlp"}
    per_seed = leaderboard.per_seed_table(grid_metrics(tmp_path, scores), families)
    assert set(per_seed["split"]) == {"val", "test"}  # train is not part of the leaderboard

    table, info = leaderboard.build_leaderboard(per_seed, primary_metric="rmse")
    assert list(table["model"]) == ["gnn_new", "mlp_fp", "rf_fp"]  # lower rmse is better
    assert info["best_model"] == "gnn_new" and not info["higher_is_better"]
    rf = table.set_index("model").loc["rf_fp"]
    assert rf["test_rmse_mean"] == pytest.approx(np.mean(scores["rf_fp"]))
    assert rf["test_rmse_sd"] == pytest.approx(np.std(scores["rf_fp"], ddof=1))
    assert rf["val_rmse_mean"] == pytest.approx(np.mean(scores["rf_fp"]) + 0.1)
    assert rf["vs_best_test"] == "t_test" and rf["vs_best_n_pairs"] == 3
    assert rf["vs_best_mean_diff"] == pytest.approx(np.mean(scores["rf_fp"]) - 0.65)
    assert table.set_index("model").loc["gnn_new", "vs_best_note"] == "reference (best)"

    # higher is better for roc_auc; ranking on val instead of test
    table, _ = leaderboard.build_leaderboard(
        per_seed.replace({"metric": {"rmse": "roc_auc"}}),
        primary_metric="roc_auc",
        rank_split="val",
    )
    assert list(table["model"]) == ["rf_fp", "mlp_fp", "gnn_new"]

    # top_k hides models but never the baseline family
    table, _ = leaderboard.build_leaderboard(per_seed, primary_metric="rmse", top_k=1)
    assert dict(zip(table["model"], table["shown"], strict=True)) == {
        "gnn_new": True, "mlp_fp": False, "rf_fp": True,
    }  # fmt: skip
    with pytest.raises(ValueError, match="primary metric 'roc_auc'"):
        leaderboard.build_leaderboard(per_seed, primary_metric="roc_auc")


def test_undefined_scores_rank_last(tmp_path):
    files = grid_metrics(tmp_path, {"a": [0.7], "b": [0.9]}, metric="roc_auc")
    files.append(write_metrics(tmp_path, "ds", "c", 0, {"test": {"roc_auc": None}, "val": {}}))
    per_seed = leaderboard.per_seed_table(files, {})
    table, _ = leaderboard.build_leaderboard(per_seed, primary_metric="roc_auc")
    assert list(table["model"]) == ["b", "a", "c"]
    assert table["family"].tolist() == ["unknown"] * 3


# ----------------------------------------------------------------------------- plots


def model_files(root: Path, task: str, kind: str, n_seeds: int = 2, n: int = 40, epochs: int = 4,
                n_tasks: int = 3, classes: list[str] | None = None):  # fmt: skip
    """predictions / history / metrics for n_seeds seeds, clean.csv and summary.json."""
    rng = np.random.default_rng(1)
    ids = [f"m{i}" for i in range(n)]
    inputs = ["C" * (2 + i % 9) + "O" for i in range(n)] if kind == "smiles" else [
        "ACDEFGHIK"[: 3 + i % 7] * 2 for i in range(n)
    ]  # fmt: skip
    split = np.array(["train", "val", "test", "test"] * (n // 4))
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids, "input": inputs, "row": range(1, n + 1)}).to_csv(
        root / "clean.csv", index=False
    )
    if task == "multiclass":
        classes = classes or ["low", "mid", "high"]
    k = len(classes or [])
    (root / "summary.json").write_text(json.dumps({"classes": classes}))
    tasks = [f"t{i + 1}" for i in range(n_tasks)] if task == "multitask_binary" else ["y"]
    files = {"predictions": {}, "histories": {}, "metrics": {}}
    for seed in range(n_seeds):
        frames = []
        for name in tasks:
            if task == "regression":
                y = rng.normal(size=n)
                frame = pd.DataFrame({"y_true": y, "y_pred": y + rng.normal(0, 0.3, n)})
            elif task == "multiclass":
                y = rng.integers(0, k, n)
                p = rng.dirichlet(np.ones(k), n)
                frame = pd.DataFrame({"y_true": y, "y_pred": p.argmax(1)})
                for c in range(k):
                    frame[f"p_{c}"] = p[:, c]
            else:
                y = rng.integers(0, 2, n).astype(float)
                frame = pd.DataFrame(
                    {"y_true": y, "y_pred": np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)}
                )
                if name == "t2":
                    frame.loc[::5, "y_true"] = np.nan  # missing multitask labels
            frame.insert(0, "task", name)
            frame.insert(0, "split", split)
            frame.insert(0, "id", ids)
            frames.append(frame)
        seed_dir = root / f"seed{seed}"
        seed_dir.mkdir(exist_ok=True)
        pd.concat(frames).to_csv(seed_dir / "predictions.csv", index=False)
        history = pd.DataFrame(
            {"epoch": range(1, epochs + 1), "train_loss": np.linspace(1, 0.5, epochs),
             "val_loss": np.linspace(1.1, 0.8, epochs), "val_metric": np.linspace(0.5, 0.7, epochs)}
        ) if epochs else pd.DataFrame({"epoch": [0], "seconds": [0.1]})  # fmt: skip
        history.to_csv(seed_dir / "history.csv", index=False)
        metric = {"test": {"mean": {"score": [0.5, 0.9, 0.7][seed % 3]}}}
        (seed_dir / "metrics.json").write_text(json.dumps(metric))
        files["predictions"][seed] = seed_dir / "predictions.csv"
        files["histories"][seed] = seed_dir / "history.csv"
        files["metrics"][seed] = seed_dir / "metrics.json"
    return files


@pytest.mark.parametrize(
    ("task", "kind", "expected"),
    [
        ("regression", "smiles", {"parity", "error_vs_size", "learning_curve"}),
        ("binary", "protein", {"roc", "pr", "calibration", "error_vs_size", "learning_curve"}),
        ("multitask_binary", "smiles", {"roc", "pr", "calibration", "error_vs_size"}),
        ("multiclass", "protein", {"confusion", "error_vs_size", "learning_curve"}),
    ],
)
def test_model_plots_per_task_png_and_svg(tmp_path, task, kind, expected):
    epochs = 0 if task == "multitask_binary" else 4  # a random forest's one-line history
    files = model_files(tmp_path / "in", task, kind, n_seeds=3, epochs=epochs)
    out = tmp_path / "plots"
    manifest = plots.run_model_plots(
        dataset="ds", model="m", family="mlp" if epochs else "rf", task=task, kind=kind,
        **files, clean_csv=tmp_path / "in/clean.csv", validate_summary=tmp_path / "in/summary.json",
        primary_metric="score", rank_split="test", out_dir=out,
    )  # fmt: skip
    assert {p["name"] for p in manifest} == expected
    # seed 2 holds the median score (0.5, 0.9, 0.7): the representative seed, not the best
    assert json.loads((out / "plots.json").read_text())["seed"] == 2
    for plot in manifest:
        png, svg = (out / plot["png"]).read_bytes(), (out / plot["svg"]).read_text()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    if task == "multiclass":
        assert "high" in (out / "confusion.svg").read_text()  # class names on the axes
    structures = json.loads((out / "plots.json").read_text())["structures"]
    assert (structures is not None) == (kind == "smiles")  # molecules are drawn, not sequences
    if structures:
        worst = json.loads((out / structures).read_text())["molecules"]
        assert len(worst) == plots.N_STRUCTURES and all(m["svg"].startswith("<svg") for m in worst)
        errors = [m["error"] for m in worst]
        assert errors == sorted(errors, reverse=True)
        if task == "regression":  # error is |true - predicted|, both shown
            assert all(m["error"] == pytest.approx(abs(m["y_true"] - m["y_pred"])) for m in worst)


def test_representative_seed_is_the_median():
    results = {s: {"test": {"mean": {"rmse": v}}} for s, v in enumerate([0.9, 0.5, 0.7, 0.6, 0.8])}
    assert plots.representative_seed(results, "rmse", "test") == 2
    tie = {s: {"test": {"mean": {"rmse": v}}} for s, v in zip([5, 3], [0.25, 0.75], strict=True)}
    assert plots.representative_seed(tie, "rmse", "test") == 3  # equally near: the lower seed
    assert plots.representative_seed({3: {}, 1: {}}, "rmse", "test") == 1


def test_heavy_atoms_and_sequence_length():
    assert plots.example_sizes(["CCO", "c1ccccc1", "not smiles"], "smiles")[:2].tolist() == [3, 6]
    assert np.isnan(plots.example_sizes(["not smiles"], "smiles")[0])
    assert plots.example_sizes(["ACDE", "AC"], "protein").tolist() == [4, 2]


# ----------------------------------------------------------------------------- run ids, HTML


def test_run_ids_degrade_to_none_and_use_the_tracking_helper(monkeypatch):
    from biomol_dl import tracking

    monkeypatch.setenv("BIOMOL_DL_TRACKING", "1")
    monkeypatch.delattr(tracking, "find_runs", raising=False)
    models = {"rf_a": {"family": "rf", "seeds": [0, 1]}}
    assert runs.model_run_ids("ds", models) == {
        "rf_a": {"0": {"train": None, "evaluate": None}, "1": {"train": None, "evaluate": None}}
    }
    calls = []

    def find_runs(dataset, rule, wildcards):
        calls.append((dataset, rule, wildcards))
        return [f"{rule}-{wildcards['seed']}", "older"]

    monkeypatch.setattr(tracking, "find_runs", find_runs, raising=False)
    ids = runs.model_run_ids("ds", models)
    assert ids["rf_a"]["1"] == {"train": "train_rf-1", "evaluate": "evaluate-1"}
    assert ("ds", "train_rf", {"dataset": "ds", "model": "rf_a", "seed": "0"}) in calls

    def broken(**kwargs):
        raise RuntimeError("store is down")

    monkeypatch.setattr(tracking, "find_runs", broken, raising=False)
    assert runs.find_run_id("ds", "evaluate", {"seed": 0}) is None
    monkeypatch.setattr(tracking, "find_runs", find_runs, raising=False)
    monkeypatch.setenv("BIOMOL_DL_TRACKING", "0")
    assert runs.find_run_id("ds", "evaluate", {"seed": 0}) is None


def test_dataset_report_and_html_from_synthetic_files(tmp_path, monkeypatch):
    from biomol_dl import tracking

    monkeypatch.setenv("BIOMOL_DL_TRACKING", "1")
    monkeypatch.setattr(
        tracking, "find_runs", lambda dataset, rule, wildcards: [f"run{rule}{wildcards['seed']}"],
        raising=False,
    )  # fmt: skip
    scores = {"rf_<b>": [0.8, 0.85, 0.9], "new_family_model": [0.6, 0.7, 0.65]}
    metrics = grid_metrics(tmp_path, scores, dataset="ds")
    (tmp_path / "summary.json").write_text(json.dumps({
        "rows_in": 10, "kept": 8, "rejected": 2, "by_reason": {"invalid_smiles": 2},
        "task": "regression", "kind": "smiles", "label_columns": ["y"],
        "label_stats": {"y": {"n": 8, "mean": 0.1, "sd": 1.0, "min": -1, "max": 2}},
    }))  # fmt: skip
    split = tmp_path / "seed0.json"
    split.write_text(
        json.dumps({"seed": 0, "strategy": "random", "sizes": {"train": 6, "val": 1, "test": 1}})
    )
    out = tmp_path / "report" / "ds"
    models = {"rf_<b>": {"family": "rf", "seeds": [0, 1, 2]},
              "new_family_model": {"family": "brand_new", "seeds": [0, 1, 2]}}  # fmt: skip
    report = leaderboard.run_dataset_report(
        dataset="ds", metrics_files=metrics, validate_summary=tmp_path / "summary.json",
        split_infos=[split], models=models,
        settings={"primary_metric": "rmse", "rank_split": "test", "paired_test": "auto",
                  "baseline_families": ["rf"], "top_k": None},
        out_leaderboard=out / "leaderboard.csv", out_per_seed=out / "per_seed.csv",
        out_json=out / "report.json", out_png=out / "leaderboard.png", out_svg=out / "leaderboard.svg",
    )  # fmt: skip
    assert report["ranking"]["best_model"] == "new_family_model"
    assert report["run_ids"]["rf_<b>"]["2"] == {"train": "runtrain_rf2", "evaluate": "runevaluate2"}
    assert report["data"]["splits"] == [
        {"seed": 0, "strategy": "random", "seed_dependent": None, "train": 6, "val": 1, "test": 1}
    ]
    csv = pd.read_csv(out / "leaderboard.csv")
    assert csv["model"].tolist() == ["new_family_model", "rf_<b>"]

    plot_dir = tmp_path / "report" / "ds" / "plots" / "new_family_model"
    files = model_files(tmp_path / "in", "regression", "smiles", n_seeds=3)
    plots.run_model_plots(
        dataset="ds", model="new_family_model", family="brand_new", task="regression",
        kind="smiles", **files, clean_csv=tmp_path / "in/clean.csv",
        validate_summary=tmp_path / "in/summary.json", primary_metric="score",
        rank_split="test", out_dir=plot_dir,
    )  # fmt: skip
    index = html.run_report(
        datasets={"ds": {"report": out / "report.json", "plots": {"new_family_model": plot_dir}}},
        out_html=tmp_path / "report" / "index.html",
        links={"summary.csv": tmp_path / "summary.csv"},
    )
    page = index.read_text()
    assert "<table class='leaderboard' id='leaderboard-ds'>" in page
    assert "rf_&lt;b&gt;" in page and "rf_<b>" not in page  # names are escaped
    assert "runtrain_" in page  # run ids shown (first 8 characters)
    assert "invalid_smiles" in page and "8 of 10 rows kept" in page
    assert page.count("data:image/png;base64,") == 1 + 3  # leaderboard + parity, size, curves
    assert "href='ds/plots/new_family_model/parity.svg'" in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing from the network


# ----------------------------------------------------------------------------- reports at size

LOCALIZATION = ["Cell.membrane", "Cytoplasm", "Endoplasmic.reticulum", "Golgi.apparatus",
                "Lysosome/Vacuole", "Mitochondrion", "Nucleus", "Peroxisome", "Plastid",
                "Extracellular"]  # fmt: skip
WIDE_METRICS = {
    "multitask_binary": ["roc_auc", "pr_auc", "accuracy", "f1", "mcc", "brier"],
    "multiclass": ["accuracy", "balanced_accuracy", "macro_f1", "mcc", "log_loss"],
}


def wide_dataset(root: Path, dataset: str, task: str, kind: str, n_models: int, labels: list):
    """A dataset at the sizes public sets have: 8 models with long names x 3 seeds, and 12
    tasks (multitask) or 10 classes (multiclass); plots for the first model. Returns its
    report_layout entry."""
    rng = np.random.default_rng(2)
    metrics, models = [], {}
    names = labels if task == "multitask_binary" else ["label"]
    for i in range(n_models):
        model = "rf_baseline_fingerprints" if i == 0 else f"transformer_pretrained_variant_{i}"
        models[model] = {"family": "rf" if i == 0 else f"family_{i}", "seeds": [0, 1, 2]}
        for seed in range(3):
            blob = {}
            for split in ("train", "val", "test"):
                per = {t: {m: float(rng.uniform(0.5, 0.95)) for m in WIDE_METRICS[task]}
                       for t in names}  # fmt: skip
                mean = {m: float(np.mean([v[m] for v in per.values()])) for m in WIDE_METRICS[task]}
                blob[split] = {"n": 40, "tasks": per, "mean": mean}
            path = root / "results" / dataset / "evaluate" / model / f"seed{seed}" / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(blob))
            metrics.append(path)
    if task == "multiclass":
        stats = {"localization": {c: int(rng.integers(20, 900)) for c in labels}}
    else:
        stats = {t: {"0": 700, "1": int(rng.integers(20, 600)), "missing": 30} for t in labels}
    summary = root / dataset / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({
        "rows_in": 8000, "kept": 7990, "rejected": 10, "by_reason": {"invalid_smiles": 10},
        "task": task, "kind": kind, "label_columns": list(stats), "label_stats": stats,
        "classes": labels if task == "multiclass" else None,
    }))  # fmt: skip
    split = root / dataset / "seed0.json"
    split.write_text(json.dumps({"seed": 0, "strategy": "scaffold",
                                 "sizes": {"train": 6392, "val": 799, "test": 799}}))  # fmt: skip
    out = root / "report" / dataset
    primary = WIDE_METRICS[task][0]
    leaderboard.run_dataset_report(
        dataset=dataset, metrics_files=metrics, validate_summary=summary, split_infos=[split],
        models=models, settings={"primary_metric": primary, "rank_split": "val",
                                 "paired_test": "auto", "baseline_families": ["rf"],
                                 "top_k": None},
        out_leaderboard=out / "leaderboard.csv", out_per_seed=out / "per_seed.csv",
        out_json=out / "report.json", out_png=out / "leaderboard.png",
        out_svg=out / "leaderboard.svg",
    )  # fmt: skip
    model = next(iter(models))
    # 4 tasks' plots make the point (one panel each) at a third of 12 tasks' drawing time
    files = model_files(root / "in" / dataset, task, kind, n_seeds=1, n=48, epochs=0,
                        n_tasks=4, classes=labels)  # fmt: skip
    plots.run_model_plots(
        dataset=dataset, model=model, family="rf", task=task, kind=kind, **files,
        clean_csv=root / "in" / dataset / "clean.csv",
        validate_summary=root / "in" / dataset / "summary.json", primary_metric="score",
        rank_split="test", out_dir=out / "plots" / model,
    )  # fmt: skip
    return {"report": out / "report.json", "plots": {model: out / "plots" / model}}


@pytest.fixture(scope="module")
def wide_page(tmp_path_factory) -> Path:
    """index.html of a 12-task molecule dataset and a 10-class protein dataset."""
    root = tmp_path_factory.mktemp("wide")
    tasks = [f"NR-task-{i}" for i in range(12)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOMOL_DL_TRACKING", "0")  # no store: run ids show as n/a
        layout = {
            "tox12": wide_dataset(root, "tox12", "multitask_binary", "smiles", 8, tasks),
            "loc10": wide_dataset(root, "loc10", "multiclass", "protein", 8, LOCALIZATION),
        }
        return html.run_report(datasets=layout, out_html=root / "report" / "index.html")


def test_multitask_and_many_classes_are_shown_per_task_and_readable(wide_page):
    page = wide_page.read_text()
    folder = wide_page.parent
    # per-task metrics of the multitask set, collapsed under the leaderboard
    per_task = re.search(r"<details class='per-task'>.*?</details>", page, re.S).group(0)
    assert "12 tasks" in per_task and per_task.count("<tr><td class='text'>NR-task-") == 12
    report = json.loads((folder / "tox12" / "report.json").read_text())
    assert {r["task"] for r in report["per_task"]} == {f"NR-task-{i}" for i in range(12)}
    assert json.loads((folder / "loc10" / "report.json").read_text())["per_task"] == []
    # calibration per task (not pooled), wide; a 10-class confusion matrix grows and goes wide
    manifest = json.loads((folder / "tox12/plots/rf_baseline_fingerprints/plots.json").read_text())
    calibration = next(p for p in manifest["plots"] if p["name"] == "calibration")
    assert calibration["wide"] and "not pooled" in calibration["caption"]
    svg = (folder / "tox12/plots/rf_baseline_fingerprints/calibration.svg").read_text()
    assert all(f"t{i} (Brier" in svg for i in range(1, 5)) and "pooled" not in svg
    manifest = json.loads((folder / "loc10/plots/rf_baseline_fingerprints/plots.json").read_text())
    confusion = next(p for p in manifest["plots"] if p["name"] == "confusion")
    assert confusion["wide"]
    png = (folder / "loc10/plots/rf_baseline_fingerprints/confusion.png").read_bytes()
    assert html._png_size(png)[0] >= 900  # 10 classes: about 0.55 inch each at 120 dpi
    # the 10-class label table has a row per class, not a column per class
    assert page.count("<tr><td class='text'>Golgi.apparatus</td>") == 1
    # the largest errors of the molecule set are drawn; the protein set has no structures
    tox = page[page.index("id='tox12'") : page.index("id='loc10'")]
    assert tox.count("<div class='molecule'") == plots.N_STRUCTURES and "<svg" in tox
    assert "class='molecule'" not in page[page.index("id='loc10'") :]


def test_ranking_needs_the_validation_split(tmp_path):
    files = grid_metrics(tmp_path, {"a": [0.7]}, metric="rmse")
    leaderboard.check_splits(files, "val")
    blob = json.loads(files[0].read_text())
    del blob["val"]
    files[0].write_text(json.dumps(blob))
    with pytest.raises(ValueError, match=r"metrics.json: no validation \(val\) metrics to rank"):
        leaderboard.check_splits(files, "val")
    leaderboard.check_splits(files, "test")


# ----------------------------------------------------------------------------- the real workflow


@pytest.mark.slow
def test_report_builds_from_the_tiny_config(tiny_run, tiny_config):
    report_dir = tiny_run / "results" / "report"
    page = (report_dir / "index.html").read_text()
    for dataset, spec in tiny_config["datasets"].items():
        assert f"id='leaderboard-{dataset}'" in page
        rep = json.loads((report_dir / dataset / "report.json").read_text())
        assert {r["model"] for r in rep["leaderboard"]} == set(spec["models"])
        assert f"id='uncertainty-{dataset}'" in page  # the calibrated test metrics, as a table
        summary = json.loads(
            (tiny_run / "results" / dataset / "validate" / "summary.json").read_text()
        )
        assert rep["data"]["kept"] == summary["kept"]
        assert [s["seed"] for s in rep["data"]["splits"]] == spec["seeds"]
        baseline = [r for r in rep["leaderboard"] if r["family"] == "rf"]
        assert baseline and all(r["shown"] for r in baseline)
        # The leaderboard agrees with the summary rule's table.
        long = pd.read_csv(tiny_run / "results" / "summary.csv")
        metric, split = rep["ranking"]["primary_metric"], rep["ranking"]["rank_split"]
        for row in rep["leaderboard"]:
            expected = long.query(
                "dataset == @dataset and model == @row['model'] and split == @split "
                "and metric == @metric"
            )["value"].mean()
            assert row[f"{split}_{metric}_mean"] == pytest.approx(expected)
        for model in spec["models"]:
            manifest = json.loads(
                (report_dir / dataset / "plots" / model / "plots.json").read_text()
            )
            names = {p["name"] for p in manifest["plots"]}
            assert ("parity" in names) == (summary["task"] == "regression")
            assert ("roc" in names) == (summary["task"] == "binary")
            assert ("learning_curve" in names) == model.startswith("mlp")


@pytest.mark.slow
def test_snakemake_report_zip(tiny_run, tmp_path):
    target = tmp_path / "report.zip"
    snakemake(tiny_run, tiny_run / "config.yaml", "--report", str(target))
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
    assert any(n.endswith("parity.png") for n in names)
    assert any(n.endswith("leaderboard.png") for n in names)
    assert any(n.endswith("index.html") and "report.html" not in n for n in names)


# ----------------------------------------------------------------------------- the browser


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
    no websocket library, no port. Messages are JSON terminated by a NUL byte, commands on the
    browser's fd 3, replies and events on its fd 4."""

    def __init__(self, executable: str, user_data_dir: Path):
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Move the browser's ends above 10, so the shell's 3<&A 4>&B cannot clobber them.
        a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={user_data_dir}",
            "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip
        command = f"exec {shlex.join([executable, *flags])} 3<&{a} 4>&{b}"
        self.proc = subprocess.Popen(
            ["bash", "-c", command], pass_fds=(a, b), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(a)
        os.close(b)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := self._in.read(65536):
            buffer += chunk
            *done, buffer = buffer.split(b"\0")
            for raw in done:
                self._messages.put(json.loads(raw))

    def send(self, method: str, session: str | None = None, timeout: float = 30, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, after: int = 0, timeout: float = 30) -> dict:
        """The first `method` event among events[after:], waiting for it if needed."""
        deadline = time.monotonic() + timeout
        for event in self.events[after:]:
            if event.get("method") == method:
                return event
        while True:
            event = self._messages.get(timeout=max(0.1, deadline - time.monotonic()))
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def console_errors(self) -> list[str]:
        errors = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(params["entry"].get("text", ""))
        return errors


CHECKS_JS = """
JSON.stringify({
  tables: [...document.querySelectorAll('table.leaderboard')].map(t => ({
    id: t.id, rows: t.tBodies[0].rows.length, height: t.getBoundingClientRect().height,
    models: [...t.tBodies[0].rows].map(r => r.cells[1].textContent.trim())})),
  images: [...document.images].map(i => ({alt: i.alt, complete: i.complete,
    w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width})),
  external: [...document.querySelectorAll('script[src], link[href], img')]
    .map(e => e.src || e.href).filter(u => !u.startsWith('data:')),
  height: document.documentElement.scrollHeight,
  width: document.documentElement.scrollWidth,
  overflowing: [...document.querySelectorAll('main *')]
    .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')
    .map(e => e.tagName + '.' + e.className),
  wider: [...document.querySelectorAll('main table, main figure, .card, .molecule, main img')]
    .filter(e => e.getBoundingClientRect().right > Math.min(window.innerWidth,
                 e.parentElement.getBoundingClientRect().right) + 1)
    .map(e => e.tagName + '#' + (e.id || e.className || e.alt)),
  structures: [...document.querySelectorAll('.structures .molecule')].map(m => ({
    svg: !!m.querySelector('svg'), w: m.querySelector('svg')?.getBoundingClientRect().width || 0,
    text: m.textContent})),
})
"""


def _open(browser: Chromium, session: str, path: Path) -> dict:
    """Load a page at 1,400 px and return CHECKS_JS's findings."""
    seen = len(browser.events)
    browser.send("Page.navigate", session, url=path.as_uri())
    browser.wait_for("Page.loadEventFired", after=seen)
    result = browser.send("Runtime.evaluate", session, expression=CHECKS_JS, returnByValue=True)
    return json.loads(result["result"]["value"])


def _fits(checks: dict, width: int = 1400) -> None:
    """No horizontal scrolling: not of the page, not inside any box on it."""
    assert checks["width"] <= width, f"the page is {checks['width']} px wide"
    assert checks["overflowing"] == [], f"boxes that scroll sideways: {checks['overflowing']}"
    assert checks["wider"] == [], f"boxes beyond the window: {checks['wider']}"


@pytest.mark.browser
@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tiny_run, tiny_config, tmp_path, wide_page):
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI must run the browser test")
        pytest.skip(message)
    index = tiny_run / "results" / "report" / "index.html"
    browser = Chromium(executable, tmp_path / "chromium-profile")
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session)
        browser.send("Emulation.setDeviceMetricsOverride", session, width=1400, height=1000,
                     deviceScaleFactor=1, mobile=False)  # fmt: skip
        checks = _open(browser, session, index)
        shot = browser.send("Page.captureScreenshot", session, format="png",
                            captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": 1400,
                                  "height": min(checks["height"], 6000), "scale": 1})  # fmt: skip
        wide = _open(browser, session, wide_page)  # 12 tasks, 10 classes, 8 long model names
        errors = browser.console_errors()
    finally:
        browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report_index.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))

    assert errors == [], f"console errors: {errors}"
    assert checks["external"] == []
    tables = {t["id"]: t for t in checks["tables"]}
    for dataset, spec in tiny_config["datasets"].items():
        table = tables[f"leaderboard-{dataset}"]
        assert sorted(table["models"]) == sorted(spec["models"]) and table["height"] > 40
    assert checks["images"], "no plot in the page"
    for image in checks["images"]:
        assert image["complete"] and image["w"] > 100 and image["h"] > 100, image
        assert image["shown"] > 100, f"{image['alt']} is not displayed"
    assert any("Parity plot" in i["alt"] for i in checks["images"])
    # The screenshot is a page, not a blank canvas: many distinct colours.
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    # At 1,400 px nothing scrolls sideways, on the tiny run and at public data sets' sizes.
    _fits(checks)
    _fits(wide)
    # The molecule dataset's largest errors are drawn, with true and predicted values.
    structures = checks["structures"]
    assert len(structures) >= 1 and all(m["svg"] and m["w"] > 100 for m in structures)
    assert all("true" in m["text"] and "predicted" in m["text"] for m in structures)
    assert len(wide["structures"]) == plots.N_STRUCTURES
