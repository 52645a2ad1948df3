"""Rule `pretrain`: a corpus's graphs and descriptors -> results/_pretrain/{pretrain}/encoder.pt
and history.csv (biomol_dl.pretrain.run_pretraining). On SIGTERM (SLURM preemption or time limit)
it saves the resume state and exits with status 143; rerunning the rule resumes."""

import sys

from biomol_dl import logutil, tracking, training
from biomol_dl.pretrain import run_pretraining
from snakemake_job import job_from_snakemake

job = job_from_snakemake(snakemake)
log = logutil.configure(job.log_file)
try:
    with tracking.job_run(job) as run:
        run_pretraining(
            molecules_csv=job.input["molecules"],
            features_pt=job.input["features"],
            spec=job.params["spec"],
            out_encoder=job.output["encoder"],
            out_history=job.output["history"],
            resume_dir=job.params["resume_dir"],
            threads=job.threads,
            run=run,
        )
except training.Preempted as stop:
    log.warning("%s; exiting with status %d so the job can be resubmitted", stop, stop.code)
    sys.exit(stop.code)
