"""What each rule of the workflow is given as `params`: pure functions of the resolved config.

Snakemake re-runs a job when its `params` change, so each function here returns only what
changes that rule's output, and nothing else (workflow/rules/*.smk call them; tests/test_rerun.py
checks the planned job set of each kind of edit after a real run):

- fetch: what identifies the fetched bytes (a local file is an *input*, not a param);
- validate: the dataset entry without `description`, `models`, `seeds` and the split;
- train: the model's own entry without its `threads` (a resource, not an identity), its
  `search` (biomol_dl.search.study_spec is the search jobs' params; n_trials is not in it) and
  of its `uncertainty` only an estimate the train job computes (MC dropout; calibration is
  evaluate's);
- evaluate: the task and the model's `uncertainty` entry.

A dataset's `description`, its list of models and seeds, a model's threads and the mirror folders
reach no rule's params.
"""

from __future__ import annotations

from typing import Any

from biomol_dl.sources import READ_OPTIONS, distribution


def _parts(source: dict) -> list[dict]:
    return source["parts"] if "parts" in source else [source]


def fetch_inputs(config: dict, dataset: str) -> list[str]:
    """The local files of `path` sources: inputs of fetch, so an edit in place re-runs it."""
    source = config["datasets"][dataset]["source"]
    return [part["path"] for part in _parts(source) if part.get("type") == "path"]


def package_version(package: str) -> str | None:
    """`distribution==version` of the installed distribution shipping `package`, else None."""
    found = distribution(package)
    return f"{found['distribution']}=={found['version']}" if found else None


def fetch_identity(config: dict, dataset: str) -> dict[str, Any]:
    """The source without its read options (a url is pinned by its sha256), plus the installed
    version of a package source's distribution: a new version re-runs fetch."""

    def identity(part: dict) -> dict:
        if part.get("type") == "package":
            return {**part, "version": package_version(part["package"])}
        return part

    source = config["datasets"][dataset]["source"]
    if "parts" in source:
        # Parts are read and concatenated into one CSV, so their read options count here.
        return {**source, "parts": [identity(p) for p in source["parts"]]}
    return identity({k: v for k, v in source.items() if k not in READ_OPTIONS})


def validate_spec(config: dict, dataset: str) -> dict[str, Any]:
    """The dataset entry as validation reads it: no `description`, `models` or `seeds`, and of
    the split only a predefined split's column (it keeps duplicates apart across parts)."""
    ds = config["datasets"][dataset]
    spec = {k: v for k, v in ds.items() if k not in ("description", "models", "seeds", "split")}
    split = ds["split"]
    predefined = split["strategy"] == "predefined"
    spec["split"] = {"strategy": "predefined", "column": split.get("column")} if predefined else {}
    return spec


def validate_exclude(config: dict, dataset: str) -> list[str]:
    """The clean tables of the datasets in the dataset's `exclude` list, in its order."""
    return [
        f"results/{d}/validate/clean.csv" for d in config["datasets"][dataset].get("exclude") or []
    ]


def evaluate_uncertainty(config: dict, model: str) -> dict[str, Any]:
    """The model's `uncertainty:` entry, defaults filled: how evaluate calibrates on the
    validation split."""
    return dict(config["models"][model].get("uncertainty") or {})


# uncertainty estimates the train job computes, with the keys of `uncertainty` each one reads
TRAIN_ESTIMATES = {"dropout": ("passes",), "mve": (), "evidential": (), "ensemble": ("members",)}


def train_model_spec(config: dict, model: str) -> dict[str, Any]:
    """The model's entry with its name and featurizer spec, without `threads` and `search` (the
    search's own jobs take it: biomol_dl.search.study_spec); of `uncertainty` only an estimate
    the train job computes (MC dropout: estimate and passes; a variance head: estimate; a
    within-split ensemble: estimate and members), the rest being the evaluate rule's
    business."""
    entry = config["models"][model]
    spec = {k: v for k, v in entry.items() if k not in ("threads", "uncertainty", "search")}
    estimate = (entry.get("uncertainty") or {}).get("estimate")
    if estimate in TRAIN_ESTIMATES:
        keys = TRAIN_ESTIMATES[estimate]
        spec["uncertainty"] = {"estimate": estimate, **{k: entry["uncertainty"][k] for k in keys}}
    spec["name"] = model
    spec["featurizer_spec"] = config["featurizers"][spec["featurizer"]]
    return spec


# ---------------------------------------------------------------------- transfer learning
# Rules corpus, featurize_corpus and pretrain (workflow/rules/pretrain.smk); train rules take
# the checkpoint a model starts from as an input (biomol_dl.transfer.init_source).


def corpus_inputs(config: dict, corpus: str) -> dict[str, list[str]]:
    """The corpus's local source files and the clean tables of the datasets it excludes."""
    entry = config["corpora"][corpus]
    return {
        "sources": [i["source"]["path"] for i in entry["sources"] if i["source"]["type"] == "path"],
        "exclude": [f"results/{d}/validate/clean.csv" for d in entry.get("exclude") or []],
    }


def corpus_spec(config: dict, corpus: str) -> dict[str, Any]:
    """The corpus entry without `description`, each package source with its installed version
    (as fetch_identity), so a new wheel re-builds the corpus."""
    entry = {k: v for k, v in config["corpora"][corpus].items() if k != "description"}

    def identity(source: dict) -> dict:
        if source.get("type") == "package":
            return {**source, "version": package_version(source["package"])}
        return source

    entry["sources"] = [{**i, "source": identity(i["source"])} for i in entry["sources"]]
    return entry


def corpus_featurizer_spec(config: dict, featurizer: str) -> dict[str, Any]:
    """A graph featurizer's spec with every RDKit descriptor added: the pretraining targets."""
    spec = dict(config["featurizers"][featurizer])
    spec.update(add_descriptors=True, descriptor_names=None)
    return spec


def pretrain_spec(config: dict, name: str) -> dict[str, Any]:
    """The pretrain entry with its name, family and featurizer spec, without `threads`."""
    entry = {
        k: v for k, v in config["pretrain"][name].items() if k not in ("threads", "description")
    }
    entry["name"] = name
    entry.setdefault("family", "gnn")
    entry["featurizer_spec"] = config["featurizers"][entry["featurizer"]]
    return entry
