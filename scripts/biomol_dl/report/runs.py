"""MLflow run ids of the jobs behind a report, looked up through `biomol_dl.tracking`.

The report only needs ids; finding runs belongs to tracking, the one module that imports mlflow.
This module asks it for

    tracking.find_runs(dataset=..., rule=..., wildcards={...}) -> list[str]   # newest first

(FINISHED job runs in the dataset's experiment whose `rule` and `wildcard.<name>` tags match).
When that helper does not exist, tracking is off, or the store cannot be reached, ids are None
and the report shows "n/a": a report is never lost for want of a run id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from biomol_dl.logutil import get

log = get(__name__)

_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def find_run_id(dataset: str, rule: str, wildcards: Mapping[str, Any]) -> str | None:
    """The newest finished run of `rule` with these wildcards, or None (see the module doc)."""
    from biomol_dl import tracking

    if not tracking.enabled():
        return None
    helper = getattr(tracking, "find_runs", None)
    if helper is None:
        _warn_once("helper", "tracking.find_runs is not available: run ids are shown as n/a")
        return None
    try:
        ids = helper(
            dataset=dataset, rule=rule, wildcards={k: str(v) for k, v in wildcards.items()}
        )
    except Exception as exc:  # the report matters more than its run ids
        _warn_once("store", "MLflow run lookup failed (%s: %s); run ids shown as n/a",
                   type(exc).__name__, exc)  # fmt: skip
        return None
    return str(ids[0]) if ids else None


def model_run_ids(
    dataset: str, models: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, dict[str, str | None]]]:
    """{model: {seed: {"train": id, "evaluate": id}}} for every configured model and seed.

    models: {model: {"family": ..., "seeds": [...]}}; the training rule is train_<family>.
    Seeds are string keys (JSON objects have no integer keys).
    """
    out: dict[str, dict[str, dict[str, str | None]]] = {}
    for model, spec in models.items():
        out[model] = {}
        for seed in spec.get("seeds", []):
            wildcards = {"dataset": dataset, "model": model, "seed": seed}
            out[model][str(seed)] = {
                "train": find_run_id(dataset, f"train_{spec['family']}", wildcards),
                "evaluate": find_run_id(dataset, "evaluate", wildcards),
            }
    return out
