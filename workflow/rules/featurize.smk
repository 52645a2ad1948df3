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
        # a protein LM runs here: embeddings, or the frozen layers' cache of plm_tokens
        gpu=lambda wc: int(
            config["featurizers"][wc.featurizer]["type"] == "plm_embedding"
            or config["featurizers"][wc.featurizer].get("cache_layer") is not None
        ),
    params:
        spec=lambda wc: config["featurizers"][wc.featurizer],
    script:
        "../../scripts/featurize.py"
