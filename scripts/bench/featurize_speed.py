"""Graph featurization speed on one core: biomol_dl vs bare RDKit parsing vs chemprop.

For BENCHMARKS.md ("Featurization and training speed"). Run with the project venv:

    python scripts/bench/featurize_speed.py --smiles-csv ../bench/results/lipophilicity/validate/clean.csv

Every contender featurizes the same SMILES (the `input` column of a clean table: validated,
canonical) on one pinned CPU core with one thread, in the same run, rounds interleaved so that
machine noise hits all alike:

  rdkit_parse        [Chem.MolFromSmiles(s) for s in smiles]  (the floor: parsing only)
  biomol_dl_graph    MolGraphFeaturizer().featurize_table(smiles, threads=1): parse + atom /
                     bond features + the flat tensors the featurize rule saves
  chemprop_graph     chemprop's SimpleMoleculeMolGraphFeaturizer on MolFromSmiles(s) per
                     molecule (what MoleculeDatapoint.from_smi + featurizer do), one MolGraph each;
                     run as a subprocess with chemprop's venv (this file with --worker chemprop)
  chemprop_graph_featurizer_only   the same, molecules parsed beforehand (not timed)

Prints one JSON object: molecules/s per contender (median and best of the rounds) and the
ratios the targets name (ours / rdkit_parse >= 0.5, ours / chemprop_graph >= 2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def pin_one_core() -> None:
    # One core and one thread for every library, so "per core" means the same for all.
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def time_rdkit(smiles: list[str]) -> float:
    from rdkit import Chem

    t0 = time.perf_counter()
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    seconds = time.perf_counter() - t0
    assert all(m is not None for m in mols)
    return seconds


def time_ours(smiles: list[str]) -> float:
    from biomol_dl.features.graph import MolGraphFeaturizer

    featurizer = MolGraphFeaturizer()
    t0 = time.perf_counter()
    out = featurizer.featurize_table(smiles, threads=1)
    seconds = time.perf_counter() - t0
    assert len(out["atom_ptr"]) == len(smiles) + 1
    return seconds


def chemprop_worker(smiles_file: str, rounds: int) -> None:
    """Inside chemprop's venv: print {"parse_and_featurize": [s...], "featurize_only": [s...]}."""
    pin_one_core()
    import torch
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer
    from rdkit import Chem

    torch.set_num_threads(1)
    smiles = Path(smiles_file).read_text().split("\n")
    featurizer = SimpleMoleculeMolGraphFeaturizer()
    for s in smiles[:50]:  # first calls (imports, caches) outside the clock, as for ours
        featurizer(Chem.MolFromSmiles(s))
    both, only = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        graphs = [featurizer(Chem.MolFromSmiles(s)) for s in smiles]
        both.append(time.perf_counter() - t0)
        mols = [Chem.MolFromSmiles(s) for s in smiles]
        t0 = time.perf_counter()
        graphs = [featurizer(m) for m in mols]
        only.append(time.perf_counter() - t0)
        assert len(graphs) == len(smiles)
    print(json.dumps({"parse_and_featurize": both, "featurize_only": only}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smiles-csv", type=Path, help="a clean.csv (column `input`)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", choices=["chemprop"], help=argparse.SUPPRESS)
    parser.add_argument("--smiles-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "chemprop":
        chemprop_worker(args.smiles_file, args.rounds)
        return

    pin_one_core()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch
    from peers import chemprop_python

    from biomol_dl.io import read_table

    python = chemprop_python()

    torch.set_num_threads(1)
    smiles = read_table(args.smiles_csv)["input"].tolist()
    smiles_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"featurize_speed_{os.getpid()}.txt"
    smiles_file.write_text("\n".join(smiles))
    times: dict[str, list[float]] = {"rdkit_parse": [], "biomol_dl_graph": [],
                                     "chemprop_graph": [], "chemprop_graph_featurizer_only": []}  # fmt: skip
    time_ours(smiles[:50])  # imports and lookup tables, outside the clock
    try:
        for _ in range(args.rounds):
            times["rdkit_parse"].append(time_rdkit(smiles))
            times["biomol_dl_graph"].append(time_ours(smiles))
            cmd = [python, __file__, "--worker", "chemprop", "--rounds", "1",
                   "--smiles-file", str(smiles_file)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            times["chemprop_graph"] += result["parse_and_featurize"]
            times["chemprop_graph_featurizer_only"] += result["featurize_only"]
    finally:
        smiles_file.unlink(missing_ok=True)
    n = len(smiles)
    report: dict = {"molecules": n, "rounds": args.rounds, "source": str(args.smiles_csv),
                    "molecules_per_second": {}}  # fmt: skip
    for name, secs in times.items():
        report["molecules_per_second"][name] = {"median": rate(n, statistics.median(secs)),
                                                "best": rate(n, min(secs))}  # fmt: skip
    mps = {k: v["median"] for k, v in report["molecules_per_second"].items()}
    report["ratios_median"] = {
        "ours_over_rdkit_parse": mps["biomol_dl_graph"] / mps["rdkit_parse"],
        "ours_over_chemprop": mps["biomol_dl_graph"] / mps["chemprop_graph"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
