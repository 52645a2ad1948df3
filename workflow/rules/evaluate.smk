# Evaluation: metrics per trained model and seed, then one summary table across everything.


rule evaluate:
    input:
        predictions="results/{dataset}/train/{model}/seed{seed}/predictions.csv",
        history="results/{dataset}/train/{model}/seed{seed}/history.csv",
    output:
        metrics="results/{dataset}/evaluate/{model}/seed{seed}/metrics.json",
    log:
        "logs/evaluate/{dataset}/{model}_seed{seed}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        task=lambda wc: config["datasets"][wc.dataset]["task"],
        # calibration on the validation split (biomol_dl.uncertainty)
        uncertainty=lambda wc: rule_params.evaluate_uncertainty(config, wc.model),
    script:
        "../../scripts/evaluate.py"


rule summary:
    input:
        metrics=metrics_files,
    output:
        long="results/summary.csv",
        wide="results/summary_wide.csv",
    log:
        "logs/summary/summary.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        primary_metric=config["report"]["primary_metric"],
        tasks={name: ds["task"] for name, ds in config["datasets"].items()},
    script:
        "../../scripts/summary.py"
