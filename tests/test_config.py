"""Config validation: defaults filled, grids expanded, errors name the key path."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT

from biomol_dl.config import (
    NAME_PATTERN,
    SCHEMA,
    ConfigError,
    _label,
    check_config_files,
    dataset_models,
    load_config,
    model_params,
    read_yaml_strict,
)


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())


def test_defaults_filled(config):
    config["datasets"]["tiny_logbb"].pop("seeds")
    load_config(config)
    ds = config["datasets"]["tiny_logbb"]
    assert ds["seeds"] == [0, 1, 2]
    assert ds["id_column"] == "name"
    assert config["tracking"]["enabled"] is True
    assert config["models"]["rf_morgan"]["threads"] == 1


def test_grid_expands_into_named_models(config):
    config["models"]["mlp_morgan"]["grid"] = {"dropout": [0.0, 0.2], "hidden": [[64], [128]]}
    load_config(config)
    names = dataset_models(config, "tiny_logbb")
    grid = [n for n in names if n.startswith("mlp_morgan__")]
    assert len(grid) == 4
    assert {tuple(config["models"][n]["params"]["hidden"]) for n in grid} == {(64,), (128,)}
    assert all("." not in n and "[" not in n for n in grid)
    assert "mlp_morgan__dropout-0p2_hidden-128" in grid


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("datasets", "tiny_logbb", "kind"), "dna", "datasets.tiny_logbb.kind"),
        (("datasets", "tiny_logbb", "seeds"), [-1], "datasets.tiny_logbb.seeds.0"),
        (("datasets", "tiny_logbb", "source"), {"type": "url", "url": "https://x/y.csv"}, "source"),
        (("models", "rf_morgan", "family"), "xgboost", "models.rf_morgan.family"),
    ],
)
def test_errors_name_the_key_path(config, path, value, expected):
    bad = copy.deepcopy(config)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_config(bad)


CATALOGS = {"smiles": "molecules.yaml", "protein": "proteins.yaml"}
BENCH = ROOT / "config" / "benchmarks"


def test_default_config_is_valid():
    load_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


def _deep_merge(base: dict, extra: dict) -> dict:
    """Snakemake's merge of several --configfile files: nested dicts merge, the rest replaces."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _self_contained(config: dict) -> bool:
    """A config that needs no catalog (the 1,000-job grid on tiny data): it has featurizers."""
    return "featurizers" in config


def _dataset_file(config: dict) -> bool:
    """A file of complete dataset entries and nothing else (esol.yaml, flip_gb1.yaml)."""
    datasets = config.get("datasets") or {}
    return set(config) == {"datasets"} and all("kind" in d for d in datasets.values())


def _molecule_benchmarks() -> dict:
    """The molecular catalog + every complete molecule dataset + every add-on's other sections
    (transfer.yaml: corpora, pretrain, models and its source dataset; search.yaml): what an
    add-on or overlay combines with."""
    config = yaml.safe_load((BENCH / CATALOGS["smiles"]).read_text())
    config["datasets"] = {}
    for path in sorted(BENCH.glob("*.yaml")):
        other = yaml.safe_load(path.read_text())
        if path.name in CATALOGS.values() or _self_contained(other):
            continue
        datasets = other.get("datasets") or {}
        complete = {k: v for k, v in datasets.items() if v.get("kind") == "smiles"}
        config["datasets"].update(copy.deepcopy(complete))
        _deep_merge(config, {k: v for k, v in other.items() if k != "datasets"})
    return config


@pytest.mark.parametrize(
    "name", sorted(p.name for p in BENCH.glob("*.yaml") if p.name not in CATALOGS.values())
)
def test_benchmark_configs_are_valid(name):
    datasets = yaml.safe_load((BENCH / name).read_text())
    if _self_contained(datasets):
        load_config(datasets)
        return
    if not _dataset_file(datasets):
        # an add-on (transfer.yaml, search.yaml) or an overlay of dataset entries
        # (search_esol.yaml): with the catalog, the molecule datasets and the add-ons
        load_config(_deep_merge(_molecule_benchmarks(), datasets))
        return
    kinds = {ds["kind"] for ds in datasets["datasets"].values()}
    assert len(kinds) == 1
    config = yaml.safe_load((BENCH / CATALOGS[kinds.pop()]).read_text())
    config.update(datasets)
    load_config(config)
    for ds in config["datasets"].values():
        source = ds["source"]
        for part in source.get("parts", [source]):
            if part["type"] == "package":  # inside a wheel pinned in requirements.txt
                pinned = (ROOT / "requirements.txt").read_text().lower()
                assert f"{part['package'].lower()}==" in pinned
                continue
            assert part["type"] == "url" and len(part["sha256"]) == 64 and part["mirror_path"]


def test_model_params_are_the_family_dataclass_and_the_training_loop():
    """Valid params: the family's Params fields, plus (torch families) TrainConfig's fields, read
    without importing torch exactly as the dataclass declares them."""
    import dataclasses

    from biomol_dl.models import families
    from biomol_dl.models.base import _loop_fields_from_source
    from biomol_dl.training import TrainConfig

    loop = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    assert _loop_fields_from_source() == loop
    for name, family in families().items():
        own = {f.name: str(f.type) for f in dataclasses.fields(family.Params)
               if not f.metadata.get("open")}  # fmt: skip
        valid = model_params(name)
        assert {k: valid[k] for k in own} == own, name
        assert set(valid) == set(own) | (set(loop) if family.uses_torch else set()), name


def test_config_load_imports_neither_torch_nor_sklearn():
    """Loading the default config stays cheap: torch or scikit-learn would add seconds to every
    `snakemake` call."""
    import subprocess
    import sys

    code = (
        "import sys, yaml; from biomol_dl.config import load_config; "
        f"load_config(yaml.safe_load(open({str(ROOT / 'config' / 'config.yaml')!r}))); "
        "print(sorted(m for m in ('torch', 'sklearn', 'rdkit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_names_follow_the_schema_pattern_and_grid_labels_fit_it(config):
    assert NAME_PATTERN == yaml.safe_load(SCHEMA.read_text())["$defs"]["name"]["pattern"]
    assert [_label(v) for v in (True, 1e-05, -1, "ReLU", [64, 64], "a/b.c")] == [
        "true", "1em05", "m1", "relu", "64x64", "a_bpc"
    ]  # fmt: skip
    config["models"]["mlp_morgan"]["grid"] = {"activation": ["relu", "gelu"], "batch_norm": [True]}
    load_config(config)
    grid = [m for m in config["models"] if m.startswith("mlp_morgan__")]
    assert grid == ["mlp_morgan__activation-relu_batch_norm-true",
                    "mlp_morgan__activation-gelu_batch_norm-true"]  # fmt: skip


def test_strict_yaml_names_file_and_line_and_allows_merge_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {x: 1}\nnew:\n  <<: *b\n  x: 2\n")
    assert read_yaml_strict(path) == {"base": {"x": 1}, "new": {"x": 2}}
    path.write_text("models:\n  a: {family: rf, family: mlp}\n")
    with pytest.raises(ConfigError, match=rf"{path}, line 2: duplicate key 'family'"):
        read_yaml_strict(path)


def test_a_model_in_two_files_with_one_family_merges(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("models:\n  rf_morgan: {family: rf, featurizer: morgan}\n")
    second.write_text("models:\n  rf_morgan: {family: rf, params: {n_estimators: 5}}\n")
    check_config_files([first, second])
    second.write_text("models:\n  rf_morgan: {family: gnn}\n")
    with pytest.raises(ConfigError, match="'rf_morgan' is rf in .*a.yaml but gnn in .*b.yaml"):
        check_config_files([first, second])


def test_rf_takes_scikit_learn_arguments_but_not_the_ones_it_sets(config):
    config["models"]["rf_morgan"]["params"].update(max_samples=0.5, min_samples_leaf=0.01)
    load_config(copy.deepcopy(config))
    config["models"]["rf_morgan"]["params"]["n_jobs"] = 4
    with pytest.raises(ConfigError, match="'models.rf_morgan.params.n_jobs': unknown key"):
        load_config(config)
