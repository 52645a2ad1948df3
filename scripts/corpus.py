"""Rule `corpus`: sources of unlabelled molecules -> results/_corpora/{corpus}/molecules.csv,
rejects.csv and summary.json (biomol_dl.corpus). The named logs `rejects` and `summary` receive
copies that survive a failed job, as the validate rule's do."""

import sys

from biomol_dl import logutil, tracking
from biomol_dl.corpus import build_corpus
from biomol_dl.io import DataError
from biomol_dl.validate import count_metrics
from snakemake_job import job_from_snakemake

DOWNLOAD_CACHE = "resources/downloads"

job = job_from_snakemake(snakemake)
log = logutil.configure(job.log_file)
entry = job.config["corpora"][job.wildcards["corpus"]]
exclude = entry.get("exclude") or []
try:
    with tracking.job_run(job) as run:
        summary = build_corpus(
            entry,
            job.output["molecules"],
            job.output["rejects"],
            job.output["summary"],
            exclude_tables=dict(zip(exclude, job.input["exclude"], strict=True)),
            mirror=job.config.get("mirror"),
            cache_dir=DOWNLOAD_CACHE,
            diagnostics=(job.log["rejects"], job.log["summary"]),
        )
        run.set_tags({"corpus.sha256": summary.get("sha256", "")})
        run.log_metrics(count_metrics(summary))
        run.log_artifact(job.output["summary"])
except DataError as err:
    log.error("%s", err)
    print(f"biomol-dl: {err}", file=sys.stderr)
    sys.exit(1)
