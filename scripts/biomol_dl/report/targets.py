"""What the report and predict rules read from the resolved config: file lists, settings, and the
`predict:` entries checked against their datasets and models.

For workflow/rules/report.smk (pure functions of the config dict, so they are testable without
Snakemake). A bad `predict:` entry raises biomol_dl.config.ConfigError naming its key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from biomol_dl import metrics
from biomol_dl.config import ConfigError, dataset_models

# The report ranks by each task's validation metric unless `report.primary_metric` says otherwise.
DEFAULT_PRIMARY = dict(metrics.DEFAULT_METRIC)


def report_models(config: Mapping, dataset: str) -> dict[str, dict[str, Any]]:
    """{model: {"family", "seeds", "init", "tuned"}} for every model the dataset trains; "init"
    says what a model started from (biomol_dl.transfer.describe_init), None for a random start;
    "tuned" what search chose its params (biomol_dl.search.describe_tuned), else None."""
    from biomol_dl.search import describe_tuned
    from biomol_dl.transfer import describe_init

    seeds = list(config["datasets"][dataset]["seeds"])
    return {
        model: {
            "family": config["models"][model]["family"],
            "seeds": seeds,
            "init": describe_init(config, model),
            "tuned": describe_tuned(config, dataset, model),
        }
        for model in dataset_models(config, dataset)
    }


def report_settings(config: Mapping, dataset: str) -> dict[str, Any]:
    """The dataset's ranking settings: primary metric of its task, rank split, test, baselines."""
    report = config.get("report") or {}
    task = config["datasets"][dataset]["task"]
    primary = {**DEFAULT_PRIMARY, **(report.get("primary_metric") or {})}
    return {
        "primary_metric": primary[task],
        "rank_split": rank_split(config),
        "paired_test": report.get("paired_test", "auto"),
        "baseline_families": list(report.get("baseline_families", ["rf"])),
        "top_k": report.get("top_k"),
    }


def rank_split(config: Mapping) -> str:
    """The split that chooses and ranks models, by its name in metrics.json: val or test.

    `report.rank_split` says `validation` (the default) or `test`; `val` is kept as an alias.
    """
    value = (config.get("report") or {}).get("rank_split", "validation")
    return {"validation": "val"}.get(value, value)


def registry_spec(config: Mapping, dataset: str) -> dict[str, Any]:
    """What the best model's pyfunc folder holds besides model files (biomol_dl.registry).

    {"name": registered name, "spec": the dataset's kind, task, columns and validation policy,
    "models": {model: {"family", "featurizer": its spec, "files": {seed: model file}}}}.
    """
    from biomol_dl.registry import registered_name
    from biomol_dl.tracking import experiment_prefix

    ds = config["datasets"][dataset]
    models = {}
    for model, spec in report_models(config, dataset).items():
        featurizer = config["models"][model].get("featurizer")
        models[model] = {
            "family": spec["family"],
            "featurizer": dict(config.get("featurizers", {}).get(featurizer) or {}) or featurizer,
            "files": {str(s): model_file(config, dataset, model, s) for s in spec["seeds"]},
        }
    return {
        "name": registered_name(dataset, experiment_prefix(config)),
        "spec": {
            "kind": ds["kind"],
            "task": ds["task"],
            "input_column": ds["input_column"],
            "id_column": ds.get("id_column"),
            "validation": dict(ds.get("validation") or {}),
        },
        "models": models,
    }


def registry_files(config: Mapping, dataset: str) -> list[str]:
    """Every model file of the dataset: the best one is chosen only after they exist."""
    spec = registry_spec(config, dataset)
    return [path for m in spec["models"].values() for path in m["files"].values()]


def seed_paths(config: Mapping, pattern: str, dataset: str, model: str | None = None) -> list:
    """`pattern` formatted for every seed of the dataset (and the model)."""
    return [
        pattern.format(dataset=dataset, model=model, seed=seed)
        for seed in config["datasets"][dataset]["seeds"]
    ]


def plot_dir(dataset: str, model: str) -> str:
    return f"results/report/{dataset}/plots/{model}"


def report_layout(config: Mapping) -> dict[str, dict[str, Any]]:
    """{dataset: {"report": report.json, "registry": registry.json, "plots": {model: plot
    folder}, "studies": {tuned model: its search's history.png}}} for the HTML page."""
    from biomol_dl.search import tuned_input

    def studies(dataset: str) -> dict[str, str]:
        found = {m: tuned_input(config, dataset, m) for m in report_models(config, dataset)}
        return {m: str(Path(p).with_name("history.png")) for m, p in found.items() if p}

    return {
        dataset: {
            "report": f"results/report/{dataset}/report.json",
            "registry": f"results/registry/{dataset}/registry.json",
            "plots": {m: plot_dir(dataset, m) for m in report_models(config, dataset)},
            "studies": studies(dataset),
        }
        for dataset in config["datasets"]
    }


def model_file(config: Mapping, dataset: str, model: str, seed: int) -> str:
    """The training rule's model file: the file its family names (`model_file`)."""
    from biomol_dl.models import FAMILIES

    name = FAMILIES[config["models"][model]["family"]]["model_file"]
    return f"results/{dataset}/train/{model}/seed{seed}/{name}"


def predict_specs(config: Mapping) -> dict[str, dict[str, Any]]:
    """Every `predict:` entry resolved against its dataset and model.

    Returns {name: {dataset, model, family, input, format, input_column, id_column, seeds,
    kind, task, validation, models: [model files]}}; raises ConfigError for an unknown dataset,
    a model the dataset does not train, or seeds it does not have.
    """
    out = {}
    for name, entry in (config.get("predict") or {}).items():

        def bad(key: str, message: str, name: str = name) -> ConfigError:
            return ConfigError(f"invalid config at 'predict.{name}.{key}': {message}")

        dataset, model = entry["dataset"], entry["model"]
        if dataset not in config["datasets"]:
            defined = ", ".join(config["datasets"])
            raise bad("dataset", f"unknown dataset {dataset!r}; defined: {defined}")
        ds = config["datasets"][dataset]
        trained = dataset_models(config, dataset)
        if model not in trained:
            raise bad(
                "model", f"{model!r} is not trained on {dataset}; trained: {', '.join(trained)}"
            )
        seeds = ds["seeds"] if entry.get("seeds", "all") == "all" else entry["seeds"]
        unknown = [s for s in seeds if s not in ds["seeds"]]
        if unknown:
            raise bad("seeds", f"{unknown} not among the seeds of {dataset}: {ds['seeds']}")
        out[name] = {
            "dataset": dataset,
            "model": model,
            "family": config["models"][model]["family"],
            "input": entry["input"],
            "format": entry.get("format"),
            "input_column": entry.get("input_column") or ds["input_column"],
            "id_column": entry.get("id_column"),
            "seeds": [int(s) for s in seeds],
            "threads": int(entry.get("threads", 2)),
            "kind": ds["kind"],
            "task": ds["task"],
            "validation": dict(ds.get("validation") or {}),
            "models": [model_file(config, dataset, model, s) for s in seeds],
        }
    return out


def predict_trust_inputs(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved predict entry's trust inputs (biomol_dl.trust): each seed's metrics.json, the
    dataset's clean table and each seed's split file."""
    dataset, model, seeds = entry["dataset"], entry["model"], entry["seeds"]
    return {
        "metrics": [f"results/{dataset}/evaluate/{model}/seed{s}/metrics.json" for s in seeds],
        "clean": f"results/{dataset}/validate/clean.csv",
        "splits": [f"results/{dataset}/split/seed{s}.csv" for s in seeds],
    }
