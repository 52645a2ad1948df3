"""The contract of a model family, its registry, and its hyperparameters as a typed dataclass.

For the authors of model families. A family is one class in one module of biomol_dl/models/,
registered with `@register("<name>")`; the config's `family:` names it. The class says

    Params        a frozen dataclass of the family's model params with their defaults (the
                  training-loop keys are `training.TrainConfig`'s fields; they are composed in,
                  not copied: see `Family.split_params`)
    featurizers   the featurizer types it takes (their kinds, smiles / protein, follow)
    uses_torch    trained by the one torch loop (train_job.run_training); False: `train` is
                  overridden (the random forest)
    uses_gpu      its rule asks for a `gpu` resource (CUDA when present, CPU otherwise)
    model_file    the file its training rule writes (model.pt; model.skops for the forest)
    mem_mb, runtime   its rule's default resources

and builds, for the torch loop, from `self.params` (an instance of Params):

    build_datasets(features, y) -> Sequence      one example per clean-table row
    make_loader(subset, *, batch_size, shuffle, seed, pin_memory=False) -> iterable of batches
    build_model(features, n_outputs) -> torch.nn.Module

(see train_job's docstring for what each receives) with optional hooks whose defaults do
nothing: prepare_model, trainable_parameters, extra_checkpoint, check_checkpoint, feature_meta,
report. A family whose network has an encoder names it in `encoder_modules` and says in
`encoder_signature` which params shape it: models of it can then be pretrained and fine-tuned
(biomol_dl.transfer, biomol_dl.pretrain). A family that does not train with the torch loop overrides `train` and `predict`.

Family modules import no torch, scikit-learn or RDKit at module level (their networks live in
biomol_dl/models/nets/ and load inside the methods): `biomol_dl.config` imports every family to
check each model's params when the config loads, which must stay cheap.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import pkgutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

PACKAGE = Path(__file__).resolve().parents[1]
_REGISTRY: dict[str, type[Family]] = {}
_NOT_FAMILIES = {"base", "nets"}  # modules of biomol_dl/models/ that define no family


# ------------------------------------------------------------------------------- params


@dataclass(frozen=True)
class ModelParams:
    """Base of every family's Params. Field annotations are type specs the config checks
    ("int", "float | None", "list[int] | int", ...); `check` adds checks of the values."""

    def check(self) -> None:
        """Raise ValueError on an impossible combination of values (types are checked already)."""

    @classmethod
    def open_keys(cls, keys: Iterable[str]) -> dict[str, str]:
        """{key: type spec} of keys accepted besides the fields (the forest: scikit-learn's)."""
        return {}

    @classmethod
    def build(cls, values: Mapping[str, Any]) -> ModelParams:
        """The params from checked values (fields only, unless the family takes open keys).

        A number written as a string (YAML 1.1 reads 1e-3 as one) becomes a float where the
        field takes a float and no string."""
        specs = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        values = {
            k: float(v) if isinstance(v, str) and _float_not_str(specs.get(k, "")) else v
            for k, v in values.items()
        }
        return cls(**values)


@dataclass(frozen=True)
class TorchParams(ModelParams):
    """Params every torch family takes besides its own."""

    n_classes: int | None = None  # multiclass: the number of classes (default: from the labels)


@dataclass(frozen=True)
class TokenParams(TorchParams):
    """Params of the residue-token families: how batches are made (biomol_dl.batching)."""

    max_tokens: int | None = None  # cap on padded tokens per batch (null: batch_size sequences)
    bucket_batches: int = 50  # batches per length bucket, shuffled together


def _float_not_str(spec: str) -> bool:
    alternatives = {alt.strip() for alt in spec.split("|")}
    return "float" in alternatives and "str" not in alternatives


def loop_fields() -> dict[str, str]:
    """{field: type spec} of training.TrainConfig, without importing torch when it is not loaded.

    training.py imports torch at module level, so its source is read (`ast`) unless the module is
    already imported; the fields are TrainConfig's either way.
    """
    training = sys.modules.get("biomol_dl.training")
    if training is not None and hasattr(training, "TrainConfig"):
        return {f.name: str(f.type) for f in dataclasses.fields(training.TrainConfig)}
    return _loop_fields_from_source()


@functools.cache
def _loop_fields_from_source() -> dict[str, str]:
    sources = [PACKAGE / "training.py", *sorted((PACKAGE / "training").glob("*.py"))]
    for path in sources:
        if not path.is_file():
            continue
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.ClassDef) and node.name == "TrainConfig":
                return {
                    item.target.id: ast.unparse(item.annotation)
                    for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                }
    raise LookupError("biomol_dl.training has no TrainConfig")


# ------------------------------------------------------------------------------- family


class Family:
    """One model family: its params, the featurizers it takes, how it trains and predicts."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[ModelParams]] = TorchParams
    featurizers: ClassVar[tuple[str, ...]] = ()
    uses_torch: ClassVar[bool] = True
    uses_gpu: ClassVar[bool] = True
    model_file: ClassVar[str] = "model.pt"
    mem_mb: ClassVar[int] = 16000
    runtime: ClassVar[int] = 720
    # the running job's time limit in minutes (train_job.main sets it from the job's resources,
    # a --set-resources override included); None outside a workflow job: `runtime` applies
    job_runtime: int | None = None
    # Transfer learning (biomol_dl.transfer): the submodules of build_model's network that make
    # its encoder (loaded from a pretrained or another dataset's checkpoint, frozen on request)
    # and the one holding the head (a Sequential whose Linear layers are the head layers).
    encoder_modules: ClassVar[tuple[str, ...]] = ()
    head_module: ClassVar[str] = "head"
    # Uncertainty (`uncertainty.estimate`, biomol_dl.uncertainty): the sd estimates the family
    # writes itself as predictions.csv's y_sd (rf: "trees"); the torch loop adds MC dropout, the
    # mean-variance and evidential heads (the network's n_outputs grow, training.HEADS) and
    # within-split ensembles for every torch family.
    sd_estimates: ClassVar[tuple[str, ...]] = ()
    TORCH_ESTIMATES: ClassVar[tuple[str, ...]] = ("dropout", "mve", "evidential", "ensemble")

    @classmethod
    def uncertainty_estimates(cls) -> tuple[str, ...]:
        return cls.sd_estimates + (cls.TORCH_ESTIMATES if cls.uses_torch else ())

    def __init__(self, params: Mapping[str, Any] | ModelParams | None = None):
        """params: the model entry's params (model and loop keys) or a Params instance."""
        if isinstance(params, ModelParams):  # the model keys "given": those off their default
            defaults = type(params)()
            given = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
            given = {k: v for k, v in given.items() if v != getattr(defaults, k)}
            self.params, self.loop, self.model_params = params, {}, given
        else:
            self.params, self.loop, self.model_params = self.split_params(params or {})

    # --- params

    @classmethod
    def param_specs(cls, keys: Iterable[str] = ()) -> dict[str, str]:
        """{param: type spec} the family accepts: its Params fields, the training loop's fields
        (torch families) and any open keys the given `keys` need."""
        specs = {
            f.name: str(f.type)
            for f in dataclasses.fields(cls.Params)
            if not f.metadata.get("open")
        }
        if cls.uses_torch:
            specs = {**loop_fields(), **specs}
        unknown = [k for k in keys if k not in specs]
        return {**cls.Params.open_keys(unknown), **specs} if unknown else specs

    @classmethod
    def split_params(
        cls, raw: Mapping[str, Any], path: str | None = None
    ) -> tuple[ModelParams, dict[str, Any], dict[str, Any]]:
        """(Params, the training-loop keys, the model keys as given) of a model's params.

        Unknown keys (with the nearest valid one), wrong types and impossible values raise
        biomol_dl.config.ConfigError (a ValueError) naming `path`.<key>.
        """
        from biomol_dl.config import ConfigError, check_params

        path = path or f"{cls.name}.params"
        raw = dict(raw)
        specs = cls.param_specs(raw)
        check_params(path, raw, specs)
        loop = {k: v for k, v in raw.items() if k in loop_fields()} if cls.uses_torch else {}
        model = {k: v for k, v in raw.items() if k not in loop}
        try:
            params = cls.Params.build(model)
            params.check()
        except (TypeError, ValueError) as err:
            raise ConfigError(f"invalid config at '{path}': {cls.name}: {err}") from None
        return params, loop, model

    # --- the torch loop (see train_job)

    def build_datasets(self, features: Mapping[str, Any], y: Any) -> Sequence:
        raise NotImplementedError(f"{self.name}: build_datasets")

    def make_loader(
        self, subset: Sequence, *, batch_size: int, shuffle: bool, seed: int, pin_memory=False
    ) -> Iterable:
        raise NotImplementedError(f"{self.name}: make_loader")

    def build_model(self, features: Mapping[str, Any], n_outputs: int) -> Any:
        raise NotImplementedError(f"{self.name}: build_model")

    def prepare_model(self, model: Any, train_subset: Sequence) -> None:
        """Fit what the train rows decide (input scaling, vocabulary) into the model."""

    def trainable_parameters(self, model: Any) -> list | None:
        """What the optimizer updates; None: every parameter with requires_grad (and model.pt
        keeps the whole state). A list: model.pt keeps only these and the buffers."""
        return None

    def extra_checkpoint(self, model: Any) -> dict:
        """Extra entries for model.pt under "extra" (weights_only-loadable values)."""
        return {}

    def check_checkpoint(self, model: Any, checkpoint: Mapping[str, Any]) -> None:
        """Raise if the rebuilt model cannot take the saved state."""

    def feature_meta(self, features: Mapping[str, Any], n_examples: int) -> dict:
        """The features without per-example data, saved in model.pt to rebuild the model."""
        from biomol_dl.train_job import feature_meta

        return feature_meta(features, n_examples)

    def encoder_signature(self) -> dict[str, Any]:
        """The params that fix the encoder's weights (their shapes and meaning): two models can
        share an encoder only when these are equal (families with `encoder_modules`)."""
        return {}

    def report(self, model_file: str | Path) -> tuple[dict, dict]:
        """(params, metrics) to track beside the job's own, read from the trained model file."""
        return {}, {}

    # --- a job

    def train(self, **job: Any) -> dict:
        """Train on one split and write the model file, predictions.csv and history.csv
        (train_job.run_training's keyword arguments)."""
        from biomol_dl.train_job import run_training

        return run_training(self, **job)

    def predict(
        self,
        model_file: str | Path,
        inputs: Sequence[str],
        *,
        n_classes: int | None = None,
        threads: int = 1,
    ) -> Any:
        """Long-format predictions (input, task, y_pred [+ p_k]) of a trained model file."""
        from biomol_dl.train_job import predict_inputs

        return predict_inputs(model_file, type(self), list(inputs), threads=threads)

    # --- what the config and the rules read

    @classmethod
    def kind(cls) -> str:
        """smiles, protein, or any: the kinds of the featurizers it takes."""
        from biomol_dl.features import KINDS

        kinds = {KINDS[f] for f in cls.featurizers}
        return kinds.pop() if len(kinds) == 1 else "any"

    @classmethod
    def meta(cls) -> dict[str, Any]:
        return {
            "kind": cls.kind(),
            "gpu": cls.uses_gpu,
            "torch": cls.uses_torch,
            "featurizers": list(cls.featurizers),
            "model_file": cls.model_file,
            "mem_mb": cls.mem_mb,
            "runtime": cls.runtime,
        }


# ----------------------------------------------------------------------------- registry


def register(name: str):
    """Class decorator: make a Family subclass the config's `family: <name>`."""

    def decorate(cls: type[Family]) -> type[Family]:
        if not (isinstance(cls, type) and issubclass(cls, Family)):
            raise TypeError(f"@register({name!r}) takes a Family subclass, not {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model family {name!r} is registered twice")
        missing = [f for f in cls.featurizers if not _known_featurizer(f)]
        if missing:
            raise ValueError(f"model family {name!r}: unknown featurizer types {missing}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _known_featurizer(type_name: str) -> bool:
    from biomol_dl.features import FEATURIZERS

    return type_name in FEATURIZERS


def families() -> dict[str, type[Family]]:
    """{name: Family class} of every family module in biomol_dl/models/ (imported once)."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in _NOT_FAMILIES and not info.name.startswith("_"):
            importlib.import_module(f"biomol_dl.models.{info.name}")
    return dict(_REGISTRY)


def get_family(name: str) -> type[Family]:
    """The Family class of a config `family:`; an unknown name fails listing the valid ones."""
    known = families()
    if name not in known:
        raise KeyError(f"unknown model family {name!r}; valid families: {', '.join(known)}")
    return known[name]


class Functions:
    """A family as functions of (..., params dict), the way tests and notebooks call it:
    `gnn = Functions("gnn"); model = gnn.build_model(features, 1, {"hidden": 32})`."""

    def __init__(self, family: str | type[Family]):
        self.family = get_family(family) if isinstance(family, str) else family
        self.__name__ = self.family.__module__

    def __call__(self, params: Mapping[str, Any] | None = None) -> Family:
        return self.family(params)

    def build_datasets(self, features, y, params: Mapping | None = None):
        return self.family(params).build_datasets(features, y)

    def make_loader(self, subset, *, batch_size, shuffle, seed, params: Mapping | None = None):
        params = dict(params or {})
        pin_memory = bool(params.pop("pin_memory", False))
        return self.family(params).make_loader(
            subset, batch_size=batch_size, shuffle=shuffle, seed=seed, pin_memory=pin_memory
        )

    def build_model(self, features, n_outputs: int, params: Mapping | None = None):
        return self.family(params).build_model(features, n_outputs)

    def prepare_model(self, model, train_subset, params: Mapping | None = None) -> None:
        self.family(params).prepare_model(model, train_subset)

    def trainable_parameters(self, model, params: Mapping | None = None):
        return self.family(params).trainable_parameters(model)

    def extra_checkpoint(self, model, params: Mapping | None = None) -> dict:
        return self.family(params).extra_checkpoint(model)

    def check_checkpoint(self, model, checkpoint, params: Mapping | None = None) -> None:
        self.family(params).check_checkpoint(model, checkpoint)

    def feature_meta(self, features, n_examples: int, params: Mapping | None = None) -> dict:
        return self.family(params).feature_meta(features, n_examples)
