"""Who runs where: a process's host, pid and user tags, the workflow repository's git state, and
whether a recorded process (a job, the Snakemake main process) still runs.

`workflow_start` exports the main process's identity in BIOMOL_DL_WORKFLOW_PROCESS (JSON: host,
PID namespace, pid, and start time in clock ticks, which a reused pid cannot fake); a job on the
same host and PID namespace watches it (see "Orphaned jobs" in `biomol_dl.tracking.runs`).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from biomol_dl.tracking.settings import ENV_WORKFLOW_PROCESS, TAG_HOST, TAG_PID

REPOSITORY = Path(__file__).resolve().parents[3]  # scripts/biomol_dl/tracking/ -> the repository


def git_state(repo: str | Path | None = None) -> tuple[str, str]:
    """(commit, dirty) of the workflow's repository: ("unknown", "unknown") without git."""
    repo = Path(repo) if repo else REPOSITORY

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout

    try:
        git("rev-parse", "--show-toplevel")
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return "unknown", "unknown"  # no git, or not a repository (an installed package)
    try:
        commit = git("rev-parse", "HEAD").strip()
    except (OSError, RuntimeError, subprocess.SubprocessError):
        commit = "none"  # a repository without commits yet
    try:
        dirty = "true" if git("status", "--porcelain").strip() else "false"
    except (OSError, RuntimeError, subprocess.SubprocessError):
        dirty = "unknown"
    return commit, dirty


def _process_tags() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid()), "mlflow.user": user}
    if os.environ.get("SLURM_JOB_ID"):
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of a process, from Linux /proc; else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _process_alive(
    pid: int, run_start_ms: int | None = None, start_ticks: int | None = None
) -> bool:
    """True if `pid` runs here (not a zombie) and is the process meant, not one that reused the
    number: the one that started at `start_ticks` exactly, or one not younger than a run that
    started at `run_start_ms`. Without /proc only the pid is checked."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, ticks = stat
    if state in {"Z", "X"}:  # killed, not yet reaped by its parent
        return False
    if start_ticks is not None:
        return ticks == start_ticks
    if run_start_ms is None:
        return True
    try:
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK") <= run_start_ms / 1000 + 2
    except (OSError, ValueError, IndexError, StopIteration):
        return True


def _pid_namespace() -> str | None:
    """This process's PID namespace (Linux), so a container sharing the host name is not here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_identity() -> dict[str, Any]:
    """This process as BIOMOL_DL_WORKFLOW_PROCESS records it: host, PID namespace, pid and start
    time (clock ticks after boot)."""
    stat = _proc_stat(os.getpid())
    return {
        "host": socket.gethostname(),
        "pid_ns": _pid_namespace(),
        "pid": os.getpid(),
        "start_ticks": stat and stat[1],
    }


def _local_workflow_process() -> tuple[int, int | None] | None:
    """(pid, start ticks) of the Snakemake main process that `workflow_start` recorded, when it
    runs on this host, in this PID namespace, and is not this process; else None."""
    try:
        main = json.loads(os.environ.get(ENV_WORKFLOW_PROCESS) or "{}")
        pid, ticks = int(main["pid"]), main.get("start_ticks")
        here = main["host"] == socket.gethostname() and main.get("pid_ns") == _pid_namespace()
    except (json.JSONDecodeError, TypeError, ValueError, KeyError):
        return None
    if not here or pid == os.getpid():
        return None
    return pid, (int(ticks) if ticks is not None else None)


def _workflow_process_gone() -> str | None:
    """Why this job is an orphan when its local Snakemake main process is gone; else None."""
    main = _local_workflow_process()
    if main is None or _process_alive(main[0], start_ticks=main[1]):
        return None
    return (
        f"orphaned: the Snakemake main process (pid {main[0]} on {socket.gethostname()}) is "
        "gone, so Snakemake discards this job's outputs (they stay marked incomplete)"
    )
