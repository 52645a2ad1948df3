# Reports and inference: plots per model, a leaderboard per dataset (which also registers the
# dataset's best model, chosen on validation, as an MLflow pyfunc: biomol_dl.registry), one HTML
# page for the run (results/report/index.html), and predictions for new inputs with trained models. Plots and
# leaderboards are flagged with report() for `snakemake --report report.zip`. What these rules
# read from the config lives in biomol_dl.report.targets.
from biomol_dl.report import targets as report_targets


report: "../report/workflow.rst"


# load_config (common.smk) has already checked every predict entry against its dataset.
PREDICTIONS = report_targets.predict_specs(config)
PREDICT_OUTPUTS = [f"results/predict/{name}/predictions.csv" for name in PREDICTIONS]
REPORT_LAYOUT = report_targets.report_layout(config)


rule report_model:
    input:
        predictions=lambda wc: report_targets.seed_paths(
            config,
            "results/{dataset}/train/{model}/seed{seed}/predictions.csv",
            wc.dataset,
            wc.model,
        ),
        histories=lambda wc: report_targets.seed_paths(
            config,
            "results/{dataset}/train/{model}/seed{seed}/history.csv",
            wc.dataset,
            wc.model,
        ),
        metrics=lambda wc: report_targets.seed_paths(
            config,
            "results/{dataset}/evaluate/{model}/seed{seed}/metrics.json",
            wc.dataset,
            wc.model,
        ),
        clean="results/{dataset}/validate/clean.csv",
        summary="results/{dataset}/validate/summary.json",
    output:
        plots=report(
            directory("results/report/{dataset}/plots/{model}"),
            patterns=["{plot}.png"],
            caption="../report/plot.rst",
            category="{dataset}",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "{plot}"},
        ),
    log:
        "logs/report_model/{dataset}/{model}.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        seeds=lambda wc: config["datasets"][wc.dataset]["seeds"],
        family=lambda wc: config["models"][wc.model]["family"],
        task=lambda wc: config["datasets"][wc.dataset]["task"],
        kind=lambda wc: config["datasets"][wc.dataset]["kind"],
        # Only the settings a model's plots use: top_k or the baselines re-run no plot.
        settings=lambda wc: {
            k: v
            for k, v in report_targets.report_settings(config, wc.dataset).items()
            if k in ("primary_metric", "rank_split")
        },
    script:
        "../../scripts/report_model.py"


rule report_dataset:
    input:
        metrics=lambda wc: [
            f"results/{wc.dataset}/evaluate/{model}/seed{seed}/metrics.json"
            for model, seed in train_outputs(wc.dataset)
        ],
        summary="results/{dataset}/validate/summary.json",
        splits=lambda wc: report_targets.seed_paths(
            config, "results/{dataset}/split/seed{seed}.json", wc.dataset
        ),
        models=lambda wc: report_targets.registry_files(config, wc.dataset),
    output:
        leaderboard=report(
            "results/report/{dataset}/leaderboard.csv",
            caption="../report/leaderboard_table.rst",
            category="{dataset}",
            subcategory="leaderboard",
            labels={"model": "all", "figure": "leaderboard table"},
        ),
        per_seed="results/report/{dataset}/per_seed.csv",
        json="results/report/{dataset}/report.json",
        png=report(
            "results/report/{dataset}/leaderboard.png",
            caption="../report/leaderboard.rst",
            category="{dataset}",
            subcategory="leaderboard",
            labels={"model": "all", "figure": "leaderboard"},
        ),
        svg="results/report/{dataset}/leaderboard.svg",
        registry_model=directory("results/registry/{dataset}/model"),
        registry="results/registry/{dataset}/registry.json",
    log:
        "logs/report_dataset/{dataset}.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        models=lambda wc: report_targets.report_models(config, wc.dataset),
        settings=lambda wc: report_targets.report_settings(config, wc.dataset),
        registry=lambda wc: report_targets.registry_spec(config, wc.dataset),
    script:
        "../../scripts/report_dataset.py"


rule report:
    input:
        reports=[d["report"] for d in REPORT_LAYOUT.values()],
        registry=[d["registry"] for d in REPORT_LAYOUT.values()],
        plots=[p for d in REPORT_LAYOUT.values() for p in d["plots"].values()],
        # tuned models' search plots (search.smk)
        studies=[p for d in REPORT_LAYOUT.values() for p in d["studies"].values()],
        summary="results/summary.csv",
        summary_wide="results/summary_wide.csv",
    output:
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Overview",
            labels={"model": "all", "figure": "HTML report"},
        ),
    log:
        "logs/report/report.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        layout=REPORT_LAYOUT,
        title=config["report"]["title"],
    script:
        "../../scripts/report.py"


rule predict:
    input:
        # metrics, clean, splits: for the trust columns, each seed's calibrators (fitted on its
        # validation split) and the molecules / sequences it trained on (biomol_dl.trust)
        unpack(
            lambda wc: report_targets.predict_trust_inputs(PREDICTIONS[wc.prediction])
        ),
        table=lambda wc: PREDICTIONS[wc.prediction]["input"],
        models=lambda wc: PREDICTIONS[wc.prediction]["models"],
        summary=lambda wc: f"results/{PREDICTIONS[wc.prediction]['dataset']}/validate/summary.json",
    output:
        predictions="results/predict/{prediction}/predictions.csv",
        rejects="results/predict/{prediction}/rejects.csv",
        summary="results/predict/{prediction}/summary.json",
    log:
        "logs/predict/{prediction}.log",
    wildcard_constraints:
        prediction=_alternatives(list(PREDICTIONS)),
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: PREDICTIONS[wc.prediction]["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        # Threads are a resource, not part of what the predictions depend on.
        spec=lambda wc: {
            k: v for k, v in PREDICTIONS[wc.prediction].items() if k != "threads"
        },
    script:
        "../../scripts/predict.py"
