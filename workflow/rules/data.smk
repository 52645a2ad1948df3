# Data stage: fetch the raw table, validate it, split it (one job per seed).
#
# Each rule's `params` hold only what changes its output (biomol_dl.rule_params), so an edit
# re-runs exactly the jobs it affects; a local source file is an `input` of fetch.
from biomol_dl import rule_params


rule fetch:
    input:
        lambda wc: rule_params.fetch_inputs(config, wc.dataset),
    output:
        raw="resources/{dataset}/raw.{fmt}",
        provenance="resources/{dataset}/provenance_{fmt}.json",
    log:
        "logs/fetch/{dataset}_{fmt}.log",
    wildcard_constraints:
        fmt="csv|tsv|fasta|sdf|parquet",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        # Where a url source is found (mirror folders, download cache) is read by the script from
        # the config: a new mirror location is not a new source.
        identity=lambda wc: rule_params.fetch_identity(config, wc.dataset),
    script:
        "../../scripts/fetch.py"


rule validate:
    input:
        raw=lambda wc: raw_path(wc.dataset),
        provenance=lambda wc: provenance_path(wc.dataset),
        # The clean tables of the datasets whose molecules this one leaves out (`exclude`).
        exclude=lambda wc: rule_params.validate_exclude(config, wc.dataset),
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
        spec=lambda wc: rule_params.validate_spec(config, wc.dataset),
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
