"""Rule `report_dataset`: leaderboard, paired comparisons and data summary of one dataset."""

from biomol_dl import logutil, tracking
from biomol_dl.report.leaderboard import run_dataset_report

logutil.configure(snakemake.log[0])
with tracking.job_run(snakemake) as run:
    run_dataset_report(
        dataset=snakemake.wildcards.dataset,
        metrics_files=list(snakemake.input.metrics),
        validate_summary=snakemake.input.summary,
        split_infos=list(snakemake.input.splits),
        models=snakemake.params.models,
        settings=snakemake.params.settings,
        out_leaderboard=snakemake.output.leaderboard,
        out_per_seed=snakemake.output.per_seed,
        out_json=snakemake.output.json,
        out_png=snakemake.output.png,
        out_svg=snakemake.output.svg,
    )
    run.log_artifact(snakemake.output.leaderboard)
