"""The one adapter between Snakemake and biomol-dl: a rule script's `snakemake` object -> Job.

Rule scripts call `job_from_snakemake(snakemake)` and pass the plain `biomol_dl.job.Job` on;
nothing under scripts/biomol_dl/ reads Snakemake's objects. This is the only place that knows
their shape (named lists whose unnamed entries are found by position).
"""

from __future__ import annotations

import os
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
