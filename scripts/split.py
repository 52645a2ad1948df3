"""Rule `split`: clean.csv -> results/{dataset}/split/seed{seed}.csv (+ seed{seed}.json info)."""

import sys

from biomol_dl import logutil, tracking
from biomol_dl.splits import run_split

log = logutil.configure(snakemake.log[0])
try:
    with tracking.job_run(snakemake) as run:
        info = run_split(
            clean_csv=snakemake.input.clean,
            split_spec=dict(snakemake.params.split),
            seed=int(snakemake.wildcards.seed),
            kind=snakemake.params.kind,
            task=snakemake.params.task,
            label_columns=list(snakemake.params.label_columns),
            out_csv=snakemake.output.split,
            out_json=snakemake.output.info,
        )
        run.log_metrics({f"n_{p}": n for p, n in info["sizes"].items()})
        run.log_artifact(snakemake.output.info)
except ValueError as err:
    # A bad split spec or bad clean-table content is the user's to fix: one line, no traceback.
    log.error("%s", err)
    print(f"biomol-dl: {err}", file=sys.stderr)
    sys.exit(1)
