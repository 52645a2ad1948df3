"""Prediction on large libraries: rate and peak memory of `run_predict` at growing input sizes.

For BENCHMARKS.md ("Predicting large libraries"). Three steps, run with the project venv from the
project root (PYTHONPATH=scripts):

    python scripts/bench/predict_scale.py setup --workdir ../bench_predict
    python scripts/bench/predict_scale.py library --workdir ../bench_predict --rows 1000000
    python scripts/bench/predict_scale.py run --workdir ../bench_predict --families rf mlp dmpnn \
        --rows 10000 100000 1000000

setup     validates ESOL (../shared/datasets/esol), splits it 80/10/10 at random (seed 0), caches
          the morgan and graph features and trains rf_morgan, mlp_morgan and dmpnn with the
          default config's params (epochs cut to --epochs: the rate of prediction does not depend
          on them), one thread.
library   writes library_<N>.csv (id, smiles) for each N in --rows and the sizes below it: the
          molecules of every SMILES dataset in ../shared/datasets (esol, freesolv, lipophilicity,
          bbbp, tox21), each written as RDKit randomized SMILES (MolToRandomSmilesVect, doRandom, seeded per row) in turn
          until N rows; the first N rows of the largest file, so every size is a prefix of 1M.
run       one fresh process per (family, N): `/usr/bin/time -v python predict_scale.py worker
          ...` (under `nice -n <--nice>` when --nice is given), which calls
          biomol_dl.predict.run_predict (the file read as a stream; validation, featurization
          and prediction in chunks, writing predictions.csv, rejects.csv, summary.json) with one
          thread. Prints and appends to <workdir>/predict_scale.jsonl one JSON object per run:
          wall seconds, molecules/s, max RSS (MB, /usr/bin/time's "Maximum resident set size"),
          rows predicted and rejected, the load average (`/proc/loadavg`) before and after.
          `--chunk-rows 0` calls run_predict without the argument, for a checkout from before
          chunked prediction (PYTHONPATH=<that checkout>/scripts).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATASETS = (ROOT / ".." / "shared" / "datasets").resolve()
SOURCES = {  # file, SMILES column
    "esol": ("esol/delaney-processed.csv", "smiles"),
    "freesolv": ("freesolv/freesolv.csv", "smiles"),
    "lipophilicity": ("lipophilicity/lipo.csv", "smiles"),
    "bbbp": ("bbbp/bbbp.csv", "smiles"),
    "tox21": ("tox21/tox21.csv", "smiles"),
}
LABEL = "measured log solubility in mols per litre"
MODELS = {  # the default config's models (config/config.yaml), epochs set by --epochs
    "rf": {"family": "rf", "featurizer": "morgan", "params": {"n_estimators": 300}},
    "mlp": {"family": "mlp", "featurizer": "morgan",
            "params": {"hidden": [512, 128], "dropout": 0.2, "epochs": 40, "lr": 0.001,
                       "batch_size": 64, "patience": 10}},
    "dmpnn": {"family": "gnn", "featurizer": "graph",
              "params": {"arch": "dmpnn", "hidden": 128, "depth": 3, "pooling": "mean",
                         "epochs": 25, "batch_size": 50, "lr": 0.001, "patience": 8}},
}  # fmt: skip
FEATURIZERS = {
    "morgan": {"type": "morgan", "radius": 2, "n_bits": 2048},
    "graph": {"type": "graph"},
}


def one_thread() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def setup(workdir: Path, epochs: int) -> None:
    import numpy as np
    import pandas as pd

    from biomol_dl.featurize import run_featurize
    from biomol_dl.io import read_raw_table
    from biomol_dl.models import get_family
    from biomol_dl.validate import validate_table

    workdir.mkdir(parents=True, exist_ok=True)
    raw = read_raw_table(DATASETS / SOURCES["esol"][0], "csv", required=["smiles", LABEL])
    spec = {"kind": "smiles", "task": "regression", "input_column": "smiles",
            "id_column": "Compound ID", "label_columns": [LABEL],
            "validation": {"strip_whitespace": True}}  # fmt: skip
    clean, _, _ = validate_table(raw, spec, source_name="esol")
    clean.to_csv(workdir / "clean.csv", index=False)
    rng = np.random.default_rng(0)
    split = np.array(["train"] * len(clean), dtype=object)
    order = rng.permutation(len(clean))
    split[order[: len(clean) // 10]] = "val"
    split[order[len(clean) // 10 : len(clean) // 5]] = "test"
    pd.DataFrame({"id": clean["id"], "split": split}).to_csv(workdir / "split.csv", index=False)
    for name, fspec in FEATURIZERS.items():
        run_featurize(workdir / "clean.csv", fspec, workdir / f"{name}.pt")
    for name, model in MODELS.items():
        params = dict(model["params"])
        if "epochs" in params:
            params["epochs"] = epochs
        model_spec = {**model, "name": name, "params": params,
                      "featurizer_spec": FEATURIZERS[model["featurizer"]]}  # fmt: skip
        family = get_family(model["family"])(params)
        out = workdir / "models" / name
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        family.train(
            clean_csv=workdir / "clean.csv", split_csv=workdir / "split.csv",
            features_pt=workdir / f"{model['featurizer']}.pt", model_spec=model_spec,
            task="regression", label_columns=[LABEL], seed=0,
            out_model=out / family.model_file, out_predictions=out / "predictions.csv",
            out_history=out / "history.csv", resume_dir=None, threads=1, run=None,
        )  # fmt: skip
        print(f"trained {name} in {time.perf_counter() - start:.1f} s -> {out}", flush=True)


def library(workdir: Path, rows: list[int]) -> None:
    import pandas as pd
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    workdir.mkdir(parents=True, exist_ok=True)
    mols = []
    for file, column in SOURCES.values():
        for smi in pd.read_csv(DATASETS / file)[column].astype(str):
            mol = Chem.MolFromSmiles(smi.strip())
            if mol is not None and mol.GetNumAtoms():
                mols.append(mol)
    n_max = max(rows)
    sizes = sorted({n for n in (10_000, 100_000, *rows) if n <= n_max})
    handles = {n: open(workdir / f"library_{n}.csv", "w") for n in sizes}  # noqa: SIM115
    for handle in handles.values():
        handle.write("id,smiles\n")
    i, rounds = 0, 0
    while i < n_max:
        for k, mol in enumerate(mols):
            if i >= n_max:
                break
            # doRandom=True with a seed per row: the same library on every run
            (smi,) = Chem.MolToRandomSmilesVect(mol, 1, randomSeed=i + 1)
            line = f"m{i + 1}_{k},{smi}\n"
            for n, handle in handles.items():
                if i < n:
                    handle.write(line)
            i += 1
        rounds += 1
    for handle in handles.values():
        handle.close()
    print(f"{len(mols)} molecules, {rounds} rounds of randomized SMILES -> {sizes} rows")


def worker(workdir: Path, family: str, rows: int, chunk_rows: int) -> None:
    from biomol_dl import logutil
    from biomol_dl.models import get_family
    from biomol_dl.predict import run_predict

    out = workdir / "predict" / f"{family}_{rows}_chunk{chunk_rows}"
    logutil.configure(out / "predict.log")
    model_dir = workdir / "models" / family
    model_file = model_dir / get_family(MODELS[family]["family"]).model_file
    # chunk_rows 0: run_predict's own default (and the only choice before it had chunks)
    chunking = {"chunk_rows": chunk_rows} if chunk_rows > 0 else {}
    start = time.perf_counter()
    summary = run_predict(
        input_path=workdir / f"library_{rows}.csv", input_column="smiles", id_column="id",
        kind="smiles", validation={}, task="regression", validate_summary=None,
        family=MODELS[family]["family"], model_files={0: model_file},
        out_predictions=out / "predictions.csv", out_rejects=out / "rejects.csv",
        out_summary=out / "summary.json", threads=1, **chunking,
    )  # fmt: skip
    print(json.dumps({"kept": summary["kept"], "rejected": summary["rejected"],
                      "seconds_in_process": time.perf_counter() - start}))  # fmt: skip


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(workdir: Path, families: list[str], rows: list[int], chunk_rows: int, nice: int) -> None:
    for family in families:
        for n in rows:
            cmd = ["nice", "-n", str(nice)] if nice else []
            cmd += ["/usr/bin/time", "-v", sys.executable, __file__, "worker",
                    "--workdir", str(workdir), "--family", family, "--rows", str(n),
                    "--chunk-rows", str(chunk_rows)]  # fmt: skip
            load_before = load_average()
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            wall = time.perf_counter() - start
            if proc.returncode:
                sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
            inner = json.loads(proc.stdout.strip().splitlines()[-1])
            row = {
                "family": family, "rows": n, "chunk_rows": chunk_rows, "wall_s": round(wall, 1),
                "molecules_per_s": round(n / wall, 1), "max_rss_mb": round(rss / 1024, 1),
                "kept": inner["kept"], "rejected": inner["rejected"], "nice": nice,
                "load_before": load_before, "load_after": load_average(),
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                           f"{os.cpu_count()} cores",
            }  # fmt: skip
            print(json.dumps(row), flush=True)
            with open(workdir / "predict_scale.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")


def main() -> None:
    one_thread()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["setup", "library", "run", "worker"])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".." / "bench_predict")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--families", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--family", choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    parser.add_argument("--nice", type=int, default=0, help="run each worker under nice -n N")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if args.step == "setup":
        setup(workdir, args.epochs)
    elif args.step == "library":
        library(workdir, args.rows)
    elif args.step == "run":
        run(workdir, args.families, args.rows, args.chunk_rows, args.nice)
    else:
        worker(workdir, args.family, args.rows[0], args.chunk_rows)


if __name__ == "__main__":
    main()
