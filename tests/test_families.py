"""The model-family contract: one registered class per family, the schema's names are the
registries' names, params parse into the family's dataclass, family modules import no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from biomol_dl.config import SCHEMA, ConfigError
from biomol_dl.features import FEATURIZERS, KINDS, get_featurizer_class
from biomol_dl.models import FAMILIES, Family, families, get_family


def test_schema_names_are_the_registries():
    """The family registry is the one list of family names (a new family is its module and
    nothing else): the schema lists none. The featurizer enum is the featurizer table's."""
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    family = schema["models"]["additionalProperties"]["properties"]["family"]
    assert "enum" not in family and family["type"] == "string"
    featurizer_enum = schema["featurizers"]["additionalProperties"]["properties"]["type"]["enum"]
    assert sorted(featurizer_enum) == sorted(FEATURIZERS) == sorted(KINDS)


def test_unknown_family_fails_at_config_load_with_the_nearest_name(tiny_config):
    from biomol_dl.config import load_config

    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["models"]["rf_morgan"]["family"] = "rnm"
    with pytest.raises(ConfigError, match=r"'models\.rf_morgan\.family': unknown model family "
                       r"'rnm'; did you mean 'rnn'\? valid: cnn, gnn, "):  # fmt: skip
        load_config(config)


def test_every_family_is_one_registered_class():
    for name, cls in families().items():
        assert issubclass(cls, Family) and cls.name == name
        assert cls.__module__ == f"biomol_dl.models.{name}", name
        assert cls.featurizers and set(cls.featurizers) <= set(FEATURIZERS), name
        assert cls.model_file in ("model.pt", "model.skops"), name
        assert FAMILIES[name]["kind"] in ("smiles", "protein", "any"), name
        cls()  # every param has a default


def test_unknown_names_fail_listing_the_valid_ones():
    with pytest.raises(KeyError, match="valid families: .*mlp"):
        get_family("xgboost")
    with pytest.raises(KeyError, match="valid types: .*morgan"):
        get_featurizer_class("ecfp")


def test_params_parse_into_the_dataclass_with_the_key_path():
    mlp = get_family("mlp")
    params, loop, given = mlp.split_params({"hidden": 64, "epochs": 3, "lr": "1e-3"})
    assert params.widths == [64] and params.dropout == 0.1
    assert loop == {"epochs": 3, "lr": "1e-3"} and given == {"hidden": 64}
    with pytest.raises(ConfigError, match=r"'m\.params\.hiden': unknown key 'hiden'; did you mean"):
        mlp.split_params({"hiden": 64}, "m.params")
    with pytest.raises(ConfigError, match=r"'m\.params\.dropout': expected float, got 'x'"):
        mlp.split_params({"dropout": "x"}, "m.params")
    with pytest.raises(ConfigError, match="gatv2 needs hidden"):
        get_family("gnn").split_params({"arch": "gatv2", "hidden": 30, "heads": 4})
    with pytest.raises(ConfigError, match="epochs"):  # the forest has no training loop
        get_family("rf").split_params({"epochs": 3})


def test_a_grid_combination_is_parsed_after_expansion():
    from biomol_dl.config import load_config

    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    config["models"]["mlp_morgan"]["grid"] = {"dropout": [0.1, 1.5]}
    with pytest.raises(ConfigError, match=r"mlp_morgan__dropout-1p5\.params': mlp: dropout"):
        load_config(config)


def test_a_family_must_take_the_featurizer_type():
    from biomol_dl.config import load_config

    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    config["models"]["mlp_morgan"].update(family="gnn", params={"epochs": 2})
    with pytest.raises(ConfigError, match="family gnn cannot take featurizer 'morgan'"):
        load_config(config)


def test_family_modules_import_no_torch():
    code = (
        "import sys; from biomol_dl.models import families; families(); "
        "print(sorted(m for m in ('torch', 'sklearn', 'rdkit', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_family_is_special_cased_outside_its_module():
    """The random forest is an ordinary family: the rules, prediction and report targets read
    what a family says (model_file, train, predict), never its name."""
    for path in ("workflow/rules/train.smk", "scripts/biomol_dl/predict.py",
                 "scripts/biomol_dl/report/targets.py", "scripts/biomol_dl/train_job.py",
                 "scripts/train.py"):  # fmt: skip
        text = (ROOT / path).read_text()
        for name in families():  # (the report's baseline_families default names rf: a setting)
            assert f'== "{name}"' not in text and f'"{name}" if' not in text, (path, name)
            if not path.endswith("targets.py"):
                assert f'"{name}"' not in text and f"'{name}'" not in text, (path, name)
        assert "skops" not in text, path
    assert sorted(p.name for p in (ROOT / "scripts").glob("train*.py")) == ["train.py"]
