"""Rule `summary`: every metrics.json -> results/summary.csv and results/summary_wide.csv."""

from biomol_dl import logutil, tracking
from biomol_dl.summary import run_summary
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
log = logutil.configure(job.log_file)
metrics = list(job.input["metrics"])
with tracking.job_run(job, wildcards={}) as run:
    table = run_summary(
        metrics,
        job.params["tasks"],
        job.params["primary_metric"],
        job.output["long"],
        job.output["wide"],
    )
    log.info("summary of %d metrics files written", len(metrics))
    run.log_artifact(job.output["wide"])
