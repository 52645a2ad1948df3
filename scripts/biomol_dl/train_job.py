"""The glue around the one torch training loop: files in, `training.fit`, files out.

For the authors of model families and rule scripts. Every `train_<family>` rule runs
scripts/train.py, which calls `main(job)` with the job's plain values (biomol_dl.job.Job);
`main` builds the family (biomol_dl.models: one class per family, its params a dataclass checked
when the config loaded) and calls `family.train(...)`, for torch families

    run_training(family, clean_csv=..., split_csv=..., features_pt=..., model_spec=...,
                 task=..., label_columns=[...], seed=..., out_model=..., out_predictions=...,
                 out_history=..., resume_dir=..., threads=..., run=run)

What a family provides is in models/base.py. What run_training hands it:

    family.build_datasets(features, y) -> Sequence
        y is float32 [N, T] with NaN for missing labels (multiclass: class index, T = 1). Returns
        N examples, index i = clean-table row i (anything `torch.utils.data.Subset` can wrap).
    family.make_loader(subset, *, batch_size, shuffle, seed, pin_memory) -> iterable of batches
        (dict of tensors with "y" [B, T], or a torch_geometric Batch). The order must depend only
        on `seed` (use torch.Generator().manual_seed(seed)); training calls it once per epoch
        with seed * 1000 + epoch. pin_memory is True on CUDA.
    family.build_model(features, n_outputs) -> torch.nn.Module
        n_outputs = T, or K classes for multiclass. `features` may be the full features dict OR
        its stub from `feature_meta` (how `load_trained` rebuilds a model from model.pt alone):
        per-example tensors become empty tensors with the same trailing shape and dtype
        (features["X"].shape[1] still works), per-example lists become [], and everything else
        (vocab, sizes) is kept as is. So read sizes and metadata from `features`, never values.

and the optional hooks (no-ops by default): prepare_model(model, train_subset) with the TRAIN
rows only (e.g. input standardization into model buffers); trainable_parameters(model) (a list:
model.pt and the resume state keep only those + buffers, "partial_state": True, the frozen rest
is rebuilt by build_model); extra_checkpoint(model) -> dict for model.pt's "extra";
check_checkpoint(model, checkpoint) before load_trained loads the saved state; feature_meta;
report(model_file) -> (params, metrics) for the job's tracking run.

model.pt is a dict loadable with torch.load(path, weights_only=True): format, family, model_name,
hyperparameters (the model params), train_config, featurizer, featurizer_spec, task,
label_columns, n_outputs, target_scaler, feature_meta, state_dict, partial_state, extra,
best_epoch, best_val_metric, monitor, versions, init (what it started from, or None), head
(training.HEADS: point, or the mve / evidential head whose network has 2 / 4 outputs per task),
members (a within-split ensemble's members 1..K-1: seed, best_epoch, best_val_metric,
train_ids_sha256, state_dict; state_dict is member 0's).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from biomol_dl import hashing, training
from biomol_dl.io import read_table
from biomol_dl.models.base import Family, Functions, get_family
from biomol_dl.runtime import peak_memory_mb

if TYPE_CHECKING:
    from biomol_dl.job import Job

log = logging.getLogger("biomol_dl.training")

MODEL_FORMAT = "biomol_dl.model/1"
SPLITS = ("train", "val", "test")
_HASH_LIMIT = 512 * 2**20  # bigger inputs are fingerprinted by size + mtime, not content


class _NoRun:
    """Stands in for tracking.JobRun when the caller tracks nothing."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


def run_training(
    family: Family | type[Family] | str | Any,
    *,
    clean_csv: str | Path,
    split_csv: str | Path,
    features_pt: str | Path,
    model_spec: Mapping[str, Any],
    task: str,
    label_columns: Sequence[str],
    seed: int,
    out_model: str | Path,
    out_predictions: str | Path,
    out_history: str | Path,
    resume_dir: str | Path | None = None,
    threads: int = 1,
    run: Any = None,
    init_file: str | Path | None = None,
) -> dict:
    """Train one model on one split and write model.pt, predictions.csv and history.csv.

    family: a Family (class, instance or name; see `as_family`).
    model_spec: {"name", "family", "featurizer", "featurizer_spec", "params"} (the rule's
      params.model); training-loop keys of params go to TrainConfig, the rest to the family.
    run: a tracking.JobRun (or anything with log_params / log_metrics / set_tags), or None.
    init_file: the checkpoint a model with `init:` starts from (biomol_dl.pretrain.apply_init).
    Returns a summary dict (best_epoch, best val metric, wall seconds, ...).
    Raises training.Preempted after SIGTERM (the script exits 143; rerunning resumes).
    """
    wall0 = time.perf_counter()
    run = run or _NoRun()
    torch.set_num_threads(max(1, int(threads)))
    seed, label_columns = int(seed), list(label_columns)
    cfg, model_params = training.TrainConfig.from_params(model_spec.get("params") or {})
    cfg = dataclasses.replace(cfg, seed=seed)
    family = as_family(family, model_spec.get("params") or {})
    data = _load_inputs(clean_csv, split_csv, features_pt, label_columns, task, model_params)

    device = training.select_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    head = regression_head(model_spec, task)
    training.set_seed(seed)  # weight initialization depends on the seed only
    built = _build(family, data, head)
    init_info = _start_from(family, built, model_spec, init_file)
    if init_info:
        run.log_params({"init": {**dict(model_spec["init"]), **init_info}})

    def loader(subset, shuffle: bool, loader_seed: int):
        return family.make_loader(
            subset, batch_size=cfg.batch_size, shuffle=shuffle, seed=loader_seed,
            pin_memory=device.type == "cuda",
        )  # fmt: skip

    _log_start(run, cfg, data, built, device, threads, model_spec, clean_csv)
    files = {"clean": clean_csv, "split": split_csv, "features": features_pt, "init": init_file}
    fingerprint = _resume_fingerprint(model_spec, model_params, label_columns, files)
    result = training.fit(
        built.model,
        lambda epoch: loader(built.subsets["train"], True, seed * 1000 + epoch),
        loader(built.subsets["val"], False, seed) if data.index["val"].size else None,
        task=task,
        config=cfg,
        y_train=data.y[data.index["train"]],
        parameters=built.trainable,
        resume_dir=resume_dir,
        fingerprint=fingerprint,
        log_metrics=run.log_metrics,
        keep_resume_state=True,  # until model.pt is written, see below
        lr_scales=(init_info or {}).get("lr_scales"),
        head=head,
    )

    fit_args = {"fingerprint": fingerprint, "resume_dir": resume_dir,
                "lr_scales": (init_info or {}).get("lr_scales"), "log_metrics": run.log_metrics}  # fmt: skip
    preds, sd, members = _predictions(family, data, built, model_spec, init_file, loader, cfg,
                                      result, seed, task, head, fit_args)  # fmt: skip
    write_predictions(out_predictions, data.ids, data.split, task, label_columns, data.y, preds,
                      sd=sd)  # fmt: skip
    _write_csv(pd.DataFrame(result.history), out_history)

    built.model.to("cpu")
    checkpoint = _checkpoint(family, built, data, result, cfg, model_spec, model_params, task,
                             label_columns, seed)  # fmt: skip
    checkpoint["init"] = init_info
    checkpoint["head"] = head
    if members:
        checkpoint["members"] = members["checkpoint"]
    training.atomic_save(checkpoint, out_model)
    for k in range(1, len((members or {}).get("checkpoint", [])) + 1):
        training.clear_resume_state(_member_dir(resume_dir, k))
    training.clear_resume_state(resume_dir)
    summary = _log_end(run, result, device, time.perf_counter() - wall0)
    return {**summary, "monitor": result.monitor, "device": result.device}


def _predictions(
    family, data, built, model_spec, init_file, loader, cfg, result, seed, task, head, fit_args
) -> tuple[np.ndarray, np.ndarray | None, dict | None]:
    """(predictions, sd or None, the within-split ensemble's members or None) for every row:
    the trained model's, with its head's sd or MC dropout's; an ensemble's mean and spread."""
    full = loader(built.dataset, False, seed)
    preds, sd = training.predict_distribution(
        built.model, full, task=task, target_scaler=result.target_scaler, device=result.device,
        precision=result.precision, head=head,
    )  # fmt: skip
    if sd is None:
        sd = _dropout_sd(built.model, full, task, model_spec, result, seed)
    members = _ensemble_members(family, data, built.dataset, model_spec, init_file, loader, cfg,
                                seed, task, preds, fit_args=fit_args)  # fmt: skip
    if members:
        preds, sd = members["preds"], members["sd"]
    return preds, sd, members


def member_seed(seed: int, k: int) -> int:
    """The initialization seed of member k of a within-split ensemble (member 0: the job's)."""
    return int(seed) + 1_000_003 * int(k)


def _member_dir(resume_dir, k: int):
    return None if resume_dir is None else Path(resume_dir) / f"member{k}"


def _ensemble_members(family, data: _Inputs, dataset, model_spec, init_file, loader, cfg, seed,
                      task, first_preds, fit_args) -> dict | None:  # fmt: skip
    """Members 1..K-1 of a within-split ensemble (`uncertainty: {estimate: ensemble, members:
    K}`), member 0 being the model already trained: the same split, the same batch order, only
    the initialization (and dropout) seed differs, so no member saw a test row. Returns the
    members' mean prediction, their sd (regression) and what model.pt keeps of members 1..K-1;
    None when the estimate is not ensemble."""
    entry = model_spec.get("uncertainty") or {}
    if entry.get("estimate") != "ensemble":
        return None
    n_members = int(entry.get("members", 5))
    train_sha = hashing.sha256_json([data.ids[i] for i in data.index["train"]])
    stack, saved = [first_preds], []
    log_metrics = fit_args["log_metrics"]
    for k in range(1, n_members):
        k_seed = member_seed(seed, k)
        training.set_seed(k_seed)
        built = _build(family, data, "point", dataset=dataset)
        _start_from(family, built, model_spec, init_file)
        result = training.fit(
            built.model,
            lambda epoch, b=built: loader(b.subsets["train"], True, seed * 1000 + epoch),
            loader(built.subsets["val"], False, seed) if data.index["val"].size else None,
            task=task,
            config=dataclasses.replace(cfg, seed=k_seed),
            y_train=data.y[data.index["train"]],
            parameters=built.trainable,
            resume_dir=_member_dir(fit_args["resume_dir"], k),
            fingerprint={**fit_args["fingerprint"], "member": k},
            log_metrics=lambda m, step=None, k=k: log_metrics(
                {f"member{k}_{name}": v for name, v in m.items()}, step=step
            ),
            keep_resume_state=True,
            lr_scales=fit_args["lr_scales"],
        )
        stack.append(training.predict(
            built.model, loader(built.dataset, False, seed), task=task,
            target_scaler=result.target_scaler, device=result.device, precision=result.precision,
        ))  # fmt: skip
        built.model.to("cpu")
        saved.append({"seed": k_seed, "best_epoch": result.best_epoch,
                      "best_val_metric": result.best_metric, "train_ids_sha256": train_sha,
                      "state_dict": training.training_state(built.model, built.trainable)})  # fmt: skip
        log.info("ensemble member %d/%d (seed %d): best epoch %d, %s %s", k + 1, n_members,
                 k_seed, result.best_epoch, result.monitor, result.best_metric)  # fmt: skip
    stack = np.stack(stack)
    sd = stack.std(axis=0, ddof=1) if task == "regression" else None
    log.info("ensemble of %d members on one split%s", n_members,
             f": sd median {np.median(sd):.4g}" if sd is not None else "")  # fmt: skip
    return {"preds": stack.mean(axis=0), "sd": sd, "checkpoint": saved}


def regression_head(model_spec: Mapping[str, Any], task: str) -> str:
    """The network head the model's `uncertainty.estimate` asks for (training.HEADS): mve or
    evidential (regression only; the config refuses them elsewhere), else point."""
    estimate = (model_spec.get("uncertainty") or {}).get("estimate")
    if estimate not in ("mve", "evidential"):
        return "point"
    if task != "regression":
        raise ValueError(f"uncertainty estimate {estimate!r} is for regression, not {task}")
    return estimate


def _dropout_sd(model, loader, task: str, model_spec: Mapping[str, Any], result, seed: int):
    """[N, T] sd across MC-dropout passes where the model's `uncertainty.estimate` is dropout
    (regression; classification is calibrated from its probabilities), else None."""
    entry = model_spec.get("uncertainty") or {}
    if entry.get("estimate") != "dropout":
        return None
    if task != "regression":
        log.info(
            "uncertainty estimate 'dropout' is for regression; a %s task does not use it", task
        )
        return None
    draws = training.predict_mc_dropout(
        model, loader, task=task, passes=int(entry.get("passes", 20)), seed=seed,
        target_scaler=result.target_scaler,
        device=result.device, precision=result.precision,
    )  # fmt: skip
    log.info("MC dropout: sd over %d passes (median %.4g)", len(draws), np.median(draws.std(0)))
    return draws.std(axis=0)


@dataclasses.dataclass
class _Inputs:
    """One job's clean rows: ids, labels y [N, T], split names and their row indices, features."""

    ids: list
    y: np.ndarray
    split: np.ndarray
    index: dict[str, np.ndarray]
    features: Any
    n_outputs: int


@dataclasses.dataclass
class _Built:
    """What the family built: the dataset, its split subsets, the model, what trains."""

    dataset: Any
    subsets: dict[str, Any]
    model: Any
    trainable: list | None
    n_params: int
    n_trainable: int


def _load_inputs(clean_csv, split_csv, features_pt, label_columns, task, model_params) -> _Inputs:
    ids, y = read_labels(clean_csv, label_columns, task)
    split = read_split(split_csv, ids)
    features = torch.load(features_pt, map_location="cpu", weights_only=True)
    check_feature_ids(features, ids, features_pt)
    n_outputs = _n_outputs(task, y, model_params)
    index = {name: np.flatnonzero(split == name) for name in SPLITS}
    if index["train"].size == 0:
        raise ValueError(f"{split_csv}: no train rows")
    return _Inputs(ids, y, split, index, features, n_outputs)


def _build(family: Family, data: _Inputs, head: str = "point", dataset=None) -> _Built:
    """Dataset, subsets and model (in this order: the seed was just set; a variance head has
    training.HEADS[head] outputs per task), input statistics fitted on the train rows, and the
    parameters the optimizer updates. `dataset`: one built already (an ensemble's members)."""
    if dataset is None:
        dataset = family.build_datasets(data.features, data.y)
    if len(dataset) != len(data.ids):
        raise ValueError(
            f"{family.name}: build_datasets returned {len(dataset)} examples "
            f"for {len(data.ids)} clean rows"
        )
    subsets = {
        name: torch.utils.data.Subset(dataset, idx.tolist()) for name, idx in data.index.items()
    }
    model = family.build_model(data.features, training.head_outputs(head, data.n_outputs))
    family.prepare_model(model, subsets["train"])
    trainable = family.trainable_parameters(model)
    trainable = None if trainable is None else list(trainable)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = (
        sum(p.numel() for p in trainable)
        if trainable is not None
        else sum(p.numel() for p in model.parameters() if p.requires_grad)
    )
    return _Built(dataset, subsets, model, trainable, n_params, n_trainable)


def _resume_fingerprint(model_spec, model_params, label_columns, files) -> dict:
    """What must match for a resume state to be used: the model, its params, the labels and
    the input files (an unset `init` file is None)."""
    return {
        "model": {k: model_spec.get(k) for k in ("family", "featurizer", "featurizer_spec")},
        "model_params": model_params,
        "label_columns": label_columns,
        "inputs": {k: _file_fingerprint(v) if v else None for k, v in files.items()},
    }


def _start_from(family: Family, built: _Built, model_spec, init_file) -> dict | None:
    """Load the checkpoint of a model with `init:` into the built model (biomol_dl.pretrain)."""
    init = model_spec.get("init") or {}
    if not init:
        return None
    if not init_file:
        raise ValueError(f"{model_spec.get('name')}: `init` is set but no checkpoint file is given")
    from biomol_dl.pretrain import apply_init

    info = apply_init(family, built.model, init, init_file, model_spec)
    if built.trainable is None:
        built.n_trainable = sum(p.numel() for p in built.model.parameters() if p.requires_grad)
    return info


def _log_start(run, cfg, data: _Inputs, built: _Built, device, threads, model_spec, clean_csv):
    n = {name: int(idx.size) for name, idx in data.index.items()}
    run.log_params(
        {
            "train": dataclasses.asdict(cfg),
            "data": {"n_train": n["train"], "n_val": n["val"], "n_test": n["test"],
                     "n_outputs": data.n_outputs},
            "runtime": {"device": str(device), "threads": int(threads)},
        }
    )  # fmt: skip
    run.log_metrics({"n_parameters": built.n_params, "n_trainable_parameters": built.n_trainable})
    log.info(
        "%s (%s) on %s: %d train / %d val / %d test rows, %d parameters (%d trainable)",
        model_spec.get("name"), model_spec.get("family"), Path(clean_csv).parent.parent.name,
        n["train"], n["val"], n["test"], built.n_params, built.n_trainable,
    )  # fmt: skip


def _checkpoint(family, built: _Built, data: _Inputs, result, cfg, model_spec, model_params,
                task, label_columns, seed) -> dict:  # fmt: skip
    """model.pt's dict (see the module docstring)."""
    return {
        "format": MODEL_FORMAT,
        "family": model_spec.get("family"),
        "model_name": model_spec.get("name"),
        "hyperparameters": model_params,
        "train_config": dataclasses.asdict(cfg),
        "featurizer": model_spec.get("featurizer"),
        "featurizer_spec": dict(model_spec.get("featurizer_spec") or {}),
        "task": task,
        "label_columns": label_columns,
        "n_outputs": data.n_outputs,
        "target_scaler": result.target_scaler.to_dict(),
        "feature_meta": family.feature_meta(data.features, len(data.ids)),
        "state_dict": training.training_state(built.model, built.trainable),
        "partial_state": built.trainable is not None,
        "extra": family.extra_checkpoint(built.model),
        "best_epoch": result.best_epoch,
        "best_val_metric": result.best_metric,
        "monitor": result.monitor,
        "seed": seed,
        "versions": {"torch": str(torch.__version__), "python": sys.version.split()[0]},
    }


def _log_end(run, result, device, wall: float) -> dict:
    """The job's summary metrics and tags, logged; returns the summary."""
    summary = {
        "best_epoch": result.best_epoch,
        f"best_{result.monitor}": result.best_metric,
        "epochs_run": len(result.history),
        "wall_seconds": wall,
        "train_seconds": result.train_seconds,
        # None (not logged) when a resumed run had no epoch left to time
        "examples_per_second": (
            result.train_examples_seen / result.train_seconds if result.train_seconds else None
        ),
        "peak_rss_mb": peak_memory_mb(),
    }
    if device.type == "cuda":
        summary["peak_cuda_mb"] = peak_memory_mb(device)
    run.log_metrics(summary)
    run.set_tags(
        {
            "device": result.device,
            "precision": result.precision,
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
            "monitor": result.monitor,
        }
    )
    log.info(
        "done: best epoch %d (%s %.4f), %.1f s wall, %s examples/s, peak RSS %.0f MB",
        result.best_epoch, result.monitor, result.best_metric, wall,
        f"{summary['examples_per_second'] or 0:.0f}", summary["peak_rss_mb"],
    )  # fmt: skip
    return summary


# ----------------------------------------------------------------------------- inputs


def read_labels(clean_csv: str | Path, label_columns: Sequence[str], task: str):
    """(ids, y float32 [N, T]) from the clean table; empty cells are NaN (missing labels).

    Ids are strings exactly as written (io.read_table: "NA", "nan", "007" stay themselves).
    """
    table = read_table(clean_csv)
    for column in ("id", *label_columns):
        if column not in table.columns:
            raise ValueError(f"{clean_csv}: no column {column!r} (columns: {list(table.columns)})")
    if task == "multiclass" and len(label_columns) != 1:
        raise ValueError(f"multiclass takes one label column, got {list(label_columns)}")
    y = np.full((len(table), len(label_columns)), np.nan, dtype=np.float32)
    for j, column in enumerate(label_columns):
        cells = table[column]
        values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
        for i in np.flatnonzero(np.isnan(values) & cells.notna().to_numpy()):
            raise ValueError(
                f"{clean_csv}: line {i + 2}, column {column!r}: label {cells.iloc[i]!r} is not "
                "a number"
            )
        for i in np.flatnonzero(np.isinf(values)):
            raise ValueError(
                f"{clean_csv}: line {i + 2}, column {column!r}: label {cells.iloc[i]!r} is not "
                "finite"
            )
        y[:, j] = values
    ids = table["id"].tolist()
    duplicated = table["id"].duplicated()
    if duplicated.any():
        i = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise ValueError(f"{clean_csv}: line {i + 2}, column 'id': duplicate id {ids[i]!r}")
    return ids, y


def read_split(split_csv: str | Path, ids: Sequence[str]) -> np.ndarray:
    """The split name of every clean id, in clean-table order (object array)."""
    table = read_table(split_csv, strings=("split",))
    for column in ("id", "split"):
        if column not in table.columns:
            raise ValueError(f"{split_csv}: no column {column!r}")
    where: dict[str, str] = {}
    for i, (id_, name) in enumerate(zip(table["id"], table["split"], strict=True)):
        if name not in SPLITS:
            raise ValueError(
                f"{split_csv}: line {i + 2}, column 'split': {name!r} is not one of {SPLITS}"
            )
        if id_ in where:
            raise ValueError(f"{split_csv}: line {i + 2}, column 'id': {id_!r} appears twice")
        where[id_] = name
    missing = [i for i in ids if i not in where]
    if missing:
        raise ValueError(
            f"{split_csv}: {len(missing)} clean ids have no split, e.g. {missing[0]!r}"
        )
    extra = set(where) - set(ids)
    if extra:
        raise ValueError(
            f"{split_csv}: {len(extra)} ids are not in the clean table, e.g. {sorted(extra)[0]!r}"
        )
    return np.asarray([where[i] for i in ids], dtype=object)


def check_feature_ids(features: Mapping[str, Any], ids: Sequence[str], path: Any) -> None:
    """The features file must hold the clean rows, in clean-table order."""
    if not isinstance(features, Mapping) or "ids" not in features:
        raise ValueError(f"{path}: not a features dict with an 'ids' entry")
    feature_ids = [str(i) for i in features["ids"]]
    if len(feature_ids) != len(ids):
        raise ValueError(f"{path}: {len(feature_ids)} examples for {len(ids)} clean rows")
    for i, (a, b) in enumerate(zip(feature_ids, ids, strict=True)):
        if a != b:
            raise ValueError(
                f"{path}: example {i} has id {a!r} but clean row {i + 1} is {b!r} "
                "(re-run featurize for this clean table)"
            )


def _n_outputs(task: str, y: np.ndarray, params: Mapping[str, Any]) -> int:
    if task != "multiclass":
        return int(y.shape[1])
    finite = y[np.isfinite(y)]
    found = int(finite.max()) + 1 if finite.size else 0
    n = int(params.get("n_classes") or found)
    if n < found or n < 2:
        raise ValueError(f"multiclass: labels go up to {found - 1} but n_classes is {n}")
    return n


def _file_fingerprint(path: str | Path) -> str:
    return hashing.fingerprint(path, _HASH_LIMIT)


# ----------------------------------------------------------------------------- outputs


def long_predictions(
    task: str, label_columns: Sequence[str], y: np.ndarray | None, preds: np.ndarray
) -> pd.DataFrame:
    """task, y_true, y_pred (+ p_k for multiclass) per example and task, grouped by task."""
    n = preds.shape[0]
    y = np.full((n, len(label_columns)), np.nan) if y is None else np.asarray(y, dtype=np.float64)
    if task == "multiclass":
        frame = pd.DataFrame(
            {"task": label_columns[0], "y_true": y[:, 0], "y_pred": preds.argmax(axis=1)}
        )
        for k in range(preds.shape[1]):
            frame[f"p_{k}"] = preds[:, k]
        return frame
    if preds.shape[1] != len(label_columns):
        raise ValueError(f"{preds.shape[1]} predicted columns for {len(label_columns)} labels")
    return pd.DataFrame(
        {
            "task": np.repeat(np.asarray(label_columns, dtype=object), n),
            "y_true": y.T.reshape(-1),
            "y_pred": preds.T.reshape(-1),
        }
    )


def write_predictions(
    out_csv: str | Path,
    ids: Sequence[str],
    split: np.ndarray,
    task: str,
    label_columns: Sequence[str],
    y: np.ndarray,
    preds: np.ndarray,
    sd: np.ndarray | None = None,
) -> None:
    """predictions.csv in the long format every training rule writes (any model family).

    preds: [N, T] values or probabilities, or [N, K] class probabilities for multiclass.
    sd: [N, T] the model's own sd of each regression prediction, where it has one (column y_sd).
    """
    long = long_predictions(task, label_columns, y, preds)
    if sd is not None:
        if task == "multiclass" or np.shape(sd) != np.shape(preds):
            raise ValueError(f"sd of shape {np.shape(sd)} for predictions {np.shape(preds)}")
        long["y_sd"] = np.asarray(sd, dtype=np.float64).T.reshape(-1)
    n_tasks = preds.shape[1] if task != "multiclass" else 1
    long.insert(0, "split", np.tile(split, n_tasks))
    long.insert(0, "id", np.tile(np.asarray(ids, dtype=object), n_tasks))
    _write_csv(long, out_csv)


def _write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def feature_meta(features: Mapping[str, Any], n_examples: int) -> dict:
    """The features dict without its per-example data (see the module docstring).

    Per-example: a tensor whose first dimension is n_examples (-> empty tensor, same trailing
    shape and dtype), and a list of n_examples ids, tensors, lists or dicts (-> []). Everything
    else (vocabularies, sizes, settings) is kept as is.
    """
    meta: dict[str, Any] = {}
    for key, value in features.items():
        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == n_examples:
            meta[key] = value.new_empty((0, *value.shape[1:]))
        elif (
            isinstance(value, list | tuple)
            and len(value) == n_examples
            and (
                key == "ids"
                or any(isinstance(v, torch.Tensor | list | tuple | dict) for v in value[:1])
            )
        ):
            meta[key] = []
        else:
            meta[key] = value
    return meta


# ----------------------------------------------------------------------------- reuse


def as_family(family: Any, params: Mapping[str, Any] | None = None) -> Family:
    """A Family instance with these params from: a Family instance (kept), a Family class, a
    family name, a family module (biomol_dl.models.<name>), or any object with the functions
    build_datasets(features, y, params), make_loader(subset, *, ..., params) and
    build_model(features, n_outputs, params) (and optional hooks of the same shape)."""
    if isinstance(family, Family):
        return family
    if isinstance(family, str):
        return get_family(family)(params)
    if isinstance(family, type) and issubclass(family, Family):
        return family(params)
    if isinstance(family, Functions):
        return family.family(params)
    if isinstance(family, ModuleType):
        module = family.__name__
        for cls in _registered():
            if cls.__module__ == module:
                return cls(params)
    return _Functions(family, params)


def _registered() -> list[type[Family]]:
    from biomol_dl.models import families

    return list(families().values())


class _Functions(Family):
    """A family given as functions of (..., params): each method calls the object's function."""

    def __init__(self, functions: Any, params: Mapping[str, Any] | None):
        self.functions = functions
        self.name = str(getattr(functions, "__name__", "family")).rsplit(".", 1)[-1]
        self.raw = dict(params or {})
        _, self.model_params = training.TrainConfig.from_params(self.raw)
        self.params, self.loop = None, {}  # type: ignore[assignment]

    def _hook(self, name: str):
        return getattr(self.functions, name, None)

    def build_datasets(self, features, y):
        return self.functions.build_datasets(features, y, self.model_params)

    def make_loader(self, subset, *, batch_size, shuffle, seed, pin_memory=False):
        return self.functions.make_loader(subset, batch_size=batch_size, shuffle=shuffle,
                                          seed=seed, params={**self.model_params,
                                                             "pin_memory": pin_memory})  # fmt: skip

    def build_model(self, features, n_outputs):
        return self.functions.build_model(features, n_outputs, self.model_params)

    def prepare_model(self, model, train_subset):
        if self._hook("prepare_model"):
            self.functions.prepare_model(model, train_subset, self.model_params)

    def trainable_parameters(self, model):
        hook = self._hook("trainable_parameters")
        return hook(model) if hook else None

    def extra_checkpoint(self, model):
        hook = self._hook("extra_checkpoint")
        return hook(model, self.model_params) if hook else {}

    def check_checkpoint(self, model, checkpoint):
        if self._hook("check_checkpoint"):
            self.functions.check_checkpoint(model, checkpoint)

    def feature_meta(self, features, n_examples):
        hook = self._hook("feature_meta")
        return hook(features, n_examples) if hook else feature_meta(features, n_examples)


def load_trained(
    model_pt: str | Path, family: Any, features: Mapping[str, Any] | None = None
) -> tuple[Any, dict]:
    """(model in eval mode on CPU, checkpoint dict) from a model.pt that run_training wrote.

    family: as for `as_family` (built with the checkpoint's hyperparameters).
    features: a features dict to build the model from; default: the checkpoint's feature_meta.
    """
    ckpt = torch.load(model_pt, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT:
        raise ValueError(f"{model_pt}: not a biomol_dl model checkpoint ({MODEL_FORMAT})")
    family = as_family(family, dict(ckpt["hyperparameters"]))
    if ckpt.get("family") and ckpt["family"] != family.name:
        raise ValueError(f"{model_pt}: a {ckpt['family']!r} model, not {family.name!r}")
    head = ckpt.get("head") or "point"
    model = family.build_model(
        features if features is not None else ckpt["feature_meta"],
        training.head_outputs(head, int(ckpt["n_outputs"])),
    )
    family.check_checkpoint(model, ckpt)
    result = model.load_state_dict(ckpt["state_dict"], strict=not ckpt["partial_state"])
    if ckpt["partial_state"] and result.unexpected_keys:
        raise ValueError(f"{model_pt}: state keys the model lacks: {result.unexpected_keys[:5]}")
    model.eval()
    return model, ckpt


def predict_inputs(
    model_pt: str | Path, family: Any, inputs: Sequence[str], threads: int = 1
) -> pd.DataFrame:
    """Predict new inputs (SMILES or sequences, already validated/canonical) with a model.pt.

    Featurizes with the checkpoint's featurizer_spec and returns a pandas DataFrame in long
    format: input, task, y_pred (+ p_0..p_{K-1} for multiclass), like predictions.csv; a
    within-split ensemble's y_pred is its members' mean. Regression with a model sd of its own
    (a variance head, a within-split ensemble's spread) adds y_model_sd.
    """
    from biomol_dl.features import build_featurizer

    torch.set_num_threads(max(1, int(threads)))
    model, ckpt = load_trained(model_pt, family)
    family = as_family(family, dict(ckpt["hyperparameters"]))
    inputs = list(inputs)
    features = build_featurizer(ckpt["featurizer_spec"]).featurize_table(inputs, threads)
    task, label_columns = ckpt["task"], list(ckpt["label_columns"])
    y = np.full((len(inputs), len(label_columns)), np.nan, dtype=np.float32)
    dataset = family.build_datasets(features, y)
    loader = family.make_loader(
        dataset, batch_size=int(ckpt["train_config"]["batch_size"]), shuffle=False, seed=0
    )

    def predict_with(state: Mapping | None) -> tuple[np.ndarray, np.ndarray | None]:
        if state is not None:
            model.load_state_dict(state, strict=not ckpt["partial_state"])
        return training.predict_distribution(
            model,
            loader,
            task=task,
            target_scaler=training.TargetScaler.from_dict(ckpt["target_scaler"]),
            device="cpu",
            head=ckpt.get("head") or "point",
        )

    # a within-split ensemble predicts the mean of its members (model.pt "members")
    members = [None] + [m["state_dict"] for m in ckpt.get("members") or ()]
    outputs = [predict_with(state) for state in members]
    preds = np.mean([p for p, _ in outputs], axis=0)
    sd = outputs[0][1]  # a variance head's sd; a within-split ensemble's spread
    if len(outputs) > 1 and task == "regression":
        sd = np.std([p for p, _ in outputs], axis=0, ddof=1)
    frame = long_predictions(task, label_columns, None, preds).drop(columns="y_true")
    if sd is not None:
        frame["y_model_sd"] = np.asarray(sd, dtype=np.float64).T.reshape(-1)
    n_tasks = 1 if task == "multiclass" else len(label_columns)
    frame.insert(0, "input", np.tile(np.asarray(inputs, dtype=object), n_tasks))
    return frame


# ----------------------------------------------------------------------------- rule scripts


def main(job: Job) -> None:
    """The whole body of scripts/train.py, the rule script of every `train_<family>` rule.

    Builds the job's family from its params (`params.family`, `params.model`), trains inside one
    tracking run, logs the family's `report` and turns preemption into exit status 143 with a
    one-line log message (rerunning the rule resumes from the saved state).
    """
    from biomol_dl import logutil, tracking

    logutil.configure(job.log_file)
    rule_log = logutil.get(job.rule)
    spec = dict(job.params["model"])
    if job.input.get("tuned"):  # <name>__tuned: the search's best parameters
        from biomol_dl.search import apply_tuned

        spec = apply_tuned(spec, job.input["tuned"])
    family = get_family(str(job.params["family"]))(spec.get("params") or {})
    # the job's own time limit, against which a family's cost estimate is checked, rather than
    # the family's default
    family.job_runtime = job.runtime
    try:
        # the run's params are the model as it trains (a tuned model's, the study's best)
        with tracking.job_run(job, params={**dict(job.params), "model": spec}) as run:
            try:
                family.train(
                    clean_csv=job.input["clean"],
                    split_csv=job.input["split"],
                    features_pt=job.input["features"],
                    model_spec=spec,
                    task=str(job.params["task"]),
                    label_columns=list(job.params["label_columns"]),
                    seed=int(job.wildcards["seed"]),
                    out_model=job.output["model"],
                    out_predictions=job.output["predictions"],
                    out_history=job.output["history"],
                    resume_dir=job.params.get("resume_dir"),
                    threads=job.threads,
                    run=run,
                    **({"init_file": job.input["init"]} if job.input.get("init") else {}),
                )
            except training.Preempted as stop:
                run.set_tags({"preempted": str(stop)})
                raise
            params, metrics = family.report(job.output["model"])
            if params:
                run.log_params(params)
            if metrics:
                run.log_metrics(metrics)
    except training.Preempted as stop:
        rule_log.warning(
            "%s; exiting with status %d so the job can be resubmitted", stop, stop.code
        )
        sys.exit(stop.code)
    except Exception as err:
        rule_log.error("%s failed: %s", job.rule, err)
        raise
