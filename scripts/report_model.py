"""Rule `report_model`: the plots of one model on one dataset (see biomol_dl.report.plots)."""

from biomol_dl import logutil, tracking
from biomol_dl.report.plots import run_model_plots

logutil.configure(snakemake.log[0])
seeds = [int(s) for s in snakemake.params.seeds]
with tracking.job_run(snakemake) as run:
    manifest = run_model_plots(
        dataset=snakemake.wildcards.dataset,
        model=snakemake.wildcards.model,
        family=snakemake.params.family,
        task=snakemake.params.task,
        kind=snakemake.params.kind,
        predictions=dict(zip(seeds, snakemake.input.predictions, strict=True)),
        histories=dict(zip(seeds, snakemake.input.histories, strict=True)),
        metrics=dict(zip(seeds, snakemake.input.metrics, strict=True)),
        clean_csv=snakemake.input.clean,
        validate_summary=snakemake.input.summary,
        primary_metric=snakemake.params.settings["primary_metric"],
        rank_split=snakemake.params.settings["rank_split"],
        out_dir=snakemake.output.plots,
    )
    run.log_metrics({"n_plots": len(manifest)})
