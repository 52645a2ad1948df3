"""Rule train_seq_transformer: a transformer trained from scratch on residue tokens.

The shared body (biomol_dl.train_job.main) trains inside one MLflow run; on SIGTERM (SLURM
preemption or time limit) it saves the resume state and exits with status 143.
"""

from biomol_dl.train_job import main

main(snakemake, "seq_transformer")
