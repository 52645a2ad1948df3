"""Rule `fetch`: a dataset's source -> resources/{dataset}/raw.<format> + provenance JSON.

The rule's `params.identity` is what identifies the bytes (for Snakemake's re-run decision); the
source itself and the mirror folders are read from the config here, so moving a mirror or the
download cache re-runs nothing.
"""

import sys

from biomol_dl import logutil, tracking
from biomol_dl.io import DataError
from biomol_dl.sources import fetch_dataset
from snakemake_job import job_from_snakemake

DOWNLOAD_CACHE = "resources/downloads"

job = job_from_snakemake(snakemake)
log = logutil.configure(job.log_file)
try:
    with tracking.job_run(job) as run:
        provenance = fetch_dataset(
            job.config["datasets"][job.wildcards["dataset"]]["source"],
            job.output["raw"],
            job.output["provenance"],
            mirror=job.config.get("mirror"),
            cache_dir=DOWNLOAD_CACHE,
        )
        run.set_tags(
            {
                "source.origin": provenance["origin"],
                "source.sha256": provenance["raw_sha256"],
                "source.format": provenance["format"],
                "source.compression": provenance.get("compression") or "none",
            }
        )
        run.log_metrics({"bytes": provenance["bytes"]})
        run.log_artifact(job.output["provenance"])
except DataError as err:
    # Bad data is the user's to fix: one line, no traceback.
    log.error("%s", err)
    print(f"biomol-dl: {err}", file=sys.stderr)
    sys.exit(1)
