"""Rule train_mlp: train the MLP family on fixed-length features for one (dataset, model, seed).

Unpacks the snakemake object and calls biomol_dl.train_job.run_training. On SIGTERM (SLURM
preemption or time limit) training writes its resume state and this script exits with status 143
and a one-line log message; running the rule again resumes from that state.
"""

import sys

from biomol_dl import logutil, tracking
from biomol_dl.models import mlp
from biomol_dl.train_job import run_training
from biomol_dl.training import Preempted

logutil.configure(snakemake.log[0])
log = logutil.get("train_mlp")

try:
    with tracking.job_run(snakemake) as run:
        try:
            run_training(
                mlp,
                clean_csv=snakemake.input.clean,
                split_csv=snakemake.input.split,
                features_pt=snakemake.input.features,
                model_spec=dict(snakemake.params.model),
                task=snakemake.params.task,
                label_columns=list(snakemake.params.label_columns),
                seed=int(snakemake.wildcards.seed),
                out_model=snakemake.output.model,
                out_predictions=snakemake.output.predictions,
                out_history=snakemake.output.history,
                resume_dir=snakemake.params.resume_dir,
                threads=snakemake.threads,
                run=run,
            )
        except Preempted as stop:
            run.set_tags({"preempted": str(stop)})
            raise
except Preempted as stop:
    log.warning("%s; exiting with status %d so the job can be resubmitted", stop, stop.code)
    sys.exit(stop.code)
except Exception as err:
    log.error("train_mlp failed: %s", err)
    raise
