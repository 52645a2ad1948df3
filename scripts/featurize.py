"""Rule `featurize`: clean.csv -> results/{dataset}/featurize/{featurizer}.pt."""

import torch

from biomol_dl import logutil, tracking
from biomol_dl.featurize import run_featurize
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
logutil.configure(job.log_file)
torch.set_num_threads(job.threads)
with tracking.job_run(job) as run:
    stats = run_featurize(
        job.input["clean"], job.params["spec"], job.output["features"], job.threads
    )
    run.log_metrics(stats)
