# Transfer learning: a corpus of unlabelled molecules, its graphs with RDKit descriptors, and an
# encoder pretrained on it (biomol_dl.transfer, biomol_dl.pretrain). Corpora and encoders live
# under results/_corpora and results/_pretrain ('_' starts no dataset name). A model with
# `init: {pretrained: NAME}` reads results/_pretrain/NAME/encoder.pt (train.smk), so editing a
# corpus or a pretrain entry re-trains exactly the models that start from it.
from biomol_dl import transfer as bdl_transfer

CORPORA = list(config.get("corpora") or {})
PRETRAIN = list(config.get("pretrain") or {})


rule corpus:
    input:
        sources=lambda wc: rule_params.corpus_inputs(config, wc.corpus)["sources"],
        exclude=lambda wc: rule_params.corpus_inputs(config, wc.corpus)["exclude"],
    output:
        molecules="results/_corpora/{corpus}/molecules.csv",
        rejects="results/_corpora/{corpus}/rejects.csv",
        summary="results/_corpora/{corpus}/summary.json",
    log:
        log="logs/corpus/{corpus}.log",
        rejects="logs/corpus/{corpus}.rejects.csv",
        summary="logs/corpus/{corpus}.summary.json",
    wildcard_constraints:
        corpus=_alternatives(CORPORA),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=lambda wc: rule_params.corpus_spec(config, wc.corpus),
    script:
        "../../scripts/corpus.py"


rule featurize_corpus:
    input:
        clean="results/_corpora/{corpus}/molecules.csv",
    output:
        features="results/_corpora/{corpus}/featurize/{featurizer}.pt",
    log:
        "logs/featurize_corpus/{corpus}_{featurizer}.log",
    wildcard_constraints:
        corpus=_alternatives(CORPORA),
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        spec=lambda wc: rule_params.corpus_featurizer_spec(config, wc.featurizer),
    script:
        "../../scripts/featurize.py"


rule pretrain:
    input:
        molecules=lambda wc: bdl_transfer.corpus_path(
            config["pretrain"][wc.pretrain]["corpus"]
        ),
        features=lambda wc: bdl_transfer.corpus_features_path(
            config["pretrain"][wc.pretrain]["corpus"],
            config["pretrain"][wc.pretrain]["featurizer"],
        ),
    output:
        encoder="results/_pretrain/{pretrain}/encoder.pt",
        history="results/_pretrain/{pretrain}/history.csv",
    log:
        "logs/pretrain/{pretrain}.log",
    benchmark:
        "results/benchmarks/pretrain/{pretrain}.tsv"
    wildcard_constraints:
        pretrain=_alternatives(PRETRAIN),
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: config["pretrain"][wc.pretrain]["threads"]
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=1,
    params:
        spec=lambda wc: rule_params.pretrain_spec(config, wc.pretrain),
        resume_dir=lambda wc: f"{config['resume_dir']}/_pretrain/{wc.pretrain}",
    script:
        "../../scripts/pretrain.py"
