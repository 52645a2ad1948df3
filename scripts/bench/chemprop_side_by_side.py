"""Train chemprop 2.x on biomol-dl's own split files and score it with biomol_dl's metrics.

For the benchmark in BENCHMARKS.md ("Molecular models vs chemprop"). Run with the project venv,
from a workflow directory that already holds results/<dataset>/validate/clean.csv and
results/<dataset>/split/seed<N>.csv:

    python scripts/bench/chemprop_side_by_side.py --workdir ../bench --dataset esol --seed 0

What it does: writes chemprop's input CSV (SMILES + labels, clean-table order) and a
--splits-file with the train / val / test row indices of our split file; runs chemprop's CLI
with its defaults (through chemprop_timed.py, which only adds an epoch clock) under
/usr/bin/time -v; maps chemprop's test predictions back to our ids and scores them with
biomol_dl.evaluate.evaluate_predictions, the code our evaluate rule runs, so both sides are
scored identically. Outputs under <workdir>/chemprop/<dataset>/seed<N>/: metrics.json (our
schema, test split only), predictions.csv (our long format), epochs.json, timing.json, and
chemprop's own output folder.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from peers import chemprop_python  # noqa: E402

from biomol_dl.evaluate import evaluate_predictions  # noqa: E402
from biomol_dl.io import read_table  # noqa: E402

CHEMPROP_TASKS = {"regression": "regression", "binary": "classification",
                  "multitask_binary": "classification"}  # fmt: skip


def prepare_inputs(workdir: Path, dataset: str, seed: int, out_dir: Path) -> dict:
    """Write chemprop's data.csv and splits.json; return what the run and the scoring need."""
    base = workdir / "results" / dataset
    summary = json.loads((base / "validate" / "summary.json").read_text())
    labels, task = list(summary["label_columns"]), summary["task"]
    if task not in CHEMPROP_TASKS:
        raise ValueError(f"{base}/validate/summary.json: task {task!r} has no chemprop mapping")
    # Ids are strings as written ("NA" and "007" included), never NaN or numbers.
    clean = read_table(base / "validate" / "clean.csv")
    split = read_table(base / "split" / f"seed{seed}.csv", strings=["split"])
    if set(split["id"]) != set(clean["id"]) or len(split) != len(clean):
        raise ValueError(f"{base}/split/seed{seed}.csv: ids differ from clean.csv")
    part = clean["id"].map(dict(zip(split["id"], split["split"], strict=True)))
    # Plain column names: chemprop's --target-columns takes names on the command line.
    targets = [f"t{i}" for i in range(len(labels))]
    data = pd.DataFrame({"smiles": clean["input"]})
    for target, label in zip(targets, labels, strict=True):
        data[target] = clean[label]
    out_dir.mkdir(parents=True, exist_ok=True)
    data.to_csv(out_dir / "data.csv", index=False)
    indices = {
        name: [int(i) for i in part.index[part == name]] for name in ("train", "val", "test")
    }
    (out_dir / "splits.json").write_text(json.dumps([indices]))
    return {"clean": clean, "labels": labels, "targets": targets, "task": task,
            "indices": indices}  # fmt: skip


def run_chemprop(inputs: dict, out_dir: Path, seed: int, extra: list[str]) -> dict:
    """chemprop train with its defaults on our split; returns wall seconds and peak RSS."""
    cmd = [
        "/usr/bin/time", "-v", chemprop_python(), str(HERE / "chemprop_timed.py"),
        str(out_dir / "epochs.json"), "train",
        "--data-path", str(out_dir / "data.csv"), "--splits-file", str(out_dir / "splits.json"),
        "-s", "smiles", "--target-columns", *inputs["targets"],
        "-t", CHEMPROP_TASKS[inputs["task"]], "--output-dir", str(out_dir / "chemprop"),
        "--pytorch-seed", str(seed), "--data-seed", str(seed), "--num-workers", "0", *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    with open(out_dir / "chemprop.log", "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    text = (out_dir / "chemprop.log").read_text()
    if proc.returncode:
        raise RuntimeError(f"chemprop failed (exit {proc.returncode}); see {out_dir}/chemprop.log")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall_seconds": wall, "peak_rss_mb": int(rss.group(1)) / 1024 if rss else None,
            "command": " ".join(cmd[2:])}  # fmt: skip


def score(inputs: dict, out_dir: Path) -> dict:
    """Our long-format test predictions from chemprop's test_predictions.csv, then our metrics."""
    found = sorted((out_dir / "chemprop").rglob("model_0/test_predictions.csv"))
    if len(found) != 1:
        raise RuntimeError(f"{out_dir}/chemprop: expected one model_0/test_predictions.csv, "
                           f"found {len(found)}")  # fmt: skip
    pred = pd.read_csv(found[0])
    clean, test_idx = inputs["clean"], inputs["indices"]["test"]
    if len(pred) != len(test_idx):
        raise RuntimeError(f"{found[0]}: {len(pred)} rows, our test split has {len(test_idx)}")
    rows = clean.iloc[test_idx].reset_index(drop=True)
    # chemprop keeps the splits-file order; check it instead of assuming it.
    if not (pred["smiles"].astype(str).to_numpy() == rows["input"].astype(str).to_numpy()).all():
        raise RuntimeError(f"{found[0]}: SMILES order differs from our test split")
    long = []
    for target, label in zip(inputs["targets"], inputs["labels"], strict=True):
        part = pd.DataFrame({"id": rows["id"], "split": "test", "task": label,
                             "y_true": rows[label], "y_pred": pred[target]})  # fmt: skip
        long.append(part)
    long_df = pd.concat(long, ignore_index=True)
    long_df.to_csv(out_dir / "predictions.csv", index=False)
    metrics = evaluate_predictions(long_df, inputs["task"])
    (out_dir / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2))
    return metrics


def _finite(obj):
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--name", default="chemprop", help="results folder under <workdir>")
    parser.add_argument("extra", nargs="*", help="more chemprop train arguments (after --)")
    args = parser.parse_args(argv)
    out_dir = args.workdir / args.name / args.dataset / f"seed{args.seed}"
    inputs = prepare_inputs(args.workdir, args.dataset, args.seed, out_dir)
    timing = run_chemprop(inputs, out_dir, args.seed, args.extra)
    metrics = score(inputs, out_dir)
    epochs = json.loads((out_dir / "epochs.json").read_text())
    timing.update(
        epochs_run=len(epochs),
        train_seconds=sum(e["seconds"] for e in epochs),
        examples_per_second=(sum(e["examples"] for e in epochs)
                             / max(sum(e["seconds"] for e in epochs), 1e-9)),
        n_train=len(inputs["indices"]["train"]),
    )  # fmt: skip
    (out_dir / "timing.json").write_text(json.dumps(timing, indent=2))
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics["test"]["mean"].items())
    print(
        f"chemprop {args.dataset} seed{args.seed}: test {shown}; wall {timing['wall_seconds']:.1f}"
        f" s, peak RSS {timing['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
