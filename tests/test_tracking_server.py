"""biomol_dl.tracking against a real `mlflow server` on localhost (tracking-server mode)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from mlflow_server import assert_parallel_runs, run_parallel_jobs, start_server, stop_server

from biomol_dl import tracking

pytestmark = pytest.mark.server

ENV_VARS = [
    "MLFLOW_TRACKING_URI",
    *(v for k, v in vars(tracking).items() if k.startswith("ENV_") and isinstance(v, str)),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with start_server(tmp_path_factory.mktemp("mlflow_server")) as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path, monkeypatch, server):
    """A workflow directory as cwd whose jobs track to the module's server."""
    saved = dict(os.environ)
    for var in ENV_VARS:
        os.environ.pop(var, None)
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    # Each test gets its own experiments on the shared server.
    os.environ["BIOMOL_DL_EXPERIMENT_PREFIX"] = f"test-{tmp_path.name}"
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    tracking._stop_syncer()
    os.environ.clear()
    os.environ.update(saved)


def start(mode: str, datasets=("tiny_a", "tiny_b")) -> str:
    config = {"datasets": {d: {"kind": "smiles"} for d in datasets}, "tracking": {"mode": mode}}
    return tracking.workflow_start(config, os.getcwd())


def run_of(client, rule: str):
    experiments = [e.experiment_id for e in client.search_experiments()]
    prefix = f"tags.`biomol_dl.workflow_run_id` = '{os.environ['BIOMOL_DL_PARENT_RUN_ID']}'"
    (run,) = client.search_runs(experiments, f"{prefix} and tags.rule = '{rule}'")
    return run


@pytest.mark.parametrize("mode", ["live", "spool"])
def test_eight_parallel_jobs_on_a_server_lose_nothing(workdir, server, mode):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "0.5"
    main = start(mode)
    assert os.environ["MLFLOW_TRACKING_URI"] == server.url
    jobs = run_parallel_jobs(8, ["tiny_a", "tiny_b"], workdir, epochs=20)
    tracking.workflow_end("FINISHED")
    client = tracking._client(server.url)
    run_ids = [job["run_id"] for job in jobs] if mode == "live" else None
    assert_parallel_runs(client, main, 8, epochs=20, run_ids=run_ids)
    assert client.get_run(main).info.status == "FINISHED"
    # Nothing went to the local default store.
    assert not (workdir / "results" / "mlflow" / "mlflow.db").exists()


@pytest.mark.parametrize("mode", ["live", "spool"])
def test_failure_error_artifact_and_lineage_through_the_server(workdir, server, mode):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "3600"
    start(mode)
    with tracking.job_run(rule="validate", wildcards={"dataset": "tiny_a"},
                          outputs={"clean": "clean.csv"}):  # fmt: skip
        Path("clean.csv").write_text("id,input,row,logBB\na,CCO,1,0.1\n")
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.job_run(rule="split", wildcards={"dataset": "tiny_a", "seed": 0},
                              inputs={"clean": "clean.csv"}):  # fmt: skip
            raise RuntimeError("boom in split")
    tracking.workflow_end("FAILED")
    client = tracking._client(server.url)
    failed = run_of(client, "split")
    assert failed.info.status == "FAILED"
    assert failed.data.tags["biomol_dl.error"] == "RuntimeError: boom in split"
    assert failed.data.tags["lineage.clean.run_id"] == run_of(client, "validate").info.run_id
    error_txt = client.download_artifacts(failed.info.run_id, "error.txt", str(workdir))
    assert "boom in split" in Path(error_txt).read_text()
    assert client.get_run(os.environ["BIOMOL_DL_PARENT_RUN_ID"]).info.status == "FAILED"


def test_server_lost_mid_job_warns_and_the_job_finishes(tmp_path, monkeypatch, caplog):
    saved = dict(os.environ)
    try:
        for var in ENV_VARS:
            os.environ.pop(var, None)
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # no minutes of HTTP retries here
        monkeypatch.chdir(tmp_path)
        with start_server(tmp_path / "server") as srv:
            os.environ["MLFLOW_TRACKING_URI"] = srv.url
            epochs_done = 0
            with caplog.at_level(logging.WARNING, logger="biomol_dl.tracking"):
                with tracking.job_run(rule="train_mlp", wildcards={"dataset": "tiny_a"}) as run:
                    run.log_metrics({"loss": 1.0}, step=0)
                    stop_server(srv)
                    for epoch in range(1, 4):
                        run.log_metrics({"loss": 1.0 / epoch}, step=epoch)
                        epochs_done += 1
            assert epochs_done == 3
            assert not run.active
            assert sum("tracking is off" in r.getMessage() for r in caplog.records) == 1
            # A new job now fails fast, before its body.
            with pytest.raises(tracking.TrackingUnavailable, match="127.0.0.1"):
                with tracking.job_run(rule="evaluate", wildcards={"dataset": "tiny_a"}):
                    pass
    finally:
        os.environ.clear()
        os.environ.update(saved)
