"""chemprop 2.3's uncertainty and calibrators beside ours, on our split files.

For BENCHMARKS.md's uncertainty section (issue 14). Run with the project venv from the
repository root, for a workdir that holds results/<dataset>/validate/clean.csv and
results/<dataset>/split/seed<N>.csv (and, to compare, our own trained models' predictions):

    CHEMPROP_PYTHON=/work/main/.venv-chemprop/bin/python PYTHONPATH=scripts \\
        python scripts/bench/uncertainty_side_by_side.py --workdir /tmp/h9_bench \\
        --dataset esol --seed 0 --ours dmpnn_chemprop_recipe dmpnn_chemprop_recipe_mve

Regression: trains chemprop with `-t regression-mve` on our split (chemprop_side_by_side.py's
inputs and timing), predicts the validation and test rows with `--uncertainty-method mve`, and
scores (a) chemprop's raw MVE variance through OUR calibration (biomol_dl.evaluate's
`calibrated_test_metrics`: conformal intervals normalized by the sd and variance scaling, fitted
on validation), so the two heads are compared by one procedure; (b) chemprop's own calibrators
fitted on the validation rows (`--cal-path`): zscaling (its sd, scored with our metric
functions), zelikman-interval and conformal-regression at the same 90 % (their intervals'
coverage and width). Outputs under <workdir>/chemprop_mve/<dataset>/seed<N>/.

Binary and multitask classification: trains chemprop with `-t classification`, predicts the
validation and test probabilities and scores (a) them through OUR calibration, once per
calibrator (temperature, Platt, isotonic; conformal sets at 90 %), and (b) chemprop's own
calibrators fitted on the validation rows: platt, isotonic and, for two or more tasks,
conformal-multilabel (alpha 0.1; its in / out sets read as per-task prediction sets). chemprop
2.3.1's `predict --cal-path` fits these but does not write the calibrated probabilities of a
classification model (save_predictions skips the `_unc` columns for it), so they are fitted and
applied here by chemprop's own calibrator classes, as its predict calls them (`fit(val
probabilities, val labels, label mask)`, then `apply(test probabilities)`). Outputs under
<workdir>/chemprop_uq/<dataset>/seed<N>/.

Our models' rows come from their predictions.csv through the same calibrated_test_metrics.
Prints one markdown table; writes uq_table.json beside chemprop's files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from chemprop_side_by_side import prepare_inputs, run_chemprop  # noqa: E402
from peers import chemprop_python  # noqa: E402

from biomol_dl import metrics as M  # noqa: E402
from biomol_dl import uncertainty as U  # noqa: E402
from biomol_dl.evaluate import (  # noqa: E402
    calibrated_test_metrics,
    evaluate_predictions,
    read_predictions,
)

COVERAGE = 0.9
COLUMNS = {
    "regression": ("rmse", "abs_interval_coverage", "abs_interval_width", "interval_coverage",
                   "interval_width", "miscalibration_area", "ence", "nll", "sd_spearman"),
    "classification": ("roc_auc", "raw_ece", "raw_brier", "raw_nll", "ece", "brier", "nll",
                       "set_size", "set_coverage"),
}  # fmt: skip
POINT = {"regression": "rmse", "classification": "roc_auc"}
OURS_CALIBRATORS = ("temperature", "platt", "isotonic")
# chemprop's classification calibrators fitted and applied by its own classes (see the docstring)
CHEMPROP_CALIBRATE = """
import sys, numpy as np, torch
from chemprop.uncertainty import UncertaintyCalibratorRegistry
from chemprop.utils import Factory
d, method, alpha = np.load(sys.argv[1]), sys.argv[3], float(sys.argv[4])
y = d["y_val"]
mask = torch.from_numpy(np.isfinite(y))
cal = Factory.build(UncertaintyCalibratorRegistry[method], alpha=alpha)
cal.fit(torch.from_numpy(d["p_val"]), torch.from_numpy(np.nan_to_num(y, nan=0.0)), mask)
np.save(sys.argv[2], cal.apply(torch.from_numpy(d["p_test"])).numpy())
"""


def kind(task: str) -> str:
    return "regression" if task == "regression" else "classification"


def dataset_task(workdir: Path, dataset: str) -> str:
    summary = workdir / "results" / dataset / "validate" / "summary.json"
    return json.loads(summary.read_text())["task"]


def out_dir_of(workdir: Path, dataset: str, seed: int) -> Path:
    folder = {"regression": "chemprop_mve", "classification": "chemprop_uq"}
    return workdir / folder[kind(dataset_task(workdir, dataset))] / dataset / f"seed{seed}"


def _logged(cmd: list[str], out_dir: Path, name: str, what: str) -> None:
    with open(out_dir / f"{name}.log", "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode:
            raise RuntimeError(f"{what} failed; see {out_dir}/{name}.log")


def chemprop_predict(out_dir: Path, model: Path, data: Path, name: str, extra: list[str]) -> Path:
    """`chemprop predict` of `data` (with `extra`: the uncertainty and calibration args)."""
    out = out_dir / f"{name}.csv"
    if out.exists():  # predicted by an earlier call (delete the folder to redo)
        return out
    chemprop = str(Path(chemprop_python()).with_name("chemprop"))
    cmd = [chemprop, "predict", "-i", str(data), "--model-paths", str(model), "-s", "smiles",
           *extra, "--num-workers", "0", "-o", str(out)]  # fmt: skip
    _logged(cmd, out_dir, name, "chemprop predict")
    return out


def chemprop_calibrate(out_dir: Path, method: str, arrays: dict) -> np.ndarray:
    """chemprop's calibrator `method` fitted on arrays' p_val / y_val, applied to p_test."""
    out = out_dir / f"cal_{method}.npy"
    if not out.exists():
        np.savez(out_dir / "cal_inputs.npz", **arrays)
        cmd = [chemprop_python(), "-c", CHEMPROP_CALIBRATE, str(out_dir / "cal_inputs.npz"),
               str(out), method, str(round(1 - COVERAGE, 6))]  # fmt: skip
        _logged(cmd, out_dir, f"cal_{method}", f"chemprop calibrator {method}")
    return np.load(out)


def long_frame(inputs: dict, split: str, pred: pd.DataFrame, sd=None) -> pd.DataFrame:
    """Our long format of chemprop's predictions of one split (its rows in our split's order)."""
    rows = inputs["clean"].iloc[inputs["indices"][split]].reset_index(drop=True)
    if not (pred["smiles"].astype(str).to_numpy() == rows["input"].astype(str).to_numpy()).all():
        raise RuntimeError(f"chemprop's {split} predictions are not in our split's order")
    parts = []
    for label, target in zip(inputs["labels"], inputs["targets"], strict=True):
        part = pd.DataFrame({"id": rows["id"], "split": split, "task": label,
                             "y_true": rows[label], "y_pred": pred[target].to_numpy(float)})  # fmt: skip
        if sd is not None:
            part["y_sd"] = sd
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def chemprop_rows(workdir: Path, dataset: str, seed: int, train_args: list[str]) -> dict:
    """Train chemprop on our split (once), predict val and test, and score both ways."""
    out_dir = out_dir_of(workdir, dataset, seed)
    inputs = prepare_inputs(workdir, dataset, seed, out_dir)
    regression = inputs["task"] == "regression"
    if regression and len(inputs["targets"]) != 1:
        raise SystemExit("one regression target only")
    timing_file = out_dir / "timing.json"
    if not timing_file.exists():
        head = ["-t", "regression-mve"] if regression else []  # else run_chemprop's task
        timing = run_chemprop(inputs, out_dir, seed, [*head, *train_args])
        timing_file.write_text(json.dumps(timing, indent=2))
    timing = json.loads(timing_file.read_text())
    model = sorted((out_dir / "chemprop").rglob("model_0/best*.pt"))[0]
    data = pd.read_csv(out_dir / "data.csv")
    paths = {}
    for split in ("val", "test"):
        paths[split] = out_dir / f"{split}.csv"
        data.iloc[inputs["indices"][split]].to_csv(paths[split], index=False)
    t0 = time.perf_counter()
    method = ["--uncertainty-method", "mve"] if regression else []
    raw = {s: pd.read_csv(chemprop_predict(out_dir, model, paths[s], f"pred_{s}", method))
           for s in ("val", "test")}  # fmt: skip
    rows = (_regression_rows if regression else _classification_rows)(
        inputs, out_dir, model, paths, raw
    )
    print(f"chemprop predictions: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    next(iter(rows.values()))["train_s"] = timing["wall_seconds"]
    return rows


def _regression_rows(inputs, out_dir, model, paths, raw) -> dict:
    unc = f"{inputs['targets'][0]}_unc"
    frames = [long_frame(inputs, s, raw[s], np.sqrt(raw[s][unc].to_numpy(float)))
              for s in ("val", "test")]  # fmt: skip
    pred = pd.concat(frames, ignore_index=True)
    out = {"chemprop MVE, our calibration": _ours(pred, "regression")}
    cal = ["--uncertainty-method", "mve", "--cal-path", str(paths["val"])]
    test = frames[1]
    z = pd.read_csv(chemprop_predict(out_dir, model, paths["test"], "pred_zscaling",
                                     [*cal, "--calibration-method", "zscaling"]))  # fmt: skip
    sd = np.sqrt(z[unc].to_numpy(float))
    y, p = test["y_true"].to_numpy(float), test["y_pred"].to_numpy(float)
    row = {
        "rmse": M.task_metrics("regression", y, p)["rmse"],
        **U.sd_metrics(y, p, sd),
        "sd_spearman": U.sd_error_spearman(y, p, sd),
    }
    out["chemprop MVE + zscaling"] = row
    for method, args in (
        ("zelikman-interval", ["--calibration-interval-percentile", str(100 * COVERAGE)]),
        ("conformal-regression", ["--conformal-alpha", str(round(1 - COVERAGE, 6))]),
    ):
        cal_pred = pd.read_csv(chemprop_predict(out_dir, model, paths["test"], f"pred_{method}",
                                                [*cal, "--calibration-method", method, *args]))  # fmt: skip
        half = cal_pred[unc].to_numpy(float)
        half = np.sqrt(half) if method == "zelikman-interval" else half  # a variance / a half
        out[f"chemprop MVE + {method}"] = {
            "rmse": row["rmse"],
            **U.interval_metrics(y, p - half, p + half),
        }
    return out


def _classification_rows(inputs, out_dir, model, paths, raw) -> dict:
    task, targets, labels = inputs["task"], inputs["targets"], inputs["labels"]
    pred = pd.concat([long_frame(inputs, s, raw[s]) for s in ("val", "test")], ignore_index=True)
    out = {f"chemprop + our {m}": _ours(pred, task, m) for m in OURS_CALIBRATORS}
    clean, idx, arrays = inputs["clean"], inputs["indices"], {}
    for s in ("val", "test"):
        arrays[f"p_{s}"] = raw[s][targets].to_numpy(np.float64)
        arrays[f"y_{s}"] = clean.iloc[idx[s]][labels].to_numpy(np.float64)
    fit_on = {k: arrays[k] for k in ("p_val", "y_val", "p_test")}  # no test label goes to chemprop
    methods = ["platt", "isotonic"] + (["conformal-multilabel"] if len(targets) > 1 else [])
    for method in methods:
        name = f"chemprop + its {method}"
        try:
            fitted = chemprop_calibrate(out_dir, method, fit_on)
        except RuntimeError as exc:  # a calibrator chemprop cannot fit here: a row saying so
            print(f"{name}: {exc}", file=sys.stderr)
            out[name] = {"error": str(exc)}
            continue
        out[name] = {
            "roc_auc": out["chemprop + our temperature"]["roc_auc"],
            **_scored(method, fitted, arrays["y_test"], arrays["p_test"]),
        }
    return out


def _scored(method: str, fitted: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict:
    """Our metrics of a chemprop calibrator's test output [N, T] (conformal-multilabel: [N, T,
    (in, out)]), each task on its labelled rows, then the mean over tasks."""
    per_task = {}
    for j in range(y.shape[1]):
        k = np.isfinite(y[:, j])
        if method == "conformal-multilabel":  # a task's set: class 0 unless in, class 1 if out
            sets = np.stack([fitted[k, j, 0] == 0, fitted[k, j, 1] == 1], axis=1)
            per_task[j] = U.set_metrics(y[k, j], sets)
        else:
            per_task[j] = {
                **U.probability_metrics(y[k, j], p[k, j], prefix="raw_"),
                **U.probability_metrics(y[k, j], fitted[k, j]),
            }
    return M.mean_over_tasks(per_task)


def _ours(pred: pd.DataFrame, task: str, probability: str = "temperature") -> dict:
    """The point metric and the calibrated uncertainty metrics of one model's predictions."""
    settings = U.Settings(coverage=COVERAGE, probability=probability)
    block = calibrated_test_metrics(pred, task, settings)
    point = POINT[kind(task)]
    return {point: evaluate_predictions(pred, task)["test"]["mean"][point], **block["mean"]}


def our_rows(workdir: Path, dataset: str, seed: int, models: list[str]) -> dict:
    task, rows = dataset_task(workdir, dataset), {}
    for model in models:
        path = workdir / "results" / dataset / "train" / model / f"seed{seed}"
        pred = read_predictions(path / "predictions.csv")
        if task == "regression":
            rows[model] = _ours(pred, task)
        else:
            rows.update({f"{model} + our {m}": _ours(pred, task, m) for m in OURS_CALIBRATORS})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ours", nargs="*", default=[], help="our trained models to score")
    ap.add_argument("--chemprop-epochs", type=int, help="chemprop's --epochs (default: its 50)")
    ap.add_argument("--summarize", type=int, nargs="*", help="print mean ± sd of these seeds' "
                    "tables (written by earlier calls) and stop")  # fmt: skip
    args = ap.parse_args(argv)
    columns = COLUMNS[kind(dataset_task(args.workdir, args.dataset))]
    if args.summarize:
        summarize(args.workdir, args.dataset, args.summarize, columns)
        return
    train_args = [] if args.chemprop_epochs is None else ["--epochs", str(args.chemprop_epochs)]
    rows = our_rows(args.workdir, args.dataset, args.seed, args.ours)
    rows.update(chemprop_rows(args.workdir, args.dataset, args.seed, train_args))
    out = out_dir_of(args.workdir, args.dataset, args.seed) / "uq_table.json"
    out.write_text(json.dumps(rows, indent=2, default=float))
    print("| model | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else "—" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")


def summarize(workdir: Path, dataset: str, seeds: list[int], columns) -> None:
    """Mean ± sd over seeds of the rows every seed's uq_table.json has."""
    tables = [json.loads((out_dir_of(workdir, dataset, s) / "uq_table.json").read_text())
              for s in seeds]  # fmt: skip
    names = [n for n in tables[0] if all(n in t for t in tables)]
    print(f"| model (seeds {', '.join(map(str, seeds))}) | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in names:
        cells = []
        for c in columns:
            values = [t[name].get(c) for t in tables]
            if any(v is None for v in values):
                cells.append("—")
                continue
            cells.append(f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
