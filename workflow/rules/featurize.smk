# Featurization: once per dataset and featurizer, cached for every model and seed that reads it.


rule featurize:
    input:
        clean="results/{dataset}/validate/clean.csv",
    output:
        features="results/{dataset}/featurize/{featurizer}.pt",
    log:
        "logs/featurize/{dataset}_{featurizer}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=lambda wc: (
            1 if config["featurizers"][wc.featurizer]["type"] == "plm_embedding" else 0
        ),
    params:
        spec=lambda wc: config["featurizers"][wc.featurizer],
    script:
        "../../scripts/featurize.py"
