"""Lineage: which run produced each input of a job, and the walk back from a model to raw data.

Choice: tags in the store, not a sidecar index, so it works the same against a shared `mlflow
server` and shows in the UI. Every finished job tags `produced.<sha256>` = the output's absolute
path. A consumer hashes its inputs (`lineage.<input>.sha256`) and, per input, the most recent
FINISHED run carrying that tag (same path first, then same content anywhere under the prefix)
becomes `lineage.<input>.run_id` / `.rule` (looked up by the job in live mode, by the sync in
spool mode). `lineage(run_id)` walks a model's run back through featurization, split and
validation to the raw data's hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from biomol_dl.tracking.settings import experiment_prefix, tracking_uri
from biomol_dl.tracking.store import _client, _prefix_experiment_ids, _retry


def _resolve_lineage(client: Any, lookups: Sequence[Sequence[str]]) -> dict[str, str]:
    """lineage.<name>.run_id / .rule tags for (name, sha256, absolute path) lookups."""
    tags: dict[str, str] = {}
    experiment_ids = _prefix_experiment_ids(client, experiment_prefix()) if lookups else []
    for name, digest, path in lookups:
        producer = find_producer(client, digest, path, experiment_ids)
        if producer is not None:
            tags[f"lineage.{name}.run_id"] = producer.info.run_id
            tags[f"lineage.{name}.rule"] = producer.data.tags.get("rule", "")
    return tags


def find_producer(
    client: Any, sha256: str, path: str | None = None, experiment_ids: Sequence[str] | None = None
) -> Any | None:
    """The most recent FINISHED run that wrote a file with this sha256 (same path preferred)."""
    if experiment_ids is None:
        experiment_ids = _prefix_experiment_ids(client, experiment_prefix())
    if not experiment_ids:
        return None
    base = f"attributes.status = 'FINISHED' and tags.`produced.{sha256}`"
    filters = [f"{base} LIKE '%'"]
    if path and "'" not in str(path):
        filters.insert(0, f"{base} = '{Path(path).resolve()}'")
    for filter_string in filters:
        runs = _retry(
            client.search_runs,
            list(experiment_ids),
            filter_string,
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if runs:
            return runs[0]
    return None


def lineage(run_id: str, uri: str | None = None, max_runs: int = 1000) -> list[dict[str, Any]]:
    """Walk back from a run through `lineage.<input>.run_id` tags, breadth first.

    Returns one dict per run reached (the given run first): run_id, rule, name, experiment_id,
    inputs {name: {"sha256", "run_id" or None}}, outputs {name: sha256}.
    """
    client = _client(uri or tracking_uri())
    seen: dict[str, dict[str, Any]] = {}
    queue = [run_id]
    while queue and len(seen) < max_runs:
        rid = queue.pop(0)
        if rid in seen:
            continue
        run = _retry(client.get_run, rid)
        tags = run.data.tags
        inputs: dict[str, dict[str, str | None]] = {}
        for key, value in tags.items():
            if key.startswith("lineage.") and key.endswith(".sha256"):
                name = key[len("lineage.") : -len(".sha256")]
                inputs[name] = {"sha256": value, "run_id": tags.get(f"lineage.{name}.run_id")}
        outputs = {
            key[len("output.") : -len(".sha256")]: value
            for key, value in tags.items()
            if key.startswith("output.") and key.endswith(".sha256")
        }
        seen[rid] = {
            "run_id": rid,
            "rule": tags.get("rule"),
            "name": run.info.run_name,
            "experiment_id": run.info.experiment_id,
            "inputs": inputs,
            "outputs": outputs,
        }
        queue.extend(i["run_id"] for i in inputs.values() if i["run_id"])
    return list(seen.values())
