"""Rule `evaluate`: predictions.csv -> metrics.json (see biomol_dl.evaluate)."""

from biomol_dl import logutil, tracking
from biomol_dl.evaluate import run_evaluation

logutil.configure(snakemake.log[0])
with tracking.job_run(snakemake) as run:
    result = run_evaluation(
        snakemake.input.predictions, snakemake.params.task, snakemake.output.metrics
    )
    run.log_metrics(
        {
            f"{split}_{name}": value
            for split in ("val", "test")
            for name, value in result.get(split, {}).get("mean", {}).items()
        }
    )
    run.log_artifact(snakemake.output.metrics)
