"""chemprop 2.3's mean-variance (MVE) uncertainty and calibrators beside ours, on our split files.

For BENCHMARKS.md's uncertainty section (issue 14). Run with the project venv from the
repository root, for a workdir that holds results/<dataset>/validate/clean.csv and
results/<dataset>/split/seed<N>.csv (and, to compare, our own trained models' predictions):

    CHEMPROP_PYTHON=/work/main/.venv-chemprop/bin/python PYTHONPATH=scripts \\
        python scripts/bench/uncertainty_side_by_side.py --workdir /tmp/h9_bench \\
        --dataset esol --seed 0 --ours dmpnn_chemprop_recipe dmpnn_chemprop_recipe_mve

What it does: trains chemprop with `-t regression-mve` on our split (chemprop_side_by_side.py's
inputs and timing), predicts the validation and test rows with `--uncertainty-method mve`, and
scores (a) chemprop's raw MVE variance through OUR calibration (biomol_dl.evaluate's
`calibrated_test_metrics`: conformal intervals normalized by the sd and variance scaling, fitted
on validation), so the two heads are compared by one procedure; (b) chemprop's own calibrators
fitted on the validation rows (`--cal-path`): zscaling (its sd, scored with our metric
functions), zelikman-interval and conformal-regression at the same 90 % (their intervals'
coverage and width). Our models' rows come from their predictions.csv through the same
calibrated_test_metrics. Prints one markdown table; writes <workdir>/chemprop_mve/... files.
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

from biomol_dl import uncertainty as U  # noqa: E402
from biomol_dl.evaluate import calibrated_test_metrics, read_predictions  # noqa: E402
from biomol_dl.metrics import task_metrics  # noqa: E402

COVERAGE = 0.9
COLUMNS = ("rmse", "abs_interval_coverage", "abs_interval_width", "interval_coverage",
           "interval_width", "miscalibration_area", "ence", "nll", "sd_spearman")  # fmt: skip


def chemprop_predict(out_dir: Path, model: Path, data: Path, name: str, extra: list[str]) -> Path:
    """`chemprop predict` of `data` with the MVE estimate (and `extra` calibration args)."""
    out = out_dir / f"{name}.csv"
    if out.exists():  # predicted by an earlier call (delete the folder to redo)
        return out
    chemprop = str(Path(chemprop_python()).with_name("chemprop"))
    cmd = [chemprop, "predict", "-i", str(data), "--model-paths", str(model), "-s", "smiles",
           "--uncertainty-method", "mve", "--num-workers", "0", "-o", str(out), *extra]  # fmt: skip
    with open(out_dir / f"{name}.log", "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode:
            raise RuntimeError(f"chemprop predict failed; see {out_dir}/{name}.log")
    return out


def long_frame(inputs: dict, split: str, pred: pd.DataFrame, sd) -> pd.DataFrame:
    rows = inputs["clean"].iloc[inputs["indices"][split]].reset_index(drop=True)
    if not (pred["smiles"].astype(str).to_numpy() == rows["input"].astype(str).to_numpy()).all():
        raise RuntimeError(f"chemprop's {split} predictions are not in our split's order")
    label, target = inputs["labels"][0], inputs["targets"][0]
    return pd.DataFrame({"id": rows["id"], "split": split, "task": label, "y_true": rows[label],
                         "y_pred": pred[target].to_numpy(float), "y_sd": sd})  # fmt: skip


def chemprop_rows(workdir: Path, dataset: str, seed: int) -> dict[str, dict]:
    out_dir = workdir / "chemprop_mve" / dataset / f"seed{seed}"
    inputs = prepare_inputs(workdir, dataset, seed, out_dir)
    if len(inputs["targets"]) != 1:
        raise SystemExit("one regression target only")
    timing_file = out_dir / "timing.json"
    if not timing_file.exists():
        timing = run_chemprop(inputs, out_dir, seed, ["-t", "regression-mve"])
        timing_file.write_text(json.dumps(timing, indent=2))
    timing = json.loads(timing_file.read_text())
    model = sorted((out_dir / "chemprop").rglob("model_0/best*.pt"))[0]
    data = pd.read_csv(out_dir / "data.csv")
    paths = {}
    for split in ("val", "test"):
        paths[split] = out_dir / f"{split}.csv"
        data.iloc[inputs["indices"][split]].to_csv(paths[split], index=False)
    t0 = time.perf_counter()
    raw = {s: pd.read_csv(chemprop_predict(out_dir, model, paths[s], f"pred_{s}", []))
           for s in ("val", "test")}  # fmt: skip
    unc = f"{inputs['targets'][0]}_unc"
    frames = [long_frame(inputs, s, raw[s], np.sqrt(raw[s][unc].to_numpy(float)))
              for s in ("val", "test")]  # fmt: skip
    pred = pd.concat(frames, ignore_index=True)
    out = {"chemprop MVE, our calibration": _ours(pred)}
    out["chemprop MVE, our calibration"]["train_s"] = timing["wall_seconds"]
    cal = ["--cal-path", str(paths["val"])]
    test = frames[1]
    z = pd.read_csv(chemprop_predict(out_dir, model, paths["test"], "pred_zscaling",
                                     [*cal, "--calibration-method", "zscaling"]))  # fmt: skip
    sd = np.sqrt(z[unc].to_numpy(float))
    y, p = test["y_true"].to_numpy(float), test["y_pred"].to_numpy(float)
    row = {
        "rmse": task_metrics("regression", y, p)["rmse"],
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
    print(f"chemprop predictions: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out


def _ours(pred: pd.DataFrame) -> dict:
    test = pred[pred["split"] == "test"]
    block = calibrated_test_metrics(pred, "regression", U.Settings(coverage=COVERAGE))
    rmse = task_metrics("regression", test["y_true"], test["y_pred"])["rmse"]
    return {"rmse": rmse, **block["mean"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ours", nargs="*", default=[], help="our trained models to score")
    ap.add_argument("--summarize", type=int, nargs="*", help="print mean ± sd of these seeds' "
                    "tables (written by earlier calls) and stop")  # fmt: skip
    args = ap.parse_args(argv)
    if args.summarize:
        summarize(args.workdir, args.dataset, args.summarize)
        return
    rows = {}
    for model in args.ours:
        path = args.workdir / "results" / args.dataset / "train" / model / f"seed{args.seed}"
        pred = read_predictions(path / "predictions.csv")
        rows[model] = _ours(pred)
    rows.update(chemprop_rows(args.workdir, args.dataset, args.seed))
    out = args.workdir / "chemprop_mve" / args.dataset / f"seed{args.seed}" / "uq_table.json"
    out.write_text(json.dumps(rows, indent=2, default=float))
    print("| model | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, row in rows.items():
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else "—" for c in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")


def summarize(workdir: Path, dataset: str, seeds: list[int]) -> None:
    """Mean ± sd over seeds of the rows every seed's uq_table.json has."""
    tables = [json.loads((workdir / "chemprop_mve" / dataset / f"seed{s}" / "uq_table.json")
                         .read_text()) for s in seeds]  # fmt: skip
    names = [n for n in tables[0] if all(n in t for t in tables)]
    print(f"| model (seeds {', '.join(map(str, seeds))}) | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name in names:
        cells = []
        for c in COLUMNS:
            values = [t[name].get(c) for t in tables]
            if any(v is None for v in values):
                cells.append("—")
                continue
            cells.append(f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
