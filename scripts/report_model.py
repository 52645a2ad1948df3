"""Rule `report_model`: the plots of one model on one dataset (see biomol_dl.report.plots)."""

from biomol_dl import logutil, tracking
from biomol_dl.report.plots import run_model_plots
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
logutil.configure(job.log_file)
seeds = [int(s) for s in job.params["seeds"]]
settings = job.params["settings"]
with tracking.job_run(job) as run:
    manifest = run_model_plots(
        dataset=job.wildcards["dataset"],
        model=job.wildcards["model"],
        family=job.params["family"],
        task=job.params["task"],
        kind=job.params["kind"],
        predictions=dict(zip(seeds, job.input["predictions"], strict=True)),
        histories=dict(zip(seeds, job.input["histories"], strict=True)),
        metrics=dict(zip(seeds, job.input["metrics"], strict=True)),
        clean_csv=job.input["clean"],
        validate_summary=job.input["summary"],
        primary_metric=settings["primary_metric"],
        rank_split=settings["rank_split"],
        out_dir=job.output["plots"],
    )
    run.log_metrics({"n_plots": len(manifest)})
