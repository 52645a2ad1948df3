"""What MLflow tracking costs a training job: the same jobs re-run with tracking off, spooled
(the default) and live, interleaved, in one run of this script.

Each repeat re-runs every target's training rule once per mode (`--forcerun`), in a rotating
order so machine drift hits every mode alike, and reads the job's own wall time from the
`benchmark:` file Snakemake writes for it (results/benchmarks/train_<family>/...). Run it in a
workdir where the targets' inputs (validation, split, features) already exist:

    python scripts/bench/tracking_overhead.py --workdir ../default_run \
        --configfile config/config.yaml --repeats 3 \
        results/b3db_logbb/train/mlp_morgan/seed0/predictions.csv \
        results/b3db_logbb/train/rf_morgan/seed0/predictions.csv
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
MODES = {"off": {"BIOMOL_DL_TRACKING": "0"},
         "spool": {"BIOMOL_DL_TRACKING_MODE": "spool"},
         "live": {"BIOMOL_DL_TRACKING_MODE": "live"}}  # fmt: skip


def benchmark_file(workdir: Path, target: str, rule: str) -> Path:
    dataset, _, model, seed = Path(target).parts[1:5]
    return workdir / "results" / "benchmarks" / rule / dataset / f"{model}_{seed}.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--configfile", nargs="+", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rule-of", nargs="*", default=[],
                        help="target=rule pairs when a model's rule is not train_<model prefix>")  # fmt: skip
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args()
    rules = dict(pair.split("=", 1) for pair in args.rule_of)
    snakemake = Path(sys.executable).parent / "snakemake"
    rows = []
    order = list(MODES)
    for repeat in range(args.repeats):
        for mode in order[repeat % 3 :] + order[: repeat % 3]:
            for target in args.targets:
                rule = rules.get(target) or f"train_{Path(target).parts[3].split('_')[0]}"
                cmd = [str(snakemake), target, "--snakefile", str(ROOT / "workflow/Snakefile"),
                       "--directory", str(args.workdir), "--cores", "2", "--forcerun", rule,
                       "--configfile", *args.configfile]  # fmt: skip
                env = {**os.environ, **MODES[mode]}
                subprocess.run(cmd, check=True, env=env, capture_output=True)
                seconds = float(
                    pd.read_csv(benchmark_file(args.workdir, target, rule), sep="\t")["s"][0]
                )
                rows.append({"repeat": repeat, "mode": mode, "target": target, "job_s": seconds})
                print(f"repeat {repeat} {mode:5s} {target}: {seconds:.2f} s", flush=True)
    table = pd.DataFrame(rows)
    print("\nmedian job wall time (s) per target and mode; overhead vs off")
    for target, part in table.groupby("target"):
        off = statistics.median(part[part["mode"] == "off"]["job_s"])
        for mode in MODES:
            med = statistics.median(part[part["mode"] == mode]["job_s"])
            print(f"{target}\t{mode}\t{med:.2f}\t{100 * (med - off) / off:+.1f}%")


if __name__ == "__main__":
    main()
