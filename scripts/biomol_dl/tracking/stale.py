"""Stale and orphaned runs of earlier invocations, marked by the next one's store writer.

Stale runs. `workflow_start` marks RUNNING runs under the prefix KILLED when their process is
gone: on this host, when the recorded pid no longer runs (or now belongs to a younger process); a
job whose workflow run has ended or is itself stale; runs from other hosts only when older than
BIOMOL_DL_STALE_HOURS (default 24; a live job's own final status still overwrites KILLED, but
FINISHED only while its workflow run is RUNNING). `workflow_end` marks its own still-RUNNING jobs
KILLED and ends the workflow runs.

Orphans. The same pass (`workflow_start`, after replaying the dead invocation's spool) marks
KILLED + orphaned every FINISHED job of a workflow it finds dead whose outputs Snakemake still
marks incomplete in that job's working directory: a job that ended just before its main process
died, or on another host without the watchdog (see "Orphaned jobs" in
`biomol_dl.tracking.jobs`). Outputs that `--cleanup-metadata` accepted have no marker left and
their runs stay FINISHED.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from biomol_dl.tracking.process import _process_alive
from biomol_dl.tracking.settings import (
    ENV_STALE_HOURS,
    TAG_HOST,
    TAG_KIND,
    TAG_PID,
    TAG_WORKFLOW,
    _env_float,
)
from biomol_dl.tracking.store import _kill, _search_all


def cleanup_stale_runs(
    client: Any, experiment_ids: Sequence[str], stale_hours: float | None = None
) -> list[str]:
    """Mark KILLED the RUNNING runs whose process is gone (see the module docstring)."""
    stale_hours = stale_hours if stale_hours is not None else _env_float(ENV_STALE_HOURS, 24)
    host, now_ms = socket.gethostname(), time.time() * 1000
    running = _search_all(client, experiment_ids, "attributes.status = 'RUNNING'")
    by_id = {r.info.run_id: r for r in running}

    def own_process_gone(run: Any) -> bool:
        tags = run.data.tags
        if tags.get(TAG_HOST) == host and str(tags.get(TAG_PID, "")).isdigit():
            return not _process_alive(int(tags[TAG_PID]), run.info.start_time)
        return now_ms - run.info.start_time > stale_hours * 3600 * 1000

    dead_workflows = {
        rid
        for rid, r in by_id.items()
        if r.data.tags.get(TAG_KIND) == "workflow" and own_process_gone(r)
    }
    killed = []
    for workflow in sorted(dead_workflows):
        finished = _search_all(
            client,
            experiment_ids,
            f"attributes.status = 'FINISHED' and tags.`{TAG_WORKFLOW}` = '{workflow}'",
        )
        for run in finished:
            discarded = _discarded_outputs(run.data.tags)
            if discarded:
                reason = (
                    f"orphaned: its workflow's main process died before Snakemake accepted its "
                    f"outputs (still marked incomplete: {', '.join(discarded)})"
                )
                _kill(client, run.info.run_id, reason, orphaned=True)
                killed.append(run.info.run_id)
    for rid, run in by_id.items():
        tags = run.data.tags
        workflow = tags.get(TAG_WORKFLOW)
        if tags.get(TAG_KIND) == "workflow":
            dead, reason = rid in dead_workflows, "its workflow process is gone"
        elif workflow and (workflow in dead_workflows or workflow not in by_id):
            dead, reason = True, f"its workflow run {workflow} ended or its process is gone"
        elif workflow:  # a job of a live workflow: only a local pid can tell it died
            dead = tags.get(TAG_HOST) == host and own_process_gone(run)
            reason = "its process is gone"
        else:
            dead, reason = own_process_gone(run), "its process is gone or it is too old"
        if dead:
            _kill(client, rid, reason)
            killed.append(rid)
    return killed


def _discarded_outputs(tags: Mapping[str, str]) -> list[str]:
    """The outputs of a job run (its `output.<name>.path` tags) that Snakemake still marks
    incomplete in the job's working directory (`biomol_dl.workdir`): it never accepted them and
    the next run re-makes them. Empty when that directory has no markers folder to read (another
    host's disk, or `--persistence-backend db`)."""
    folder = Path(tags.get("biomol_dl.workdir") or "/nonexistent") / ".snakemake" / "incomplete"
    if not folder.is_dir():
        return []
    return [
        path
        for key, path in sorted(tags.items())
        if key.startswith("output.") and key.endswith(".path")
        if _incomplete_marker(folder, path).exists()
    ]


def _incomplete_marker(folder: Path, output: str) -> Path:
    """Where Snakemake's file persistence keeps the incomplete marker of `output` (as the rule
    names it, relative to the working directory): its url-safe base64, cut into names of at most
    NAME_MAX - 1 characters, all but the last prefixed with "@" (snakemake.persistence.file)."""
    try:
        size = (os.pathconf(folder, "PC_NAME_MAX") or 255) - 1
    except (OSError, ValueError, AttributeError):
        size = 254
    b64 = base64.urlsafe_b64encode(output.encode()).decode()
    parts = [b64[i : i + size] for i in range(0, len(b64), size)]
    return folder.joinpath(*[f"@{part}" for part in parts[:-1]], parts[-1])
