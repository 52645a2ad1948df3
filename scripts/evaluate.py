"""Rule `evaluate`: predictions.csv -> metrics.json (see biomol_dl.evaluate)."""

from biomol_dl import logutil, tracking
from biomol_dl.evaluate import run_evaluation
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
logutil.configure(job.log_file)
with tracking.job_run(job) as run:
    result = run_evaluation(job.input["predictions"], job.params["task"], job.output["metrics"])
    run.log_metrics(
        {
            f"{split}_{name}": value
            for split in ("val", "test")
            for name, value in result.get(split, {}).get("mean", {}).items()
        }
    )
    run.log_artifact(job.output["metrics"])
