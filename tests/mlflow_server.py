"""Test helpers for anything that talks to MLflow: a real `mlflow server` on localhost, and N
jobs that log through `tracking.job_run` at the same moment.

Import from a test module (tests/ is on sys.path under pytest's default import mode):

    from mlflow_server import start_server, run_parallel_jobs

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        with start_server(tmp_path_factory.mktemp("mlflow_server")) as srv:
            yield srv          # srv.url, e.g. http://127.0.0.1:53211

The server keeps its SQLite store and artifacts under the given folder and is stopped (its
whole process group) when the `with` block ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


@dataclass
class MlflowServer:
    url: str
    root: Path
    process: subprocess.Popen
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def start_server(root: Path, timeout: float = 90) -> Iterator[MlflowServer]:
    """Start `mlflow server` on a free localhost port; wait for /health; stop it afterwards."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    # No GenAI job runner: it starts eight extra processes, each importing mlflow.
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
    server = MlflowServer(url, root, proc, log)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not come up on {url}:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.3)
        yield server
    finally:
        stop_server(server)


def stop_server(server: MlflowServer) -> None:
    """Stop the server's process group (it started it: start_new_session) and wait."""
    if server.process.poll() is not None:
        return
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=20)
    except ProcessLookupError:
        pass


# A job as a separate process: a live job pays the mlflow import first, then every job waits at a
# file barrier so all create their runs at the same moment, and logs EPOCHS epochs of metrics.
WORKER = r"""
import json, os, sys, time
from pathlib import Path

if not os.environ.get("BIOMOL_DL_SPOOL"):
    import mlflow  # noqa: F401  (before the barrier)
from biomol_dl import tracking

index, dataset, barrier, epochs = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
(barrier / f"ready{index}").touch()
while not (barrier / "go").exists():
    time.sleep(0.005)
with tracking.job_run(
    rule="train_mlp",
    wildcards={"dataset": dataset, "model": "mlp", "seed": index},
    params={"model": {"params": {"lr": 0.001 * (index + 1), "hidden": [8, 4]}}},
) as run:
    for epoch in range(epochs):
        run.log_metrics(
            {"train_loss": 1.0 / (epoch + 1), "val_loss": 2.0 / (epoch + 1), "val_rmse": index},
            step=epoch,
        )
    run.log_metrics({"test_rmse": index + 0.5})
print(json.dumps({"run_id": run.run_id, "mlflow_imported": "mlflow" in sys.modules}))
"""


def run_parallel_jobs(
    n: int,
    datasets: Sequence[str],
    workdir: Path,
    epochs: int = 20,
    env: Mapping[str, str] | None = None,
    timeout: float = 240,
) -> list[dict]:
    """Run n worker processes (job i logs to datasets[i % len]) at once.

    Returns what each printed: {"run_id" (None in spool mode), "mlflow_imported"}.

    env: the environment the jobs inherit (default: os.environ, e.g. after workflow_start).
    """
    barrier = Path(workdir) / "barrier"
    barrier.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(SCRIPTS), full_env.get("PYTHONPATH", "")] if p
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(i),
                datasets[i % len(datasets)],
                str(barrier),
                str(epochs),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=workdir,
        )  # fmt: skip
        for i in range(n)
    ]
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob("ready*"))) < n:
        if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (barrier / "go").touch()
    results, errors = [], []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        if proc.returncode != 0:
            errors.append(f"job {i} exited {proc.returncode}:\n{err[-3000:]}")
        else:
            results.append(json.loads(out.strip().splitlines()[-1]))
    if errors:
        raise AssertionError("\n".join(errors))
    return results


def assert_parallel_runs(client, workflow_run_id: str, n: int, epochs: int = 20, run_ids=None):
    """Exactly n runs are the workflow's jobs (these run_ids, when given): FINISHED, in their
    dataset's experiment, under that experiment's workflow run, with every epoch's metrics."""
    parents = json.loads(os.environ["BIOMOL_DL_PARENT_RUNS"])
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    jobs = client.search_runs(
        list(experiments),
        f"tags.`biomol_dl.workflow_run_id` = '{workflow_run_id}' and tags.`biomol_dl.kind` = 'job'",
    )
    assert len(jobs) == n, [r.info.run_name for r in jobs]
    if run_ids is not None:
        assert sorted(r.info.run_id for r in jobs) == sorted(run_ids)
    assert len({r.data.tags["wildcard.seed"] for r in jobs}) == n
    prefix = os.environ.get("BIOMOL_DL_EXPERIMENT_PREFIX", "biomol-dl")
    for run in jobs:
        dataset = run.data.tags["wildcard.dataset"]
        name = experiments[run.info.experiment_id]
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        assert name == f"{prefix}/{dataset}", (run.info.run_name, name)
        assert run.data.tags["mlflow.parentRunId"] == parents[name]
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == list(range(epochs))
        seed = int(run.data.tags["wildcard.seed"])
        assert run.data.metrics["test_rmse"] == seed + 0.5
        assert float(run.data.params["model.params.lr"]) == 0.001 * (seed + 1)
