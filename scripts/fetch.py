"""Rule `fetch`: a dataset's source -> resources/{dataset}/raw.<format> + provenance JSON.

The rule's `params.identity` is what identifies the bytes (for Snakemake's re-run decision); the
source itself and the mirror folders are read from the config here, so moving a mirror or the
download cache re-runs nothing.
"""

import sys

from biomol_dl import logutil, tracking
from biomol_dl.io import DataError
from biomol_dl.sources import fetch_dataset

DOWNLOAD_CACHE = "resources/downloads"

log = logutil.configure(snakemake.log[0])
try:
    with tracking.job_run(snakemake) as run:
        provenance = fetch_dataset(
            snakemake.config["datasets"][snakemake.wildcards.dataset]["source"],
            snakemake.output.raw,
            snakemake.output.provenance,
            mirror=snakemake.config.get("mirror"),
            cache_dir=DOWNLOAD_CACHE,
        )
        run.set_tags(
            {"source.origin": provenance["origin"], "source.sha256": provenance["raw_sha256"]}
        )
        run.log_metrics({"bytes": provenance["bytes"]})
        run.log_artifact(snakemake.output.provenance)
except DataError as err:
    # Bad data is the user's to fix: one line, no traceback.
    log.error("%s", err)
    print(f"biomol-dl: {err}", file=sys.stderr)
    sys.exit(1)
