"""Rule `predict`: predictions for new inputs with a trained model or an ensemble of its seeds."""

from biomol_dl import logutil, tracking
from biomol_dl.predict import run_predict
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
logutil.configure(job.log_file)
spec = job.params["spec"]
models = job.input["models"]
models = [models] if isinstance(models, str) else list(models)  # one seed: one path


def per_seed(files):
    return dict(zip(spec["seeds"], [files] if isinstance(files, str) else list(files), strict=True))


with tracking.job_run(job) as run:
    summary = run_predict(
        input_path=job.input["table"],
        input_format_name=spec["format"],
        input_column=spec["input_column"],
        id_column=spec["id_column"],
        kind=spec["kind"],
        validation=spec["validation"],
        task=spec["task"],
        validate_summary=job.input["summary"],
        family=spec["family"],
        model_files=dict(zip(spec["seeds"], models, strict=True)),
        out_predictions=job.output["predictions"],
        out_rejects=job.output["rejects"],
        out_summary=job.output["summary"],
        threads=job.threads,
        metrics_files=per_seed(job.input["metrics"]),
        clean_csv=job.input["clean"],
        split_files=per_seed(job.input["splits"]),
    )
    run.log_metrics({k: summary[k] for k in ("rows_in", "kept", "rejected")})
    run.log_artifact(job.output["predictions"])
    run.log_artifact(job.output["rejects"])
