"""Rule train_smiles_transformer: a transformer encoder on SMILES tokens.

The shared body (biomol_dl.train_job.main) trains inside one MLflow run; on SIGTERM (SLURM
preemption or time limit) it saves the resume state and exits with status 143.
"""

from biomol_dl.train_job import main

main(snakemake, "smiles_transformer")
