# Training: one rule per model family (train_rf, train_mlp, train_gnn, ...), so each declares its
# own threads, memory and GPU request, all read from the family's class (biomol_dl.models:
# model_file, mem_mb, runtime, uses_gpu); one script, scripts/train.py, serves them all. A model
# name belongs to exactly one family, which keeps the rules unambiguous. Resume checkpoints go to
# config["resume_dir"], outside the declared outputs.
#
# A model with `init:` has the checkpoint it starts from as input `init` (pretrain.smk builds
# encoders; another dataset's model is that dataset's train job).
#
# A model <name>__tuned has its study's best.json as input `tuned`: its parameters are read from
# it when the job runs (biomol_dl.search.apply_tuned), so a new best re-trains it.
#
# `params.model` is the model's own entry (biomol_dl.rule_params.train_model_spec): a change to
# one model re-trains that model only; its `threads` are a resource, not an identity.


for _family, _meta in FAMILIES.items():

    rule:
        name:
            f"train_{_family}"
        input:
            clean="results/{dataset}/validate/clean.csv",
            split="results/{dataset}/split/seed{seed}.csv",
            features=lambda wc: f"results/{wc.dataset}/featurize/{config['models'][wc.model]['featurizer']}.pt",
            # what a model with `init:` starts from: an encoder.pt or another dataset's model
            init=lambda wc: bdl_transfer.init_source(config, wc.model) or [],
            # a <name>__tuned model: its study's best parameters (search.smk)
            tuned=lambda wc: bdl_search.tuned_input(config, wc.dataset, wc.model) or [],
        output:
            model=f"results/{{dataset}}/train/{{model}}/seed{{seed}}/{_meta['model_file']}",
            predictions="results/{dataset}/train/{model}/seed{seed}/predictions.csv",
            history="results/{dataset}/train/{model}/seed{seed}/history.csv",
        log:
            f"logs/train_{_family}/" + "{dataset}/{model}_seed{seed}.log",
        benchmark:
            f"results/benchmarks/train_{_family}/" + "{dataset}/{model}_seed{seed}.tsv"
        wildcard_constraints:
            model=_alternatives(models_of_family(_family)),
        conda:
            "../../envs/torch.yaml"
        threads: lambda wc: config["models"][wc.model]["threads"]
        resources:
            mem_mb=_meta["mem_mb"],
            runtime=_meta["runtime"],
            gpu=1 if _meta["gpu"] else 0,
        params:
            family=_family,
            model=lambda wc: rule_params.train_model_spec(config, wc.model),
            task=lambda wc: config["datasets"][wc.dataset]["task"],
            label_columns=lambda wc: config["datasets"][wc.dataset]["label_columns"],
            resume_dir=lambda wc: f"{config['resume_dir']}/{wc.dataset}/{wc.model}/seed{wc.seed}",
        script:
            "../../scripts/train.py"
