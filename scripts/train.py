"""Rule train_<family> (every model family): train one model on one split of one dataset.

The body is biomol_dl.train_job.main: it builds the family named by `params.family`, trains
inside one tracking run and, on SIGTERM (SLURM preemption or time limit), saves the resume state
and exits with status 143.
"""

from biomol_dl.train_job import main
from snakemake_job import job_from_snakemake

main(job_from_snakemake(snakemake))
