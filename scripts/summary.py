"""Rule `summary`: every metrics.json -> results/summary.csv and results/summary_wide.csv."""

from biomol_dl import logutil, tracking
from biomol_dl.summary import run_summary

log = logutil.configure(snakemake.log[0])
with tracking.job_run(snakemake, wildcards={}) as run:
    table = run_summary(
        snakemake.input.metrics,
        snakemake.params.tasks,
        snakemake.params.primary_metric,
        snakemake.output.long,
        snakemake.output.wide,
    )
    log.info("summary of %d metrics files written", len(snakemake.input.metrics))
    run.log_artifact(snakemake.output.wide)
