"""Rule `validate`: raw table -> results/{dataset}/validate/{clean,rejects}.csv + summary.json.

Messages name the user's own file (from the provenance `fetch` wrote), not resources/. The rule's
named logs `rejects` and `summary` (logs/validate/{dataset}.rejects.csv / .summary.json) receive
copies of the rejects table and the summary: Snakemake deletes the outputs of a failed job but
keeps its logs, so when every row is rejected the reasons survive there and the error says so.
A rule without those named logs (only `log[0]`) still works; the copies are then not made.
"""

import sys

from biomol_dl import logutil, tracking
from biomol_dl.io import DataError
from biomol_dl.validate import count_metrics, run_validation
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
log = logutil.configure(job.log_file)
rejects_log, summary_log = job.log.get("rejects") or None, job.log.get("summary") or None
excluded = job.params["spec"].get("exclude") or []  # datasets whose molecules are left out
try:
    with tracking.job_run(job) as run:
        summary = run_validation(
            job.input["raw"],
            job.params["spec"],
            job.output["clean"],
            job.output["rejects"],
            job.output["summary"],
            provenance=job.input.get("provenance") or None,
            diagnostics=(rejects_log, summary_log) if rejects_log and summary_log else None,
            exclude_tables=dict(zip(excluded, job.input.get("exclude") or [], strict=True)),
        )
        run.log_metrics(count_metrics(summary))
        run.log_artifact(job.output["summary"])
except DataError as err:
    # Bad data is the user's to fix: one line, no traceback.
    log.error("%s", err)
    print(f"biomol-dl: {err}", file=sys.stderr)
    sys.exit(1)
