"""Rule `report`: results/report/index.html for the whole run (see biomol_dl.report.html)."""

from biomol_dl import logutil, tracking
from biomol_dl.report.html import run_report

logutil.configure(snakemake.log[0])
with tracking.job_run(snakemake, wildcards={}) as run:
    run_report(
        datasets=snakemake.params.layout,
        out_html=snakemake.output.html,
        links={
            "summary.csv": snakemake.input.summary,
            "summary_wide.csv": snakemake.input.summary_wide,
        },
        title=snakemake.params.title,
    )
