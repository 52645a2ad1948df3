"""Rule `train_rf`: random-forest baseline on a cached feature file."""

from biomol_dl import logutil, tracking
from biomol_dl.models.rf import run_rf

logutil.configure(snakemake.log[0])
with tracking.job_run(snakemake) as run:
    run_rf(
        clean_csv=snakemake.input.clean,
        split_csv=snakemake.input.split,
        features_pt=snakemake.input.features,
        model_spec=snakemake.params.model,
        task=snakemake.params.task,
        label_columns=snakemake.params.label_columns,
        seed=int(snakemake.wildcards.seed),
        out_model=snakemake.output.model,
        out_predictions=snakemake.output.predictions,
        out_history=snakemake.output.history,
        threads=snakemake.threads,
        run=run,
    )
