"""Configuration: JSON-schema validation with defaults, grid expansion and cross-checks.

`load_config` is what the Snakefile calls: after it returns, every dataset, featurizer and model
entry is complete (defaults filled), every grid is expanded into named models, and every name a
dataset refers to exists. Anything wrong raises `ConfigError` with the key path and the reason,
before any job runs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid configuration: the message names the key path and the reason."""


def _validator(schema: dict):
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def validate_config(config: dict, schema_path: Path = SCHEMA) -> dict:
    """Validate in place, filling defaults; raise ConfigError naming the first bad key path."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(_validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        path = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"invalid config at '{path}': {err.message}{more}")
    return config


def expand_grids(models: dict[str, dict]) -> dict[str, dict]:
    """Expand `grid: {depth: [2, 3], hidden: [64, 128]}` into one model per combination.

    Names are `<name>__depth-2_hidden-64`: the grid values pick the model, the path stays free of
    hyperparameters, and the model's params (hence its rule's `params:`) change with the values.
    """
    out: dict[str, dict] = {}
    for name, spec in models.items():
        grid = spec.get("grid") or {}
        if not grid:
            out[name] = {k: v for k, v in spec.items() if k != "grid"}
            continue
        keys = sorted(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            suffix = "_".join(f"{k}-{_label(v)}" for k, v in zip(keys, values, strict=True))
            child = {k: copy.deepcopy(v) for k, v in spec.items() if k != "grid"}
            child["params"] = {**child.get("params", {}), **dict(zip(keys, values, strict=True))}
            out[f"{name}__{suffix}"] = child
    return out


def _label(value: Any) -> str:
    """A path-safe label for a grid value: [64, 64] -> 64x64, 0.001 -> 0p001, -1 -> m1."""
    if isinstance(value, list | tuple):
        return "x".join(_label(v) for v in value)
    text = str(value).replace(".", "p").replace("-", "m")
    return "".join(c if c.isalnum() or c == "p" else "_" for c in text)


def cross_check(config: dict) -> None:
    """Every name a dataset or model refers to must exist, and kinds must match."""
    from biomol_dl.features import KINDS
    from biomol_dl.models import FAMILIES

    for name, spec in config["models"].items():
        if spec["featurizer"] not in config["featurizers"]:
            raise ConfigError(
                f"invalid config at 'models.{name}.featurizer': unknown featurizer "
                f"{spec['featurizer']!r}; defined: {', '.join(sorted(config['featurizers']))}"
            )
    for dname, ds in config["datasets"].items():
        for i, model in enumerate(ds["models"]):
            matches = [m for m in config["models"] if m == model or m.startswith(f"{model}__")]
            if not matches:
                raise ConfigError(
                    f"invalid config at 'datasets.{dname}.models.{i}': unknown model {model!r}; "
                    f"defined: {', '.join(sorted(config['models']))}"
                )
            for m in matches:
                spec = config["models"][m]
                fkind = KINDS[config["featurizers"][spec["featurizer"]]["type"]]
                mkind = FAMILIES[spec["family"]]["kind"]
                if ds["kind"] not in {fkind} or mkind not in {"any", ds["kind"]}:
                    raise ConfigError(
                        f"invalid config at 'datasets.{dname}.models.{i}': model {m!r} "
                        f"({spec['family']} on {spec['featurizer']}) cannot take {ds['kind']} inputs"
                    )
        if ds["task"] == "multitask_binary" and len(ds["label_columns"]) < 2:
            raise ConfigError(
                f"invalid config at 'datasets.{dname}.label_columns': multitask_binary needs "
                "two or more label columns"
            )
        if ds["task"] != "multitask_binary" and len(ds["label_columns"]) != 1:
            raise ConfigError(
                f"invalid config at 'datasets.{dname}.label_columns': task {ds['task']} takes "
                "exactly one label column (use multitask_binary for several)"
            )
        fractions = ds["split"].get("fractions", [0.8, 0.1, 0.1])
        if abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError(
                f"invalid config at 'datasets.{dname}.split.fractions': {fractions} sums to "
                f"{sum(fractions):g}, not 1"
            )


def dataset_models(config: dict, dataset: str) -> list[str]:
    """Concrete model names (grids expanded) that a dataset trains."""
    names = config["datasets"][dataset]["models"]
    return [m for m in config["models"] if any(m == n or m.startswith(f"{n}__") for n in names)]


def load_config(config: dict) -> dict:
    """Validate, fill defaults, expand grids and cross-check; returns the same dict, completed."""
    validate_config(config)
    config["models"] = expand_grids(config["models"])
    cross_check(config)
    return config


def config_hash(config: dict) -> str:
    """A short stable hash of the resolved config (for tracking tags)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
