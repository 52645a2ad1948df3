"""Pretraining an encoder on a corpus, and starting a model from a checkpoint (fine-tuning).

For the rules and for family authors. The config side (what may start from what) is
biomol_dl.transfer; this module holds the torch side.

**Pretraining** (rule `pretrain`, `run_pretraining`): a family network (gnn: a D-MPNN by
default) is trained by the one training loop (biomol_dl.training.fit) to predict the RDKit 2D
descriptors of every corpus molecule, the self-supervised recipe of chemprop's CheMeleon (there
Mordred descriptors). The descriptor targets are prepared on the pretraining train molecules
only: descriptors that are undefined for more than half of them or constant are dropped, each
remaining one is clipped to its [q, 1 - q] quantiles (a few RDKit descriptors reach 1e10) and
standardized (mean / sd), so the loss and the validation rmse weigh every descriptor alike;
undefined values are missing labels, masked out of the
loss. A seeded `val_fraction` of the corpus decides early stopping. The job checkpoints every
epoch and resumes like every training job.

encoder.pt (torch.load(..., weights_only=True)) holds: format (biomol_dl.encoder/1), family,
hyperparameters (its params; the architecture), featurizer and featurizer_spec, feature_meta,
state_dict (the encoder's entries only: keys under the family's `encoder_modules`), descriptors
(names, clip bounds, mean / sd), corpus (name, sha256, molecules), best_epoch, best_val_metric,
history, versions.

**Starting from a checkpoint** (`apply_init`, called by train_job.run_training for a model with
`init:`): the encoder entries of an encoder.pt or of another dataset's model.pt are copied into
the freshly built model (a model.pt also gives the hidden layers of its head, where their shapes
match; the output layer is always new). `freeze_encoder` turns the encoder's gradients off and
keeps it in eval mode (dropout off, batch-norm statistics fixed), `frozen_head_layers` does the
same for the first N head layers, and `encoder_lr_ratio` becomes the loop's `lr_scales`. A
checkpoint whose featurizer or architecture differs from the model's fails with one line naming
the difference.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biomol_dl import training
from biomol_dl.logutil import get
from biomol_dl.models.base import Family, get_family
from biomol_dl.transfer import ENCODER_FORMAT, encoder_difference, featurizer_difference

log = get("biomol_dl.pretrain")

MAX_MISSING = 0.5  # descriptors undefined for more of the train molecules than this are dropped


# ----------------------------------------------------------------------------- targets


@dataclasses.dataclass
class DescriptorTargets:
    """Which descriptors are predicted, and how they are clipped (fitted on train molecules)."""

    names: list[str]
    columns: list[int]
    low: list[float]
    high: list[float]
    mean: list[float]
    sd: list[float]
    dropped: dict[str, str]

    @classmethod
    def fit(cls, values: np.ndarray, names: Sequence[str], train: np.ndarray, q: float):
        values = np.asarray(values, dtype=np.float64)[train]
        keep, low, high, mean, sd, dropped = [], [], [], [], [], {}
        for j, name in enumerate(names):
            col = values[:, j]
            finite = col[np.isfinite(col)]
            if finite.size < (1 - MAX_MISSING) * len(col):
                dropped[name] = f"undefined for {len(col) - finite.size} of {len(col)}"
                continue
            lo, hi = np.quantile(finite, [q, 1 - q]) if q > 0 else (finite.min(), finite.max())
            clipped = np.clip(finite, lo, hi)
            if not hi > lo or not clipped.std() > 0:
                dropped[name] = "constant on the train molecules"
                continue
            keep.append(j)
            low.append(float(lo))
            high.append(float(hi))
            mean.append(float(clipped.mean()))
            sd.append(float(clipped.std()))
        return cls([names[j] for j in keep], keep, low, high, mean, sd, dropped)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Clipped and standardized targets [N, D]; NaN stays NaN (a missing label)."""
        out = np.asarray(values, dtype=np.float64)[:, self.columns]
        out = (np.clip(out, self.low, self.high) - self.mean) / self.sd
        return out.astype(np.float32)


# ----------------------------------------------------------------------------- pretraining


def run_pretraining(
    *,
    molecules_csv: str | Path,
    features_pt: str | Path,
    spec: Mapping[str, Any],
    out_encoder: str | Path,
    out_history: str | Path,
    resume_dir: str | Path | None = None,
    threads: int = 1,
    run: Any = None,
) -> dict[str, Any]:
    """Pretrain one encoder on one corpus; write encoder.pt and history.csv.

    spec: the rule's params.spec (biomol_dl.rule_params.pretrain_spec): name, corpus, family,
      featurizer, featurizer_spec, params, objective, seed.
    run: a tracking.JobRun or None. Returns a summary (best epoch, molecules, descriptors, ...).
    Raises training.Preempted after SIGTERM (rerunning resumes).
    """
    from biomol_dl.train_job import _log_end, _NoRun

    wall0 = time.perf_counter()
    run = run or _NoRun()
    torch.set_num_threads(max(1, int(threads)))
    seed = int(spec.get("seed", 0))
    corpus = _load_corpus(molecules_csv, features_pt, spec, seed)

    cfg, model_params = training.TrainConfig.from_params(spec.get("params") or {})
    # the targets come standardized (_load_corpus): the loop's rmse is then in sd units, every
    # descriptor alike
    cfg = dataclasses.replace(cfg, seed=seed, standardize=False)
    family = get_family(spec["family"])(spec.get("params") or {})
    training.set_seed(seed)  # weight initialization depends on the seed only
    subsets, model = _build(family, corpus)
    _log_start(run, spec, cfg, model_params, corpus, model)

    def loader(subset, shuffle: bool, loader_seed: int):
        return family.make_loader(subset, batch_size=cfg.batch_size, shuffle=shuffle,
                                  seed=loader_seed)  # fmt: skip

    result = training.fit(
        model,
        lambda epoch: loader(subsets["train"], True, seed * 1000 + epoch),
        loader(subsets["val"], False, seed) if corpus.val_idx else None,
        task="regression",
        config=cfg,
        y_train=corpus.y[corpus.train_idx],
        resume_dir=resume_dir,
        fingerprint=_resume_fingerprint(spec, model_params, molecules_csv, features_pt),
        log_metrics=run.log_metrics,
        keep_resume_state=True,
    )
    model.to("cpu")
    _write_outputs(spec, family, model, corpus, result, out_encoder, out_history)
    training.clear_resume_state(resume_dir)
    summary = _log_end(run, result, torch.device(result.device), time.perf_counter() - wall0)
    log.info("encoder -> %s", out_encoder)
    return summary


@dataclasses.dataclass
class _Corpus:
    """The corpus as the loop sees it: its features, which molecules train and which validate,
    and the descriptor targets."""

    features: dict[str, Any]
    n: int
    sha256: str
    train_idx: list[int]
    val_idx: list[int]
    targets: DescriptorTargets
    y: np.ndarray


def _load_corpus(molecules_csv, features_pt, spec, seed: int) -> _Corpus:
    """The corpus molecules and their features (the ids must match), the seeded train /
    validation split and the descriptor targets fitted on its train molecules."""
    from biomol_dl.hashing import sha256_file
    from biomol_dl.io import read_table
    from biomol_dl.train_job import check_feature_ids

    molecules = read_table(molecules_csv)
    features = torch.load(features_pt, map_location="cpu", weights_only=True)
    check_feature_ids(features, molecules["id"].tolist(), features_pt)
    n = len(molecules)
    is_val, targets, y = _targets(features, spec, features_pt, n, seed)
    train_idx, val_idx = np.flatnonzero(~is_val).tolist(), np.flatnonzero(is_val).tolist()
    return _Corpus(features, n, sha256_file(molecules_csv), train_idx, val_idx, targets, y)


def _targets(features, spec, features_pt, n: int, seed: int):
    """(validation mask, DescriptorTargets fitted on the train molecules, targets y [N, D]):
    a seeded `val_fraction` of the corpus holds out for early stopping."""
    objective = dict(spec.get("objective") or {})
    if "descriptors" not in features:
        raise ValueError(f"{features_pt}: no descriptors (the corpus featurizer adds them)")
    all_names = list(features["descriptor_names"])
    wanted = objective.get("descriptors") or all_names
    values = features["descriptors"].double().numpy()[:, [all_names.index(w) for w in wanted]]
    is_val = np.zeros(n, dtype=bool)
    n_val = max(1, round(float(objective.get("val_fraction", 0.05)) * n)) if n > 1 else 0
    is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    clip_q = float(objective.get("clip_quantile", 0.005))
    targets = DescriptorTargets.fit(values, list(wanted), ~is_val, clip_q)
    if not targets.names:
        raise ValueError(f"{spec['name']}: no descriptor is defined and varies on the corpus")
    return is_val, targets, targets.transform(values)


def _build(family: Family, corpus: _Corpus) -> tuple[dict[str, Any], torch.nn.Module]:
    """The train / val subsets and the model (in this order: the seed was just set), one output
    per descriptor, with input statistics fitted on the train molecules."""
    dataset = family.build_datasets(corpus.features, corpus.y)
    subsets = {
        "train": torch.utils.data.Subset(dataset, corpus.train_idx),
        "val": torch.utils.data.Subset(dataset, corpus.val_idx),
    }
    model = family.build_model(corpus.features, len(corpus.targets.names))
    family.prepare_model(model, subsets["train"])
    return subsets, model


def _log_start(run, spec, cfg, model_params, corpus: _Corpus, model: torch.nn.Module) -> None:
    """The job's params, the corpus hash and sizes, to the tracking run and the log."""
    n, n_train, n_val = corpus.n, len(corpus.train_idx), len(corpus.val_idx)
    targets = corpus.targets
    n_params = sum(p.numel() for p in model.parameters())
    run.log_params(
        {
            "pretrain": {"corpus": spec["corpus"], "family": spec["family"],
                         "featurizer": spec["featurizer"], "objective": "rdkit_descriptors"},
            "train": dataclasses.asdict(cfg),
            "model": model_params,
            "data": {"n_molecules": n, "n_train": n_train, "n_val": n_val,
                     "n_descriptors": len(targets.names)},
        }
    )  # fmt: skip
    run.set_tags({"corpus.sha256": corpus.sha256})
    run.log_metrics({"corpus_molecules": n, "n_parameters": n_params})
    log.info(
        "pretraining %s (%s) on corpus %s: %d molecules (%d train / %d val), %d descriptors "
        "(%d dropped), %d parameters",
        spec["name"], spec["family"], spec["corpus"], n, n_train, n_val,
        len(targets.names), len(targets.dropped), n_params,
    )  # fmt: skip


def _resume_fingerprint(spec, model_params, molecules_csv, features_pt) -> dict:
    """What must match for a resume state to be used: the objective, the family's params and
    the input files."""
    from biomol_dl.train_job import _file_fingerprint

    return {
        "pretrain": {k: spec.get(k) for k in ("family", "featurizer_spec", "objective")},
        "model_params": model_params,
        "inputs": {
            "molecules": _file_fingerprint(molecules_csv),
            "features": _file_fingerprint(features_pt),
        },
    }


def _write_outputs(spec, family, model, corpus: _Corpus, result, out_encoder, out_history):
    """history.csv, then encoder.pt (saved atomically)."""
    import pandas as pd

    Path(out_history).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(result.history).to_csv(out_history, index=False)
    about = {"name": spec["corpus"], "sha256": corpus.sha256, "molecules": corpus.n}
    checkpoint = _encoder_checkpoint(
        spec, family, model, corpus.features, corpus.targets, about, result
    )
    training.atomic_save(checkpoint, out_encoder)


def _encoder_checkpoint(spec, family, model, features, targets, corpus, result) -> dict:
    """encoder.pt's dict (see the module docstring)."""
    return {
        "format": ENCODER_FORMAT,
        "name": spec["name"],
        "family": family.name,
        "hyperparameters": dict(family.model_params),
        "encoder_signature": family.encoder_signature(),
        "featurizer": spec["featurizer"],
        "featurizer_spec": dict(spec["featurizer_spec"]),
        "feature_meta": family.feature_meta(features, corpus["molecules"]),
        "state_dict": encoder_state(family, model),
        "descriptors": {
            "names": targets.names,
            "low": targets.low,
            "high": targets.high,
            "mean": targets.mean,
            "sd": targets.sd,
            "dropped": targets.dropped,
        },
        "corpus": corpus,
        "best_epoch": result.best_epoch,
        "best_val_metric": result.best_metric,
        "monitor": result.monitor,
        "history": json.loads(json.dumps(result.history, default=float)),
        "versions": {"torch": str(torch.__version__), "python": sys.version.split()[0]},
    }


def encoder_state(family: Family, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the state-dict entries of the family's encoder modules."""
    prefixes = tuple(f"{m}." for m in family.encoder_modules)
    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in model.state_dict().items()
        if k.startswith(prefixes)
    }


# ----------------------------------------------------------------------------- fine-tuning


def load_init_checkpoint(path: str | Path) -> dict[str, Any]:
    """An encoder.pt or model.pt, as a dict (weights_only); anything else fails naming the file."""
    from biomol_dl.train_job import MODEL_FORMAT

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (ENCODER_FORMAT, MODEL_FORMAT):
        raise ValueError(
            f"{path}: not a biomol_dl encoder or model checkpoint ({ENCODER_FORMAT}, {MODEL_FORMAT})"
        )
    return ckpt


def check_init_checkpoint(
    ckpt: Mapping[str, Any], path: str | Path, family: Family, model_spec: Mapping[str, Any]
) -> None:
    """One-line errors for a checkpoint whose family, featurizer or encoder differs."""
    name = model_spec.get("name") or "the model"
    if ckpt.get("family") != family.name:
        raise ValueError(
            f"init checkpoint {path}: a {ckpt.get('family')} checkpoint; {name} is {family.name}"
        )
    differ = featurizer_difference(ckpt["featurizer_spec"], model_spec["featurizer_spec"])
    if differ:
        raise ValueError(
            f"init checkpoint {path}: featurizer mismatch: it was trained on graphs from "
            f"{ckpt['featurizer_spec']} and {name} uses {model_spec['featurizer_spec']} "
            f"(they differ in {', '.join(differ)})"
        )
    theirs = dict(ckpt["hyperparameters"])
    arch = encoder_difference(type(family), theirs, dict(family.model_params))
    if arch:
        raise ValueError(
            f"init checkpoint {path}: architecture mismatch with {name}: {'; '.join(arch)}"
        )


def apply_init(
    family: Family,
    model: torch.nn.Module,
    init: Mapping[str, Any],
    path: str | Path,
    model_spec: Mapping[str, Any],
) -> dict[str, Any]:
    """Load a checkpoint's encoder (and head layers) into `model`, freeze what `init` says.

    Returns {"lr_scales": ..., "loaded": n tensors, "frozen": n parameters, ...} for the loop
    and the job's tracking run.
    """
    ckpt = load_init_checkpoint(path)
    check_init_checkpoint(ckpt, path, family, model_spec)
    own = model.state_dict()
    encoder = tuple(f"{m}." for m in family.encoder_modules)
    source = ckpt["state_dict"]
    load: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if key.startswith(encoder):
            if key not in own or own[key].shape != value.shape:
                raise ValueError(
                    f"init checkpoint {path}: architecture mismatch: encoder entry {key} "
                    f"{tuple(value.shape)} does not fit {name_of(model_spec)}'s "
                    f"{tuple(own[key].shape) if key in own else 'missing'}"
                )
            load[key] = value
    missing = sorted(k for k in own if k.startswith(encoder) and k not in load)
    if missing:
        raise ValueError(
            f"init checkpoint {path}: architecture mismatch: it lacks encoder entries of "
            f"{name_of(model_spec)}, e.g. {missing[0]}"
        )
    head_layers = _head_linears(family, model)
    n_frozen_head = int(init.get("frozen_head_layers") or 0)
    loaded_head = 0
    if ckpt["format"] != ENCODER_FORMAT:  # a trained model: its head's hidden layers too
        for i, (prefix, _) in enumerate(head_layers[:-1]):
            entries = {k: v for k, v in source.items() if k.startswith(f"{prefix}.")}
            fits = entries and all(k in own and own[k].shape == v.shape for k, v in entries.items())
            if not fits:
                if i < n_frozen_head:
                    raise ValueError(
                        f"init checkpoint {path}: head layer {i + 1} does not fit "
                        f"{name_of(model_spec)}'s (frozen_head_layers {n_frozen_head})"
                    )
                break
            load.update(entries)
            loaded_head += 1
    elif n_frozen_head:
        raise ValueError(f"init checkpoint {path}: an encoder checkpoint has no head layers")
    model.load_state_dict(load, strict=False)

    frozen = 0
    if init.get("freeze_encoder"):
        for module_name in family.encoder_modules:
            module = getattr(model, module_name, None)
            if module is not None:
                frozen += freeze(module)
    for _, layer in head_layers[:n_frozen_head]:
        frozen += freeze(layer)
    ratio = float(init.get("encoder_lr_ratio", 1.0))
    lr_scales = {f"{m}.": ratio for m in family.encoder_modules} if ratio != 1.0 else {}
    info = {
        "init_checkpoint": str(path),
        "init_format": ckpt["format"],
        "loaded_tensors": len(load),
        "loaded_head_layers": loaded_head,
        "frozen_parameters": frozen,
        "lr_scales": lr_scales,
    }
    if ckpt["format"] == ENCODER_FORMAT:
        info["corpus"] = dict(ckpt.get("corpus") or {})
    log.info(
        "started from %s: %d tensors (%d head layers), %d parameters frozen%s",
        path, len(load), loaded_head, frozen,
        f", encoder lr x{ratio:g}" if lr_scales else "",
    )  # fmt: skip
    return info


def name_of(model_spec: Mapping[str, Any]) -> str:
    return str(model_spec.get("name") or "the model")


def _head_linears(family: Family, model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(state-dict prefix, module) of each Linear layer of the family's head, in order."""
    head = getattr(model, family.head_module, None)
    if head is None:
        return []
    return [
        (f"{family.head_module}.{name}", module)
        for name, module in head.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]


def _stay_in_eval(module: torch.nn.Module, args: Any) -> None:
    if module.training:
        module.eval()


def freeze(module: torch.nn.Module) -> int:
    """Turn off a module's gradients and keep it in eval mode while the rest trains (dropout
    off, batch-norm statistics fixed: its weights and buffers do not change). Returns the
    number of parameters frozen."""
    n = 0
    for p in module.parameters():
        if p.requires_grad:
            p.requires_grad_(False)
            n += p.numel()
    module.register_forward_pre_hook(_stay_in_eval)
    return n
