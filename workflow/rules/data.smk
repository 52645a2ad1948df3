# Data stage: fetch the raw table, validate it, split it (one job per seed).
#
# Each rule's `params` hold only what changes its output, so Snakemake's params trigger re-runs
# exactly the jobs an edit affects: a dataset's `description`, `models` and `seeds` reach no data
# rule, a mirror folder or download cache is a location and not an identity, and a local source
# file is an `input` (editing it re-runs fetch and everything after it).
from importlib import metadata as _metadata

# Source keys that only tell `validate` how to read the fetched file: not part of what is fetched.
_READ_OPTIONS = ("header", "skip_rows", "columns")


def _source_parts(source):
    return source["parts"] if "parts" in source else [source]


def fetch_inputs(wildcards):
    """The local files of `path` sources: inputs, so an edit in place re-runs fetch."""
    source = config["datasets"][wildcards.dataset]["source"]
    return [
        part["path"] for part in _source_parts(source) if part.get("type") == "path"
    ]


def _package_version(package):
    """The installed version of the distribution shipping `package` (None if not installed)."""
    names = _metadata.packages_distributions().get(package, [])
    return f"{names[0]}=={_metadata.version(names[0])}" if names else None


def fetch_identity(wildcards):
    """What identifies the fetched bytes: the source without its read options (a url source is
    pinned by its sha256), plus the installed version of a package source's distribution.
    """
    source = config["datasets"][wildcards.dataset]["source"]
    if "parts" in source:
        # The parts are read and concatenated into one CSV, so their read options count here.
        parts = [
            (
                {**part, "version": _package_version(part["package"])}
                if part.get("type") == "package"
                else part
            )
            for part in source["parts"]
        ]
        return {**source, "parts": parts}
    identity = {k: v for k, v in source.items() if k not in _READ_OPTIONS}
    if source.get("type") == "package":
        identity["version"] = _package_version(source["package"])
    return identity


def validate_spec(wildcards):
    """The dataset entry as validation reads it: without the keys that choose what is trained
    (models, seeds), the description, and the split (except a predefined split's column, which
    keeps duplicates apart across parts)."""
    ds = config["datasets"][wildcards.dataset]
    spec = {
        k: v
        for k, v in ds.items()
        if k not in ("description", "models", "seeds", "split")
    }
    split = ds["split"]
    spec["split"] = (
        {"strategy": "predefined", "column": split.get("column")}
        if split["strategy"] == "predefined"
        else {}
    )
    return spec


rule fetch:
    input:
        fetch_inputs,
    output:
        raw="resources/{dataset}/raw.{fmt}",
        provenance="resources/{dataset}/provenance_{fmt}.json",
    log:
        "logs/fetch/{dataset}_{fmt}.log",
    wildcard_constraints:
        fmt="csv|tsv|fasta",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        # Where a url source is found (mirror folders, download cache) is read by the script from
        # the config: a new mirror location is not a new source.
        identity=fetch_identity,
    script:
        "../../scripts/fetch.py"


rule validate:
    input:
        raw=lambda wc: raw_path(wc.dataset),
        provenance=lambda wc: provenance_path(wc.dataset),
    output:
        clean="results/{dataset}/validate/clean.csv",
        rejects="results/{dataset}/validate/rejects.csv",
        summary="results/{dataset}/validate/summary.json",
    log:
        # Logs survive a failed job (Snakemake deletes its outputs): when validation rejects
        # every row, these copies of rejects.csv and summary.json say why.
        log="logs/validate/{dataset}.log",
        rejects="logs/validate/{dataset}.rejects.csv",
        summary="logs/validate/{dataset}.summary.json",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=validate_spec,
    script:
        "../../scripts/validate.py"


rule split:
    input:
        clean="results/{dataset}/validate/clean.csv",
    output:
        split="results/{dataset}/split/seed{seed}.csv",
        info="results/{dataset}/split/seed{seed}.json",
    log:
        "logs/split/{dataset}_seed{seed}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        split=lambda wc: config["datasets"][wc.dataset]["split"],
        kind=lambda wc: config["datasets"][wc.dataset]["kind"],
        task=lambda wc: config["datasets"][wc.dataset]["task"],
        label_columns=lambda wc: config["datasets"][wc.dataset]["label_columns"],
    script:
        "../../scripts/split.py"
