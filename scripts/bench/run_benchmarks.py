"""Run the molecular benchmarks one job at a time, ours and chemprop's interleaved by seed.

For whoever re-runs BENCHMARKS.md. Run with the project venv (chemprop runs in its own venv):

    BIOMOL_DL_MIRROR=../shared/datasets python scripts/bench/run_benchmarks.py \
        --workdir ../bench --dataset esol --models rf_morgan mlp_morgan dmpnn --chemprop

from the repository root (`make chemprop` first for --chemprop).

Order: the dataset's fetch / validate / split / featurize jobs first (one Snakemake call, timed
as "prep"), then for each seed every model in turn, each its own Snakemake call whose target
is that model's metrics.json, then chemprop on the same split file (chemprop_side_by_side.py);
so machine noise falls on both sides alike. Every call runs under /usr/bin/time -v; wall
seconds and peak RSS go to <workdir>/timings.jsonl, one JSON object per call.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml
from peers import REPO, absolute_mirror_env

CONFIGS = REPO / "config" / "benchmarks"


def snakemake_cmd(
    workdir: Path,
    catalog: str,
    dataset_file: str,
    targets: list[str],
    extra: Sequence[str] = (),
    set_threads: Sequence[str] = (),
    rerun_triggers: Sequence[str] = (),
) -> list[str]:
    files = [catalog, *[e for e in extra if e != dataset_file], dataset_file]
    threads = ["--set-threads", *set_threads] if set_threads else []
    threads += ["--rerun-triggers", *rerun_triggers] if rerun_triggers else []
    return [
        "/usr/bin/time", "-v", sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir),
        "--configfile", *[str(CONFIGS / f"{name}.yaml") for name in files],
        *threads, "--cores", "2", *targets,
    ]  # fmt: skip


def timed(cmd: list[str], log_path: Path, record: dict, timings: Path) -> None:
    """Run cmd, logging to log_path; append wall time and peak RSS to timings (JSON lines)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=absolute_mirror_env())
    record["wall_seconds"] = time.perf_counter() - t0
    text = log_path.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    record["peak_rss_mb"] = int(rss.group(1)) / 1024 if rss else None
    record["returncode"] = proc.returncode
    with open(timings, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {log_path})"
    print(f"{record['what']}: {record['wall_seconds']:.1f} s, {status}", flush=True)
    if proc.returncode:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--dataset", required=True, help="the dataset's key in its config file")
    parser.add_argument("--dataset-file",
                        help="config/benchmarks/<dataset-file>.yaml (default: the dataset's key; "
                             "flip_gb1 holds gb1_three_vs_rest and gb1_low_vs_high)")  # fmt: skip
    parser.add_argument("--catalog", default="molecules",
                        help="the model catalog, config/benchmarks/<catalog>.yaml (molecules, "
                             "proteins)")  # fmt: skip
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--chemprop", action="store_true", help="chemprop after each seed")
    parser.add_argument("--extra-configs", nargs="*", default=[],
                        help="more config/benchmarks/<name>.yaml files, after the catalog (e.g. "
                             "transfer and the datasets its corpus excludes)")  # fmt: skip
    parser.add_argument("--prep-targets", nargs="*", default=[],
                        help="files built (and timed) after the prep, before any model, e.g. "
                             "results/_pretrain/<name>/encoder.pt")  # fmt: skip
    parser.add_argument(
        "--rerun-triggers",
        nargs="*",
        default=[],
        help="Snakemake's --rerun-triggers, e.g. mtime: continue a workdir made "
        "before a code change that does not change its outputs",
    )
    parser.add_argument("--set-threads", nargs="*", default=[],
                        help="Snakemake's --set-threads RULE=N, e.g. train_gnn=1 (two runs "
                             "side by side on two cores)")  # fmt: skip
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    timings = workdir / "timings.jsonl"
    catalog = CONFIGS / f"{args.catalog}.yaml"
    models = yaml.safe_load(catalog.read_text())["models"]
    for name in args.extra_configs:
        models.update(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()).get("models") or {})
    unknown = [m for m in args.models if m not in models]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; {catalog} has {', '.join(models)}")
    ds = args.dataset
    ds_file = args.dataset_file or ds

    def snakemake(targets: list[str]) -> list[str]:
        return snakemake_cmd(
            workdir,
            args.catalog,
            ds_file,
            targets,
            args.extra_configs,
            args.set_threads,
            args.rerun_triggers,
        )

    prep = [f"results/{ds}/split/seed{s}.csv" for s in args.seeds]
    prep += sorted({f"results/{ds}/featurize/{models[m]['featurizer']}.pt" for m in args.models})
    logs = workdir / "bench_logs" / ds
    timed(snakemake(prep), logs / "prep.log",
          {"dataset": ds, "what": f"{ds} prep", "kind": "prep"}, timings)  # fmt: skip
    for target in args.prep_targets:
        name = Path(target).parent.name
        timed(snakemake([target]), logs / f"prep_{name}.log",
              {"dataset": ds, "what": f"{ds} {name}", "kind": "prep"}, timings)  # fmt: skip
    for seed in args.seeds:
        for model in args.models:
            target = f"results/{ds}/evaluate/{model}/seed{seed}/metrics.json"
            record = {"dataset": ds, "model": model, "seed": seed, "kind": "ours",
                      "what": f"{ds} {model} seed{seed}"}  # fmt: skip
            timed(snakemake([target]), logs / f"{model}_seed{seed}.log", record, timings)
        if args.chemprop:
            cmd = [sys.executable, str(Path(__file__).with_name("chemprop_side_by_side.py")),
                   "--workdir", str(workdir), "--dataset", ds, "--seed", str(seed)]  # fmt: skip
            record = {"dataset": ds, "model": "chemprop", "seed": seed, "kind": "chemprop",
                      "what": f"{ds} chemprop seed{seed}"}  # fmt: skip
            timed(cmd, logs / f"chemprop_seed{seed}.log", record, timings)


if __name__ == "__main__":
    main()
