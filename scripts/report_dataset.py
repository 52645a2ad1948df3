"""Rule `report_dataset`: leaderboard, paired comparisons and data summary of one dataset."""

from biomol_dl import logutil, tracking
from biomol_dl.report.leaderboard import run_dataset_report
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
logutil.configure(job.log_file)
with tracking.job_run(job) as run:
    run_dataset_report(
        dataset=job.wildcards["dataset"],
        metrics_files=list(job.input["metrics"]),
        validate_summary=job.input["summary"],
        split_infos=list(job.input["splits"]),
        models=job.params["models"],
        settings=job.params["settings"],
        out_leaderboard=job.output["leaderboard"],
        out_per_seed=job.output["per_seed"],
        out_json=job.output["json"],
        out_png=job.output["png"],
        out_svg=job.output["svg"],
    )
    run.log_artifact(job.output["leaderboard"])
