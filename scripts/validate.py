"""Rule `validate`: raw table -> results/{dataset}/validate/{clean,rejects}.csv + summary.json."""

import sys

from biomol_dl import logutil, tracking
from biomol_dl.io import DataError
from biomol_dl.validate import run_validation

log = logutil.configure(snakemake.log[0])
try:
    with tracking.job_run(snakemake) as run:
        summary = run_validation(
            snakemake.input.raw,
            snakemake.params.spec,
            snakemake.output.clean,
            snakemake.output.rejects,
            snakemake.output.summary,
            provenance=snakemake.input.provenance,
        )
        run.log_metrics(
            {
                "rows_in": summary["rows_in"],
                "kept": summary["kept"],
                "rejected": summary["rejected"],
                **{f"rejected.{code}": n for code, n in summary["by_reason"].items()},
            }
        )
        run.log_artifact(snakemake.output.summary)
except DataError as err:
    # Bad data is the user's to fix: one line, no traceback.
    log.error("%s", err)
    print(f"biomol-dl: {err}", file=sys.stderr)
    sys.exit(1)
