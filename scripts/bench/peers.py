"""Where the benchmark scripts find their peers and the public data, from a fresh clone.

chemprop is not a project dependency: `make chemprop` installs chemprop 2.3.1 (with the CPU torch
build the project pins) into its own virtualenv, `.venv-chemprop/` in the repository, and the
benchmark scripts run it from there. CHEMPROP_PYTHON names another interpreter instead.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MIRROR_ENV = "BIOMOL_DL_MIRROR"


def chemprop_python() -> str:
    """The interpreter of chemprop's own virtualenv; a one-line SystemExit if it is missing."""
    python = Path(os.environ.get("CHEMPROP_PYTHON") or REPO / ".venv-chemprop" / "bin" / "python")
    if not python.is_file():
        raise SystemExit(
            f"chemprop interpreter {python} not found: run `make chemprop` in {REPO} "
            "(or set CHEMPROP_PYTHON to a python with chemprop 2.3.1 installed)"
        )
    return str(python)


def absolute_mirror_env() -> dict[str, str]:
    """os.environ with BIOMOL_DL_MIRROR's folders made absolute.

    Snakemake runs the workflow inside the benchmark's workdir, so a mirror given relative to
    the repository (`BIOMOL_DL_MIRROR=../shared/datasets`) must be resolved before it goes there.
    """
    env = dict(os.environ)
    folders = [f for f in env.get(MIRROR_ENV, "").split(os.pathsep) if f.strip()]
    if folders:
        env[MIRROR_ENV] = os.pathsep.join(str(Path(f).resolve()) for f in folders)
    return env
