"""Rule `split`: clean.csv -> results/{dataset}/split/seed{seed}.csv (+ seed{seed}.json info)."""

import sys

from biomol_dl import logutil, tracking
from biomol_dl.splits import run_split
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
log = logutil.configure(job.log_file)
try:
    with tracking.job_run(job) as run:
        info = run_split(
            clean_csv=job.input["clean"],
            split_spec=dict(job.params["split"]),
            seed=int(job.wildcards["seed"]),
            kind=job.params["kind"],
            task=job.params["task"],
            label_columns=list(job.params["label_columns"]),
            out_csv=job.output["split"],
            out_json=job.output["info"],
        )
        run.log_metrics({f"n_{p}": n for p, n in info["sizes"].items()})
        run.log_artifact(job.output["info"])
except ValueError as err:
    # A bad split spec or bad clean-table content is the user's to fix: one line, no traceback.
    log.error("%s", err)
    print(f"biomol-dl: {err}", file=sys.stderr)
    sys.exit(1)
