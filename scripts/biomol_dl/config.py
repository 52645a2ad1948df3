"""Configuration: a closed schema with defaults, safe names, per-type options, grids, cross-checks.

`load_config(config, files)` is what workflow/rules/common.smk calls, before any job runs. After it
returns, every dataset, featurizer and model entry is complete (defaults filled), every grid is
expanded into named models, and every name refers to something that exists. Every mistake raises
`ConfigError` with one line: the key path, the bad value and, for an unknown key, the nearest valid
key. In order:

1. The YAML files the user gave are re-read strictly (`read_yaml_strict`): a duplicate key fails
   with file and line (Snakemake's loader silently keeps the last), and a model defined in two
   merged files with different families fails (Snakemake would deep-merge both families' params).
2. The JSON schema (workflow/schemas/config.schema.yaml) checks types, enums and required keys and
   fills defaults. It is closed: an unknown key at any level fails. Integers are strict (1.0 and
   true are not integers), seeds unique, split fractions each > 0.
3. Names: every name that becomes a path (dataset, featurizer, model, grid-generated model,
   predict entry; the future `corpora:` section must use it too) matches `NAME_PATTERN`, so no name
   can leave results/ or collide on a case-insensitive filesystem.
4. Options per type: a featurizer's keys are its class's keyword arguments; a model's params are
   parsed into its family's Params dataclass (biomol_dl.models), whose fields (plus, for torch
   families, the training loop's `TrainConfig` fields) are the valid keys and whose annotations
   are their types; the family's `check` tests the values. Split options come from
   `splits.check_spec`, validation options from `validate.validation_options`, and each source's
   format (`sources.source_format`: an unsupported one such as .xlsx fails here) and FASTA header
   option (`fasta.header_parser`) are checked by `check_source`.
5. Grids expand into `<name>__<key>-<value>_...` models. A model's own name cannot contain '__',
   so no generated name can equal it; two combinations that get one name fail. A model with
   `search:` gets the model `<name>__tuned` (biomol_dl.search, which also checks each
   distribution against the family's params and each study's objective against its dataset).
6. Every expanded model's params are parsed into its family's dataclass again (a grid value can
   make an impossible combination), and cross-references checked: featurizers, models and
   predict entries exist, the family takes the featurizer's type, and kinds fit the dataset.

Family modules import no torch (their networks load inside methods), so loading a config stays
cheap: torch, scikit-learn or RDKit would add seconds to every `snakemake` call.
"""

from __future__ import annotations

import copy
import difflib
import functools
import itertools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

PACKAGE = Path(__file__).resolve().parent
SCHEMA = PACKAGE.parents[1] / "workflow" / "schemas" / "config.schema.yaml"

# The homology strategy's alias of max_similarity (splits.check_spec resolves it).
_SPLIT_ALIASES = {"homology": ("max_identity",)}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# libyaml's parser where PyYAML has it (same results, several times faster than pure Python).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(ValueError):
    """An invalid configuration: the message names the key path and the reason."""


# ----------------------------------------------------------------------------- YAML files


class StrictLoader(_SafeLoader):
    """A YAML safe loader that raises ConfigError on a duplicate mapping key (file, line, key)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
            if first is not None:
                raise ConfigError(
                    f"{key_node.start_mark.name}, line {line}: duplicate key {key!r} (first at "
                    f"line {first}); YAML would silently keep only the last"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_strict(path: str | Path) -> Any:
    """Parse a YAML file like yaml.safe_load, but a duplicate key raises ConfigError."""
    with open(path) as fh:  # an open file: marks (hence messages) carry its name
        try:
            return yaml.load(fh, Loader=StrictLoader)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Re-read each config file strictly; a model defined in two files must keep one family."""
    families: dict[str, tuple[str, str]] = {}
    for path in paths:
        data = read_yaml_strict(path)
        models = data.get("models") if isinstance(data, Mapping) else None
        for name, spec in (models if isinstance(models, Mapping) else {}).items():
            family = spec.get("family") if isinstance(spec, Mapping) else None
            if family is None:
                continue
            first_family, first_path = families.setdefault(name, (family, str(path)))
            if family != first_family:
                raise ConfigError(
                    f"invalid config at 'models.{name}.family': {name!r} is {first_family} in "
                    f"{first_path} but {family} in {path}; the files would merge into one model "
                    "with both families' params (rename one of them)"
                )


# ------------------------------------------------------------------------------ schema


@functools.cache
def _schema(schema_path: Path = SCHEMA) -> dict:
    return yaml.load(Path(schema_path).read_text(), Loader=_SafeLoader)


NAME_PATTERN: str = _schema()["$defs"]["name"]["pattern"]
NAME_RULE = (
    "lowercase letters, digits, '_' and '-', starting with a letter or digit, at most 100 "
    "characters (names become paths)"
)


def _validator(schema: dict):
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    # JSON Schema counts 1.0 as an integer; a seed or a thread count of 1.0 is a mistake here.
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    cls = jsonschema.validators.extend(base, {"properties": set_defaults}, type_checker=checker)
    return cls(schema)


def _key_path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def unknown_key(path: str, key: Any, valid: Iterable[str]) -> ConfigError:
    """The error for `key` not among `valid` under `path`: names the nearest valid key."""
    valid = sorted(valid)
    near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    where = f"{path}.{key}" if path else str(key)
    return ConfigError(
        f"invalid config at '{where}': unknown key {key!r}; {hint}valid: {', '.join(valid) or '-'}"
    )


def check_keys(path: str, given: Mapping, valid: Iterable[str]) -> None:
    """Raise `unknown_key` for the first key of `given` that is not in `valid`."""
    valid = set(valid)
    for key in given:
        if key not in valid:
            raise unknown_key(path, key, valid)


def _describe(error) -> str:
    """One line for a jsonschema error: unknown keys get the nearest valid key, names the rule,
    and a value matching no alternative (oneOf) gets the alternative's deepest error."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        return _describe(max(error.context, key=lambda e: len(e.absolute_path)))
    path = _key_path(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        valid = error.schema.get("properties", {})
        key = next(k for k in error.instance if k not in valid)
        return str(unknown_key(".".join(map(str, error.absolute_path)), key, valid))
    if "propertyNames" in error.absolute_schema_path:
        return str(_bad_name(path, error.instance))
    return f"invalid config at '{path}': {error.message}"


def validate_config(config: dict, schema_path: Path = SCHEMA) -> dict:
    """Validate in place, filling defaults; raise ConfigError naming the first bad key path."""
    errors = sorted(
        _validator(_schema(Path(schema_path))).iter_errors(config),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    if errors:
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(_describe(errors[0]) + more)
    return config


def check_name(path: str, name: Any) -> None:
    """A name that becomes a path must match NAME_PATTERN (the schema's `$defs/name`)."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise _bad_name(path, name)


def _bad_name(path: str, name: Any) -> ConfigError:
    return ConfigError(
        f"invalid config at '{path}': name {name!r} is not allowed; names match {NAME_PATTERN}: "
        f"{NAME_RULE}"
    )


# ------------------------------------------------------------------------- value types


def _is_number(value: Any) -> bool:
    # YAML 1.1 reads `1e-3` as a string; the families and the training loop convert it.
    if isinstance(value, str):
        return _NUMBER.fullmatch(value.strip()) is not None
    return isinstance(value, int | float) and not isinstance(value, bool)


# The type names a spec may use; any other name (Any, a class) accepts every value.
_TYPE_CHECKS: dict[str, Any] = {
    "None": lambda v: v is None,
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _is_number,
    "str": lambda v: isinstance(v, str),
    "dict": lambda v: isinstance(v, dict),
    "Mapping": lambda v: isinstance(v, dict),
}
_SEQUENCE_TYPES = ("list", "tuple", "Sequence")


def _accepts(spec: str, value: Any) -> bool:
    """Whether `value` fits a type spec written like an annotation: "int | list[int] | None".

    int is strict (not a bool, not 1.0); float takes any number or a numeric string; list[T]
    (or Sequence[T]) a YAML list of T.
    """
    for alt in _split_top(spec, "|"):
        base, _, inner = alt.partition("[")
        base, item = base.strip(), inner.removesuffix("]").strip()
        if base in _SEQUENCE_TYPES:
            if isinstance(value, list) and (not item or all(_accepts(item, v) for v in value)):
                return True
        elif base not in _TYPE_CHECKS or _TYPE_CHECKS[base](value):
            return True
    return False


def _split_top(text: str, sep: str) -> list[str]:
    """Split at `sep` outside brackets: "int | list[int | None]" -> ["int", "list[int | None]"]."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == sep and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def _spec_of_default(value: Any) -> str:
    """The type spec a default implies; null always passes (the family's own check decides).

    A list default also takes one item of its item type (mlp `hidden: 64` is one layer); null
    and an empty list say nothing of the type.
    """
    if value is None or value == []:
        return "Any"
    if isinstance(value, list | tuple):
        item = _spec_of_default(value[0]).removesuffix(" | None")
        return f"list[{item}] | {item} | None"
    return f"{type(value).__name__} | None"


def check_value(path: str, value: Any, spec: str) -> None:
    """Raise ConfigError unless `value` fits the type spec."""
    if not _accepts(spec, value):
        raise ConfigError(
            f"invalid config at '{path}': expected {spec}, got {value!r} ({type(value).__name__})"
        )


def check_params(path: str, params: Mapping, valid: Mapping[str, str]) -> None:
    """Every key known (else the nearest valid one is named), every value of its type."""
    check_keys(path, params, valid)
    for key, value in params.items():
        check_value(f"{path}.{key}", value, valid[key])


# ----------------------------------------------------------------- valid keys per type


def model_params(family: str) -> dict[str, str]:
    """{param: type spec} a model family accepts (rf also takes scikit-learn's, see rf.py)."""
    from biomol_dl.models import get_family

    return get_family(family).param_specs()


@functools.cache
def featurizer_params(type_name: str) -> dict[str, str]:
    """{param: annotation} of a featurizer type: its class's keyword arguments.

    The featurizer modules import numpy only (RDKit and torch load inside their methods).
    """
    import inspect

    from biomol_dl.features import get_featurizer_class

    signature = inspect.signature(get_featurizer_class(type_name).__init__)
    return {
        name: "Any" if p.annotation is p.empty else str(p.annotation)
        for name, p in signature.parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def check_featurizer(name: str, spec: Mapping) -> None:
    """A featurizer's keys are its class's keyword arguments, of their annotated types; protein
    featurizers are also built, which checks their values (length policy, pooling, precision,
    cache layer: their constructors load nothing)."""
    from biomol_dl.features import KINDS, get_featurizer_class

    params = {k: v for k, v in spec.items() if k != "type"}
    check_params(f"featurizers.{name}", params, featurizer_params(spec["type"]))
    if KINDS[spec["type"]] == "protein":
        try:
            get_featurizer_class(spec["type"])(**params)
        except ValueError as err:
            raise ConfigError(f"invalid config at 'featurizers.{name}': {err}") from None


def model_family(name: str, spec: Mapping):
    """The Family class a model entry names; an unknown family fails listing the registry's
    names (the schema lists none: the registry is the one list)."""
    from biomol_dl.models import families

    known = families()
    family = spec["family"]
    if family not in known:
        near = difflib.get_close_matches(str(family), sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(
            f"invalid config at 'models.{name}.family': unknown model family {family!r}; "
            f"{hint}valid: {', '.join(sorted(known))}"
        )
    return known[family]


def check_model(name: str, spec: Mapping) -> None:
    """A model's params must parse into its family's dataclass; grid keys and values must be
    params of the family, of their types (each combination is parsed after expansion)."""
    family = model_family(name, spec)
    grid = spec.get("grid") or {}
    family.split_params(spec.get("params", {}), f"models.{name}.params")
    check_uncertainty(name, spec, family)
    valid = family.param_specs(grid)
    check_keys(f"models.{name}.grid", grid, valid)
    for key, values in grid.items():
        for i, value in enumerate(values):
            check_value(f"models.{name}.grid.{key}.{i}", value, valid[key])


def check_uncertainty(name: str, spec: Mapping, family) -> None:
    """An estimate must be one the family makes (the schema checks names and ranges)."""
    estimate = (spec.get("uncertainty") or {}).get("estimate", "auto")
    if estimate in ("auto", "none") or estimate in family.uncertainty_estimates():
        return
    what = {"trees": "the spread across a random forest's trees",
            "dropout": "MC dropout, which needs a torch family",
            "mve": "a mean-variance head, which needs a torch family",
            "evidential": "an evidential head, which needs a torch family",
            "ensemble": "a within-split ensemble of torch models"}.get(estimate, estimate)  # fmt: skip
    makes = ", ".join(family.uncertainty_estimates()) or "none of its own"
    raise ConfigError(
        f"invalid config at 'models.{name}.uncertainty.estimate': {estimate!r} is {what}; "
        f"family {family.name} makes {makes}; use one of those, auto or none"
    )


REGRESSION_HEADS = ("mve", "evidential")


def check_head_task(name: str, spec: Mapping, dataset: str, task: str) -> None:
    """A variance head predicts a Gaussian (or NIG) per value: regression datasets only."""
    estimate = (spec.get("uncertainty") or {}).get("estimate", "auto")
    if estimate in REGRESSION_HEADS and task != "regression":
        raise ConfigError(
            f"invalid config at 'models.{name}.uncertainty.estimate': {estimate!r} is a "
            f"regression head but dataset {dataset!r} is {task}; use dropout, ensemble, auto "
            "or none"
        )


def check_split(name: str, ds: Mapping) -> None:
    """Split options are those of the strategy (splits.OPTIONS), checked by splits.check_spec."""
    from biomol_dl import splits

    path, split = f"datasets.{name}.split", ds["split"]
    strategy = split["strategy"]
    fractions = split["fractions"]
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(
            f"invalid config at '{path}.fractions': {fractions} sums to {sum(fractions):g}, not 1"
        )
    valid = {"strategy", "fractions", *splits.OPTIONS[strategy], *_SPLIT_ALIASES.get(strategy, ())}
    check_keys(path, split, valid)
    try:
        splits.check_spec(split, kind=ds["kind"], task=ds["task"])
    except ValueError as err:
        message = str(err).removeprefix("invalid split spec: ")
        raise ConfigError(f"invalid config at '{path}': {message}") from None


def check_validation(name: str, ds: Mapping) -> None:
    """Validation options are those validate.validation_options fills for the dataset's kind."""
    from biomol_dl.io import DataError
    from biomol_dl.validate import validation_options

    path = f"datasets.{name}.validation"
    defaults = validation_options({"kind": ds["kind"], "task": ds["task"]}, path)
    check_params(path, ds["validation"], {k: _spec_of_default(v) for k, v in defaults.items()})
    try:
        validation_options(ds, path)
    except DataError as err:
        raise ConfigError(
            f"invalid config at '{path}': {str(err).removeprefix(path + ': ')}"
        ) from None


def check_source(name: str, ds: Mapping) -> None:
    """A source's format can be told (or is one the readers take) and its FASTA header option
    compiles: both fail here, before any job, rather than inside fetch or validate."""
    from biomol_dl.fasta import header_parser
    from biomol_dl.io import DataError
    from biomol_dl.sources import source_format

    source = ds["source"]
    path = f"datasets.{name}.source"
    singles = [(f"{path}.parts[{i}]", p) for i, p in enumerate(source.get("parts") or [])]
    for where, single in singles or [(path, source)]:
        try:
            fmt = source_format(single)
            option = single.get("fasta_header", source.get("fasta_header"))
            if option is not None:
                header_parser(option, "fasta_header")
                if fmt != "fasta":
                    raise DataError(f"fasta_header: applies to FASTA; this source is {fmt}")
            if single.get("smiles_property") is not None and fmt != "sdf":
                raise DataError(f"smiles_property: applies to SDF; this source is {fmt}")
        except DataError as err:
            raise ConfigError(f"invalid config at '{where}': {err}") from None


def check_options(config: dict) -> None:
    """Featurizer, model, split and validation options, per type (after the schema)."""
    for name, spec in config["featurizers"].items():
        check_featurizer(name, spec)
    for name, spec in config["models"].items():
        if "__" in name:
            raise ConfigError(
                f"invalid config at 'models.{name}': model names cannot contain '__'; it is "
                "reserved for grid-generated names (<name>__<key>-<value>), which this one could "
                "collide with"
            )
        check_model(name, spec)
        if "tuned_from" in spec:
            raise ConfigError(
                f"invalid config at 'models.{name}.tuned_from': set by the config loader for "
                "the <name>__tuned model of a `search:`; remove it"
            )
        if spec.get("search"):
            from biomol_dl.search import check_model_search

            check_model_search(name, spec)
    for name, ds in config["datasets"].items():
        check_source(name, ds)
        check_split(name, ds)
        check_validation(name, ds)


# -------------------------------------------------------------------------------- grids


def expand_grids(models: dict[str, dict]) -> dict[str, dict]:
    """Expand `grid: {depth: [2, 3], hidden: [64, 128]}` into one model per combination.

    Names are `<name>__depth-2_hidden-64`: the grid values pick the model, the path stays free of
    hyperparameters, and the model's params (hence its rule's `params:`) change with the values.
    A generated name must be a valid name, and two combinations must not get the same name. It
    cannot equal another model's name: explicit names never contain '__' (`check_options`).
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
            new = f"{name}__{suffix}"
            check_name(f"models.{name}.grid", new)
            if new in out:
                raise ConfigError(
                    f"invalid config at 'models.{name}.grid': two combinations are both named "
                    f"{new!r}; make the grid values distinct"
                )
            child = {k: copy.deepcopy(v) for k, v in spec.items() if k != "grid"}
            child["params"] = {**child.get("params", {}), **dict(zip(keys, values, strict=True))}
            out[new] = child
    return out


def _label(value: Any) -> str:
    """A path-safe lowercase label for a grid value: [64, 64] -> 64x64, 0.001 -> 0p001, -1 -> m1."""
    if isinstance(value, list | tuple):
        return "x".join(_label(v) for v in value)
    text = str(value).lower().replace(".", "p").replace("-", "m")
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in text)


# ------------------------------------------------------------------------- cross-checks


def _check_cached_layers(name: str, spec: Mapping, featurizer: Mapping) -> None:
    """A LoRA model cannot adapt a layer below its tokens' cache_layer (that output is fixed)."""
    cache_layer = featurizer.get("cache_layer")
    layers = (spec.get("params") or {}).get("layers_to_transform")
    if cache_layer is None or layers is None:
        return
    below = sorted(i for i in ([layers] if isinstance(layers, int) else layers) if i < cache_layer)
    if below:
        raise ConfigError(
            f"invalid config at 'models.{name}.params.layers_to_transform': layers {below} lie "
            f"below cache_layer {cache_layer} of featurizer {spec['featurizer']!r}, whose output "
            "is cached and fixed; adapt layers >= cache_layer or lower cache_layer"
        )


def cross_check(config: dict) -> None:
    """Every name a dataset, model or predict entry refers to must exist, and kinds must match."""
    from biomol_dl.features import KINDS
    from biomol_dl.models import FAMILIES, get_family
    from biomol_dl.report.targets import predict_specs

    for name, spec in config["models"].items():
        if spec["featurizer"] not in config["featurizers"]:
            raise ConfigError(
                f"invalid config at 'models.{name}.featurizer': unknown featurizer "
                f"{spec['featurizer']!r}; defined: {', '.join(sorted(config['featurizers']))}"
            )
        family = get_family(spec["family"])
        ftype = config["featurizers"][spec["featurizer"]]["type"]
        if ftype not in family.featurizers:
            raise ConfigError(
                f"invalid config at 'models.{name}.featurizer': family {family.name} cannot take "
                f"featurizer {spec['featurizer']!r} (type {ftype}); it takes types "
                f"{', '.join(family.featurizers)}"
            )
        if "__" in name:  # grid-expanded: parse the combination
            family.split_params(spec.get("params", {}), f"models.{name}.params")
        _check_cached_layers(name, spec, config["featurizers"][spec["featurizer"]])
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
                check_head_task(m, spec, dname, ds["task"])
                fkind = KINDS[config["featurizers"][spec["featurizer"]]["type"]]
                mkind = FAMILIES[spec["family"]]["kind"]
                if ds["kind"] not in {fkind} or mkind not in {"any", ds["kind"]}:
                    where = f"datasets.{dname}.models.{i}"
                    raise ConfigError(
                        f"invalid config at '{where}': model {m!r} ({spec['family']} on "
                        f"{spec['featurizer']}) cannot take {ds['kind']} inputs"
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
    predict_specs(config)


def dataset_models(config: dict, dataset: str) -> list[str]:
    """Concrete model names (grids expanded) that a dataset trains."""
    names = config["datasets"][dataset]["models"]
    return [m for m in config["models"] if any(m == n or m.startswith(f"{n}__") for n in names)]


def load_config(config: dict, files: Iterable[str | Path] = ()) -> dict:
    """Check the config files, validate, fill defaults, check options, expand grids and
    cross-check; returns the same dict, completed. `files` are the YAML files it was merged from."""
    check_config_files(files)
    validate_config(config)
    check_options(config)
    config["models"] = expand_grids(config["models"])
    from biomol_dl import search

    config["models"] = search.expand_tuned(config["models"])  # <name>__tuned per search
    cross_check(config)
    for dataset, model in search.studies(config):
        search.check_dataset_search(config, dataset, model)
    from biomol_dl import transfer

    transfer.check_config(config)  # corpora, pretrain entries, models' init
    return config


def config_hash(config: dict) -> str:
    """A short stable hash of the resolved config (for tracking tags)."""
    from biomol_dl.hashing import sha256_json

    return sha256_json(config)[:16]
