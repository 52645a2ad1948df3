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
their runs stay FINISHED. Reading the markers is the workflow engine's business: the Snakefile
hands `workflow_start` a function `incomplete(workdir, outputs) -> outputs still incomplete`
(scripts/snakemake_job.py `incomplete_outputs`, which knows Snakemake's marker folder); without
one, no FINISHED run is marked orphaned here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
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

# (working directory, outputs as the rules name them) -> the outputs still marked incomplete there
Incomplete = Callable[[str, Sequence[str]], Sequence[str]]


def cleanup_stale_runs(
    client: Any,
    experiment_ids: Sequence[str],
    stale_hours: float | None = None,
    incomplete: Incomplete | None = None,
) -> list[str]:
    """Mark KILLED the RUNNING runs whose process is gone, and the discarded FINISHED runs of dead
    workflows as `incomplete` finds them (see the module docstring)."""
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
            discarded = _discarded_outputs(run.data.tags, incomplete)
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


def _discarded_outputs(tags: Mapping[str, str], incomplete: Incomplete | None) -> list[str]:
    """The outputs of a job run (its `output.<name>.path` tags) that the workflow engine still
    marks incomplete in the job's working directory (`biomol_dl.workdir`), as `incomplete` tells:
    it never accepted them and the next run re-makes them. Empty without `incomplete`."""
    workdir = tags.get("biomol_dl.workdir")
    if incomplete is None or not workdir:
        return []
    outputs = [
        path
        for key, path in sorted(tags.items())
        if key.startswith("output.") and key.endswith(".path")
    ]
    return list(incomplete(workdir, outputs))
