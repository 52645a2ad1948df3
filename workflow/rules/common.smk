# Shared helpers, no rules here: config validation and input functions used by the rule files.
import os
import re
import sys

from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "..", "scripts"))
from biomol_dl import config as bdl_config  # noqa: E402
from biomol_dl import search as bdl_search  # noqa: E402
from biomol_dl import sources as bdl_sources  # noqa: E402
from biomol_dl import tracking as bdl_tracking  # noqa: E402
from biomol_dl.models import FAMILIES  # noqa: E402

# biomol_dl.config checks everything before any job runs, with a one-line error naming the key
# path: it re-reads every config file Snakemake merged (workflow.configfiles: the --configfile
# files, else the default config/config.yaml) strictly, for duplicate keys and for a model given
# different families in two files, then validates the merged config against the closed schema.
# Snakemake's own validation then records the schema with the workflow.
try:
    bdl_config.load_config(config, files=workflow.configfiles)
except bdl_config.ConfigError as err:
    raise WorkflowError(f"biomol-dl: {err}") from None
validate(config, schema="../schemas/config.schema.yaml")

DATASETS = list(config["datasets"])
FEATURIZERS = list(config["featurizers"])
MODELS = list(config["models"])


def _alternatives(names):
    """A wildcard constraint matching exactly these names. They already match
    bdl_config.NAME_PATTERN; re.escape keeps the regex literal all the same (defence in depth).
    An empty alternation would match every string; "^$" matches nothing."""
    return "|".join(re.escape(name) for name in names) if names else "^$"


def raw_path(dataset):
    """resources/<dataset>/raw.<format>: the fetched, sha256-verified source table."""
    fmt = bdl_sources.source_format(config["datasets"][dataset]["source"])
    return f"resources/{dataset}/raw.{fmt}"


def models_of_family(family):
    return [m for m, spec in config["models"].items() if spec["family"] == family]


def train_outputs(dataset):
    """Every (model, seed) training directory a dataset asks for."""
    ds = config["datasets"][dataset]
    return [
        (model, seed)
        for model in bdl_config.dataset_models(config, dataset)
        for seed in ds["seeds"]
    ]


def metrics_files(wildcards=None):
    return [
        f"results/{dataset}/evaluate/{model}/seed{seed}/metrics.json"
        for dataset in DATASETS
        for model, seed in train_outputs(dataset)
    ]


def provenance_path(dataset):
    raw = raw_path(dataset)
    fmt = raw.rsplit(".", 1)[1]
    return f"resources/{dataset}/provenance_{fmt}.json"
