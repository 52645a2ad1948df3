"""Rule train_mlp: the MLP family on fixed-length features (fingerprints, descriptors, k-mers).

The shared body (biomol_dl.train_job.main) trains inside one MLflow run; on SIGTERM (SLURM
preemption or time limit) it saves the resume state and exits with status 143.
"""

from biomol_dl.train_job import main

main(snakemake, "mlp")
