"""Rule `evaluate`: predictions.csv -> metrics.json (see biomol_dl.evaluate)."""

from biomol_dl import logutil, tracking
from biomol_dl.evaluate import CALIBRATED, run_evaluation
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
logutil.configure(job.log_file)
with tracking.job_run(job) as run:
    uncertainty = job.params["uncertainty"]
    result = run_evaluation(
        job.input["predictions"], job.params["task"], job.output["metrics"], uncertainty
    )
    run.log_params({f"uncertainty_{k}": v for k, v in uncertainty.items()})
    run.log_metrics(
        {
            f"{split}_{name}": value
            for split in ("val", "test", CALIBRATED)
            for name, value in result.get(split, {}).get("mean", {}).items()
        }
    )
    run.log_artifact(job.output["metrics"])
