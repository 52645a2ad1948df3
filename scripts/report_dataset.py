"""Rule `report_dataset`: leaderboard, paired comparisons and data summary of one dataset, and
its best model (on validation, all seeds) as an MLflow pyfunc registered in the model registry."""

from biomol_dl import logutil, tracking
from biomol_dl.registry import run_register as register
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
    registry = job.params["registry"]
    register(
        dataset=job.wildcards["dataset"],
        leaderboard_csv=job.output["leaderboard"],
        primary_metric=job.params["settings"]["primary_metric"],
        spec=registry["spec"],
        models=registry["models"],
        validate_summary=job.input["summary"],
        out_dir=job.output["registry_model"],
        out_json=job.output["registry"],
        name=registry["name"],
        run=run,
    )
