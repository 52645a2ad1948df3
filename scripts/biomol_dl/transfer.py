"""Transfer learning as the config states it: corpora, pretraining entries and models' `init:`.

For config authors and the rules. Three config sections work together (the schema documents
every key):

    corpora:   unlabelled molecules (results/_corpora/<corpus>/molecules.csv, rule `corpus`)
    pretrain:  an encoder trained on a corpus to predict RDKit descriptors
               (results/_pretrain/<name>/encoder.pt, rule `pretrain`; biomol_dl.pretrain)
    models.<m>.init: {pretrained: NAME} or {model: DATASET/MODEL, seed: N}, with
               freeze_encoder, frozen_head_layers and encoder_lr_ratio

`check_config` runs when the config loads (biomol_dl.config.load_config, after grids are
expanded) and fails with one line naming the key for: a corpus, pretrain entry, dataset or model
that does not exist, a family without an encoder, a featurizer or encoder architecture that
differs between a model and what it starts from, frozen head layers a checkpoint cannot supply,
a model starting from a model of its own dataset (the other seed's training rows include this
seed's test rows) and cycles of `init.model`. The same checks run again on the checkpoint file
itself when a job loads it (biomol_dl.pretrain.apply_init).

This module imports no torch: the config loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from biomol_dl.config import ConfigError, check_params

ENCODER_FORMAT = "biomol_dl.encoder/1"
CORPORA_DIR = "results/_corpora"
PRETRAIN_DIR = "results/_pretrain"
# Featurizer keys that add per-molecule extras, not atom / bond features: an encoder trained with
# them reads the same graphs.
_GRAPH_EXTRAS = ("add_descriptors", "descriptor_names", "chunk_size")


def corpus_path(corpus: str, name: str = "molecules.csv") -> str:
    return f"{CORPORA_DIR}/{corpus}/{name}"


def corpus_features_path(corpus: str, featurizer: str) -> str:
    return f"{CORPORA_DIR}/{corpus}/featurize/{featurizer}.pt"


def encoder_path(pretrain: str) -> str:
    return f"{PRETRAIN_DIR}/{pretrain}/encoder.pt"


def init_source(config: Mapping[str, Any], model: str) -> str | None:
    """The file a model starts from (an encoder.pt or another dataset's model file), else None."""
    init = config["models"][model].get("init")
    if not init:
        return None
    if init.get("pretrained"):
        return encoder_path(init["pretrained"])
    from biomol_dl.models import get_family

    dataset, source = init["model"].split("/")
    model_file = get_family(config["models"][source]["family"]).model_file
    return f"results/{dataset}/train/{source}/seed{init.get('seed', 0)}/{model_file}"


def graph_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A featurizer spec without the keys that leave atom and bond features unchanged."""
    return {k: v for k, v in spec.items() if k not in _GRAPH_EXTRAS}


def featurizer_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The keys in which two featurizer specs make different graphs (defaults filled)."""
    from biomol_dl.features import get_featurizer_class

    def filled(spec: Mapping[str, Any]) -> dict[str, Any]:
        import inspect

        cls = get_featurizer_class(spec["type"])
        defaults = {
            name: p.default
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        return graph_settings({**defaults, **spec})

    fa, fb = filled(a), filled(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def encoder_difference(family: Any, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """`key: a vs b` for each encoder setting in which two params dicts of `family` differ."""
    sa = family(dict(a)).encoder_signature()
    sb = family(dict(b)).encoder_signature()
    return [f"{k}: {sa.get(k)!r} vs {sb.get(k)!r}" for k in sorted(sa) if sa.get(k) != sb.get(k)]


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"invalid config at '{path}': {message}")


def _known(path: str, what: str, name: str, names: Mapping) -> None:
    if name not in names:
        import difflib

        near = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}? " if near else ""
        listed = ", ".join(sorted(names)) or "none"
        raise _fail(path, f"unknown {what} {name!r}; {hint}defined: {listed}")


def check_config(config: dict) -> None:
    """Every corpus, pretrain entry and model `init` (see the module docstring)."""
    corpora, pretrain = config.get("corpora") or {}, config.get("pretrain") or {}
    for name, corpus in corpora.items():
        _check_corpus(config, name, corpus)
    for name, entry in pretrain.items():
        _check_pretrain(config, name, entry)
    for name, spec in config["models"].items():
        if spec.get("init"):
            _check_init(config, name, spec)
    _check_cycles(config)
    for name, spec in config["datasets"].items():
        if spec.get("exclude") is not None or spec.get("exclude_match") is not None:
            _check_dataset_exclude(config, name, spec)


def _check_dataset_exclude(config: dict, name: str, spec: Mapping[str, Any]) -> None:
    """A dataset's `exclude`: known smiles datasets, not itself, no dataset excluding itself
    through others (their validate jobs would wait on each other)."""
    path = f"datasets.{name}"
    if spec["kind"] != "smiles":
        raise _fail(f"{path}.exclude", "only a smiles dataset can exclude molecules")
    for i, other in enumerate(spec.get("exclude") or []):
        _known(f"{path}.exclude.{i}", "dataset", other, config["datasets"])
        if other == name:
            raise _fail(f"{path}.exclude.{i}", "a dataset cannot exclude itself")
        if config["datasets"][other]["kind"] != "smiles":
            raise _fail(f"{path}.exclude.{i}", f"dataset {other!r} holds no molecules")
    chain, todo = [name], list(spec.get("exclude") or [])
    while todo:
        other = todo.pop()
        if other == name:
            raise _fail(f"{path}.exclude", f"exclude lists form a cycle through {name!r}")
        if other not in chain:
            chain.append(other)
            todo.extend(config["datasets"][other].get("exclude") or [])


def _check_corpus(config: dict, name: str, corpus: Mapping[str, Any]) -> None:
    from biomol_dl.io import DataError
    from biomol_dl.validate import validation_options

    path = f"corpora.{name}"
    for i, dataset in enumerate(corpus.get("exclude") or []):
        _known(f"{path}.exclude.{i}", "dataset", dataset, config["datasets"])
        if config["datasets"][dataset]["kind"] != "smiles":
            raise _fail(f"{path}.exclude.{i}", f"dataset {dataset!r} holds no molecules")
    spec = {"kind": "smiles", "task": "regression", "validation": corpus.get("validation") or {}}
    defaults = validation_options({"kind": "smiles", "task": "regression"}, path)
    from biomol_dl.config import _spec_of_default

    check_params(
        f"{path}.validation",
        spec["validation"],
        {k: _spec_of_default(v) for k, v in defaults.items()},
    )
    try:
        validation_options(spec, f"{path}.validation")
    except DataError as err:
        raise _fail(f"{path}.validation", str(err).split(": ", 1)[-1]) from None


def _encoder_family(path: str, family_name: str):
    from biomol_dl.models import families

    known = families()
    _known(path, "model family", family_name, known)
    family = known[family_name]
    if not family.encoder_modules:
        with_encoder = sorted(n for n, f in known.items() if f.encoder_modules)
        raise _fail(
            path,
            f"family {family_name} has no encoder to pretrain or transfer; families with one: "
            f"{', '.join(with_encoder)}",
        )
    return family


def _check_pretrain(config: dict, name: str, entry: Mapping[str, Any]) -> None:
    path = f"pretrain.{name}"
    _known(f"{path}.corpus", "corpus", entry["corpus"], config.get("corpora") or {})
    _known(f"{path}.featurizer", "featurizer", entry["featurizer"], config["featurizers"])
    family = _encoder_family(f"{path}.family", entry.get("family", "gnn"))
    ftype = config["featurizers"][entry["featurizer"]]["type"]
    if ftype not in family.featurizers:
        raise _fail(
            f"{path}.featurizer",
            f"family {family.name} cannot take featurizer {entry['featurizer']!r} (type {ftype}); "
            f"it takes types {', '.join(family.featurizers)}",
        )
    params, _, _ = family.split_params(entry.get("params") or {}, f"{path}.params")
    if getattr(params, "descriptors", False):
        raise _fail(
            f"{path}.params.descriptors",
            "descriptors are what pretraining predicts; they cannot also be an input",
        )
    names = (entry.get("objective") or {}).get("descriptors")
    if names:
        from biomol_dl.features.fingerprints import descriptor_names

        try:
            descriptor_names(names)
        except ValueError as err:
            raise _fail(f"{path}.objective.descriptors", str(err)) from None


def _check_init(config: dict, name: str, spec: Mapping[str, Any]) -> None:
    path = f"models.{name}.init"
    init = spec["init"]
    family = _encoder_family(f"models.{name}.family", spec["family"])
    given = [k for k in ("pretrained", "model") if init.get(k)]
    if len(given) != 1:
        raise _fail(path, "give exactly one of `pretrained` (a pretrain entry) or `model` "
                          "(DATASET/MODEL)")  # fmt: skip
    if "seed" in init and not init.get("model"):
        raise _fail(f"{path}.seed", "`seed` picks a seed of `model`; a pretrained encoder has none")
    own_params = spec.get("params") or {}
    own_features = config["featurizers"][spec["featurizer"]]
    if init.get("pretrained"):
        where = f"{path}.pretrained"
        _known(where, "pretrain entry", init["pretrained"], config.get("pretrain") or {})
        source = config["pretrain"][init["pretrained"]]
        source_family, what = source.get("family", "gnn"), f"pretrain entry {init['pretrained']!r}"
        if init.get("frozen_head_layers"):
            raise _fail(
                f"{path}.frozen_head_layers",
                "a pretrained encoder carries no head for this model; frozen head layers need "
                "`model` (a model trained on another dataset)",
            )
    else:
        where = f"{path}.model"
        dataset, source_model = init["model"].split("/")
        _known(where, "dataset", dataset, config["datasets"])
        _known(where, "model", source_model, config["models"])
        if source_model == name:
            raise _fail(where, f"model {name!r} cannot start from itself")
        source = config["models"][source_model]
        source_family, what = source["family"], f"model {source_model!r}"
        if name in _listed(config, dataset):
            raise _fail(
                where,
                f"{name} is trained on {dataset} itself; starting from a model of the same "
                "dataset leaks test rows (another seed's training rows)",
            )
        if config["datasets"][dataset]["kind"] != "smiles" and family.kind() == "smiles":
            raise _fail(where, f"dataset {dataset!r} holds no molecules")
        n_frozen = int(init.get("frozen_head_layers") or 0)
        if n_frozen:
            mine = family(dict(own_params)).params
            theirs = family(dict(source.get("params") or {})).params
            for params, who in ((mine, name), (theirs, source_model)):
                if n_frozen > params.head_layers - 1:
                    raise _fail(
                        f"{path}.frozen_head_layers",
                        f"{n_frozen} frozen head layers, but {who} has {params.head_layers - 1} "
                        "hidden head layers (the output layer is always trained anew)",
                    )
            shape = ("hidden", "head_hidden", "descriptors")
            differ = [k for k in shape if getattr(mine, k) != getattr(theirs, k)]
            if differ:
                raise _fail(
                    f"{path}.frozen_head_layers",
                    f"the head layers of {name} and {source_model} differ in {', '.join(differ)}",
                )
    if source_family != spec["family"]:
        raise _fail(where, f"{what} is a {source_family} model; {name} is {spec['family']}")
    source_features = config["featurizers"][source["featurizer"]]
    differ = featurizer_difference(source_features, own_features)
    if differ:
        raise _fail(
            where,
            f"featurizer mismatch: {what} uses featurizer {source['featurizer']!r} and {name} "
            f"uses {spec['featurizer']!r}; they differ in {', '.join(differ)}",
        )
    arch = encoder_difference(family, source.get("params") or {}, own_params)
    if arch:
        raise _fail(where, f"architecture mismatch between {what} and {name}: {'; '.join(arch)}")


def _listed(config: dict, dataset: str) -> list[str]:
    from biomol_dl.config import dataset_models

    return dataset_models(config, dataset)


def _check_cycles(config: dict) -> None:
    """`init.model` links must not loop (a -> b -> a would never build)."""
    for start in config["models"]:
        seen, name = [start], start
        while True:
            init = config["models"][name].get("init") or {}
            if not init.get("model"):
                break
            name = init["model"].split("/")[1]
            if name in seen:
                chain = " -> ".join([*seen, name])
                raise _fail(f"models.{start}.init.model", f"init models form a cycle: {chain}")
            seen.append(name)


def describe_init(config: Mapping[str, Any], model: str) -> str | None:
    """What a model starts from, in one line for the report: 'pretrained: NAME (corpus C)' or
    'from: DATASET/MODEL seed N', with ', frozen encoder' when so; None for a random start."""
    init = config["models"][model].get("init")
    if not init:
        return None
    if init.get("pretrained"):
        entry = config["pretrain"][init["pretrained"]]
        text = f"pretrained: {init['pretrained']} (corpus {entry['corpus']})"
    else:
        text = f"from: {init['model']} seed {init.get('seed', 0)}"
    if init.get("freeze_encoder"):
        text += ", frozen encoder"
    return text
