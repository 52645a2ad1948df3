"""Rule `featurize`: clean.csv -> results/{dataset}/featurize/{featurizer}.pt."""

import torch

from biomol_dl import logutil, tracking
from biomol_dl.featurize import run_featurize

logutil.configure(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
with tracking.job_run(snakemake) as run:
    stats = run_featurize(
        snakemake.input.clean, snakemake.params.spec, snakemake.output.features, snakemake.threads
    )
    run.log_metrics(stats)
