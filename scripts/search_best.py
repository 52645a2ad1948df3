"""Rule search_best: a study's best parameters and its trials (biomol_dl.search.summarize)."""

from biomol_dl.search import best_main
from snakemake_job import job_from_snakemake

best_main(job_from_snakemake(snakemake))
