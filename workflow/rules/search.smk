# Hyperparameter search (biomol_dl.search): one job per trial slot of each model's Optuna study,
# so `--cores N` runs N trials at once and the SLURM profile submits each trial as its own job.
# Every slot of a study shares one Optuna storage (a journal file on the shared filesystem, or an
# RDB URL); search_best then writes the best parameters, which the model <name>__tuned trains
# with on every seed through the usual train rules (train.smk takes best.json as input `tuned`).
#
# `params.study` is what defines the study (biomol_dl.search.study_spec): space, sampler, pruner,
# objective, the model's own params and the dataset, not n_trials; raising n_trials adds only the
# new slots. Trial scratch files and resume state live under config["resume_dir"]/search/.


rule search_trial:
    input:
        unpack(lambda wc: bdl_search.trial_inputs(config, wc.dataset, wc.model)),
    output:
        record="results/{dataset}/search/{model}/trials/{trial}.json",
    log:
        "logs/search_trial/{dataset}/{model}_trial{trial}.log",
    benchmark:
        "results/benchmarks/search_trial/{dataset}/{model}_trial{trial}.tsv"
    wildcard_constraints:
        model=_alternatives([m for _, m in bdl_search.studies(config)]),
        trial=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: config["models"][wc.model]["threads"]
    resources:
        mem_mb=lambda wc: FAMILIES[config["models"][wc.model]["family"]]["mem_mb"],
        runtime=lambda wc: FAMILIES[config["models"][wc.model]["family"]]["runtime"],
        gpu=lambda wc: int(FAMILIES[config["models"][wc.model]["family"]]["gpu"]),
    params:
        study=lambda wc: bdl_search.study_spec(config, wc.dataset, wc.model),
        retries=lambda wc: config["models"][wc.model]["search"]["retries"],
        resume_dir=lambda wc: f"{config['resume_dir']}/search/{wc.dataset}/{wc.model}",
    script:
        "../../scripts/search_trial.py"


rule search_best:
    input:
        records=lambda wc: bdl_search.trial_paths(config, wc.dataset, wc.model),
    output:
        best="results/{dataset}/search/{model}/best.json",
        trials="results/{dataset}/search/{model}/trials.csv",
        plot="results/{dataset}/search/{model}/history.png",
    log:
        "logs/search_best/{dataset}/{model}.log",
    wildcard_constraints:
        model=_alternatives([m for _, m in bdl_search.studies(config)]),
    localrule: True
    conda:
        "../../envs/torch.yaml"
    params:
        study=lambda wc: bdl_search.study_spec(config, wc.dataset, wc.model),
        n_trials=lambda wc: config["models"][wc.model]["search"]["n_trials"],
    script:
        "../../scripts/search_best.py"
