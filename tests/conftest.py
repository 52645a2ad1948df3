"""Shared fixtures: paths, and a real Snakemake run of the workflow on a given config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = (ROOT / ".." / "shared" / "datasets").resolve()
SNAKEFILE = ROOT / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
WORKSTATION_BIN = ROOT / "tests" / "workstation_bin"


def workstation_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of a workstation Snakemake run: the venv's tools first, and no SLURM
    controller (tests/workstation_bin/scontrol says so at once instead of the real client waiting
    ~9 s per Snakemake start for a controller that is not running)."""
    path = os.pathsep.join([str(BIN), str(WORKSTATION_BIN), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **(extra or {})}


def absolutize(config: dict) -> dict:
    """Make `path` sources absolute so a config runs from any working directory."""
    for spec in config.get("datasets", {}).values():
        parts = spec["source"].get("parts", [spec["source"]])
        for part in parts:
            if part.get("type") == "path" and not os.path.isabs(part["path"]):
                part["path"] = str(ROOT / part["path"])
    return config


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(absolutize(config), sort_keys=False))
    return path


def snakemake(
    workdir: Path,
    configfile: Path | None,
    *args: str,
    env: dict | None = None,
    check: bool = True,
    timeout: int = 900,
) -> subprocess.CompletedProcess:
    """Run the real Snakemake CLI on the workflow, in `workdir`."""
    cmd = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += list(args)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=workstation_env(env), timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: tiny models gain nothing from threads and lose a lot
    when the CPUs are shared. Use with `pytestmark = pytest.mark.usefixtures(...)`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config) -> Path:
    """The tiny config run for real once per test session; tests read its results."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    configfile = write_config(workdir, tiny_config)
    snakemake(workdir, configfile, "--cores", "2")
    return workdir
