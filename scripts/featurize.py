"""Rules `featurize` and `featurize_corpus`: a clean table -> a features .pt file."""

import torch

from biomol_dl import logutil, tracking
from biomol_dl.featurize import run_featurize
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
logutil.configure(job.log_file)
torch.set_num_threads(job.threads)
# rule featurize: <dataset>/<featurizer>; rule featurize_corpus: <corpus>/<featurizer>
name = "/".join(job.wildcards.values())
try:
    with tracking.job_run(job) as run:
        stats = run_featurize(
            job.input["clean"],
            job.params["spec"],
            job.output["features"],
            job.threads,
            runtime=job.runtime,  # a protein LM's estimated pass is checked against it
            name=name,
        )
        run.log_metrics(stats)
except Exception as err:
    logutil.get(job.rule).error("%s failed: %s", job.rule, err)
    raise
