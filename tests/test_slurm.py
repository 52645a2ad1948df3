"""Run Snakemake through a real one-node SLURM cluster, and check the workflow's profiles.

For developers and CI. The `slurm_cluster` fixture starts a SLURM cluster on localhost with
tests/slurm/start_cluster.sh (root only; Debian's slurm-wlm and munge). Where that is impossible
the SLURM tests skip with the reason, except in CI with BIOMOL_DL_REQUIRE_SLURM=1, where they fail.

Environment:
  CI=true + BIOMOL_DL_REQUIRE_SLURM=1   a cluster that cannot be started fails the tests
  BIOMOL_DL_SLURM_INSTALL=1             let the fixture apt-get install slurm-wlm and munge
                                        (implied by the two above)
  BIOMOL_DL_SLURM_KEEP=1                leave a cluster this session started running afterwards

`run_snakemake_on_slurm` is the one way tests submit a workflow to the cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
SLURM_PROFILE = REPO / "profiles" / "slurm"
WORKSTATION_PROFILE = REPO / "profiles" / "workstation"
TEST_PROFILE = SLURM_DIR / "profile"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")

# "Job 3 has been submitted with SLURM jobid 17 (log: /w/logs/slurm/rule_train_mlp/a_0/17.log)."
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class SlurmCluster:
    """The running test cluster: its node's size, for capping what jobs ask for."""

    host: str
    cpus: int
    mem_mb: int
    started_here: bool


def _node_size() -> tuple[str, int, int]:
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N %c %m"], capture_output=True, text=True, check=True
    ).stdout.split()
    host, cpus, mem = out[0], out[1], out[2]
    return host, int(cpus), int(mem.rstrip("+"))


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start (or reuse) the one-node SLURM cluster; skip, or fail in CI, when that is impossible."""
    required = _truthy("CI") and os.environ.get("BIOMOL_DL_REQUIRE_SLURM") == "1"

    def unavailable(reason: str):
        if required:
            pytest.fail(f"SLURM test cluster required (CI, BIOMOL_DL_REQUIRE_SLURM=1): {reason}")
        pytest.skip(f"SLURM test cluster unavailable: {reason}")

    if not sys.platform.startswith("linux"):
        unavailable("needs Linux")
    if os.geteuid() != 0:
        unavailable("needs root to run slurmctld/slurmd/munged (tests/slurm/start_cluster.sh)")

    command = [str(SLURM_DIR / "start_cluster.sh")]
    missing = [b for b in SLURM_BINARIES if _which(b) is None]
    if missing:
        if not (required or _truthy("BIOMOL_DL_SLURM_INSTALL")):
            unavailable(
                f"{', '.join(missing)} not installed; run tests/slurm/install_slurm.sh "
                "or set BIOMOL_DL_SLURM_INSTALL=1"
            )
        command.append("--install")

    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        unavailable("tests/slurm/start_cluster.sh did not finish in 900 s")
    if proc.returncode != 0:
        unavailable(
            f"tests/slurm/start_cluster.sh exited {proc.returncode}: "
            f"{_tail(proc.stdout + proc.stderr, 15)}"
        )
    started_here = proc.stdout.strip().endswith(": started")
    host, cpus, mem_mb = _node_size()

    yield SlurmCluster(host=host, cpus=cpus, mem_mb=mem_mb, started_here=started_here)

    if started_here and not _truthy("BIOMOL_DL_SLURM_KEEP"):
        subprocess.run([str(SLURM_DIR / "stop_cluster.sh")], capture_output=True, timeout=120)


# --------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class SlurmJob:
    """One `sbatch` submission seen in Snakemake's output."""

    job_id: int
    log: Path
    name: str  # "rule_<rule>" or "group_<group>_<rules>", the plugin's log folder


@dataclass
class SlurmRun:
    """What one `snakemake --executor slurm` run did."""

    returncode: int
    output: str
    seconds: float
    workdir: Path
    jobs: list[SlurmJob] = field(default_factory=list)

    def job_ids(self, rule: str) -> list[int]:
        """SLURM job ids of the submissions that ran `rule`, alone or in a group."""
        # A group's folder is group_<group>_<rule>_<rule>... (rule names joined by "_").
        return [
            j.job_id
            for j in self.jobs
            if j.name == f"rule_{rule}"
            or (j.name.startswith("group_") and f"{j.name}_".find(f"_{rule}_", 6) > 0)
        ]

    def check(self) -> SlurmRun:
        """Raise AssertionError with the end of Snakemake's output unless the run succeeded."""
        assert self.returncode == 0, (
            f"snakemake on SLURM exited {self.returncode} after {self.seconds:.0f} s:\n"
            f"{_tail(self.output, 60)}"
        )
        return self


def _parse_jobs(output: str, workdir: Path) -> list[SlurmJob]:
    jobs = []
    for job_id, log in SUBMITTED.findall(output):
        log_path = Path(log) if Path(log).is_absolute() else workdir / log
        name = next(
            (p for p in log_path.parts if p.startswith(("rule_", "group_"))), log_path.parent.name
        )
        jobs.append(SlurmJob(job_id=int(job_id), log=log_path, name=name))
    return jobs


def run_snakemake_on_slurm(
    workdir: Path,
    configfile: Path | None = None,
    targets: tuple[str, ...] | list[str] = (),
    *,
    cluster: SlurmCluster,
    snakefile: Path | None = None,
    extra_args: tuple[str, ...] | list[str] = (),
    env: dict[str, str] | None = None,
    mem_mb_cap: int = 1000,
    timeout: float = 600,
) -> SlurmRun:
    """Run Snakemake in `workdir` with profiles/slurm + the test overlay; every rule job is sbatch'ed.

    For tests. `snakefile` defaults to the workflow's (workflow/Snakefile); `configfile` and
    `targets` are passed through. Each job's memory is lowered to `mem_mb_cap` (no cgroups on the
    test node, so nothing enforces it) and its CPUs to the node's, so that the real profile's
    requests fit the one small node. `env` adds variables (jobs inherit the environment,
    sbatch --export=ALL). On timeout Snakemake is interrupted, which cancels its SLURM jobs.
    Returns the exit status, output, wall time and the SLURM jobs; call `.check()` to assert success.
    """
    workdir = Path(workdir)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        *targets,  # before --configfile, which takes every following word as a file
        "--snakefile",
        str(snakefile or REPO / "workflow" / "Snakefile"),
        "--profile",
        str(SLURM_PROFILE),
        "--profile",
        str(TEST_PROFILE),
        "--cores",
        str(cluster.cpus),
        "--resources",
        f"mem_mb={min(mem_mb_cap, cluster.mem_mb)}",
    ]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    command += [*extra_args]

    run_env = dict(os.environ)
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
    run_env.update(env or {})

    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=workdir,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGINT lets Snakemake scancel its jobs; only then is it killed.
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        output += f"\n[test] snakemake interrupted after {timeout} s"
    seconds = time.monotonic() - start
    return SlurmRun(
        returncode=proc.returncode,
        output=output,
        seconds=seconds,
        workdir=workdir,
        jobs=_parse_jobs(output, workdir),
    )


def _scontrol_job(job_id: int) -> dict[str, str]:
    """`scontrol show job` as a dict (finished jobs stay visible for MinJobAge = 300 s)."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True, check=True
    ).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


# --------------------------------------------------------------------------------------- tests

TWO_RULES = textwrap.dedent(
    """
    rule all:
        input: "gpu.txt", "cpu.txt"

    rule prepare:
        output: "cpu.txt"
        shell: "echo job=$SLURM_JOB_ID cuda=${{CUDA_VISIBLE_DEVICES-unset}} > {output}"

    # Named like a training rule so the SLURM profile's set-resources for it apply.
    rule train_mlp:
        output: "gpu.txt"
        threads: 1
        resources: gpu=1
        shell: "echo job=$SLURM_JOB_ID cuda=${{CUDA_VISIBLE_DEVICES-unset}} > {output}"
    """
)


def _read_env_line(path: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in path.read_text().split())


@pytest.mark.slurm
def test_jobs_go_through_sbatch_and_gpu_job_gets_a_gpu(slurm_cluster, tmp_path, capsys):
    (tmp_path / "Snakefile").write_text(TWO_RULES)

    run = run_snakemake_on_slurm(
        tmp_path, snakefile=tmp_path / "Snakefile", cluster=slurm_cluster, timeout=300
    ).check()

    cpu = _read_env_line(tmp_path / "cpu.txt")
    gpu = _read_env_line(tmp_path / "gpu.txt")
    # Each rule ran inside its own SLURM job, the one the plugin reported submitting.
    assert run.job_ids("prepare") == [int(cpu["job"])]
    assert run.job_ids("train_mlp") == [int(gpu["job"])]
    assert cpu["job"] != gpu["job"]
    for job in run.jobs:
        assert job.log.is_file(), f"no SLURM log {job.log}"
    # The GPU request reached SLURM, which handed the job the node's one (fake) GPU.
    assert gpu["cuda"] == "0"
    assert cpu["cuda"] == "unset"
    gpu_job = _scontrol_job(int(gpu["job"]))
    assert "gpu:1" in gpu_job.get("TresPerJob", "") + gpu_job.get("TresPerNode", "")
    assert gpu_job["JobState"] == "COMPLETED"
    assert "gpu" not in _scontrol_job(int(cpu["job"])).get("TresPerJob", "")

    with capsys.disabled():
        print(f"\n[slurm] 2 parallel jobs through SLURM took {run.seconds:.1f} s")


def _snakemake(workdir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("profile", [SLURM_PROFILE, WORKSTATION_PROFILE], ids=lambda p: p.name)
def test_profile_parses_and_dry_runs(profile, tmp_path):
    """Every key of the profile is an option this Snakemake and SLURM plugin know."""
    (tmp_path / "Snakefile").write_text(TWO_RULES)
    proc = _snakemake(tmp_path, "--profile", str(profile), "--dry-run")
    assert proc.returncode == 0, _tail(proc.stdout + proc.stderr)
    assert "train_mlp" in proc.stdout + proc.stderr


def _workflow_rules() -> set[str]:
    from biomol_dl.models import FAMILIES

    names = {f"train_{family}" for family in FAMILIES}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        names |= set(re.findall(r"^rule (\w+):", smk.read_text(), flags=re.MULTILINE))
    return names


def test_slurm_profile_names_the_workflow_rules():
    """A renamed or new rule family cannot silently lose its cluster resources or grouping."""
    import yaml

    from biomol_dl.models import FAMILIES

    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    rules = _workflow_rules()
    assert set(profile["set-resources"]) <= rules
    assert set(profile["groups"]) <= rules
    assert set(profile["group-components"]) == set(profile["groups"].values())
    for family, meta in FAMILIES.items():
        resources = profile["set-resources"][f"train_{family}"]
        assert {"mem_mb", "runtime"} <= set(resources), family
        assert ("cpus_per_gpu" in resources) == meta["gpu"], family
        # the workflow decides whether a job needs a GPU (rule resources), not the profile
        assert "gpu" not in resources, family


# Each job writes its start and end time and the gpu count Snakemake granted it.
GPU_JOBS = textwrap.dedent(
    """
    rule all:
        input: expand("gpu{i}.txt", i=range(4))

    rule train_mlp:
        output: "gpu{i}.txt"
        threads: 1
        resources: gpu=1
        shell:
            "@PYTHON@ -c 'import time; s = time.time(); time.sleep(0.6); "
            "print(s, time.time(), {resources.gpu})' > {output}"
    """
).replace("@PYTHON@", sys.executable)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize(
    ("resources", "expected"), [((), 1), (("--resources", "gpu=2"), 2)], ids=["profile", "gpu=2"]
)
def test_workstation_profile_runs_at_most_k_gpu_jobs(resources, expected, tmp_path):
    """The profile's gpu: 1 runs GPU jobs one at a time; --resources gpu=K runs K at once."""
    (tmp_path / "Snakefile").write_text(GPU_JOBS)
    proc = _snakemake(tmp_path, "--profile", str(WORKSTATION_PROFILE), "--cores", "4", *resources)
    assert proc.returncode == 0, _tail(proc.stdout + proc.stderr)
    rows = [(tmp_path / f"gpu{i}.txt").read_text().split() for i in range(4)]
    assert {int(r[2]) for r in rows} == {1}
    assert _max_overlap([(float(r[0]), float(r[1])) for r in rows]) == expected


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_pipeline_through_slurm(slurm_cluster, tmp_path, tiny_config, capsys):
    """The real workflow with the SLURM profile: every non-local job is an sbatch job, the GPU
    training rule is scheduled with its GPU request (and trains on the CPU inside it), each
    job's MLflow run carries its SLURM job id, and a hyperparameter search's trial is a SLURM job
    of its own that tells its result to the study on the (shared) disk."""
    import copy

    import yaml
    from conftest import write_config
    from mlflow import MlflowClient

    config = copy.deepcopy(tiny_config)
    config["datasets"] = {"tiny_logbb": config["datasets"]["tiny_logbb"]}
    # the cheapest search: one trial of a small forest (no GPU, so it runs beside the training
    # jobs). The targets are the models' metrics and the trial's record, not summary.csv, which
    # would add the tuned forest's chain (local search_best, train_rf, evaluate) to the critical
    # path. Parallel trials sharing a study are tests/test_search.py's (2 at once, same code).
    config["models"]["rf_morgan"]["search"] = TINY_SEARCH
    configfile = write_config(tmp_path, config)
    targets = [
        f"results/tiny_logbb/evaluate/{m}/seed0/metrics.json" for m in ("rf_morgan", "mlp_morgan")
    ]
    targets += [f"{RF_STUDY}/trials/{slot}.json" for slot in range(TINY_SEARCH["n_trials"])]
    run = run_snakemake_on_slurm(
        tmp_path, configfile, targets, cluster=slurm_cluster, timeout=600
    ).check()

    train_ids = run.job_ids("train_mlp")
    assert len(train_ids) == 1 and run.job_ids("train_rf")
    gpu_job = _scontrol_job(train_ids[0])
    assert "gpu:1" in gpu_job.get("TresPerJob", "") + gpu_job.get("TresPerNode", "")
    train_log = (tmp_path / "logs/train_mlp/tiny_logbb/mlp_morgan_seed0.log").read_text()
    assert "epoch" in train_log
    summary = yaml.safe_load((tmp_path / "results/tiny_logbb/validate/summary.json").read_text())
    assert summary["kept"] + summary["rejected"] == summary["rows_in"]

    client = MlflowClient(f"sqlite:///{tmp_path}/results/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("biomol-dl/tiny_logbb")
    runs = client.search_runs([exp.experiment_id], "tags.rule = 'train_mlp'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["slurm_job_id"] == str(train_ids[0])
    submitted = {job.job_id for job in run.jobs}
    tagged = {
        int(r.data.tags["slurm_job_id"])
        for r in client.search_runs([exp.experiment_id], "tags.`biomol_dl.kind` = 'job'")
        if "slurm_job_id" in r.data.tags
    }
    assert tagged and tagged <= submitted
    _check_search_went_through_slurm(run, tmp_path, client, exp.experiment_id)
    with capsys.disabled():
        print(f"\n[slurm] tiny pipeline ({len(run.jobs)} SLURM jobs) took {run.seconds:.0f} s")


TINY_SEARCH = {
    "n_trials": 1,
    "sampler": "random",
    "pruner": "none",
    "space": {
        "n_estimators": {"type": "int", "low": 5, "high": 30},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 4},
    },
}
RF_STUDY = "results/tiny_logbb/search/rf_morgan"


def _check_search_went_through_slurm(run, workdir, client, experiment_id):
    """The trial slot was an sbatch job of its own; the study in storage holds its trial,
    COMPLETE, carrying the SLURM job id that ran it, as does its MLflow run."""
    import json

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    trial_ids = run.job_ids("search_trial")
    assert len(trial_ids) == TINY_SEARCH["n_trials"], run.jobs
    for job_id in trial_ids:
        job = _scontrol_job(job_id)
        assert job["JobState"] == "COMPLETED"
        assert "gpu" not in job.get("TresPerJob", "")  # a forest asks for none
    slot_log = (workdir / "logs/search_trial/tiny_logbb/rf_morgan_trial0.log").read_text()
    assert "slot 0: trial" in slot_log

    storage = JournalStorage(JournalFileBackend(str(workdir / RF_STUDY / "study.journal")))
    trials = optuna.load_study(study_name=None, storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(trial_ids)
    assert {int(t.user_attrs["slurm_job_id"]) for t in trials} == set(trial_ids)
    assert sorted(t.user_attrs["slot"] for t in trials) == list(range(len(trial_ids)))
    records = [
        json.loads((workdir / RF_STUDY / f"trials/{i}.json").read_text())
        for i in range(len(trial_ids))
    ]
    assert sorted(r["number"] for r in records) == sorted(t.number for t in trials)
    assert all(r["state"] == "complete" for r in records)

    runs = client.search_runs([experiment_id], "tags.rule = 'search_trial'")
    assert {int(r.data.tags["slurm_job_id"]) for r in runs} == set(trial_ids)
