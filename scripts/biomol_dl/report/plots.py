"""Figures of the evaluation report (matplotlib, Agg canvas), each saved as PNG and SVG.

For the report_model and report_dataset rules. Figures are drawn from the files other rules wrote
(predictions.csv, history.csv, metrics.json, clean.csv) on the TEST split of one representative
seed per model: the seed whose primary metric on the ranking split is the median across seeds,
not the best one, so a parity plot shows what a typical run does. Learning curves show all seeds.

Which plots a model gets follows from the task:

  regression        parity, error_vs_size
  binary            roc, pr, calibration, error_vs_size
  multitask_binary  roc, pr and calibration (one panel per task up to MAX_PANELS tasks, else
                    every task's curve in one panel; never pooled), error_vs_size
  multiclass        confusion (scaled with the class count, row-normalised), error_vs_size

plus, where metrics.json holds `test_calibrated` (calibration fitted on validation): coverage
(regression: observed vs nominal coverage of the conformal intervals, error vs predicted sd) or
reliability (classification: reliability diagrams before and after calibration, per task up to
MAX_PANELS tasks); plus learning_curve when the history has epochs (torch families; a random forest's history is a
single fit time). Size is heavy atoms (RDKit) for molecules and length for sequences. For
molecules, `largest_errors.json` holds the N_STRUCTURES test molecules with the largest errors
drawn as RDKit SVG (rdMolDraw2D), with their true and predicted values, for the HTML page.
`run_model_plots` writes one folder per model with a plots.json manifest (name, title, seed,
caption) that the HTML report reads. The figure API is used without pyplot: no global state, no
GUI backend, safe inside any process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomol_dl import metrics as M
from biomol_dl import uncertainty as U
from biomol_dl.evaluate import read_predictions
from biomol_dl.io import read_table
from biomol_dl.logutil import get

log = get(__name__)

MAX_PANELS = 16
N_STRUCTURES = 12  # molecules in the largest-errors panel
WIDE_CLASSES = 8  # confusion matrices from this many classes span two plot columns
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "svg.fonttype": "none",  # text stays text in the SVG: searchable, small
    "svg.hashsalt": "biomol-dl",  # stable ids, so an unchanged figure gives an unchanged file
}
TITLES = {
    "parity": "Parity plot",
    "roc": "ROC curve",
    "pr": "Precision-recall curve",
    "calibration": "Calibration curve",
    "confusion": "Confusion matrix",
    "learning_curve": "Learning curves",
    "error_vs_size": "Error vs size",
    "coverage": "Interval coverage and error vs sd",
    "reliability": "Reliability before and after calibration",
}


@contextmanager
def _style():
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (4.8, 4.2), **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig, png: str | Path, svg: str | Path | None = None, dpi: int = 120) -> None:
    """Write a figure as PNG (and SVG), without timestamps so reruns give identical files."""
    with _style():
        Path(png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=dpi, metadata={"Software": None})
        if svg is not None:
            fig.savefig(svg, metadata={"Date": None, "Creator": None})


def _one_class_note(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"one class in the test split:\n{what} undefined", ha="center",
            va="center", transform=ax.transAxes, color="0.35")  # fmt: skip


# --------------------------------------------------------------------------------- the figures


def parity_figure(y_true, y_pred, *, label: str, title: str):
    """Predicted vs measured with the identity line; RMSE, R2 and n in the legend."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    with _style():
        fig, axes = _figure()
        ax = axes[0, 0]
        m = M.regression_metrics(y_true, y_pred)
        ax.scatter(y_true, y_pred, s=22, alpha=0.8, color=COLORS[0], edgecolor="white",
                   linewidth=0.5, zorder=3,
                   label=f"test (n={len(y_true)})\nRMSE {m['rmse']:.3f}, R² {m['r2']:.3f}")  # fmt: skip
        both = np.concatenate([y_true, y_pred])
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        pad = 0.05 * (hi - lo or 1.0)
        lim = (lo - pad, hi + pad)
        ax.plot(lim, lim, ls="--", lw=1, color="0.45", label="identity (y = x)", zorder=2)
        ax.set(xlim=lim, ylim=lim, xlabel=f"measured {label}", ylabel=f"predicted {label}")
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.legend(loc="upper left")
    return fig


def _grid(n: int) -> tuple[int, int]:
    ncols = min(4, math.ceil(math.sqrt(n)))
    return math.ceil(n / ncols), ncols


def _panels(tasks: Sequence[tuple[str, np.ndarray, np.ndarray]], size_one=(4.8, 4.2)):
    """Axes for per-task small multiples: one panel per task up to MAX_PANELS, else one panel."""
    n = len(tasks)
    if n == 1 or n > MAX_PANELS:
        fig, axes = _figure(size=size_one)
        return fig, [axes[0, 0]] * n
    nrows, ncols = _grid(n)
    fig, axes = _figure(nrows, ncols, size=(2.6 * ncols, 2.5 * nrows), sharex=True, sharey=True)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def roc_figure(tasks: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str):
    """ROC curve per task (y_true 0/1, p = P(class 1)), AUC in the legend, chance diagonal."""
    from sklearn.metrics import roc_auc_score, roc_curve

    def curve(ax, y, p, many: bool) -> float:
        fpr, tpr, _ = roc_curve(y, p)
        auc = roc_auc_score(y, p)
        ax.plot(fpr, tpr, color="0.5" if many else COLORS[0], lw=0.8 if many else 1.6,
                label=None if many else f"AUC {auc:.3f} (n={len(y)})")  # fmt: skip
        return auc

    def chance(ax) -> None:
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6", label="chance")

    return _curves_figure(tasks, title=title, curve=curve, finish=chance, score="AUC",
                          what="ROC", axes_labels=("false positive rate", "true positive rate"),
                          legend="lower right")  # fmt: skip


def pr_figure(tasks: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str):
    """Precision-recall curve per task, average precision in the legend, prevalence line."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    def curve(ax, y, p, many: bool) -> float:
        precision, recall, _ = precision_recall_curve(y, p)
        ap = average_precision_score(y, p)
        ax.step(recall, precision, where="post", color="0.5" if many else COLORS[2],
                lw=0.8 if many else 1.6,
                label=None if many else f"AP {ap:.3f} (n={len(y)})")  # fmt: skip
        if not many:
            ax.axhline(np.mean(y), ls="--", lw=1, color="0.6",
                       label=f"prevalence {np.mean(y):.2f}")  # fmt: skip
        return ap

    return _curves_figure(tasks, title=title, curve=curve, finish=None, score="AP",
                          what="PR curve", axes_labels=("recall", "precision"),
                          legend="lower left")  # fmt: skip


def _curves_figure(tasks, *, title, curve, finish, score, what, axes_labels, legend):
    """The frame of the ROC and PR figures: panels, one-class notes, per-task titles, limits,
    legends and the mean score over tasks in the title. `curve(ax, y, p, many)` draws one task's
    curve and returns its score; `finish(ax)` (optional) draws on each distinct panel."""
    with _style():
        fig, axes = _panels(tasks)
        many = len(tasks) > MAX_PANELS
        scores = []
        for (name, y, p), ax in zip(tasks, axes, strict=True):
            if len(np.unique(y)) < 2:
                if not many:
                    _one_class_note(ax, what)
                continue
            scores.append(curve(ax, y, p, many))
            if not many and len(tasks) > 1:
                ax.set_title(name, fontsize=8)
        for ax in dict.fromkeys(axes):  # each distinct panel once
            if finish is not None:
                finish(ax)
            ax.set(xlim=(0, 1), ylim=(0, 1.02))
            ax.legend(loc=legend)
        _label_outer(fig, axes, *axes_labels)
        n = len(scores)
        mean = f" (mean {score} {np.mean(scores):.3f} over {n} tasks)" if len(tasks) > 1 else ""
        fig.suptitle(title + mean, fontsize=10)
    return fig


def _label_outer(fig, axes, xlabel: str, ylabel: str) -> None:
    distinct = list(dict.fromkeys(axes))
    if len(distinct) == 1:
        distinct[0].set(xlabel=xlabel, ylabel=ylabel)
    else:
        fig.supxlabel(xlabel, fontsize=9)
        fig.supylabel(ylabel, fontsize=9)


def calibration_figure(tasks: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str):
    """Reliability diagram (quantile bins) per task: one task over a histogram of its predicted
    probabilities; several tasks one panel each (up to MAX_PANELS, else every task's curve in one
    panel). Tasks are never pooled: prevalences differ (10 % and 91 % pooled look calibrated)."""
    if len(tasks) == 1:
        return _calibration_one(*tasks[0][1:], title=title)
    with _style():
        fig, axes = _panels(tasks)
        many = len(tasks) > MAX_PANELS
        briers = []
        for (name, y, p), ax in zip(tasks, axes, strict=True):
            y, p = np.asarray(y, int), np.clip(np.asarray(p, float), 0, 1)
            if len(y):
                briers.append(float(np.mean((p - y) ** 2)))
            curve = _reliability(y, p)
            if curve is not None:
                ax.plot(curve[1], curve[0], marker=None if many else "o", ms=3,
                        color="0.5" if many else COLORS[3], lw=0.8 if many else 1.4)  # fmt: skip
            if not many:
                prevalence = f", prevalence {np.mean(y):.2f}" if len(y) else ""
                ax.set_title(f"{name} (Brier {briers[-1]:.3f}{prevalence})" if len(y) else name,
                             fontsize=7.5)  # fmt: skip
        for ax in dict.fromkeys(axes):
            ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6")
            ax.set(xlim=(0, 1), ylim=(-0.02, 1.02))
        _label_outer(fig, axes, "mean predicted probability", "fraction of positives")
        mean = f" (mean Brier {np.mean(briers):.3f} over {len(briers)} tasks)" if briers else ""
        fig.suptitle(title + mean, fontsize=10)
    return fig


def _reliability(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(fraction of positives, mean predicted probability) in quantile bins, or None."""
    from sklearn.calibration import calibration_curve

    if len(y) < 2 or len(np.unique(y)) < 2:
        return None
    n_bins = int(np.clip(len(y) // 15, 2, 10))
    return calibration_curve(y, p, n_bins=n_bins, strategy="quantile")


def _calibration_one(y_true, p_pred, *, title: str):
    y, p = np.asarray(y_true, int), np.clip(np.asarray(p_pred, float), 0, 1)
    n_bins = int(np.clip(len(y) // 15, 2, 10))
    with _style():
        fig, axes = _figure(2, 1, size=(4.8, 5.0), sharex=True, height_ratios=[3, 1])
        ax, hist = axes[0, 0], axes[1, 0]
        brier = float(np.mean((p - y) ** 2)) if len(y) else math.nan
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6", label="perfectly calibrated")
        curve = _reliability(y, p)
        if curve is not None:
            ax.plot(curve[1], curve[0], marker="o", ms=4, color=COLORS[3], lw=1.5,
                    label=f"{n_bins} quantile bins (n={len(y)})\nBrier score {brier:.3f}")  # fmt: skip
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="fraction of positives")
        ax.legend(loc="upper left")
        ax.set_title(title)
        hist.hist(p, bins=20, range=(0, 1), color=COLORS[5], edgecolor="white", linewidth=0.4)
        hist.set(xlabel="predicted probability of class 1", ylabel="count")
    return fig


def coverage_figure(val: Mapping, test: Mapping, *, coverage: float, title: str):
    """Regression uncertainty on test, calibrated on val: observed vs nominal coverage of the
    split-conformal interval (absolute, and normalized by the model's sd where it has one); with
    an sd, |error| against the variance-scaled sd and RMSE per equal-count sd bin."""
    levels = np.round(np.linspace(0.5, 0.95, 10), 3)
    has_sd = test.get("sd") is not None and val.get("sd") is not None
    with _style():
        fig, axes = _figure(1, 2 if has_sd else 1, size=(9.6 if has_sd else 4.8, 4.2))
        ax = axes[0, 0]
        ax.plot([0.5, 1], [0.5, 1], ls="--", lw=1, color="0.6", label="nominal")
        curves = [("absolute residuals", {**val, "sd": None}, {**test, "sd": None}, COLORS[0])]
        if has_sd:
            curves.append(("normalized by the model's sd", val, test, COLORS[3]))
        for label, v, t, color in curves:
            observed = U.coverage_curve(v, t, levels)
            ax.plot(levels, observed, marker="o", ms=3, color=color, label=label)
        ax.axvline(coverage, color="0.4", lw=0.8, ls=":")
        ax.set(xlim=(0.48, 1.0), ylim=(0.3, 1.02), xlabel="nominal coverage",
               ylabel="observed coverage on test")  # fmt: skip
        ax.legend(loc="upper left")
        ax.set_title(title)
        if has_sd:
            scale = U.fit_variance_scale(val["y_true"], val["y_pred"], val["sd"]).scale
            y, p = np.asarray(test["y_true"], float), np.asarray(test["y_pred"], float)
            sd = scale * np.asarray(test["sd"], float)
            err = np.abs(y - p)
            ax2 = axes[0, 1]
            ax2.scatter(sd, err, s=8, alpha=0.5, color=COLORS[5], linewidths=0)
            order = np.argsort(sd, kind="stable")
            parts = [part for part in np.array_split(order, min(10, len(order))) if len(part)]
            rmv = [math.sqrt(float(np.mean(sd[part] ** 2))) for part in parts]
            rmse = [math.sqrt(float(np.mean(err[part] ** 2))) for part in parts]
            ax2.plot(rmv, rmse, marker="o", ms=4, color=COLORS[3], label="RMSE per sd bin")
            top = max(max(rmv, default=1.0), max(rmse, default=1.0))
            ax2.plot([0, top], [0, top], ls="--", lw=1, color="0.6", label="RMSE = sd")
            rho = U.sd_error_spearman(y, p, sd)
            ax2.set(xlabel=f"predicted sd (× {scale:.2f}, scaled on validation)",
                    ylabel="absolute error", title=f"Spearman(sd, |error|) = {rho:.2f}")  # fmt: skip
            ax2.legend(loc="upper left")
    return fig


def reliability_figure(tasks: Sequence[tuple], *, method: str, bins: int, title: str):
    """Reliability diagrams on test before and after calibration fitted on val, one panel per
    task (up to MAX_PANELS; never pooled). tasks: (name, y_val, p_val, y_test, p_test), p as
    P(class 1) [N] or class probabilities [N, K] (top-class confidence against accuracy)."""
    shown = list(tasks)[:MAX_PANELS]
    with _style():
        fig, axes = _panels(shown)
        if len(shown) == 1:
            fig.set_size_inches(4.8, 4.2)
        for (name, yv, pv, yt, pt), ax in zip(shown, axes, strict=True):
            used = method if np.ndim(pv) == 1 else "temperature"
            calibrator = U.fit_probability_calibrator(yv, pv, used)
            for probs, label, color in ((pt, "raw", COLORS[0]),
                                        (calibrator.apply(pt), used, COLORS[3])):  # fmt: skip
                r = U.reliability_bins(yt, probs, bins)
                ax.plot(r["confidence"], r["frequency"], marker="o", ms=3, color=color,
                        label=f"{label} (ECE {U.ece(yt, probs, bins):.3f})")  # fmt: skip
            ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6")
            ax.set(xlim=(0, 1), ylim=(-0.02, 1.02))
            ax.legend(loc="upper left", fontsize=7)
            if len(shown) > 1:
                ax.set_title(str(name), fontsize=7.5)
        multiclass = np.ndim(shown[0][2]) == 2
        _label_outer(fig, axes, "mean predicted probability" + (" (top class)" if multiclass
                     else ""), "accuracy" if multiclass else "fraction of positives")  # fmt: skip
        fig.suptitle(title, fontsize=10)
    return fig


def _uncertainty_plots(add, task: str, pred: pd.DataFrame, result: Mapping, *, title, which):
    """coverage or reliability, from the val and test rows of the representative seed and the
    settings its metrics.json recorded; nothing when it has no calibrated block."""
    block = result.get("test_calibrated") or {}
    settings = block.get("settings")
    if not settings:
        return
    labelled = pred[pred["y_true"].notna()]
    val, test = labelled[labelled["split"] == "val"], labelled[labelled["split"] == "test"]
    if val.empty or test.empty:
        return
    coverage, bins = float(settings["coverage"]), int(settings["bins"])
    use_sd = settings.get("estimate_used") == "y_sd"
    if task == "regression":
        name = str(test["task"].iloc[0])

        def arrays(rows):
            return {"y_true": rows["y_true"].to_numpy(float), "y_pred": rows["y_pred"].to_numpy(float),
                    "sd": rows["y_sd"].to_numpy(float) if use_sd else None}  # fmt: skip

        v, t = arrays(val[val["task"] == name]), arrays(test[test["task"] == name])
        sd_note = ("; right: absolute error against the predicted sd (variance-scaled on "
                   "validation), the line RMSE per sd bin, on the dashed line where the sd is "
                   "calibrated" if use_sd else "")  # fmt: skip
        add("coverage", coverage_figure(v, t, coverage=coverage, title=f"{title} · {name}"),
            f"Observed test coverage of split-conformal intervals fitted on the validation split "
            f"at nominal levels 0.5-0.95 ({which}; dotted: the configured {coverage:.0%}){sd_note}.",
            wide=use_sd)  # fmt: skip
        return
    prob_cols = sorted((c for c in pred if c.startswith("p_")), key=lambda c: int(c[2:]))
    tasks = []
    for name, t_rows in test.groupby("task", sort=False):
        v_rows = val[val["task"] == name]
        if v_rows.empty:
            continue
        if task == "multiclass":
            pv, pt = v_rows[prob_cols].to_numpy(float), t_rows[prob_cols].to_numpy(float)
        else:
            pv, pt = v_rows["y_pred"].to_numpy(float), t_rows["y_pred"].to_numpy(float)
        tasks.append((str(name), v_rows["y_true"].to_numpy(float), pv,
                      t_rows["y_true"].to_numpy(float), pt))  # fmt: skip
    if not tasks:
        return
    method = settings["probability"] if task != "multiclass" else "temperature"
    more = f"; the first {MAX_PANELS} of {len(tasks)} tasks" if len(tasks) > MAX_PANELS else ""
    add("reliability", reliability_figure(tasks, method=method, bins=bins, title=title),
        f"Reliability on the test split before (raw) and after {method} calibration fitted on "
        f"the validation split ({which}{more}): observed frequency against the mean predicted "
        f"probability in {bins} equal-width bins, ECE in the legend.",
        wide=1 < len(tasks))  # fmt: skip


def confusion_figure(y_true, y_pred, classes: Sequence[str], *, title: str):
    """Row-normalised confusion matrix (share of each true class, annotated up to 25 classes).

    The figure grows with the class count (about 0.55 inch a class) and the annotation font
    shrinks only slowly, so that 10+ classes stay readable where the page shows it wide.
    """
    k = len(classes)
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (y_true, y_pred), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = counts / counts.sum(axis=1, keepdims=True)
    share = np.nan_to_num(share)
    side = max(3.6, 0.55 * k + 2.4)
    text_size = float(np.clip(12.5 - 0.2 * k, 7, 11))
    label_size = float(np.clip(12.5 - 0.15 * k, 8, 11))
    longest = max((len(str(c)) for c in classes), default=1)
    with _style():
        fig, axes = _figure(size=(side + 1.0 + 0.05 * longest, side + 0.05 * longest))
        ax = axes[0, 0]
        ax.grid(False)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
        if k <= 25:
            for i in range(k):
                for j in range(k):
                    if counts[i, j] == 0:
                        continue
                    ax.text(j, i, f"{share[i, j]:.2f}".lstrip("0") if share[i, j] < 1 else "1",
                            ha="center", va="center", fontsize=text_size,
                            color="white" if share[i, j] > 0.6 else "black")  # fmt: skip
        ticks = range(k)
        ax.set_xticks(ticks, [str(c) for c in classes], rotation=45 if k > 4 else 0, ha="right",
                      fontsize=label_size, rotation_mode="anchor")  # fmt: skip
        ax.set_yticks(ticks, [f"{c} (n={n})" for c, n in zip(classes, counts.sum(axis=1),
                      strict=True)], fontsize=label_size)  # fmt: skip
        accuracy = np.trace(counts) / max(counts.sum(), 1)
        ax.set(xlabel="predicted class", ylabel="true class")
        ax.set_title(f"{title}\naccuracy {accuracy:.3f} (n={counts.sum()})")
    return fig


def learning_curve_figure(histories: Mapping[int, pd.DataFrame], *, title: str):
    """Train and validation loss per epoch (left) and the validation metric (right), per seed."""
    metric_cols = sorted(
        {c for h in histories.values() for c in h.columns if c.startswith("val_")} - {"val_loss"}
    )
    metric = metric_cols[0] if metric_cols else None
    with _style():
        fig, axes = _figure(1, 2 if metric else 1, size=(8.4 if metric else 4.8, 3.6))
        loss_ax = axes[0, 0]
        for i, (seed, h) in enumerate(sorted(histories.items())):
            color = COLORS[i % len(COLORS)]
            marker = "o" if len(h) < 3 else None
            if "train_loss" in h:
                loss_ax.plot(h["epoch"], h["train_loss"], color=color, lw=1.4, marker=marker,
                             ms=3, label=f"seed {seed} train")  # fmt: skip
            if "val_loss" in h:
                loss_ax.plot(h["epoch"], h["val_loss"], color=color, lw=1.4, ls="--",
                             marker=marker, ms=3, label=f"seed {seed} val")  # fmt: skip
            if metric and metric in h:
                axes[0, 1].plot(h["epoch"], h[metric], color=color, lw=1.4, marker=marker,
                                ms=3, label=f"seed {seed}")  # fmt: skip
        from matplotlib.ticker import MaxNLocator

        for ax in axes.ravel():
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        loss_ax.set(xlabel="epoch", ylabel="loss (training objective)")
        loss_ax.legend(ncols=2 if len(histories) > 2 else 1)
        if metric:
            axes[0, 1].set(xlabel="epoch", ylabel=metric.replace("_", " "))
            axes[0, 1].legend()
        fig.suptitle(title, fontsize=10)
    return fig


def error_vs_size_figure(sizes, errors, *, size_label: str, error_label: str, title: str):
    """Per-example error against size, with the mean error in quantile bins of size."""
    from scipy.stats import spearmanr

    sizes, errors = np.asarray(sizes, float), np.asarray(errors, float)
    with _style():
        fig, axes = _figure(size=(4.8, 4.2))
        ax = axes[0, 0]
        rho = spearmanr(sizes, errors).statistic if len(sizes) > 2 else math.nan
        ax.scatter(sizes, errors, s=18, alpha=0.7, color=COLORS[0], edgecolor="white",
                   linewidth=0.4, label=f"test examples (n={len(sizes)})")  # fmt: skip
        n_bins = int(np.clip(len(sizes) // 4, 1, 8))
        if n_bins > 1 and np.unique(sizes).size > 1:
            edges = np.unique(np.quantile(sizes, np.linspace(0, 1, n_bins + 1)))
            which = np.clip(np.searchsorted(edges, sizes, side="right") - 1, 0, len(edges) - 2)
            centres, means = [], []
            for b in range(len(edges) - 1):
                inside = which == b
                if inside.sum() >= 2:
                    centres.append(float(np.median(sizes[inside])))
                    means.append(float(errors[inside].mean()))
            ax.plot(centres, means, color=COLORS[3], lw=1.8, marker="s", ms=4,
                    label="mean in size bins")  # fmt: skip
        rho_text = "n/a" if not np.isfinite(rho) else f"{rho:.2f}"
        ax.plot([], [], " ", label=f"Spearman ρ(size, error) = {rho_text}")
        ax.set(xlabel=size_label, ylabel=error_label)
        ax.set_ylim(bottom=0)
        fig.legend(loc="outside lower center", ncols=2)
        ax.set_title(title)
    return fig


def leaderboard_figure(per_seed: pd.DataFrame, table: pd.DataFrame, info: Mapping, *, dataset: str):
    """Primary metric per model (rank order, best on top): mean +/- sd and every seed, val and test."""
    metric, rank_split = info["primary_metric"], info["rank_split"]
    shown = table[table["shown"]]
    models = list(shown["model"])
    n = len(models)
    with _style():
        fig, axes = _figure(size=(6.4, 1.8 + 0.42 * n))
        ax = axes[0, 0]
        ax.grid(axis="y", visible=False)
        offsets = {"test": -0.13, "val": 0.13}
        styles = {
            "test": dict(color=COLORS[0], marker="o"),
            "val": dict(color=COLORS[1], marker="s"),
        }
        for split in ("test", "val"):
            for i, model in enumerate(models):
                y = n - 1 - i + offsets[split]
                row = shown[shown["model"] == model].iloc[0]
                mean, sd = row[f"{split}_{metric}_mean"], row[f"{split}_{metric}_sd"]
                seeds = per_seed[
                    (per_seed["model"] == model)
                    & (per_seed["split"] == split)
                    & (per_seed["metric"] == metric)
                ]["value"].dropna()
                ax.scatter(seeds, np.full(len(seeds), y), s=12, alpha=0.45,
                           color=styles[split]["color"], zorder=2)  # fmt: skip
                if np.isfinite(mean):
                    ax.errorbar(mean, y, xerr=sd if np.isfinite(sd) else None, ms=7, capsize=3,
                                mfc="white" if split == "val" else styles[split]["color"],
                                mec=styles[split]["color"], ecolor=styles[split]["color"],
                                marker=styles[split]["marker"], ls="none", zorder=3,
                                label=f"{'validation' if split == 'val' else split}: mean ± sd,"
                                      " dots = seeds" if i == 0 else None)  # fmt: skip
        labels = [
            f"{m} ({shown.loc[shown['model'] == m, 'family'].iloc[0]})"
            + (" · baseline" if shown.loc[shown["model"] == m, "baseline"].iloc[0] else "")
            for m in models
        ]
        ax.set_yticks(range(n), labels[::-1])
        ax.set_ylim(-0.7, n - 0.3)
        better = "higher" if info["higher_is_better"] else "lower"
        ax.set_xlabel(f"{metric} ({better} is better)")
        split_name = {"val": "validation"}.get(rank_split, rank_split)
        ax.set_title(f"{dataset}: models ranked by {split_name} {metric}")
        fig.legend(loc="outside lower center", ncols=2)
    return fig


# ------------------------------------------------------------------------------- per model


def representative_seed(
    metrics_by_seed: Mapping[int, Mapping], primary_metric: str, rank_split: str
) -> int:
    """The seed whose primary metric is closest to the median over seeds (lowest seed on ties)."""
    scores = {}
    for seed, result in metrics_by_seed.items():
        value = (result.get(rank_split) or {}).get("mean", {}).get(primary_metric)
        if value is not None and math.isfinite(value):
            scores[seed] = float(value)
    if not scores:
        return min(metrics_by_seed)
    median = float(np.median(list(scores.values())))
    return min(scores, key=lambda s: (abs(scores[s] - median), s))


def example_sizes(inputs: Sequence[str], kind: str) -> np.ndarray:
    """Heavy atoms (RDKit) of SMILES, or residues of sequences; NaN where RDKit cannot parse."""
    if kind == "protein":
        return np.array([len(s) for s in inputs], dtype=float)
    from rdkit import Chem, rdBase

    out = np.full(len(inputs), np.nan)
    with rdBase.BlockLogs():
        for i, smiles in enumerate(inputs):
            mol = Chem.MolFromSmiles(smiles)
            if mol is not None:
                out[i] = mol.GetNumHeavyAtoms()
    return out


def structure_svg(smiles: str, size: tuple[int, int] = (220, 170)) -> str | None:
    """The molecule drawn by RDKit (rdMolDraw2D) as an SVG element, or None if it does not parse.

    No XML declaration and no fixed background, so it can sit inline in an HTML page.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem.Draw import rdMolDraw2D

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    drawer = rdMolDraw2D.MolDraw2DSVG(*size)
    options = drawer.drawOptions()
    options.clearBackground = False
    options.bondLineWidth = 1.5
    options.fixedFontSize = 13
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    return svg[svg.index("<svg") :].strip()


def largest_errors(
    test: pd.DataFrame,
    smiles: Sequence[str],
    errors: np.ndarray,
    task: str,
    classes: Sequence[str] | None = None,
    n: int = N_STRUCTURES,
) -> list[dict[str, Any]]:
    """The `n` test rows with the largest errors, largest first, each with its structure.

    Records {id, smiles, task, y_true, y_pred, error, svg}; multiclass values are class names.
    Rows are (molecule, task) pairs, so a multitask molecule may appear once per task.
    """
    order = np.argsort(-np.nan_to_num(np.asarray(errors, float), nan=-np.inf), kind="stable")
    out = []
    for i in order[:n]:
        row = test.iloc[int(i)]
        y_true, y_pred = row["y_true"], row["y_pred"]
        if task == "multiclass":
            names = list(classes or [])
            y_true, y_pred = (names[int(v)] if int(v) < len(names) else str(int(v))
                              for v in (y_true, y_pred))  # fmt: skip
        else:
            y_true, y_pred = float(y_true), float(y_pred)
        out.append({"id": str(row["id"]), "smiles": smiles[int(i)], "task": str(row["task"]),
                    "y_true": y_true, "y_pred": y_pred, "error": float(errors[int(i)]),
                    "svg": structure_svg(smiles[int(i)])})  # fmt: skip
    return out


def _errors(task: str, test: pd.DataFrame) -> tuple[np.ndarray, str]:
    if task == "regression":
        return np.abs(test["y_true"] - test["y_pred"]).to_numpy(), "absolute error"
    if task == "multiclass":
        probs = test[sorted((c for c in test if c.startswith("p_")), key=lambda c: int(c[2:]))]
        true = test["y_true"].astype(int).to_numpy()
        p_true = probs.to_numpy()[np.arange(len(test)), true]
        return 1 - p_true, "1 − P(true class)"
    return np.abs(test["y_true"] - test["y_pred"]).to_numpy(), "|label − P(class 1)|"


def _task_plots(
    add, task: str, test: pd.DataFrame, *, title: str, which: str, validate_summary: str | Path
) -> None:
    """The plots that depend on the task: parity; ROC, PR and calibration; or confusion."""
    n_test = test["id"].nunique()
    if task == "regression":
        label = str(test["task"].iloc[0])
        add("parity", parity_figure(test["y_true"], test["y_pred"], label=label, title=title),
            f"Predicted vs measured {label} on the {n_test} test examples ({which}). Dashed: "
            "the identity line; RMSE and R² of this seed in the legend.")  # fmt: skip
    elif task in M.BINARY_TASKS:
        tasks = [(str(name), rows["y_true"].to_numpy().astype(int), rows["y_pred"].to_numpy())
                 for name, rows in test.groupby("task", sort=False)]  # fmt: skip
        per_task = "one panel per task, " if 1 < len(tasks) <= MAX_PANELS else ""
        panels = 1 < len(tasks) <= MAX_PANELS
        add("roc", roc_figure(tasks, title=title),
            f"ROC curve on the test split ({per_task}{which}); dashed: chance.",
            wide=panels)  # fmt: skip
        add("pr", pr_figure(tasks, title=title),
            f"Precision-recall curve on the test split ({per_task}{which}); dashed: the share "
            "of positives, what a random ranking achieves.", wide=panels)  # fmt: skip
        below = ("; below, how the predicted probabilities are spread" if len(tasks) == 1
                 else ", each task on its own (tasks are not pooled), Brier score and "
                 "prevalence in each title")  # fmt: skip
        add("calibration",
            calibration_figure(tasks, title=title),
            f"Calibration on the test split ({per_task}{which}): observed share of positives "
            f"against the mean predicted probability in bins holding equal numbers of "
            f"examples{below}.", wide=panels)  # fmt: skip
    elif task == "multiclass":
        classes = json.loads(Path(validate_summary).read_text()).get("classes")
        names = list(classes) if classes else sorted({str(int(v)) for v in test["y_true"]})
        add("confusion",
            confusion_figure(test["y_true"], test["y_pred"], names, title=title),
            f"Confusion matrix on the test split ({which}): each row is a true class (its "
            "test count beside it), the values are the share of that class predicted as each "
            "column.", wide=len(names) >= WIDE_CLASSES)  # fmt: skip
    else:
        raise ValueError(f"unknown task {task!r}")


def run_model_plots(
    *,
    dataset: str,
    model: str,
    family: str,
    task: str,
    kind: str,
    predictions: Mapping[int, str | Path],
    histories: Mapping[int, str | Path],
    metrics: Mapping[int, str | Path],
    clean_csv: str | Path,
    validate_summary: str | Path,
    primary_metric: str,
    rank_split: str,
    out_dir: str | Path,
) -> list[dict[str, Any]]:
    """The report_model rule: every plot of one model on one dataset, plus plots.json.

    predictions / histories / metrics: {seed: path} for every seed of the model;
    validate_summary: the dataset's validate summary.json (class names for multiclass).
    Returns the manifest: [{"name", "title", "png", "svg", "seed", "caption"}, ...].
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {int(s): json.loads(Path(p).read_text()) for s, p in metrics.items()}
    seed = representative_seed(results, primary_metric, rank_split)
    n_seeds = len(results)
    pred = read_predictions(predictions[seed])
    test = pred[(pred["split"] == "test") & pred["y_true"].notna()]
    if test.empty:
        raise ValueError(f"{predictions[seed]}: no labelled test rows to plot")
    which = (
        f"seed {seed}"
        if n_seeds == 1
        else f"seed {seed}, the median of {n_seeds} seeds by {rank_split} {primary_metric}"
    )
    title = f"{model} · {dataset} · seed {seed}"
    manifest: list[dict[str, Any]] = []

    def add(name: str, fig, caption: str, seeds: Sequence[int] = (seed,), wide=False) -> None:
        save(fig, out_dir / f"{name}.png", out_dir / f"{name}.svg")
        manifest.append({"name": name, "title": TITLES[name], "png": f"{name}.png",
                         "svg": f"{name}.svg", "seeds": list(seeds), "caption": caption,
                         "wide": bool(wide or name == "learning_curve")})  # fmt: skip
        log.info("%s/%s: %s written", dataset, model, name)

    _task_plots(add, task, test, title=title, which=which, validate_summary=validate_summary)
    _uncertainty_plots(add, task, pred, results[seed], title=title, which=which)

    clean = read_table(clean_csv)
    inputs = dict(zip(clean["id"], clean["input"], strict=True))
    missing = [i for i in test["id"] if i not in inputs]
    if missing:
        raise ValueError(f"{clean_csv}: test id {missing[0]!r} of {predictions[seed]} not found")
    sizes = example_sizes([inputs[i] for i in test["id"]], kind)
    errors, error_label = _errors(task, test)
    size_label = "sequence length (residues)" if kind == "protein" else "heavy atoms"
    keep = np.isfinite(sizes)
    add("error_vs_size",
        error_vs_size_figure(sizes[keep], errors[keep], size_label=size_label,
                             error_label=error_label, title=title),
        f"Per-example error ({error_label}) against {size_label} on the test split ({which}); "
        "the line is the mean error in bins of equal counts.")  # fmt: skip

    structures = None
    if kind == "smiles":
        classes = json.loads(Path(validate_summary).read_text()).get("classes")
        worst = largest_errors(test, [inputs[i] for i in test["id"]], errors, task, classes)
        structures = "largest_errors.json"
        (out_dir / structures).write_text(json.dumps(
            {"seed": seed, "error": error_label, "which": which, "molecules": worst}, indent=1
        ) + "\n")  # fmt: skip
        log.info("%s/%s: %d largest-error structures drawn", dataset, model, len(worst))

    histories_df = {int(s): pd.read_csv(p) for s, p in histories.items()}
    trained = {s: h for s, h in histories_df.items() if "train_loss" in h and len(h)}
    if trained:
        add("learning_curve",
            learning_curve_figure(trained, title=f"{model} · {dataset}"),
            f"Training (solid) and validation (dashed) loss per epoch for each of the "
            f"{len(trained)} seed(s), and the validation metric the training monitored.",
            seeds=sorted(trained))  # fmt: skip
    else:
        log.info("%s/%s: no epochs in the history (%s): no learning curve", dataset, model, family)

    (out_dir / "plots.json").write_text(
        json.dumps(
            {
                "dataset": dataset,
                "model": model,
                "family": family,
                "seed": seed,
                "plots": manifest,
                "structures": structures,
            },  # fmt: skip
            indent=1,
        )
        + "\n"  # fmt: skip
    )
    return manifest


def study_figure(trials: pd.DataFrame, best: Mapping, *, title: str):
    """A search study (biomol_dl.search): the optimization history (each trial's validation
    objective by trial number, pruned trials at their last reported value, failed ones on the
    axis, the best so far as a line) and the fANOVA parameter importances."""
    with _style():
        fig, axes = _figure(1, 2, size=(9.6, 3.8))
        ax, bars = axes[0]
        metric = f"val {best['metric']}"
        # a pruned trial has no value in the study: its last reported (per-epoch) value
        shown = trials["value"]
        if "last_value" in trials:
            shown = shown.where(trials["state"] != "pruned", trials["last_value"])
        # trials in storage that no slot counts (slots beyond a lowered n_trials): hollow
        counted = pd.Series(True, index=trials.index)
        if "counted" in trials:
            counted = trials["counted"].astype(str).str.lower().isin(["true", "1", "1.0"])
        for state, marker, color in (("complete", "o", "C0"), ("pruned", "x", "C1")):
            part = (trials["state"] == state) & counted
            ax.scatter(trials.loc[part, "number"], shown[part], marker=marker, color=color,
                       label=f"{state} ({int(part.sum())})", zorder=3)  # fmt: skip
        extra = ~counted & trials["state"].isin(["complete", "pruned"])
        if extra.any():
            ax.scatter(trials.loc[extra, "number"], shown[extra], marker="o", facecolors="none",
                       edgecolors="0.5", label=f"not counted ({int(extra.sum())})")  # fmt: skip
        failed = trials[trials["state"] == "fail"]
        if len(failed):
            ax.scatter(failed["number"], [ax.get_ylim()[0]] * len(failed), marker="v",
                       color="C3", label=f"failed ({len(failed)})", clip_on=False)  # fmt: skip
        complete = trials[(trials["state"] == "complete") & counted].sort_values("number")
        if len(complete):
            running = complete["value"].cummin() if best["direction"] == "minimize" else (
                complete["value"].cummax())  # fmt: skip
            ax.step(complete["number"], running, where="post", color="C2", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        ax.set_title("Optimization history")
        ax.legend(fontsize="small")
        importances = best.get("importances") or {}
        if importances:
            names = list(importances)[::-1]
            bars.barh(names, [importances[n] for n in names], color="C0")
            bars.set_xlabel("fANOVA importance")
        else:
            bars.text(0.5, 0.5, "too few completed trials", ha="center", va="center",
                      transform=bars.transAxes)  # fmt: skip
            bars.set_axis_off()
        bars.set_title("Parameter importances")
        fig.suptitle(title)
    return fig
