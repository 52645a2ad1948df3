"""Incremental re-runs: after a real run, each config or data edit plans exactly the jobs it
affects, no more and no fewer.

One real Snakemake run of a tiny config (two random forests, two seeds) is made once; each case
then edits a copy of the config (or the source file) and compares the jobs `snakemake --dry-run`
plans with the exact expected set. Dry runs write nothing, so every case starts from the same
state; the in-place edit of the source file comes last.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake

NO_TRACKING = {"BIOMOL_DL_TRACKING": "0"}
DATASET = "tiny"
CONFIG = {
    "featurizers": {"morgan": {"type": "morgan", "radius": 2, "n_bits": 256}},
    "models": {
        "rf_a": {"family": "rf", "featurizer": "morgan", "params": {"n_estimators": 10}},
        "rf_b": {"family": "rf", "featurizer": "morgan", "params": {"n_estimators": 12}},
    },
    "datasets": {
        DATASET: {
            "description": "tiny logBB set",
            "kind": "smiles",
            "source": {"type": "path", "path": "data.csv"},
            "input_column": "smiles",
            "id_column": "name",
            "label_columns": ["logBB"],
            "task": "regression",
            "split": {"strategy": "random", "fractions": [0.7, 0.15, 0.15]},
            "seeds": [0, 1],
            "models": ["rf_a", "rf_b"],
        }
    },
}

_JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", re.M)
_WILDCARDS = re.compile(r"^    wildcards: (.*)$", re.M)


def planned_jobs(output: str) -> set[str]:
    """`rule[wildcards]` of every job in Snakemake's job listing (dry run or real run)."""
    jobs = set()
    for rule, body in _JOB.findall(output):
        if rule == "all":
            continue
        match = _WILDCARDS.search(body)
        jobs.add(f"{rule}[{match.group(1)}]" if match else rule)
    return jobs


def job(rule: str, **wildcards) -> str:
    if not wildcards:
        return rule
    return f"{rule}[{', '.join(f'{k}={v}' for k, v in wildcards.items())}]"


def model_jobs(model: str, seeds=(0, 1)) -> set[str]:
    """A model's training, evaluation and plots."""
    out = {job("report_model", dataset=DATASET, model=model)}
    for s in seeds:
        out |= {
            job("train_rf", dataset=DATASET, model=model, seed=s),
            job("evaluate", dataset=DATASET, model=model, seed=s),
        }
    return out


AGGREGATES = {job("report_dataset", dataset=DATASET), "summary", "report"}


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> tuple[Path, set[str]]:
    """The tiny config run for real; returns its folder and the jobs it ran."""
    workdir = tmp_path_factory.mktemp("rerun")
    (workdir / "data.csv").write_bytes((ROOT / "tests" / "data" / "tiny_logbb.csv").read_bytes())
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    proc = snakemake(workdir, configfile, "--cores", "2", env=NO_TRACKING)
    ran = planned_jobs(proc.stdout + proc.stderr)
    assert job("fetch", dataset=DATASET, fmt="csv") in ran and len(ran) == 18, sorted(ran)
    return workdir, ran


def plan(workdir: Path, config: dict) -> set[str]:
    configfile = workdir / "edited.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workdir, configfile, "--cores", "2", "--dry-run", env=NO_TRACKING)
    return planned_jobs(proc.stdout + proc.stderr)


def _edit(fn):
    def edited():
        config = copy.deepcopy(CONFIG)
        fn(config)
        return config

    return edited


def _ds(config):
    return config["datasets"][DATASET]


def _add_model(c):
    c["models"]["rf_c"] = {"family": "rf", "featurizer": "morgan", "params": {"n_estimators": 8}}
    _ds(c)["models"].append("rf_c")


def _set(path: str, value):
    def fn(c):
        *keys, last = path.split(".")
        node = c
        for key in keys:
            node = node[key]
        node[last] = value

    return fn


SEED2 = {job("split", dataset=DATASET, seed=2)} | {
    job(rule, dataset=DATASET, model=m, seed=2)
    for m in ("rf_a", "rf_b")
    for rule in ("train_rf", "evaluate")
}
PLOTS = {job("report_model", dataset=DATASET, model=m) for m in ("rf_a", "rf_b")}
SPLITS = {job("split", dataset=DATASET, seed=s) for s in (0, 1)}
TRAINING = model_jobs("rf_a") | model_jobs("rf_b")

CASES = {
    "nothing changed": (_edit(lambda c: None), set()),
    "description edited": (_edit(_set(f"datasets.{DATASET}.description", "new words")), set()),
    "threads changed": (_edit(_set("models.rf_b.threads", 1)), set()),
    "mirror folder set": (_edit(_set("mirror", "/nonexistent/mirror")), set()),
    "model added": (_edit(_add_model), model_jobs("rf_c") | AGGREGATES),
    "model removed": (_edit(_set(f"datasets.{DATASET}.models", ["rf_a"])), AGGREGATES),
    "uncertainty changed": (
        _edit(_set("models.rf_a.uncertainty", {"coverage": 0.8})),
        {job("evaluate", dataset=DATASET, model="rf_a", seed=s) for s in (0, 1)}
        | {job("report_model", dataset=DATASET, model="rf_a")}
        | AGGREGATES,
    ),
    "model params changed": (
        _edit(_set("models.rf_a.params", {"n_estimators": 11})),
        model_jobs("rf_a") | AGGREGATES,
    ),
    "seed added": (_edit(_set(f"datasets.{DATASET}.seeds", [0, 1, 2])), SEED2 | PLOTS | AGGREGATES),
    "seed removed": (_edit(_set(f"datasets.{DATASET}.seeds", [0])), PLOTS | AGGREGATES),
    "split changed": (
        _edit(_set(f"datasets.{DATASET}.split.fractions", [0.8, 0.1, 0.1])),
        SPLITS | TRAINING | AGGREGATES,
    ),
    "featurizer changed": (
        _edit(_set("featurizers.morgan.n_bits", 128)),
        {job("featurize", dataset=DATASET, featurizer="morgan")} | TRAINING | AGGREGATES,
    ),
    "validation changed": (
        _edit(_set(f"datasets.{DATASET}.validation", {"largest_fragment": True})),
        {job("validate", dataset=DATASET), job("featurize", dataset=DATASET, featurizer="morgan")}
        | SPLITS
        | TRAINING
        | AGGREGATES,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_edit_plans_exactly_the_affected_jobs(done_run, case):
    workdir, _ = done_run
    make_config, expected = CASES[case]
    assert plan(workdir, make_config()) == expected


@pytest.mark.slow
def test_source_file_edited_in_place_reruns_everything(done_run):
    """A `path` source is an input of fetch: editing the file re-runs fetch and all after it."""
    workdir, ran = done_run
    data = workdir / "data.csv"
    data.write_text(data.read_text().replace(",-0.51\n", ",-0.52\n", 1))
    assert plan(workdir, CONFIG) == ran


def test_fetch_identity_is_the_bytes_not_how_they_are_read():
    """A package source is identified by its distribution's version; read options (header,
    columns) are validation's business, except in parts, which fetch itself reads."""
    from biomol_dl import rule_params

    package = {"type": "package", "package": "B3DB", "resource": "B3DB_regression.tsv"}
    config = {"datasets": {"d": {"source": {**package, "header": False, "columns": ["a"]}}}}
    identity = rule_params.fetch_identity(config, "d")
    assert identity == {**package, "version": "qc-B3DB==1.1.1"}
    config["datasets"]["d"]["source"] = {"parts": [{**package, "part": "x"}], "skip_rows": 1}
    identity = rule_params.fetch_identity(config, "d")
    assert identity["skip_rows"] == 1 and identity["parts"][0]["version"] == "qc-B3DB==1.1.1"
