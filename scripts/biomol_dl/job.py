"""One workflow job as plain values: what a rule script hands to the library.

The library never sees Snakemake's objects. A rule script turns its `snakemake` object into a
`Job` with `scripts/snakemake_job.py` (the only code that reads it) and passes the Job, or plain
values taken from it, to the library; anyone can build a Job by hand to run a step outside
Snakemake (tests do).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Files = Mapping[str, "str | list[str]"]


@dataclass(frozen=True)
class Job:
    """A job: its rule, wildcards, named files, params and resources.

    Files and params are keyed by name; an unnamed entry is keyed by its position ("0", "1").
    """

    rule: str
    wildcards: Mapping[str, str] = field(default_factory=dict)
    input: Files = field(default_factory=dict)
    output: Files = field(default_factory=dict)
    log: Files = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    threads: int = 1
    resources: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def runtime(self) -> int | None:
        """The job's time limit in minutes (its `runtime` resource, a --set-resources override
        included); None where it has none (a job built by hand, or a non-numeric value)."""
        value = self.resources.get("runtime")
        return int(value) if isinstance(value, int | float) else None

    @property
    def log_file(self) -> str | None:
        """The job's main log: the log named `log`, else the first one."""
        if "log" in self.log:
            return str(self.log["log"])
        return str(next(iter(self.log.values()))) if self.log else None
