"""Hyperparameter search: Optuna studies whose trials are Snakemake jobs.

For config authors and for workflow/rules/search.smk. A model entry with `search:` gets one
Optuna study per dataset that trains it, and the model `<name>__tuned`, which is the model with
the study's best parameters, trained on every seed of the dataset like any other model:

    models:
      dmpnn:
        family: gnn
        featurizer: graph
        params: {epochs: 30, patience: 8}
        search:
          n_trials: 30
          sampler: tpe                     # tpe (default) | random | grid
          pruner: median                   # median (default) | successive_halving | none
          seeds: [0]                       # objective: mean over these seeds (default: first)
          space:
            lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
            hidden: {type: int, low: 64, high: 512, step: 64}
            depth: {type: int, low: 2, high: 6}
            dropout: {type: float, low: 0.0, high: 0.4}
            pooling: {type: categorical, choices: [mean, sum, norm]}

The objective is the dataset's primary metric (`report.primary_metric` of its task, or
`search.metric`) on the VALIDATION rows of the objective seeds' splits, averaged over the seeds;
the test rows are never read. Every distribution is checked against the family's params when the
config loads: the key must be one of its params (or a training-loop key of a torch family), and
both ends of a range and every choice must parse into the family's Params dataclass together
with the model's own params.

Trials as jobs. Rule `search_trial` has one job per trial slot (`results/<dataset>/search/
<model>/trials/<slot>.json`, slot 0 .. n_trials - 1), so `--cores N` runs N trials at once and
the SLURM profile submits each as its own job. All slots share one study in Optuna storage: a
journal file on the shared filesystem by default (`results/<dataset>/search/<model>/
study.journal`, JournalFileBackend with JournalFileOpenLock, which works on NFS) or an RDB named
by URL (`storage: postgresql://...`). A slot job asks the study for a point (ask / tell; TPE with
`constant_liar`, so parallel trials see each other's pending points and do not propose the same
one; each slot's sampler has its own seed), trains with the family's usual `train`, reports the
per-epoch validation value to the pruner through the training loop's `log_metrics` callback, and
tells the result. A study is named by a hash of everything that defines it (space, sampler,
pruner, objective, the model's own params, the dataset), so changing any of them starts a new
study and re-runs every slot; `n_trials` is not part of it: raising it adds only the new slots.

Accounting. Each Optuna trial carries the user attributes `slot`, `attempt`, `host`, `pid` and
`slurm_job_id`. A slot counts exactly one trial: its COMPLETE or PRUNED one. When a slot job
starts it looks up its slot's earlier trials:
- one is COMPLETE or PRUNED (the job was killed after `tell`): its record is written again,
  nothing is trained;
- one is still RUNNING: its process was killed (SIGKILL, the OOM killer, a lost node); it is told
  FAIL (`failed_reason`) and the slot is retried with a new trial, unless it was preempted
  (SIGTERM: the training loop saved its resume state and set `preempted`), in which case the same
  trial resumes from that state;
- a trial that raises is told FAIL with its error and the slot is retried in the same job;
after `retries` failed attempts the slot's record says `fail` and the study goes on without it.
So a killed trial is recorded failed and never counted, and a re-run adds no trials. This
relies on one workflow owning a study at a time (Snakemake locks its working directory): two
working directories pointing at the same RDB storage with the same study would take each
other's running trials for killed ones. Resume
state lives under `resume_dir`/search/, outside every rule's outputs; the trial's model files
are scratch and removed once it ends. Rule `search_best` reads every slot's record and the
study and writes best.json (best params, value, trials complete / pruned / failed) and trials.csv
(for the report's optimization history and parameter importances).

This module imports no optuna, torch or RDKit at module level: the config loader calls
`check_config` / `expand_tuned`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from biomol_dl.logutil import get

log = get(__name__)

TUNED_SUFFIX = "__tuned"
DISTRIBUTIONS = ("int", "float", "categorical")
RANGE_KEYS = {"type", "low", "high", "step", "log"}
CATEGORICAL_KEYS = {"type", "choices"}
# What a slot's record says of its counted trial.
STATES = ("complete", "pruned", "fail")


def _error(path: str, message: str):
    from biomol_dl.config import ConfigError

    return ConfigError(f"invalid config at '{path}': {message}")


# ---------------------------------------------------------------------------------- config


def check_model_search(name: str, spec: Mapping[str, Any]) -> None:
    """A model's `search:` entry: every distribution's keys and values, and each end of a range
    and each choice parsed into the family's params with the model's own params."""
    from biomol_dl.config import check_keys, check_value, model_family

    search = spec["search"]
    path = f"models.{name}.search"
    if spec.get("grid"):
        raise _error(path, "a model takes `grid` or `search`, not both")
    family = model_family(name, spec)
    base = dict(spec.get("params") or {})
    valid = family.param_specs(search["space"])
    check_keys(f"{path}.space", search["space"], valid)
    for key, dist in search["space"].items():
        where = f"{path}.space.{key}"
        kind = dist["type"]
        check_keys(where, dist, CATEGORICAL_KEYS if kind == "categorical" else RANGE_KEYS)
        if kind == "categorical":
            if "choices" not in dist:
                raise _error(where, "a categorical distribution needs `choices`")
            values = list(dist["choices"])
        else:
            for end in ("low", "high"):
                if end not in dist:
                    article = "an" if kind == "int" else "a"
                    raise _error(where, f"{article} {kind} distribution needs `low` and `high`")
                check_value(f"{where}.{end}", dist[end], kind)
            low, high = float(dist["low"]), float(dist["high"])
            if not low < high:
                raise _error(where, f"low ({dist['low']}) must be below high ({dist['high']})")
            if dist.get("log") and low <= 0:
                raise _error(f"{where}.low", f"a log distribution needs low > 0, got {low:g}")
            if dist.get("log") and dist.get("step") is not None:
                raise _error(where, "give `step` or `log: true`, not both")
            if dist.get("step") is not None:
                check_value(f"{where}.step", dist["step"], kind)
                if not float(dist["step"]) > 0:
                    raise _error(f"{where}.step", f"must be > 0, got {dist['step']}")
            values = [dist["low"], dist["high"]]
            if kind == "float":
                values = [float(v) for v in values]
        for i, value in enumerate(values):
            at = f"{where}.choices.{i}" if kind == "categorical" else where
            check_value(at, value, valid[key])
            family.split_params({**base, key: value}, at)
    if search["sampler"] == "grid":
        not_grid = [k for k, d in search["space"].items() if d["type"] != "categorical"]
        if not_grid:
            raise _error(
                f"{path}.space.{not_grid[0]}",
                "the grid sampler takes categorical distributions only",
            )
        size = math.prod(len(d["choices"]) for d in search["space"].values())
        if search["n_trials"] > size:
            raise _error(
                f"{path}.n_trials",
                f"{search['n_trials']} trials but the grid has {size} points",
            )


def check_dataset_search(config: Mapping[str, Any], dataset: str, model: str) -> None:
    """The objective fits the dataset: its metric is one of the task's metrics."""
    from biomol_dl import metrics

    search = config["models"][model]["search"]
    task = config["datasets"][dataset]["task"]
    metric = objective_metric(config, dataset, model)
    valid = metrics.REGRESSION if task == "regression" else metrics.CLASSIFICATION
    if metric not in valid:
        where = f"models.{model}.search.metric" if search.get("metric") else "report.primary_metric"
        raise _error(
            where,
            f"{metric!r} is no metric of dataset {dataset!r} (task {task}); valid: "
            f"{', '.join(valid)}",
        )


def expand_tuned(models: dict[str, dict]) -> dict[str, dict]:
    """Add `<name>__tuned` after each model with `search:`: the same entry without `search`,
    with `tuned_from: <name>`; its parameters come from the study's best.json at run time."""
    out: dict[str, dict] = {}
    for name, spec in models.items():
        out[name] = spec
        if spec.get("search"):
            tuned = {k: copy.deepcopy(v) for k, v in spec.items() if k != "search"}
            tuned["tuned_from"] = name
            out[name + TUNED_SUFFIX] = tuned
    return out


def studies(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(dataset, model) of every study: each model with `search:` on each dataset training it
    or its `<name>__tuned` (a dataset may list the tuned model alone)."""
    from biomol_dl.config import dataset_models

    found: dict[tuple[str, str], None] = {}
    for dataset in config["datasets"]:
        for model in dataset_models(config, dataset):
            spec = config["models"][model]
            source = model if spec.get("search") else spec.get("tuned_from")
            if source:
                found[(dataset, source)] = None
    return list(found)


def objective_metric(config: Mapping[str, Any], dataset: str, model: str) -> str:
    from biomol_dl.metrics import DEFAULT_METRIC

    search = config["models"][model]["search"]
    task = config["datasets"][dataset]["task"]
    primary = {**DEFAULT_METRIC, **((config.get("report") or {}).get("primary_metric") or {})}
    return search.get("metric") or primary[task]


def objective_seeds(config: Mapping[str, Any], dataset: str, model: str) -> list[int]:
    seeds = config["models"][model]["search"].get("seeds")
    return [int(s) for s in seeds] if seeds else [int(config["datasets"][dataset]["seeds"][0])]


def study_spec(config: Mapping[str, Any], dataset: str, model: str) -> dict[str, Any]:
    """What defines a study (a trial job's params): everything but n_trials and retries, plus
    its name, storage and objective. The model spec is the one train rules see."""
    from biomol_dl import hashing
    from biomol_dl.metrics import LOWER_IS_BETTER
    from biomol_dl.rule_params import train_model_spec

    search = config["models"][model]["search"]
    ds = config["datasets"][dataset]
    metric = objective_metric(config, dataset, model)
    identity = {
        "dataset": dataset,
        "model": train_model_spec(config, model),
        "task": ds["task"],
        "label_columns": list(ds["label_columns"]),
        "space": search["space"],
        "sampler": search["sampler"],
        "pruner": search["pruner"],
        "startup_trials": search["startup_trials"],
        "warmup_epochs": search["warmup_epochs"],
        "seed": search["seed"],
        "metric": metric,
        "direction": "minimize" if metric in LOWER_IS_BETTER else "maximize",
        "seeds": objective_seeds(config, dataset, model),
    }
    digest = hashing.sha256_json(identity)[:12]
    storage = search.get("storage") or f"results/{dataset}/search/{model}/study.journal"
    return {**identity, "study_name": f"{dataset}/{model}/{digest}", "storage": storage}


def trial_inputs(config: Mapping[str, Any], dataset: str, model: str) -> dict[str, Any]:
    """A trial job's inputs: the clean table, the objective seeds' splits, the features."""
    featurizer = config["models"][model]["featurizer"]
    return {
        "clean": f"results/{dataset}/validate/clean.csv",
        "splits": [
            f"results/{dataset}/split/seed{s}.csv" for s in objective_seeds(config, dataset, model)
        ],
        "features": f"results/{dataset}/featurize/{featurizer}.pt",
    }


def trial_path(dataset: str, model: str, slot: int | str) -> str:
    return f"results/{dataset}/search/{model}/trials/{slot}.json"


def best_path(dataset: str, model: str) -> str:
    return f"results/{dataset}/search/{model}/best.json"


def trial_paths(config: Mapping[str, Any], dataset: str, model: str) -> list[str]:
    n = int(config["models"][model]["search"]["n_trials"])
    return [trial_path(dataset, model, i) for i in range(n)]


def tuned_input(config: Mapping[str, Any], dataset: str, model: str) -> str | None:
    """best.json of the study a `<name>__tuned` model takes its parameters from, else None."""
    source = config["models"][model].get("tuned_from")
    return best_path(dataset, source) if source else None


def describe_tuned(config: Mapping[str, Any], dataset: str, model: str) -> str | None:
    """One line for the report: what search a tuned model's parameters came from."""
    source = config["models"][model].get("tuned_from")
    if not source:
        return None
    search = config["models"][source]["search"]
    pruner = "no pruning" if search["pruner"] == "none" else f"{search['pruner']} pruning"
    seeds = ", ".join(str(s) for s in objective_seeds(config, dataset, source))
    return (
        f"tuned: {search['n_trials']} trials of {search['sampler']} search ({pruner}) over "
        f"{', '.join(search['space'])}; objective val {objective_metric(config, dataset, source)}"
        f" on seed {seeds}"
    )


def apply_tuned(model_spec: Mapping[str, Any], best_json: str | Path) -> dict[str, Any]:
    """The model spec of a `<name>__tuned` model with the study's best parameters."""
    best = json.loads(Path(best_json).read_text())
    if best.get("best_params") is None:
        raise ValueError(f"{best_json}: the study has no completed trial to take parameters from")
    spec = dict(model_spec)
    spec["params"] = {**(spec.get("params") or {}), **best["best_params"]}
    return spec


# ---------------------------------------------------------------------------------- optuna


def open_study(spec: Mapping[str, Any], sampler_seed: int | None = None):
    """The study (created on first use) with this slot's sampler and the study's pruner."""
    import optuna

    storage: Any = spec["storage"]
    if "://" not in storage:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(storage, lock_obj=JournalFileOpenLock(storage)))
    return optuna.create_study(
        storage=storage,
        study_name=spec["study_name"],
        direction=spec["direction"],
        sampler=_sampler(spec, sampler_seed),
        pruner=_pruner(spec),
        load_if_exists=True,
    )


def _sampler(spec: Mapping[str, Any], seed: int | None):
    import optuna

    if spec["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec["sampler"] == "grid":
        space = {k: [_hashable(c) for c in d["choices"]] for k, d in spec["space"].items()}
        # one grid order in every process: a trial's grid_id indexes the shuffled grid
        return _slot_grid_sampler(space, seed=int(spec["seed"]))
    return optuna.samplers.TPESampler(
        seed=seed, constant_liar=True, n_startup_trials=int(spec["startup_trials"])
    )


def _slot_grid_sampler(space: dict[str, list], seed: int):
    """Optuna's GridSampler without its stop at the last grid point.

    GridSampler.after_trial calls `study.stop()` once the grid is exhausted, which only works
    inside `study.optimize`; under ask / tell it raises RuntimeError from the last trial's
    `tell` (optuna issues #4121, #5141), after the trial is stored, so the slot job that ran the
    grid's last point failed. Here a study stops by its slots: the config check keeps n_trials
    at most the grid's size, so nothing asks past the grid."""
    import optuna

    class SlotGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            """Nothing to do: the number of slot jobs ends the study, not the sampler."""

    return SlotGridSampler(space, seed=seed)


def _pruner(spec: Mapping[str, Any]):
    import optuna

    if spec["pruner"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(spec["startup_trials"]),
            n_warmup_steps=int(spec["warmup_epochs"]),
        )
    if spec["pruner"] == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def distributions(space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Optuna distributions of a checked `space`."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for key, d in space.items():
        if d["type"] == "categorical":
            out[key] = CategoricalDistribution([_hashable(c) for c in d["choices"]])
        elif d["type"] == "int":
            out[key] = IntDistribution(int(d["low"]), int(d["high"]), log=bool(d.get("log")),
                                       step=int(d.get("step") or 1))  # fmt: skip
        else:
            step = d.get("step")
            out[key] = FloatDistribution(float(d["low"]), float(d["high"]),
                                         log=bool(d.get("log")),
                                         step=None if step is None else float(step))  # fmt: skip
    return out


def _hashable(value: Any) -> Any:
    """Optuna choices are None, bool, int, float or str: a list choice (mlp `hidden: [64, 32]`)
    travels as its JSON text and is decoded in `trial_params`."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def trial_params(space: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> dict:
    """A trial's params as model params (list choices decoded)."""
    out = {}
    for key, value in params.items():
        choices = space.get(key, {}).get("choices") or []
        out[key] = json.loads(value) if any(isinstance(c, list | dict) for c in choices) else value
    return out


# ---------------------------------------------------------------------------------- a trial


class _PruningRun:
    """The training job's tracking run, reporting the per-epoch validation value to the trial
    and raising optuna.TrialPruned when the pruner says so. `step` is the epoch, offset by the
    epochs of the objective seeds trained before (one value per step)."""

    def __init__(self, run: Any, trial: Any, monitor: str, sign: float):
        self.run, self.trial, self.monitor, self.sign = run, trial, monitor, sign
        self.offset = 0
        self.last_step = 0
        self.first_seed = True

    def log_params(self, params):
        if self.first_seed:  # one value per param: the first objective seed's
            self.run.log_params(params)

    def set_tags(self, tags):
        self.run.set_tags(tags)

    def log_metrics(self, metrics, step=None):
        self.run.log_metrics(metrics, step=None if step is None else self.offset + step)
        if step is None or self.monitor not in metrics:
            return
        import optuna

        self.last_step = self.offset + int(step)
        value = self.sign * float(metrics[self.monitor])
        if self.last_step in self.trial.storage_intermediate_steps():
            return  # a resumed trial re-reports an epoch it already reported
        self.trial.report(value, self.last_step)
        self.run.log_metrics({"trial_intermediate": value}, step=self.last_step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {step} ({self.monitor} {value:.4g})")


class _Trial:
    """An optuna.Trial with the steps it already reported (a resumed trial skips them)."""

    def __init__(self, study: Any, frozen: Any):
        import optuna

        self.study, self.number, self._id = study, frozen.number, frozen._trial_id
        self.trial = optuna.trial.Trial(study, frozen._trial_id)
        self.params = dict(frozen.params)

    def storage_intermediate_steps(self) -> set[int]:
        return set(self.study._storage.get_trial(self._id).intermediate_values)

    def report(self, value: float, step: int) -> None:
        self.trial.report(value, step)

    def should_prune(self) -> bool:
        return self.trial.should_prune()

    def set_attr(self, key: str, value: Any) -> None:
        self.study._storage.set_trial_user_attr(self._id, key, value)


def _monitor(spec: Mapping[str, Any]) -> tuple[str, float]:
    """(history column the pruner watches, sign turning it into the study's direction)."""
    from biomol_dl import metrics

    params = spec["model"].get("params") or {}
    # the trial's own training metric (the space may set it), as the training loop resolves it
    metric = str(params.get("metric", "auto"))
    if metric == "auto":
        metric = metrics.DEFAULT_METRIC[spec["task"]]
    lower = metric in metrics.LOWER_IS_BETTER
    minimize = spec["direction"] == "minimize"
    return f"val_{metric}", 1.0 if lower == minimize else -1.0


def _slot_trials(study: Any, slot: int) -> list[Any]:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("slot") == slot]


def run_slot(
    spec: Mapping[str, Any],
    slot: int,
    *,
    clean_csv: str,
    split_csvs: Mapping[int, str],
    features_pt: str,
    out_record: str,
    resume_root: str,
    retries: int = 1,
    threads: int = 1,
    run: Any = None,
) -> dict:
    """One trial slot: find, resume, retry or ask its trial, train, tell, write the record."""
    from optuna.trial import TrialState

    from biomol_dl.train_job import _NoRun

    run = run or _NoRun()
    slot = int(slot)
    study = open_study(spec)
    mine = _slot_trials(study, slot)
    counted = [t for t in mine if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if counted:
        log.info("slot %d: trial %d already %s", slot, counted[-1].number, counted[-1].state.name)
        return _write_record(out_record, spec, slot, counted[-1], mine)
    resume = None
    for t in mine:
        if t.state != TrialState.RUNNING:
            continue
        if t.user_attrs.get("preempted") and resume is None:
            resume = t  # its training saved resume state at SIGTERM
            continue
        reason = (f"its job ({t.user_attrs.get('host')}, pid {t.user_attrs.get('pid')}) ended "
                  "without telling a result (killed)")  # fmt: skip
        study._storage.set_trial_user_attr(t._trial_id, "failed_reason", reason)
        study.tell(t.number, state=TrialState.FAIL)
        log.warning("slot %d: trial %d recorded FAIL: %s", slot, t.number, reason)
    distributions_ = distributions(spec["space"])
    while True:
        mine = _slot_trials(study, slot)
        failed = [t for t in mine if t.state == TrialState.FAIL]
        if resume is None and len(failed) > retries:
            log.warning("slot %d: %d failed attempts; no retry left", slot, len(failed))
            return _write_record(out_record, spec, slot, failed[-1], mine)
        if resume is not None:
            trial = _Trial(study, resume)
            trial.set_attr("preempted", False)
            trial.set_attr("resumed", True)
            log.info("slot %d: resuming preempted trial %d", slot, trial.number)
        else:
            attempt = len(mine)
            seeded = open_study(spec, sampler_seed=sampler_seed(spec, slot, attempt))
            asked = seeded.ask(distributions_)
            frozen = study._storage.get_trial(asked._trial_id)
            trial = _Trial(study, frozen)
            for key, value in _identity(slot, attempt).items():
                trial.set_attr(key, value)
            trial.params = dict(asked.params)
        resume = None
        state, value, error = _train_trial(spec, trial, clean_csv, split_csvs, features_pt,
                                           resume_root, threads, run)  # fmt: skip
        if state == TrialState.FAIL:
            trial.set_attr("failed_reason", error)
        study.tell(trial.number, value if state == TrialState.COMPLETE else None, state=state)
        run.set_tags({f"trial.{trial.number}.state": state.name})
        log.info("slot %d: trial %d %s %s", slot, trial.number, state.name,
                 "" if value is None else f"{spec['metric']} {value:.4f}")  # fmt: skip
        if state != TrialState.FAIL:
            mine = _slot_trials(study, slot)
            final = next(t for t in mine if t.number == trial.number)
            return _write_record(out_record, spec, slot, final, mine)


def sampler_seed(spec: Mapping[str, Any], slot: int, attempt: int) -> int:
    """A 32-bit seed per (study seed, slot, attempt), hashed: numpy's generators seeded with
    small consecutive integers draw nearly equal first values, which made parallel random
    startup trials propose nearly the same point."""
    import hashlib

    text = f"{spec['seed']}/{spec['study_name']}/{slot}/{attempt}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def _identity(slot: int, attempt: int) -> dict[str, Any]:
    return {
        "slot": slot,
        "attempt": attempt,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "started": time.time(),
    }


def _train_trial(spec, trial: _Trial, clean_csv, split_csvs, features_pt, resume_root, threads,
                 run) -> tuple[Any, float | None, str | None]:  # fmt: skip
    """Train the trial's params on every objective seed; (state, objective value, error)."""
    import optuna
    from optuna.trial import TrialState

    from biomol_dl import evaluate, training
    from biomol_dl.models import get_family

    params = trial_params(spec["space"], trial.params)
    model_spec = dict(spec["model"])
    model_spec["params"] = {**(model_spec.get("params") or {}), **params}
    monitor, sign = _monitor({**spec, "model": model_spec})
    hook = _PruningRun(run, trial, monitor, sign)
    run.log_params({"trial": {"number": trial.number, **params}})
    scratch = Path(resume_root) / f"trial{trial.number}"
    values = []
    try:
        family = get_family(model_spec["family"])(model_spec["params"])
        for seed in spec["seeds"]:
            out = scratch / f"seed{seed}"
            family.train(
                clean_csv=clean_csv, split_csv=split_csvs[int(seed)], features_pt=features_pt,
                model_spec=model_spec, task=spec["task"],
                label_columns=list(spec["label_columns"]), seed=int(seed),
                out_model=out / "model_file", out_predictions=out / "predictions.csv",
                out_history=out / "history.csv", resume_dir=out / "resume",
                threads=threads, run=hook,
            )  # fmt: skip
            pred = evaluate.read_predictions(out / "predictions.csv")
            val = pred[pred["split"] == "val"]  # the test rows are never read
            if val.empty:
                raise ValueError(f"{split_csvs[int(seed)]}: no validation rows to judge by")
            score = evaluate.evaluate_predictions(val, spec["task"])["val"]["mean"]
            value = score.get(spec["metric"])
            if value is None or not math.isfinite(value):
                raise ValueError(f"val {spec['metric']} is undefined on seed {seed}")
            values.append(float(value))
            run.log_metrics({f"val_{spec['metric']}_seed{seed}": float(value)})
            hook.offset, hook.first_seed = hook.last_step, False
    except optuna.TrialPruned as pruned:
        shutil.rmtree(scratch, ignore_errors=True)
        run.set_tags({"trial_state": "PRUNED", "pruned": str(pruned)})
        return TrialState.PRUNED, None, None
    except training.Preempted:
        trial.set_attr("preempted", True)  # the next attempt resumes this trial
        raise
    except Exception as err:  # the trial fails; the study goes on
        shutil.rmtree(scratch, ignore_errors=True)
        log.error("trial %d failed: %s: %s", trial.number, type(err).__name__, err)
        run.set_tags({"trial_state": "FAIL"})
        return TrialState.FAIL, None, f"{type(err).__name__}: {err}"[:500]
    shutil.rmtree(scratch, ignore_errors=True)
    value = sum(values) / len(values)
    run.log_metrics({f"val_{spec['metric']}": value})
    run.set_tags({"trial_state": "COMPLETE"})
    return TrialState.COMPLETE, value, None


def _record(spec, trial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "params": trial_params(spec["space"], trial.params),
        "intermediate": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "attempt": trial.user_attrs.get("attempt"),
        "failed_reason": trial.user_attrs.get("failed_reason"),
        "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None,
    }


def _write_record(path, spec, slot, trial, mine) -> dict:
    record = {
        "study": spec["study_name"],
        "storage": spec["storage"],
        "slot": slot,
        **_record(spec, trial),
        "attempts": [_record(spec, t) for t in mine if t.number != trial.number],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    return record


# ---------------------------------------------------------------------------------- summary


def summarize(spec: Mapping[str, Any], records: Sequence[str | Path], out_best: str | Path,
              out_trials: str | Path, n_trials: int, budget: Mapping[str, Any] | None = None
              ) -> dict:  # fmt: skip
    """best.json and trials.csv of a finished study, from its slots' records and the storage.

    Trials of the study with no slot and still RUNNING (a job killed between `ask` and tagging
    its slot) are told FAIL here, when no slot job runs any more.
    """
    import pandas as pd
    from optuna.trial import TrialState

    study = open_study(spec)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "slot" not in t.user_attrs:
            study._storage.set_trial_user_attr(t._trial_id, "failed_reason", "killed before "
                                               "its slot was recorded")  # fmt: skip
            study.tell(t.number, state=TrialState.FAIL)
    slots = [json.loads(Path(p).read_text()) for p in records]
    counted = {r["number"] for r in slots}
    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        rows.append({
            "number": t.number,
            "slot": t.user_attrs.get("slot"),
            "state": t.state.name.lower(),
            "counted": t.number in counted,
            "value": t.value,
            # a pruned trial has no value: its last reported one (the history plot's point)
            "last_value": t.intermediate_values[max(t.intermediate_values)]
            if t.intermediate_values else None,
            "epochs": len(t.intermediate_values),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start else None,
            "failed_reason": t.user_attrs.get("failed_reason"),
            **{f"param_{k}": v for k, v in trial_params(spec["space"], t.params).items()},
        })  # fmt: skip
    table = pd.DataFrame(rows)
    Path(out_trials).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_trials, index=False, float_format="%.6g")
    complete = [r for r in slots if r["state"] == "complete"]
    best = None
    if complete:
        pick = min if spec["direction"] == "minimize" else max
        best = pick(complete, key=lambda r: r["value"])
    counts = {state: sum(r["state"] == state for r in slots) for state in STATES}
    summary = {
        "study": spec["study_name"],
        "storage": spec["storage"],
        "metric": spec["metric"],
        "direction": spec["direction"],
        "split": "val",
        "seeds": list(spec["seeds"]),
        "sampler": spec["sampler"],
        "pruner": spec["pruner"],
        "n_trials": int(n_trials),
        "counted": counts,
        "failed_attempts": sum(
            len([a for a in r["attempts"] if a["state"] == "fail"]) for r in slots
        ),  # fmt: skip
        "trials_in_storage": len(trials),
        "trial_seconds": sum(r["seconds"] or 0.0 for r in slots),
        "best_trial": None if best is None else best["number"],
        "best_value": None if best is None else best["value"],
        "best_params": None if best is None else best["params"],
        "importances": _importances(study) if len(complete) >= 2 else {},
        **({"budget": dict(budget)} if budget else {}),
    }
    tmp = Path(f"{out_best}.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out_best)
    log.info("study %s: %s; best trial %s: %s %s", spec["study_name"], counts,
             summary["best_trial"], spec["metric"], summary["best_value"])  # fmt: skip
    return summary


def _importances(study) -> dict[str, float]:
    """fANOVA parameter importances over the completed trials ({} when it cannot tell)."""
    import optuna

    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError) as err:
        log.info("no parameter importances: %s", err)
        return {}
    return {k: float(v) for k, v in found.items()}


# ---------------------------------------------------------------------------------- rule scripts


def trial_main(job: Any) -> None:
    """The body of scripts/search_trial.py: one slot inside one tracking run (a child of the
    study's run); SIGTERM preemption exits 143 and the re-run resumes the same trial."""
    import sys

    from biomol_dl import logutil, tracking, training

    logutil.configure(job.log_file)
    spec = job.params["study"]
    splits = job.input["splits"]
    splits = [splits] if isinstance(splits, str) else list(splits)
    slot = int(job.wildcards["trial"])
    try:
        with tracking.job_run(job, params={"study": spec}, parent=study_parent_key(
                job.wildcards["dataset"], job.wildcards["model"])) as run:  # fmt: skip
            run.set_tags({"biomol_dl.study": spec["study_name"], "trial.slot": str(slot)})
            record = run_slot(
                spec, slot,
                clean_csv=job.input["clean"],
                split_csvs=dict(zip(spec["seeds"], splits, strict=True)),
                features_pt=job.input["features"],
                out_record=job.output["record"],
                resume_root=job.params["resume_dir"],
                retries=int(job.params["retries"]),
                threads=job.threads,
                run=run,
            )  # fmt: skip
            run.set_tags({"trial.number": str(record["number"]), "trial.state": record["state"]})
            if record["value"] is not None:
                run.log_metrics({"objective": float(record["value"])})
    except training.Preempted as stop:
        log.warning("%s; exiting with status %d so the trial can resume", stop, stop.code)
        sys.exit(stop.code)


def best_main(job: Any) -> None:
    """The body of scripts/search_best.py."""
    from biomol_dl import logutil, tracking

    logutil.configure(job.log_file)
    spec = job.params["study"]
    records = job.input["records"]
    records = [records] if isinstance(records, str) else list(records)
    with tracking.job_run(job, params={"study": spec, "n_trials": job.params["n_trials"]},
                          parent=study_parent_key(job.wildcards["dataset"],
                                                  job.wildcards["model"])) as run:  # fmt: skip
        summary = summarize(spec, records, job.output["best"], job.output["trials"],
                            int(job.params["n_trials"]))  # fmt: skip
        plot_study(job.output["trials"], summary, job.output["plot"])
        run.log_metrics({f"trials_{k}": v for k, v in summary["counted"].items()})
        if summary["best_value"] is not None:
            run.log_metrics({f"best_val_{spec['metric']}": summary["best_value"]})
        run.log_artifact(job.output["best"])
        run.log_artifact(job.output["trials"])
        run.log_artifact(job.output["plot"])


def plot_study(trials_csv: str | Path, summary: Mapping[str, Any], out_png: str | Path) -> None:
    """The study's optimization history and parameter importances (report.plots)."""
    from biomol_dl.io import read_table
    from biomol_dl.report import plots

    trials = read_table(trials_csv, strings=("state",))
    for column in ("value", "last_value"):
        trials[column] = trials[column].astype(float)
    counts = summary["counted"]
    title = (f"{summary['study']}: {summary['n_trials']} trials, {summary['sampler']}, "
             f"{counts['complete']} complete / {counts['pruned']} pruned / "
             f"{summary['failed_attempts'] + counts['fail']} failed")  # fmt: skip
    plots.save(plots.study_figure(trials, summary, title=title), out_png)


def study_parent_key(dataset: str, model: str) -> str:
    """The key of a study's MLflow parent run among the workflow's parents (tracking.hooks)."""
    return f"search:{dataset}/{model}"
