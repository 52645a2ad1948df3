"""A corpus of bad configs: every one must fail when the config loads, before any job runs, with
one line naming the key path and the reason (and, for an unknown key, the nearest valid key).

Each case in CASES is a mutation of tests/configs/tiny.yaml, or YAML texts given as config files
(merged in order, like `snakemake --configfile a.yaml b.yaml`). They run in-process through
`biomol_dl.config.load_config`, the function workflow/rules/common.smk calls; a few also run
through the real `snakemake -n`. `python tests/test_config_corpus.py` prints the table of cases
(for docs/BAD_INPUTS.md).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake

from biomol_dl.config import NAME_PATTERN, ConfigError, load_config

TINY_PATH = ROOT / "tests" / "configs" / "tiny.yaml"
TINY_TEXT = TINY_PATH.read_text()
TINY_LINES = TINY_TEXT.count("\n")
URL = {"type": "url", "url": "https://example.org/x.csv", "sha256": "0" * 64}


@dataclass(frozen=True)
class Case:
    """One bad config: `mutate` edits a copy of the tiny config, or `files` are whole YAML texts
    merged in order; `expected` is a substring of the error message."""

    id: str
    input: str
    expected: str
    mutate: Callable[[dict], object] | None = None
    files: tuple[str, ...] = ()


def _set(dotted: str, value: object) -> Callable[[dict], None]:
    """A mutation setting one key: _set("datasets.tiny_logbb.kind", "dna")."""

    def mutate(config: dict) -> None:
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = copy.deepcopy(value)

    return mutate


def _rename(section: str, old: str, new: str) -> Callable[[dict], None]:
    """A mutation renaming an entry (and the dataset references to a renamed model)."""

    def mutate(config: dict) -> None:
        config[section] = {new if k == old else k: v for k, v in config[section].items()}
        for ds in config["datasets"].values():
            ds["models"] = [new if m == old else m for m in ds["models"]]
        for spec in config["models"].values():
            if section == "featurizers" and spec["featurizer"] == old:
                spec["featurizer"] = new

    return mutate


def _predict(**entry: object) -> Callable[[dict], None]:
    return _set(
        "predict.new", {"dataset": "tiny_logbb", "model": "rf_morgan", "input": "x.csv", **entry}
    )


# fmt: off
CASES: tuple[Case, ...] = (
    # --- names that become paths
    Case("model-traversal", "model named `../../x`", "name '../../x' is not allowed",
         _rename("models", "rf_morgan", "../../x")),
    Case("model-odd-chars", "model named `rf.m+(1)`", "name 'rf.m+(1)' is not allowed",
         _rename("models", "rf_morgan", "rf.m+(1)")),
    Case("featurizer-slash", "featurizer named `a/b`", "name 'a/b' is not allowed",
         _rename("featurizers", "morgan", "a/b")),
    Case("dataset-space", "dataset named ` x` (leading space)", "name ' x' is not allowed",
         _rename("datasets", "tiny_logbb", " x")),
    Case("model-uppercase", "model named `RF` (collides with `rf` on a case-insensitive disk)",
         "name 'RF' is not allowed", _rename("models", "rf_morgan", "RF")),
    Case("predict-traversal", "predict entry named `../p`", "name '../p' is not allowed",
         lambda c: c.update(predict={"../p": {"dataset": "tiny_logbb", "model": "rf_morgan",
                                              "input": "x.csv"}})),
    Case("name-too-long", "model name of 101 characters", "at most 100 characters",
         _rename("models", "rf_morgan", "m" * 101)),
    Case("grid-name-too-long", "grid whose generated model name exceeds 100 characters",
         "invalid config at 'models.mlp_morgan.grid'",
         _set("models.mlp_morgan.grid", {"hidden": [[8] * 45]})),
    # --- unknown keys, at every level, with the nearest valid key
    Case("top-level-typo", "top-level `trackng:`", "'trackng': unknown key 'trackng'; did you "
         "mean 'tracking'?", _set("trackng", {"enabled": False})),
    Case("tracking-typo", "`tracking: {enbled: false}`", "did you mean 'enabled'?",
         _set("tracking.enbled", False)),
    Case("report-typo", "`report: {top_kk: 3}`", "'report.top_kk': unknown key",
         _set("report.top_kk", 3)),
    Case("dataset-typo", "dataset key `validaton:`", "did you mean 'validation'?",
         _set("datasets.tiny_logbb.validaton", {})),
    Case("source-typo", "path source with `sha265:`", "did you mean 'sha256'?",
         _set("datasets.tiny_logbb.source.sha265", "0" * 64)),
    Case("source-foreign-key", "path source with a url source's `mirror_path`",
         "'datasets.tiny_logbb.source.mirror_path': unknown key",
         _set("datasets.tiny_logbb.source.mirror_path", "x.csv")),
    Case("url-source-typo", "url source with `mirorr_path:`", "did you mean 'mirror_path'?",
         _set("datasets.tiny_logbb.source", {**URL, "mirorr_path": "x.csv"})),
    Case("part-typo", "a source part with `hedaer: false`",
         "'datasets.tiny_logbb.source.parts.0.hedaer': unknown key 'hedaer'; did you mean "
         "'header'?",
         _set("datasets.tiny_logbb.source", {"parts": [{"type": "path", "path": "a.csv",
                                                        "part": "train", "hedaer": False}]})),
    Case("split-typo", "scaffold split with `balancd: true`", "did you mean 'balanced'?",
         _set("datasets.tiny_logbb.split.balancd", True)),
    Case("split-foreign-option", "scaffold split with homology's `max_similarity`",
         "'datasets.tiny_logbb.split.max_similarity': unknown key",
         _set("datasets.tiny_logbb.split.max_similarity", 0.5)),
    Case("validation-typo", "validation `largest_fragmnt: true`",
         "did you mean 'largest_fragment'?",
         _set("datasets.tiny_logbb.validation", {"largest_fragmnt": True})),
    Case("validation-wrong-kind", "protein option `max_length` on a SMILES dataset",
         "'datasets.tiny_logbb.validation.max_length': unknown key",
         _set("datasets.tiny_logbb.validation", {"max_length": 100})),
    Case("featurizer-typo", "morgan featurizer with `radus: 3`", "did you mean 'radius'?",
         _set("featurizers.morgan.radus", 3)),
    Case("mlp-param-typo", "mlp params `hiden: 64`",
         "'models.mlp_morgan.params.hiden': unknown key 'hiden'; did you mean 'hidden'?",
         _set("models.mlp_morgan.params.hiden", 64)),
    Case("rf-param-typo", "rf params `n_estimator: 100`", "did you mean 'n_estimators'?",
         _set("models.rf_morgan.params.n_estimator", 100)),
    Case("grid-key-typo", "grid key `dropot`", "'models.mlp_morgan.grid.dropot': unknown key",
         _set("models.mlp_morgan.grid", {"dropot": [0.1, 0.2]})),
    Case("model-key-typo", "model key `thread: 2`", "did you mean 'threads'?",
         _set("models.rf_morgan.thread", 2)),
    Case("predict-typo", "predict entry with `sedes: [0]`", "did you mean 'seeds'?",
         _predict(sedes=[0])),
    # --- values the schema (or the option checkers) can check
    Case("seed-float", "`seeds: [1.0]`", "'datasets.tiny_logbb.seeds.0': 1.0 is not of type "
         "'integer'", _set("datasets.tiny_logbb.seeds", [1.0])),
    Case("seed-bool", "`seeds: [true]`", "True is not of type 'integer'",
         _set("datasets.tiny_logbb.seeds", [True])),
    Case("seed-duplicate", "`seeds: [0, 0]`", "has non-unique elements",
         _set("datasets.tiny_logbb.seeds", [0, 0])),
    Case("predict-seed-float", "predict `seeds: [0.0]`", "'predict.new.seeds.0': 0.0 is not of "
         "type 'integer'", _predict(seeds=[0.0])),
    Case("fraction-zero", "split fractions `[0.9, 0.0, 0.1]` (no validation partition)",
         "'datasets.tiny_logbb.split.fractions.1': 0.0 is less than or equal to the minimum of 0",
         _set("datasets.tiny_logbb.split.fractions", [0.9, 0.0, 0.1])),
    Case("threads-float", "model `threads: 1.0`", "'models.rf_morgan.threads': 1.0 is not of "
         "type 'integer'", _set("models.rf_morgan.threads", 1.0)),
    Case("uncertainty-coverage-one", "model `uncertainty: {coverage: 1.0}`",
         "'models.rf_morgan.uncertainty.coverage': 1.0 is greater than or equal to the maximum",
         _set("models.rf_morgan.uncertainty", {"coverage": 1.0})),
    Case("uncertainty-trees-on-mlp", "`uncertainty: {estimate: trees}` on an mlp",
         "'models.mlp_morgan.uncertainty.estimate': 'trees' is the spread across a random "
         "forest's trees", _set("models.mlp_morgan.uncertainty", {"estimate": "trees"})),
    Case("uncertainty-dropout-on-rf", "`uncertainty: {estimate: dropout}` on a random forest",
         "'models.rf_morgan.uncertainty.estimate': 'dropout' is MC dropout, which needs a torch "
         "family",
         _set("models.rf_morgan.uncertainty", {"estimate": "dropout"})),
    Case("uncertainty-mve-on-binary", "`uncertainty: {estimate: mve}` on a binary dataset",
         "'models.mlp_kmer.uncertainty.estimate': 'mve' is a regression head but dataset "
         "'tiny_peptides' is binary", _set("models.mlp_kmer.uncertainty", {"estimate": "mve"})),
    Case("uncertainty-ensemble-on-rf", "`uncertainty: {estimate: ensemble}` on a random forest",
         "'models.rf_morgan.uncertainty.estimate': 'ensemble' is a within-split ensemble of "
         "torch models", _set("models.rf_morgan.uncertainty", {"estimate": "ensemble"})),
    Case("uncertainty-one-member", "`uncertainty: {estimate: ensemble, members: 1}`",
         "'models.mlp_morgan.uncertainty.members': 1 is less than the minimum of 2",
         _set("models.mlp_morgan.uncertainty", {"estimate": "ensemble", "members": 1})),
    Case("uncertainty-calibrator-typo", "`uncertainty: {probability: platts}`",
         "'models.rf_kmer.uncertainty.probability': 'platts' is not one of",
         _set("models.rf_kmer.uncertainty", {"probability": "platts"})),
    Case("top-k-zero", "`report: {top_k: 0}`", "'report.top_k': 0 is less than the minimum of 1",
         _set("report.top_k", 0)),
    Case("rank-split-train", "`report: {rank_split: train}` (models are chosen on validation "
         "or test)", "'report.rank_split': 'train' is not one of",
         _set("report.rank_split", "train")),
    Case("param-float-for-int", "mlp `epochs: 5.0`",
         "'models.mlp_morgan.params.epochs': expected int, got 5.0", _set(
             "models.mlp_morgan.params.epochs", 5.0)),
    Case("param-bool-for-int", "rf `n_estimators: true`", "got True (bool)",
         _set("models.rf_morgan.params.n_estimators", True)),
    Case("featurizer-float-for-int", "morgan `n_bits: 512.0`",
         "'featurizers.morgan.n_bits': expected int", _set("featurizers.morgan.n_bits", 512.0)),
    Case("plm-precision-unknown", "plm_embedding `precision: fp16` (CPU precisions: fp32, bf16, "
         "int8)", "'featurizers.emb': plm_embedding: precision must be one of auto, fp32, bf16, "
         "int8, got 'fp16'", _set("featurizers.emb", {"type": "plm_embedding", "precision": "fp16"})),
    Case("plm-cache-layer-zero", "plm_tokens `cache_layer: 0` (the embeddings are no cache)",
         "'featurizers.tok': plm_tokens: cache_layer must be >= 1 or null",
         _set("featurizers.tok", {"type": "plm_tokens", "cache_layer": 0})),
    Case("lora-below-cache", "plm_lora `layers_to_transform: [5, 6, 7]` on tokens with "
         "`cache_layer: 6`", "'models.lora.params.layers_to_transform': layers [5] lie below "
         "cache_layer 6", lambda c: (
             _set("featurizers.tok", {"type": "plm_tokens", "cache_layer": 6})(c),
             _set("models.lora", {"family": "plm_lora", "featurizer": "tok",
                                  "params": {"layers_to_transform": [5, 6, 7]}})(c))),
    Case("grid-value-type", "grid `epochs: [5, 10.5]`", "'models.mlp_morgan.grid.epochs.1'",
         _set("models.mlp_morgan.grid", {"epochs": [5, 10.5]})),
    Case("split-option-type", "scaffold `balanced: \"yes\"`", "balanced must be true or false",
         _set("datasets.tiny_logbb.split.balanced", "yes")),
    Case("validation-option-value", "validation `duplicates: avg`",
         "'datasets.tiny_logbb.validation': validation.duplicates must be one of",
         _set("datasets.tiny_logbb.validation", {"duplicates": "avg"})),
    Case("validation-option-type", "validation `largest_fragment: \"yes\"`",
         "'datasets.tiny_logbb.validation.largest_fragment': expected bool",
         _set("datasets.tiny_logbb.validation", {"largest_fragment": "yes"})),
    Case("source-skip-rows-float", "source `skip_rows: 1.0`", "1.0 is not of type 'integer'",
         _set("datasets.tiny_logbb.source.skip_rows", 1.0)),
    Case("source-format-xlsx", "a path source `data/x.xlsx` without `format:`",
         "'datasets.tiny_logbb.source': data/x.xlsx: unsupported format 'xlsx' (an Excel",
         _set("datasets.tiny_logbb.source", {"type": "path", "path": "data/x.xlsx"})),
    Case("source-format-unknown", "source `format: xlsx`",
         "'datasets.tiny_logbb.source.format': 'xlsx' is not one of",
         _set("datasets.tiny_logbb.source.format", "xlsx")),
    Case("fasta-header-regex", "FASTA source `fasta_header: {pattern: '(?P<a>'}`",
         "'datasets.tiny_logbb.source': fasta_header.pattern: not a valid regular expression",
         _set("datasets.tiny_logbb.source", {"type": "path", "path": "x.fasta",
                                             "fasta_header": {"pattern": "(?P<a>"}})),
    Case("fasta-header-not-fasta", "`fasta_header` on a CSV source",
         "fasta_header: applies to FASTA; this source is csv",
         _set("datasets.tiny_logbb.source.fasta_header", "uniprot")),
    Case("smiles-property-not-sdf", "`smiles_property` on a CSV source",
         "smiles_property: applies to SDF; this source is csv",
         _set("datasets.tiny_logbb.source.smiles_property", "SMILES")),
    Case("part-missing-name", "a source part without `part:`", "'part' is a required property",
         _set("datasets.tiny_logbb.source", {"parts": [{"type": "path", "path": "a.csv"}]})),
    # --- name collisions
    Case("grid-duplicate-label", "grid `dropout: [0.1, \"0.1\"]` (both labelled 0p1)",
         "two combinations are both named 'mlp_morgan__dropout-0p1'",
         _set("models.mlp_morgan.grid", {"dropout": [0.1, "0.1"]})),
    Case("explicit-grid-name", "explicit model `mlp_morgan__dropout-0p1` beside a grid that "
         "generates it", "model names cannot contain '__'", lambda c: (
             c["models"]["mlp_morgan"].update(grid={"dropout": [0.1, 0.2]}),
             c["models"].update({"mlp_morgan__dropout-0p1": dict(c["models"]["rf_morgan"])}),
         )),
    # --- hyperparameter search (biomol_dl.search)
    Case("search-key-typo", "search space key `dropot`",
         "'models.mlp_morgan.search.space.dropot': unknown key 'dropot'; did you mean 'dropout'?",
         _set("models.mlp_morgan.search", {"space": {"dropot": {"type": "float", "low": 0,
                                                                 "high": 0.5}}})),
    Case("search-range-impossible", "search `dropout` up to 1.0 (mlp takes [0, 1))",
         "'models.mlp_morgan.search.space.dropout': mlp: dropout=1.0: must be in [0, 1)",
         _set("models.mlp_morgan.search", {"space": {"dropout": {"type": "float", "low": 0,
                                                                  "high": 1.0}}})),
    Case("search-choice-impossible", "search `activation` choices `[relu, tanh]`",
         "'models.mlp_morgan.search.space.activation.choices.1': mlp: activation='tanh'",
         _set("models.mlp_morgan.search", {"space": {"activation": {
             "type": "categorical", "choices": ["relu", "tanh"]}}})),
    Case("search-int-float-bound", "search `hidden: {type: int, low: 8.5, high: 64}`",
         "'models.mlp_morgan.search.space.hidden.low': expected int, got 8.5",
         _set("models.mlp_morgan.search", {"space": {"hidden": {"type": "int", "low": 8.5,
                                                                 "high": 64}}})),
    Case("search-log-zero", "search `lr: {type: float, low: 0, high: 0.1, log: true}`",
         "'models.mlp_morgan.search.space.lr.low': a log distribution needs low > 0",
         _set("models.mlp_morgan.search", {"space": {"lr": {"type": "float", "low": 0,
                                                             "high": 0.1, "log": True}}})),
    Case("search-low-above-high", "search `hidden: {type: int, low: 64, high: 8}`",
         "'models.mlp_morgan.search.space.hidden': low (64) must be below high (8)",
         _set("models.mlp_morgan.search", {"space": {"hidden": {"type": "int", "low": 64,
                                                                 "high": 8}}})),
    Case("search-range-choices", "search range with `choices:`",
         "'models.mlp_morgan.search.space.hidden.choices': unknown key 'choices'",
         _set("models.mlp_morgan.search", {"space": {"hidden": {"type": "int", "low": 8,
                                                                 "high": 64, "choices": [8]}}})),
    Case("search-sampler-typo", "search `sampler: bayes`",
         "'models.mlp_morgan.search.sampler': 'bayes' is not one of",
         _set("models.mlp_morgan.search", {"sampler": "bayes", "space": {
             "dropout": {"type": "float", "low": 0, "high": 0.5}}})),
    Case("search-grid-sampler-range", "grid sampler over a float range",
         "'models.mlp_morgan.search.space.dropout': the grid sampler takes categorical",
         _set("models.mlp_morgan.search", {"sampler": "grid", "space": {
             "dropout": {"type": "float", "low": 0, "high": 0.5}}})),
    Case("search-grid-too-small", "grid sampler with 2 points and `n_trials: 3`",
         "'models.mlp_morgan.search.n_trials': 3 trials but the grid has 2 points",
         _set("models.mlp_morgan.search", {"sampler": "grid", "n_trials": 3, "space": {
             "dropout": {"type": "categorical", "choices": [0.1, 0.2]}}})),
    Case("search-and-grid", "a model with both `grid:` and `search:`",
         "'models.mlp_morgan.search': a model takes `grid` or `search`, not both",
         lambda c: c["models"]["mlp_morgan"].update(grid={"dropout": [0.1, 0.2]}, search={
             "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}})),
    Case("search-metric-task", "search `metric: roc_auc` on a regression dataset",
         "'models.mlp_morgan.search.metric': 'roc_auc' is no metric of dataset 'tiny_logbb'",
         _set("models.mlp_morgan.search", {"metric": "roc_auc", "space": {
             "dropout": {"type": "float", "low": 0, "high": 0.5}}})),
    Case("search-tuned-from", "`tuned_from:` written by hand",
         "'models.mlp_morgan.tuned_from': set by the config loader",
         _set("models.mlp_morgan.tuned_from", "rf_morgan")),
    Case("dataset-exclude-unknown", "a dataset's `exclude:` naming no dataset",
         "'datasets.tiny_logbb.exclude.0': unknown dataset 'tiny_bbb'",
         _set("datasets.tiny_logbb.exclude", ["tiny_bbb"])),
    Case("dataset-exclude-itself", "a dataset excluding its own molecules",
         "'datasets.tiny_logbb.exclude.0': a dataset cannot exclude itself",
         _set("datasets.tiny_logbb.exclude", ["tiny_logbb"])),
    # --- YAML files
    Case("duplicate-top-key", "a file giving `resume_dir:` twice",
         f"line {TINY_LINES + 1}: duplicate key 'resume_dir' (first at line 3)",
         files=(TINY_TEXT + "resume_dir: results/other\n",)),
    Case("duplicate-nested-key", "a file giving model `rf_morgan:` twice",
         "duplicate key 'rf_morgan'", files=(TINY_TEXT.replace(
             "models:\n", "models:\n  rf_morgan: {family: mlp, featurizer: morgan}\n", 1),)),
    Case("two-files-two-families", "`--configfile a.yaml b.yaml` defining `rf_morgan` as rf, "
         "then as mlp", "'rf_morgan' is rf in", files=(
             TINY_TEXT, "models:\n  rf_morgan: {family: mlp, featurizer: morgan}\n")),
)
# fmt: on


def _build(case: Case, tmp_path: Path) -> tuple[dict, list[Path]]:
    """The merged config and the files it came from, as Snakemake would hand them over."""
    if not case.files:
        config = yaml.safe_load(TINY_TEXT)
        case.mutate(config)
        return config, []
    from snakemake.utils import update_config

    config: dict = {}
    paths = []
    for i, text in enumerate(case.files):
        path = tmp_path / f"config{i}.yaml"
        path.write_text(text)
        paths.append(path)
        update_config(config, yaml.safe_load(text))
    return config, paths


def test_corpus_is_large_and_distinct():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.input for c in CASES}) == len(CASES)


def test_tiny_config_itself_loads(tmp_path):
    load_config(yaml.safe_load(TINY_TEXT), files=[TINY_PATH])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config_fails_at_load(case, tmp_path):
    config, files = _build(case, tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(config, files=files)
    message = str(info.value)
    assert case.expected in message
    assert "\n" not in message
    assert message.startswith(("invalid config at '", str(tmp_path)))


BAD_NAMES = ["../../x", "a/b", "rf.m+(1)", " x", "x ", "X", "-x", "_x", "x.y", "é", "a" * 101, ""]
NAMED = {
    "datasets": lambda c, n: _rename("datasets", "tiny_logbb", n)(c),
    "featurizers": lambda c, n: _rename("featurizers", "morgan", n)(c),
    "models": lambda c, n: _rename("models", "rf_morgan", n)(c),
    "predict": lambda c, n: c.update(
        predict={n: {"dataset": "tiny_logbb", "model": "rf_morgan", "input": "x.csv"}}
    ),
    # a free-form value: scikit-learn's arguments reach the forest unchecked by type
    "grid": lambda c, n: c["models"]["rf_morgan"].update(grid={"criterion": [n]}),
}


@pytest.mark.parametrize("section", sorted(NAMED))
@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_every_name_that_becomes_a_path_is_checked(section, name):
    """Traversal and odd characters fail for every kind of name; grid values become part of a
    generated name, so their label must stay inside the pattern (odd characters become '_')."""
    config = yaml.safe_load(TINY_TEXT)
    NAMED[section](config, name)
    if section == "grid":
        if len(name) > 80:  # only length can push a label outside the pattern
            with pytest.raises(ConfigError, match="at most 100 characters"):
                load_config(config)
            return
        load_config(config)
        assert all(re.fullmatch(NAME_PATTERN, m) for m in config["models"])
        return
    with pytest.raises(ConfigError, match="is not allowed; names match"):
        load_config(config)


# --- the same failures through the real CLI: non-zero exit, the message, no results/ folder

CLI_CASES = ["model-traversal", "top-level-typo", "duplicate-top-key", "two-files-two-families"]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_bad_config_fails_in_snakemake_dry_run(case_id, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    texts = case.files
    if not texts:
        config = yaml.safe_load(TINY_TEXT)
        case.mutate(config)
        texts = (yaml.safe_dump(config, sort_keys=False),)
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"config{i}.yaml"
        # Absolute data paths, by text so the files keep their lines (and duplicate keys).
        path.write_text(text.replace("tests/data/", f"{ROOT}/tests/data/"))
        paths.append(str(path))
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = snakemake(workdir, None, "--configfile", *paths, "--cores", "1", "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "biomol-dl: " in out and case.expected in out, out[-3000:]
    assert not (workdir / "results").exists()


def markdown_table() -> str:
    """The corpus as a markdown table (id | input | expected outcome), for docs/BAD_INPUTS.md."""
    rows = ["| id | input | expected outcome |", "| --- | --- | --- |"]
    for case in CASES:
        cell = case.expected.replace("|", "\\|")
        rows.append(
            f"| {case.id} | {case.input} | fails when the config loads, before any job: `{cell}` |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
