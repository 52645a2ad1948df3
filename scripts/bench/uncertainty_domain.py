"""Coverage of the calibrated interval in and out of the applicability domain, for a finished run.

For whoever checks issue 14's out-of-domain question on a regression dataset
(BENCHMARKS.md, "Uncertainty out of the applicability domain"). Reads a workdir's clean table, split files, predictions and
metrics.json (writes nothing there). Per model and seed:
  - the interval evaluate scores (biomol_dl.evaluate.calibrated_test_metrics, fitted on the
    validation rows with the model's own `uncertainty:` settings read back from its metrics.json,
    and checked against the coverage recorded there): normalized by y_sd where the model has one,
    else absolute; the absolute one beside it;
  - each test molecule's nearest-neighbour similarity to that seed's training molecules
    (biomol_dl.domain on trust.training_inputs: the fingerprint and threshold of the predict
    rule's applicability column). Predict's reference is the union over the seeds it ensembles;
    a seed's test rows are scored against that seed's training molecules alone, since on a
    scaffold split the other seeds' training sets hold them.
Test rows of all seeds are pooled per model and binned by similarity quantile (edges from the
pooled test rows) and by the domain flag; per bin: coverage, mean width and RMSE.

    PYTHONPATH=scripts python scripts/bench/uncertainty_domain.py --workdir /work/bench_uq_logbb \\
        --dataset b3db_logbb --models dmpnn_chemprop_recipe dmpnn_chemprop_recipe_mve rf_morgan \\
        --json /work/bench_uq_logbb/uncertainty_domain_b3db_logbb.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact, spearmanr

from biomol_dl import domain, trust
from biomol_dl import uncertainty as U
from biomol_dl.evaluate import CALIBRATED, calibrated_test_metrics, read_predictions
from biomol_dl.io import read_table


def seed_rows(results: Path, model: str, seed: int, kind: str) -> pd.DataFrame:
    """One row per val and test prediction: similarity, in_domain, y_true, y_pred, lo / hi (the
    scored interval) and abs_lo / abs_hi (the absolute one)."""
    metrics_json = results / "evaluate" / model / f"seed{seed}" / "metrics.json"
    block = json.loads(metrics_json.read_text()).get(CALIBRATED)
    if not block:
        raise ValueError(f"{metrics_json}: no {CALIBRATED} block")
    fields = {f.name for f in dataclasses.fields(U.Settings)}
    settings = U.Settings(**{k: v for k, v in block["settings"].items() if k in fields})
    pred = read_predictions(results / "train" / model / f"seed{seed}" / "predictions.csv")
    refit = calibrated_test_metrics(pred, "regression", settings)
    clean_csv, split_csv = results / "validate" / "clean.csv", results / "split" / f"seed{seed}.csv"
    reference = domain.Reference(trust.training_inputs(clean_csv, [split_csv]), kind)
    inputs = read_table(clean_csv).set_index("id")["input"]
    frames = []
    for task, fitted in refit["calibrators"].items():
        recorded = block["tasks"][task]["interval_coverage"]
        if not math.isclose(refit["tasks"][task]["interval_coverage"], recorded, abs_tol=1e-9):
            raise ValueError(
                f"{metrics_json}: task {task}: re-fitted coverage differs from evaluate's"
            )
        for split in ("val", "test"):  # val: only to compare its similarity with test's
            rows = pred[(pred["split"] == split) & (pred["task"] == task)]
            rows = rows[np.isfinite(rows["y_true"])]
            sd = rows["y_sd"] if "interval" in fitted else None
            chosen = U.ConformalInterval(**fitted.get("interval", fitted["abs_interval"]))
            lo, hi = chosen.interval(rows["y_pred"], sd)
            abs_lo, abs_hi = U.ConformalInterval(**fitted["abs_interval"]).interval(rows["y_pred"])
            similarity = reference.similarity(inputs.loc[rows["id"]].tolist())
            frames.append(pd.DataFrame({
                "model": model, "seed": seed, "task": task, "split": split,
                "id": rows["id"].to_numpy(), "similarity": similarity,
                "in_domain": similarity >= reference.threshold,
                "y_true": rows["y_true"].to_numpy(), "y_pred": rows["y_pred"].to_numpy(),
                "lo": lo, "hi": hi, "abs_lo": abs_lo, "abs_hi": abs_hi,
                "normalized": "interval" in fitted,
            }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def bin_stats(rows: pd.DataFrame) -> dict:
    y, err = rows["y_true"].to_numpy(), (rows["y_true"] - rows["y_pred"]).to_numpy()
    out = {"n": len(rows), "similarity": float(rows["similarity"].mean())}
    for prefix in ("", "abs_"):
        lo, hi = rows[f"{prefix}lo"].to_numpy(), rows[f"{prefix}hi"].to_numpy()
        out.update({f"{prefix}{k}": v for k, v in U.interval_metrics(y, lo, hi).items()})
    out["rmse"] = float(np.sqrt(np.mean(err**2)))
    return out


def summarize(rows: pd.DataFrame, n_bins: int, threshold: float) -> dict:
    """Per model: test rows overall, per similarity quantile bin and per domain flag (pooled
    seeds); the val rows' similarity beside the test rows'."""
    val, rows = rows[rows["split"] == "val"], rows[rows["split"] == "test"]
    edges = np.quantile(
        rows.drop_duplicates(["seed", "id"])["similarity"], np.linspace(0, 1, n_bins + 1)
    )
    rows = rows.assign(bin=np.searchsorted(edges[1:-1], rows["similarity"], side="right"))
    covered = (rows["y_true"] >= rows["lo"]) & (rows["y_true"] <= rows["hi"])
    rows = rows.assign(covered=covered)
    out = {"edges": edges.tolist(), "threshold": threshold, "models": {}}
    for model, m in rows.groupby("model", sort=False):
        bins = {}
        for b, part in m.groupby("bin"):
            bins[f"Q{b + 1} [{edges[b]:.2f}, {edges[b + 1]:.2f}]"] = bin_stats(part)
        for flag, part in m.groupby("in_domain"):
            bins["in domain" if flag else "out of domain"] = bin_stats(part)
        misses = m[~m["covered"]]
        counts = pd.crosstab(m["in_domain"], m["covered"]).reindex(
            index=[True, False], columns=[True, False], fill_value=0
        )
        by_seed = m.groupby(["seed", "in_domain"])["covered"].mean().unstack()
        out["models"][model] = {
            "normalized": bool(m["normalized"].all()),
            "overall": bin_stats(m),
            "per_seed_coverage": m.groupby("seed")["covered"].mean().round(4).tolist(),
            "fraction_flagged": float((~m["in_domain"]).mean()),
            "val_fraction_flagged": float((~val.loc[val["model"] == model, "in_domain"]).mean()),
            "val_similarity": float(val.loc[val["model"] == model, "similarity"].mean()),
            "misses_flagged": float((~misses["in_domain"]).mean()) if len(misses) else math.nan,
            # two-sided Fisher exact test of coverage in vs out of domain (pooled rows)
            "fisher_p_in_vs_out": float(fisher_exact(counts.to_numpy()).pvalue),
            "per_seed_coverage_in": by_seed.get(True, pd.Series()).round(4).tolist(),
            "per_seed_coverage_out": by_seed.get(False, pd.Series()).round(4).tolist(),
            "spearman_similarity_abs_error": float(
                spearmanr(m["similarity"], (m["y_true"] - m["y_pred"]).abs()).statistic
            ),
            "bins": bins,
            "threshold_sweep": [_flag_at(m, t) for t in SWEEP],
        }
    return out


SWEEP = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def _flag_at(rows: pd.DataFrame, threshold: float) -> dict:
    """What a flag at another similarity threshold would mark and catch (test rows)."""
    flagged = rows["similarity"] < threshold
    return {
        "threshold": threshold,
        "flagged": float(flagged.mean()),
        "misses_flagged": float(flagged[~rows["covered"]].mean()),
        "coverage_flagged": float(rows.loc[flagged, "covered"].mean())
        if flagged.any()
        else math.nan,
        "coverage_kept": float(rows.loc[~flagged, "covered"].mean())
        if (~flagged).any()
        else math.nan,
    }


def markdown(summary: dict) -> str:
    keys = ("similarity", "interval_coverage", "interval_width", "rmse")
    abs_keys = ("abs_interval_coverage", "abs_interval_width")
    lines = [
        "| model | rows | n | mean sim. | coverage | width | RMSE | abs. coverage | abs. width |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, s in summary["models"].items():
        for name, b in {"all": s["overall"], **s["bins"]}.items():
            cells = [model, name, str(b["n"]), *(f"{b[k]:.3f}" for k in keys)]
            cells += [f"{b[k]:.3f}" for k in abs_keys] if s["normalized"] else ["—", "—"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | test flagged | val flagged | val mean sim. | misses flagged | Fisher p in/out "
        "| Spearman sim. / \\|error\\| | coverage per seed: all; in; out |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, s in summary["models"].items():
        keys = ("fraction_flagged", "val_fraction_flagged", "val_similarity", "misses_flagged",
                "fisher_p_in_vs_out", "spearman_similarity_abs_error")  # fmt: skip
        cells = [model, *(f"{s[k]:.3f}" for k in keys)]
        per_seed = ("per_seed_coverage", "per_seed_coverage_in", "per_seed_coverage_out")
        cells.append("; ".join(" ".join(f"{c:.3f}" for c in s[k]) for k in per_seed))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | threshold | flagged | misses flagged | coverage flagged | coverage kept |",
        "|---|---|---|---|---|---|",
    ]
    for model, s in summary["models"].items():
        for f in s["threshold_sweep"]:
            cells = [model, *(f"{f[k]:.3f}" if k != "threshold" else f"{f[k]:.2f}" for k in f)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--kind", default="smiles", choices=sorted(domain.THRESHOLD))
    ap.add_argument("--bins", type=int, default=4, help="similarity quantile bins (4: quartiles)")
    ap.add_argument("--json", type=Path, help="write the summary and every val and test row here")
    args = ap.parse_args()
    results = args.workdir / "results" / args.dataset
    rows = pd.concat(
        [seed_rows(results, m, s, args.kind) for m in args.models for s in args.seeds],
        ignore_index=True,
    )
    summary = summarize(rows, args.bins, domain.THRESHOLD[args.kind])
    print(f"{args.dataset}, seeds {args.seeds}, domain threshold {summary['threshold']}")
    print(markdown(summary))
    if args.json:
        payload = {"dataset": args.dataset, "seeds": args.seeds, **summary,
                   "rows": rows.to_dict(orient="records")}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=1, default=float))


if __name__ == "__main__":
    main()
