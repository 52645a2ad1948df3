"""Model family `rf`: the random-forest baseline (scikit-learn) on fixed-length features.

Tuned forests on fingerprints are strong on MoleculeNet-size data (Jiang et al. 2021), so every
deep model is shown beside this one. Multitask-binary labels with gaps get one forest per task,
each trained on the rows where that task is labelled. An ordinary family that trains without the
torch loop: it overrides `train` and `predict` and writes model.skops (skops.io: loading it
trusts only scikit-learn and numpy types). For regression, predictions.csv also carries `y_sd`,
the sd across the trees (biomol_dl.uncertainty calibrates it on the validation split).

For large libraries: the forest is grown in about ten warm-start steps, each logged (trees built,
seconds), with n_jobs = the rule's threads; the same trees as one fit, since scikit-learn draws
each tree's seed from random_state alone. Only the train rows are unpacked for fitting (a packed
bit cache stays packed), and predictions run over chunks of CHUNK rows.

params: n_estimators (500), max_features (sqrt; regression: 1/3, Breiman's default, unless
given), min_samples_leaf (1), max_depth (null), and any other RandomForestRegressor /
RandomForestClassifier argument except random_state and n_jobs (the seed and the job's threads).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biomol_dl.logutil import get
from biomol_dl.models.base import Family, ModelParams, register
from biomol_dl.models.mlp import FIXED_LENGTH

log = get(__name__)

RESERVED = ("random_state", "n_jobs")  # set by the family: the seed and the job's threads
CHUNK = 20_000  # rows unpacked and predicted at a time
STEPS = 10  # warm-start steps, one log line each


@dataclass(frozen=True)
class RandomForestParams(ModelParams):
    n_estimators: int = 500
    # scikit-learn also takes a fraction for these two (min_samples_leaf: 0.01)
    max_features: str | int | float | None = "sqrt"
    min_samples_leaf: int | float = 1
    max_depth: int | None = None
    # any other RandomForest argument the config gives (checked against scikit-learn's)
    options: dict = field(default_factory=dict, metadata={"open": True})

    @classmethod
    def open_keys(cls, keys: Iterable[str]) -> dict[str, str]:
        """Every scikit-learn RandomForest argument the family does not set (imports sklearn,
        about 2 s, so only when a config uses a key outside the fields)."""
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        names = {
            name
            for cls_ in (RandomForestClassifier, RandomForestRegressor)
            for name in inspect.signature(cls_.__init__).parameters
            if name != "self"
        }
        return {name: "Any" for name in sorted(names - set(RESERVED))}

    @classmethod
    def build(cls, values: Mapping[str, Any]) -> RandomForestParams:
        fields = {f.name for f in dataclasses.fields(cls)} - {"options"}
        known = {k: v for k, v in values.items() if k in fields}
        return cls(**known, options={k: v for k, v in values.items() if k not in fields})


@register("rf")
class RandomForestFamily(Family):
    """scikit-learn random forest, the baseline every model is shown beside."""

    Params = RandomForestParams
    featurizers = FIXED_LENGTH
    uses_torch = False
    uses_gpu = False
    sd_estimates = ("trees",)  # regression: the spread across trees (tree_sd)
    model_file = "model.skops"
    mem_mb = 8000
    runtime = 120

    def forest(self, task: str, seed: int, threads: int):
        """An unfitted forest for the task (regression: Breiman's max_features 1/3 by default)."""
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        p = self.params
        kwargs = {"n_estimators": p.n_estimators, "max_features": p.max_features,
                  "min_samples_leaf": p.min_samples_leaf, "max_depth": p.max_depth, **p.options}  # fmt: skip
        if task == "regression" and "max_features" not in self.model_params:
            kwargs["max_features"] = 1.0 / 3
        cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
        return cls(random_state=seed, n_jobs=threads, **kwargs)

    def train(self, *, model_spec: Mapping[str, Any], **job: Any) -> dict:
        job = {k: v for k, v in job.items() if k != "resume_dir"}  # a forest has no epochs
        return run_rf(model_spec=model_spec, family=self, **job)

    def predict(self, model_file, inputs: Sequence[str], *, n_classes=None, threads: int = 1):
        return predict_rf(model_file, inputs, n_classes=n_classes, threads=threads)


def _matrix(features: Mapping[str, Any], rows: Any = None):
    """float32 [n, D] of the given rows (all when None), from a packed or dense cache."""
    from biomol_dl.features.fingerprints import dense_rows

    return dense_rows(features, rows)


def _has_nan(features: Mapping[str, Any]) -> bool:
    """Whether any feature value is NaN (a bit cache never is), checked CHUNK rows at a time."""
    import numpy as np

    from biomol_dl.features.fingerprints import BITS_KEY

    if BITS_KEY in features:
        return False
    X = features["X"]
    X = X.numpy() if hasattr(X, "numpy") else np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating):
        return False
    return any(np.isnan(X[lo : lo + CHUNK]).any() for lo in range(0, len(X), CHUNK))


def fit_forest(forest, X, y, *, name: str = "", steps: int = STEPS):
    """Fit `forest` in warm-start steps of about n_estimators / steps trees, logging each.

    Gives the same trees as one fit (each tree's seed comes from random_state alone); with
    oob_score the out-of-bag estimate would be recomputed at every step, so it fits at once.
    """
    total, warm = int(forest.n_estimators), bool(forest.warm_start)
    start = time.perf_counter()
    if forest.oob_score or warm:
        counts = [total]
    else:
        step = max(1, -(-total // max(1, steps)))
        counts = list(range(step, total, step)) + [total]
    forest.set_params(warm_start=True)
    try:
        for n in counts:
            forest.set_params(n_estimators=n).fit(X, y)
            log.info(
                "task %s: %d/%d trees built (%.1f s, n_jobs=%s, %d rows x %d features)",
                name, n, total, time.perf_counter() - start, forest.n_jobs, X.shape[0], X.shape[1],
            )  # fmt: skip
    finally:
        forest.set_params(warm_start=warm)
    return forest


def predict_columns(forest, features: Mapping[str, Any], task: str, n_classes, impute=None):
    """_predict_columns over chunks of CHUNK rows of a feature dict (bounded memory)."""
    import numpy as np

    from biomol_dl.features.fingerprints import n_rows

    n, parts = n_rows(features), []
    for lo in range(0, n, CHUNK):
        X = _matrix(features, slice(lo, min(n, lo + CHUNK)))
        if impute is not None:
            X = np.where(np.isnan(X), impute, X)
        parts.append(_predict_columns(forest, X, task, n_classes))
    if not parts:
        return _predict_columns(forest, _matrix(features), task, n_classes)
    return np.concatenate(parts, axis=0)


def run_rf(
    *,
    clean_csv,
    split_csv,
    features_pt,
    model_spec,
    task,
    label_columns,
    seed,
    out_model,
    out_predictions,
    out_history,
    threads=1,
    run=None,
    family: RandomForestFamily | None = None,
) -> dict:
    """Fit one forest per label column on the train rows; write model.skops, predictions.csv and
    history.csv (one line: the fitting time)."""
    import numpy as np
    import skops.io as sio
    import torch

    from biomol_dl.train_job import check_feature_ids, read_labels, read_split, write_predictions

    family = family or RandomForestFamily(model_spec.get("params", {}))
    ids, y = read_labels(clean_csv, label_columns, task)
    split = read_split(split_csv, ids)
    train_rows = np.flatnonzero(split == "train")
    features = torch.load(features_pt, weights_only=True)
    check_feature_ids(features, ids, features_pt)
    X = _matrix(features, train_rows)  # the train rows only, unpacked
    # Descriptor columns can hold NaN: impute with the training mean so the forest sees numbers
    # (a column NaN on every train row: 0)
    col_mean = None
    if _has_nan(features):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> 0 below
            col_mean = np.nan_to_num(np.nanmean(X, axis=0))
        X = np.where(np.isnan(X), col_mean, X)
    n_classes = int(np.nanmax(y)) + 1 if task == "multiclass" else None
    log.info(
        "random forest: %d train rows x %d features (%.0f MB float32), %d task(s), n_jobs=%d",
        len(train_rows), X.shape[1], X.nbytes / 1e6, len(label_columns), threads,
    )  # fmt: skip
    start = time.perf_counter()
    forests, columns, spread = [], [], []
    for t, name in enumerate(label_columns):
        labelled = ~np.isnan(y[train_rows, t])
        forest = fit_forest(
            family.forest(task, seed, threads), X[labelled], y[train_rows[labelled], t], name=name
        )
        columns.extend(predict_columns(forest, features, task, n_classes, col_mean).T)
        if task == "regression":
            spread.append(predict_tree_sd(forest, features, col_mean))
        forests.append(forest)
        log.info(
            "task %s: forest of %d trees fitted on %d rows",
            name,
            forest.n_estimators,
            int(labelled.sum()),
        )
    seconds = time.perf_counter() - start
    preds = np.stack(columns, axis=1)
    sd = np.stack(spread, axis=1) if spread else None
    write_predictions(out_predictions, ids, split, task, label_columns, y, preds, sd=sd)
    bundle = {"forests": forests, "impute": col_mean, "spec": dict(model_spec), "task": task,
              "label_columns": list(label_columns)}  # fmt: skip
    sio.dump(bundle, out_model)
    Path(out_history).write_text("epoch,seconds\n" + f"0,{seconds:.3f}\n")
    stats = {"train_seconds": seconds, "n_train": len(train_rows)}
    if run is not None:
        run.log_params({"model": json.dumps(model_spec, default=str)[:5000], "seed": seed})
        run.log_metrics(stats)
    return stats


def _predict_columns(forest, X, task: str, n_classes: int | None):
    """[N, 1] values or P(class 1), or [N, K] class probabilities (multiclass) of one forest."""
    import numpy as np

    if task == "regression":
        return forest.predict(X)[:, None]
    if task == "multiclass":
        classes = forest.classes_.astype(int)
        proba = np.zeros((len(X), n_classes or int(classes.max()) + 1))
        proba[:, classes] = forest.predict_proba(X)
        return proba
    classes = list(forest.classes_)
    if 1 not in classes:
        return np.zeros((len(X), 1))
    return forest.predict_proba(X)[:, classes.index(1)][:, None]


def tree_sd(forest, X):
    """[N] sd across a regression forest's trees: the forest's own uncertainty estimate (its
    prediction is the mean of the same trees), calibrated on validation by the evaluate rule."""
    import numpy as np

    per_tree = np.stack([tree.predict(X) for tree in forest.estimators_])
    return per_tree.std(axis=0)


def predict_tree_sd(forest, features: Mapping[str, Any], impute=None):
    """tree_sd over chunks of CHUNK rows of a feature dict (bounded memory)."""
    import numpy as np

    from biomol_dl.features.fingerprints import n_rows

    n, parts = n_rows(features), []
    for lo in range(0, n, CHUNK):
        X = _matrix(features, slice(lo, min(n, lo + CHUNK)))
        if impute is not None:
            X = np.where(np.isnan(X), impute, X)
        parts.append(tree_sd(forest, X))
    return np.concatenate(parts) if parts else np.zeros(0)


_LAST_LOADED: dict[tuple, dict] = {}  # the last model file read: predict reads it chunk by chunk


def load_rf(path: str | Path) -> dict:
    """The dict run_rf saved with skops; refuses types outside scikit-learn and numpy.

    The last file read is kept (keyed by path, size and modification time), so predicting a large
    input chunk by chunk reads a forest once, and only one forest is held at a time.
    """
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _LAST_LOADED:
        return _LAST_LOADED[key]
    _LAST_LOADED.clear()
    bundle = _read_rf(path)
    _LAST_LOADED[key] = bundle
    return bundle


def _read_rf(path: str | Path) -> dict:
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=str(path))
    unexpected = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
    if unexpected:
        raise ValueError(f"{path}: will not load unexpected types {unexpected}")
    bundle = sio.load(str(path), trusted=untrusted)
    if not isinstance(bundle, dict) or "forests" not in bundle:
        raise ValueError(f"{path}: not a biomol_dl random-forest file")
    return bundle


def predict_rf(
    model_file: str | Path,
    inputs: Sequence[str],
    *,
    n_classes: int | None = None,
    threads: int = 1,
):
    """Long-format predictions (input, task, y_pred [+ p_k]) of a random forest on new inputs.

    The same featurizer and training-mean imputation of NaN features as run_rf, P(class 1) for
    binary tasks, K-column probabilities for multiclass (K = n_classes, or the largest class the
    forest saw + 1).
    """
    import pandas as pd

    from biomol_dl.features import build_featurizer

    bundle = load_rf(model_file)
    spec = bundle["spec"]
    features = build_featurizer(spec["featurizer_spec"]).featurize_table(list(inputs), threads)
    task, frames = bundle["task"], []
    for forest, name in zip(bundle["forests"], bundle["label_columns"], strict=True):
        forest.n_jobs = max(1, int(threads))
        frame = pd.DataFrame({"input": list(inputs), "task": name})
        columns = predict_columns(forest, features, task, n_classes, bundle.get("impute"))
        if task == "multiclass":
            frame["y_pred"] = columns.argmax(axis=1)
            for k in range(columns.shape[1]):
                frame[f"p_{k}"] = columns[:, k]
        else:
            frame["y_pred"] = columns[:, 0]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
