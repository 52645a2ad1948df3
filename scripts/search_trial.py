"""Rule search_trial: one trial slot of a model's Optuna study (biomol_dl.search.run_slot)."""

from biomol_dl.search import trial_main
from snakemake_job import job_from_snakemake

trial_main(job_from_snakemake(snakemake))
