"""Uncertainty calibrated on validation, scored on test, for a finished regression run.

For whoever checks issue 14's numbers on a real dataset. Reads a run's clean table, split files,
Morgan features and trained models' predictions (nothing is written there); re-fits the random
forest per seed into --out so its predictions carry the spread across trees (y_sd), then prints,
per model, the mean and sd over seeds of the test metrics of biomol_dl.evaluate's
`test_calibrated` block, and coverage / RMSE / width in and out of the applicability domain
(nearest-neighbour Tanimoto to the seed's training molecules >= 0.3):

    PYTHONPATH=scripts python scripts/bench/uncertainty_check.py \\
        --results /work/runs/default/results/b3db_logbb --models dmpnn dmpnn_pretrained
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from biomol_dl import uncertainty as U
from biomol_dl.domain import THRESHOLD, Reference
from biomol_dl.evaluate import calibrated_test_metrics, read_predictions
from biomol_dl.io import read_table
from biomol_dl.models.rf import RandomForestFamily, run_rf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, help="results/<dataset> of a finished run")
    ap.add_argument("--label", default="logBB")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="*", default=[], help="trained models to score as well")
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--out", default="/tmp/uncertainty_check")
    args = ap.parse_args()
    results, out = Path(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clean = read_table(results / "validate" / "clean.csv").set_index("id")
    scores, domain = {}, []
    for seed in args.seeds:
        rf_csv = out / f"rf_seed{seed}.csv"
        spec = {"family": "rf", "featurizer": "morgan", "params": {"n_estimators": args.trees}}
        run_rf(clean_csv=results / "validate" / "clean.csv",
               split_csv=results / "split" / f"seed{seed}.csv",
               features_pt=results / "featurize" / "morgan.pt", model_spec=spec,
               task="regression", label_columns=[args.label], seed=seed,
               out_model=out / f"rf{seed}.skops", out_predictions=rf_csv,
               out_history=out / f"history{seed}.csv",
               family=RandomForestFamily(spec["params"]))  # fmt: skip
        paths = {"rf (tree sd)": rf_csv}
        paths.update(
            {m: results / "train" / m / f"seed{seed}" / "predictions.csv" for m in args.models}
        )
        for name, path in paths.items():
            pred = read_predictions(path)
            scores.setdefault(name, []).append(
                calibrated_test_metrics(pred, "regression", U.Settings())["mean"]
            )
            domain.extend(_by_domain(pred, clean, name, seed))
    for name, rows in scores.items():
        shown = {k: f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows], ddof=1):.3f}"
                 for k in sorted(rows[0])}  # fmt: skip
        print(name, shown)
    table = pd.DataFrame(domain).groupby(["model", "domain"])[["n", "coverage", "rmse", "width"]]
    print(table.mean().round(3))


def _by_domain(pred: pd.DataFrame, clean: pd.DataFrame, name: str, seed: int) -> list[dict]:
    train, val, test = (pred[pred["split"] == s] for s in ("train", "val", "test"))
    reference = Reference(clean.loc[train["id"], "input"].tolist(), "smiles")
    similarity = reference.similarity(clean.loc[test["id"], "input"].tolist())
    sd = "y_sd" in pred
    fitted = U.fit_conformal_interval(val["y_true"], val["y_pred"], val["y_sd"] if sd else None)
    lo, hi = fitted.interval(test["y_pred"], test["y_sd"] if sd else None)
    y, p = test["y_true"].to_numpy(), test["y_pred"].to_numpy()
    rows = []
    for flag, mask in (
        ("in", similarity >= THRESHOLD["smiles"]),
        ("out", similarity < THRESHOLD["smiles"]),
    ):
        if mask.any():
            rows.append({"model": name, "seed": seed, "domain": flag, "n": int(mask.sum()),
                         "coverage": float(np.mean((y >= lo)[mask] & (y <= hi)[mask])),
                         "rmse": float(np.sqrt(np.mean((y - p)[mask] ** 2))),
                         "width": float(np.mean((hi - lo)[mask]))})  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
