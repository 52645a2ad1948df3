"""Rule `predict`: predictions for new inputs with a trained model or an ensemble of its seeds."""

from biomol_dl import logutil, tracking
from biomol_dl.predict import run_predict

logutil.configure(snakemake.log[0])
spec = snakemake.params.spec
with tracking.job_run(snakemake) as run:
    summary = run_predict(
        input_path=snakemake.input.table,
        input_format_name=spec["format"],
        input_column=spec["input_column"],
        id_column=spec["id_column"],
        kind=spec["kind"],
        validation=spec["validation"],
        task=spec["task"],
        validate_summary=snakemake.input.summary,
        family=spec["family"],
        model_files=dict(zip(spec["seeds"], snakemake.input.models, strict=True)),
        out_predictions=snakemake.output.predictions,
        out_rejects=snakemake.output.rejects,
        out_summary=snakemake.output.summary,
        threads=snakemake.threads,
    )
    run.log_metrics({k: summary[k] for k in ("rows_in", "kept", "rejected")})
    run.log_artifact(snakemake.output.predictions)
    run.log_artifact(snakemake.output.rejects)
