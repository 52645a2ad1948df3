# Data stage: fetch the raw table, validate it, split it (one job per seed).


rule fetch:
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
        source=lambda wc: config["datasets"][wc.dataset]["source"],
        mirror=mirror_folders(),
        cache_dir="resources/downloads",
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
        "logs/validate/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=dataset_spec,
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
