"""A real plm_lora training job on a sample of FLIP GB1 rows: the cost estimate the job logs
before training against the epochs it then measures (BENCHMARKS.md, issue 16).

    python scripts/bench/plm_estimate_check.py --rows 96 --epochs 2 --workdir /tmp/plm_estimate

Featurizes the sample with `antiberty_tokens_cache6` (config/benchmarks/proteins.yaml: states
entering AntiBERTy's layer 6, int8 frozen layers), trains `antiberty_lora_top2_cached` (bf16) on
2/3 of it (1/6 val, 1/6 test) through train_job.run_training, and prints one JSON object: the
cache's seconds and size, the job's wall seconds, each epoch's seconds; the job's log
(<workdir>/job.log) holds the `plm_lora cost estimate` line.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[2]
SPLITS = ROOT / ".." / "shared" / "datasets" / "flip_gb1" / "splits.zip"
FEATURIZER = {"type": "plm_tokens", "model": "antiberty", "max_length": 510, "cache_layer": 6,
              "precision": "int8"}  # fmt: skip
PARAMS = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "batch_size": 16, "lr": 0.0005,
          "patience": 2, "max_tokens": 8192, "precision": "bf16", "device": "cpu"}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from biomol_dl import logutil, train_job
    from biomol_dl.features import build_featurizer

    out = args.workdir
    out.mkdir(parents=True, exist_ok=True)
    logutil.configure(str(out / "job.log"))
    torch.set_num_threads(args.threads)
    with zipfile.ZipFile(SPLITS) as z:
        table = pd.read_csv(io.BytesIO(z.read("splits/three_vs_rest.csv")))
    rows = table.sample(n=args.rows, random_state=0).reset_index(drop=True)
    ids = [f"g{i}" for i in range(len(rows))]
    t0 = time.perf_counter()
    features = build_featurizer(FEATURIZER).featurize_table(rows["sequence"].tolist(), args.threads)
    cache_s = time.perf_counter() - t0
    torch.save({**features, "ids": ids}, out / "features.pt")
    clean = pd.DataFrame({"id": ids, "input": rows["sequence"], "row": range(1, len(ids) + 1),
                          "y": rows["target"]})  # fmt: skip
    clean.to_csv(out / "clean.csv", index=False)
    n_val = len(ids) // 6
    split = ["train"] * (len(ids) - 2 * n_val) + ["val"] * n_val + ["test"] * n_val
    pd.DataFrame({"id": ids, "split": split}).to_csv(out / "split.csv", index=False)
    spec = {"name": "antiberty_lora_top2_cached", "family": "plm_lora",
            "featurizer": "antiberty_tokens_cache6", "featurizer_spec": FEATURIZER,
            "params": {**PARAMS, "epochs": args.epochs}}  # fmt: skip
    t0 = time.perf_counter()
    train_job.run_training(
        "plm_lora", clean_csv=out / "clean.csv", split_csv=out / "split.csv",
        features_pt=out / "features.pt", model_spec=spec, task="regression",
        label_columns=["y"], seed=0, out_model=out / "model.pt",
        out_predictions=out / "predictions.csv", out_history=out / "history.csv",
        threads=args.threads,
    )  # fmt: skip
    history = pd.read_csv(out / "history.csv")
    print(json.dumps({"rows": len(ids), "cache_seconds": round(cache_s, 1),
                      "cache_mb": round(features["cache_mb"], 1),
                      "job_seconds": round(time.perf_counter() - t0, 1),
                      "epoch_seconds": [round(s, 1) for s in history["seconds"]]}))  # fmt: skip


if __name__ == "__main__":
    main()
