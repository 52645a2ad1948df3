"""Config validation: defaults filled, grids expanded, errors name the key path."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT

from biomol_dl.config import ConfigError, dataset_models, load_config


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


@pytest.mark.parametrize(
    "name", sorted(p.name for p in BENCH.glob("*.yaml") if p.name not in CATALOGS.values())
)
def test_benchmark_configs_are_valid(name):
    datasets = yaml.safe_load((BENCH / name).read_text())
    if "models" in datasets:  # a self-contained config (the 1,000-job grid on tiny data)
        load_config(datasets)
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
