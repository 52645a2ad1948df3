"""Rule `report`: results/report/index.html for the whole run (see biomol_dl.report.html)."""

from biomol_dl import logutil, tracking
from biomol_dl.report.html import run_report
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
logutil.configure(job.log_file)
with tracking.job_run(job, wildcards={}) as run:
    run_report(
        datasets=job.params["layout"],
        out_html=job.output["html"],
        links={
            "summary.csv": job.input["summary"],
            "summary_wide.csv": job.input["summary_wide"],
        },
        title=job.params["title"],
    )
