"""The one adapter between Snakemake and biomol-dl: a rule script's `snakemake` object -> Job.

Rule scripts call `job_from_snakemake(snakemake)` and pass the plain `biomol_dl.job.Job` on;
nothing under scripts/biomol_dl/ reads Snakemake's objects. This is the only place that knows
their shape (named lists whose unnamed entries are found by position), and Snakemake's on-disk
markers of incomplete outputs (`incomplete_outputs`, which the Snakefile hands to
`tracking.workflow_start`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from biomol_dl.job import Job


def _named(obj: Any) -> dict[str, Any]:
    """A Snakemake named list as {name: value}; unnamed entries keyed by their position."""
    if obj is None:
        return {}
    items = obj._allitems() if hasattr(obj, "_allitems") else enumerate(obj)
    out: dict[str, Any] = {}
    for position, (name, value) in enumerate(items):
        if name is not None and str(name).startswith("_"):
            continue
        key = str(position) if name is None or isinstance(name, int) else str(name)
        if isinstance(value, str | os.PathLike):
            out[key] = str(value)
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | os.PathLike) for v in value
        ):
            out[key] = [str(v) for v in value]
        else:
            out[key] = value
    return out


def job_from_snakemake(smk: Any) -> Job:
    """The plain Job of a running rule script."""
    return Job(
        rule=str(smk.rule),
        wildcards={k: str(v) for k, v in _named(smk.wildcards).items()},
        input=_named(smk.input),
        output=_named(smk.output),
        log=_named(smk.log),
        params=_named(smk.params),
        threads=int(smk.threads),
        resources={k: v for k, v in _named(smk.resources).items() if not k.startswith("_")},
        config=dict(smk.config),
    )


def incomplete_outputs(workdir: str | os.PathLike, outputs: Iterable[str]) -> list[str]:
    """The outputs (as the rules name them, relative to `workdir`) that Snakemake still marks
    incomplete in `workdir`: it never accepted them and the next run re-makes them. Empty when
    that directory has no markers folder to read (another host's disk, or
    `--persistence-backend db`)."""
    folder = Path(workdir) / ".snakemake" / "incomplete"
    if not folder.is_dir():
        return []
    return [path for path in outputs if _incomplete_marker(folder, path).exists()]


def _incomplete_marker(folder: Path, output: str) -> Path:
    """Where Snakemake's file persistence keeps the incomplete marker of `output`: its url-safe
    base64, cut into names of at most NAME_MAX - 1 characters, all but the last prefixed with "@"
    (snakemake.persistence.file)."""
    try:
        size = (os.pathconf(folder, "PC_NAME_MAX") or 255) - 1
    except (OSError, ValueError, AttributeError):
        size = 254
    b64 = base64.urlsafe_b64encode(output.encode()).decode()
    parts = [b64[i : i + size] for i in range(0, len(b64), size)]
    return folder.joinpath(*[f"@{part}" for part in parts[:-1]], parts[-1])
