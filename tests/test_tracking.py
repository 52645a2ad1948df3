"""biomol_dl.tracking against the default local SQLite store: run hierarchy, parallel writers
(live and spooled), failures, stale runs, lineage, hashing, an unreachable store, the off switch."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow_server import assert_parallel_runs, free_port, run_parallel_jobs

from biomol_dl import tracking

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from snakemake_job import incomplete_outputs, job_from_snakemake  # noqa: E402

ENV_VARS = [
    "MLFLOW_TRACKING_URI",
    *(v for k, v in vars(tracking).items() if k.startswith("ENV_") and isinstance(v, str)),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty workflow directory as cwd, with no tracking variables inherited."""
    saved = dict(os.environ)
    for var in ENV_VARS:
        os.environ.pop(var, None)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    tracking._stop_syncer()
    os.environ.clear()
    os.environ.update(saved)


def start(datasets=("tiny_a", "tiny_b"), mode="live", **tracking_cfg) -> str:
    config = {
        "datasets": {d: {"kind": "smiles"} for d in datasets},
        "tracking": {"mode": mode, **tracking_cfg},
    }
    return tracking.workflow_start(config, os.getcwd(), incomplete=incomplete_outputs)


def client():
    return tracking._client(tracking.tracking_uri())


def all_experiment_ids():
    return [e.experiment_id for e in client().search_experiments()]


def test_workflow_start_creates_store_experiments_and_parents(workdir):
    main = start()
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert uri == f"sqlite:///{workdir / 'results/mlflow/mlflow.db'}"
    assert (workdir / "results/mlflow/mlflow.db").is_file()
    names = {e.name for e in client().search_experiments()}
    assert {"biomol-dl/workflow", "biomol-dl/tiny_a", "biomol-dl/tiny_b"} <= names
    top = client().get_run(main)
    assert top.info.status == "RUNNING"
    assert top.data.tags["biomol_dl.kind"] == "workflow"
    parents = tracking._parent_for("biomol-dl/tiny_a")
    assert client().get_run(parents).data.tags["mlflow.parentRunId"] == main
    assert "config.yaml" in [a.path for a in client().list_artifacts(main)]

    tracking.workflow_end("FINISHED")
    for rid in [main, parents]:
        assert client().get_run(rid).info.status == "FINISHED"


def test_eight_parallel_live_jobs_on_sqlite_lose_nothing(workdir):
    main = start(mode="live")
    jobs = run_parallel_jobs(8, ["tiny_a", "tiny_b"], workdir, epochs=20)
    assert all(job["mlflow_imported"] for job in jobs)
    assert_parallel_runs(client(), main, 8, epochs=20, run_ids=[job["run_id"] for job in jobs])


def test_eight_parallel_spooled_jobs_lose_nothing_and_skip_mlflow(workdir):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "0.5"  # the syncer runs while the jobs write
    main = start(mode="spool")
    jobs = run_parallel_jobs(8, ["tiny_a", "tiny_b"], workdir, epochs=20)
    assert not any(job["mlflow_imported"] or job["run_id"] for job in jobs)
    tracking.workflow_end("FINISHED")
    assert_parallel_runs(client(), main, 8, epochs=20)
    assert not list((workdir / "results/mlflow/spool").glob("*.jsonl*"))


@pytest.mark.slow  # another 8 processes importing mlflow: ~15 s on 2 cores
def test_eight_jobs_on_a_fresh_store_without_workflow_start(workdir):
    # The known trap: on a fresh SQLite file, concurrent schema creation loses all but one job
    # unless the store is created under a lock (a job run outside Snakemake has no onstart).
    run_ids = [job["run_id"] for job in run_parallel_jobs(8, ["tiny_a", "tiny_b"], workdir, 3)]
    c = client()
    runs = [c.get_run(r) for r in run_ids]
    assert len(set(run_ids)) == 8 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        name = c.get_experiment(run.info.experiment_id).name
        assert name == f"biomol-dl/{run.data.tags['wildcard.dataset']}"
        assert len(c.get_metric_history(run.info.run_id, "val_loss")) == 3


def test_job_tags_params_and_snakemake_object(workdir):
    from snakemake.iocontainers import Namedlist

    start()
    Path("clean.csv").write_text("id,input\na,C\n")
    output = Namedlist(fromdict={"model": "model.pt", "history": "history.csv"})
    smk = SimpleNamespace(
        rule="train_mlp",
        wildcards=Namedlist(fromdict={"dataset": "tiny_a", "model": "mlp", "seed": "0"}),
        params=Namedlist(fromdict={"model": {"params": {"lr": 0.01, "hidden": [8]}}}),
        input=Namedlist(fromdict={"clean": "clean.csv"}),
        output=output,
        log=Namedlist(fromdict={"log": "train.log"}),
        threads=1,
        resources=Namedlist(fromdict={"_cores": 1, "mem_mb": 100}),
        config={},
    )
    job = job_from_snakemake(smk)
    assert job.log_file == "train.log" and job.resources == {"mem_mb": 100}
    os.environ["SLURM_JOB_ID"] = "4242"
    with tracking.job_run(job) as run:
        Path("model.pt").write_bytes(b"weights")
        Path("history.csv").write_text("epoch\n0\n")
        run.log_metrics({"val_rmse": 0.5, "skipped": None}, step=3)
        run.log_params({"model.params.lr": 0.01})  # same value again: fine
    got = client().get_run(run.run_id)
    tags = got.data.tags
    assert got.info.run_name == "train_mlp dataset=tiny_a model=mlp seed=0"
    assert got.info.status == "FINISHED"
    assert tags["rule"] == "train_mlp" and tags["wildcard.seed"] == "0"
    assert tags["slurm_job_id"] == "4242"
    assert tags["biomol_dl.host"] == socket.gethostname()
    assert tags["config_hash"] not in ("", "unknown")
    assert "mlflow.source.git.commit" in tags and tags["git_dirty"] in {"true", "false", "unknown"}
    assert tags["lineage.clean.sha256"] == tracking.file_sha256("clean.csv")
    assert tags["output.model.sha256"] == tracking.file_sha256("model.pt")
    assert tags["output.history.path"] == "history.csv"
    assert got.data.params == {"model.params.lr": "0.01", "model.params.hidden": "[8]"}
    assert got.data.metrics == {"val_rmse": 0.5}


def test_failing_job_ends_failed_with_message(workdir):
    start()
    with pytest.raises(ValueError, match="row 3"):
        with tracking.job_run(rule="validate", wildcards={"dataset": "tiny_a"}) as run:
            raise ValueError("data.csv row 3 column smiles: unparsable SMILES 'C1CC'")
    got = client().get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags["biomol_dl.error"].startswith("ValueError: data.csv row 3")
    text = client().download_artifacts(run.run_id, "error.txt", str(workdir))
    assert "unparsable SMILES" in Path(text).read_text()


def test_preempted_job_ends_killed(workdir):
    start()
    with pytest.raises(SystemExit):
        with tracking.job_run(rule="train_mlp", wildcards={"dataset": "tiny_a"}) as run:
            raise SystemExit(143)  # what training.Preempted is
    assert client().get_run(run.run_id).info.status == "KILLED"


def test_workflow_end_failed_kills_leftover_jobs(workdir):
    main = start()
    cm = tracking.job_run(rule="split", wildcards={"dataset": "tiny_b", "seed": 0})
    leftover = cm.__enter__()  # a job that never got to end its run
    Path("snakemake.log").write_text("Error in rule split\n")
    tracking.workflow_end("FAILED", log=["snakemake.log"])  # Snakemake hands hooks a list
    assert client().get_run(main).info.status == "FAILED"
    assert client().get_run(tracking._parent_for("biomol-dl/tiny_b")).info.status == "FAILED"
    assert client().get_run(leftover.run_id).info.status == "KILLED"
    assert "snakemake.log" in [a.path for a in client().list_artifacts(main)]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_running_runs_are_killed_on_next_start(workdir):
    first = start()
    c = client()
    dead = _dead_pid()
    exp = c.get_experiment_by_name("biomol-dl/tiny_a").experiment_id
    me = socket.gethostname()

    def running(**tags):
        return c.create_run(exp, tags={k.replace("__", "."): str(v) for k, v in tags.items()})

    # The first workflow's process "died": its run and its jobs must go.
    c.set_tag(first, "biomol_dl.pid", dead)
    job_of_dead = running(biomol_dl__kind="job", biomol_dl__workflow_run_id=first)
    # Not tied to a workflow: own process checks.
    local_dead = running(biomol_dl__kind="job", biomol_dl__host=me, biomol_dl__pid=dead)
    local_alive = running(biomol_dl__kind="job", biomol_dl__host=me, biomol_dl__pid=os.getpid())
    remote_recent = running(biomol_dl__kind="job", biomol_dl__host="node-x", biomol_dl__pid=1)
    remote_old = c.create_run(
        exp,
        start_time=int((time.time() - 48 * 3600) * 1000),
        tags={"biomol_dl.kind": "job", "biomol_dl.host": "node-x"},
    )

    second = start()
    status = {r: c.get_run(r).info.status for r in [first, second]}
    for run in [job_of_dead, local_dead, local_alive, remote_recent, remote_old]:
        status[run.info.run_id] = c.get_run(run.info.run_id).info.status
    assert status[first] == "KILLED"
    assert status[job_of_dead.info.run_id] == "KILLED"
    assert status[local_dead.info.run_id] == "KILLED"
    assert status[remote_old.info.run_id] == "KILLED"
    assert status[local_alive.info.run_id] == "RUNNING"
    assert status[remote_recent.info.run_id] == "RUNNING"
    assert status[second] == "RUNNING"
    assert "gone" in c.get_run(local_dead.info.run_id).data.tags["biomol_dl.killed_reason"]


def run_of(rule: str):
    """The one run of `rule` in the store."""
    runs = client().search_runs(all_experiment_ids(), f"tags.rule = '{rule}'")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


@pytest.mark.parametrize("mode", ["live", "spool"])
def test_lineage_walks_back_from_model_to_raw_data(workdir, mode):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "3600"  # spool: synced below, by workflow_end
    start(mode=mode)
    ds = {"dataset": "tiny_a"}
    Path("resources").mkdir()

    def job(rule, wildcards, inputs, outputs):
        with tracking.job_run(rule=rule, wildcards=wildcards, inputs=inputs, outputs=outputs):
            for path in outputs.values():
                Path(path).write_text(f"{rule} wrote {path}\n")

    job("fetch", ds, {}, {"raw": "resources/raw.csv"})
    job("validate", ds, {"raw": "resources/raw.csv"}, {"clean": "clean.csv"})
    job("split", {**ds, "seed": 0}, {"clean": "clean.csv"}, {"split": "seed0.csv"})
    job("featurize", {**ds, "featurizer": "morgan"}, {"clean": "clean.csv"},
        {"features": "morgan.pt"})  # fmt: skip
    job("train_mlp", {**ds, "model": "mlp", "seed": 0},
        {"clean": "clean.csv", "split": "seed0.csv", "features": "morgan.pt"},
        {"model": "model.pt"})  # fmt: skip
    tracking.workflow_end("FINISHED")

    walk = tracking.lineage(run_of("train_mlp").info.run_id)
    by_rule = {step["rule"]: step for step in walk}
    assert walk[0]["rule"] == "train_mlp"
    assert set(by_rule) == {"train_mlp", "featurize", "split", "validate", "fetch"}
    ids = {rule: run_of(rule).info.run_id for rule in by_rule}
    assert by_rule["train_mlp"]["inputs"]["features"]["run_id"] == ids["featurize"]
    assert by_rule["train_mlp"]["inputs"]["split"]["run_id"] == ids["split"]
    assert by_rule["featurize"]["inputs"]["clean"]["run_id"] == ids["validate"]
    assert by_rule["validate"]["inputs"]["raw"]["run_id"] == ids["fetch"]
    raw_sha = tracking.file_sha256("resources/raw.csv")
    assert by_rule["validate"]["inputs"]["raw"]["sha256"] == raw_sha
    assert by_rule["fetch"]["outputs"]["raw"] == raw_sha


def test_spooled_failure_and_unfinished_job_after_sync(workdir):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "3600"
    main = start(mode="spool")
    with pytest.raises(ValueError, match="row 3"):
        with tracking.job_run(rule="validate", wildcards={"dataset": "tiny_a"}) as run:
            run.log_metrics({"rows_in": 10})
            raise ValueError("data.csv row 3 column smiles: unparsable SMILES")
    assert run.run_id is None and run.spool_file.is_file()
    leftover = tracking.job_run(rule="split", wildcards={"dataset": "tiny_b", "seed": 1})
    leftover.__enter__()  # a job killed before it could end its run
    tracking.workflow_end("FAILED")

    failed, killed = run_of("validate"), run_of("split")
    assert failed.info.status == "FAILED" and failed.data.metrics == {"rows_in": 10.0}
    assert failed.data.tags["biomol_dl.error"].startswith("ValueError: data.csv row 3")
    assert failed.data.tags["mlflow.parentRunId"] == tracking._parent_for("biomol-dl/tiny_a")
    text = client().download_artifacts(failed.info.run_id, "error.txt", str(workdir))
    assert "unparsable SMILES" in Path(text).read_text()
    assert killed.info.status == "KILLED"
    assert client().get_run(main).info.status == "FAILED"
    assert not list((workdir / "results/mlflow/spool").glob("*.jsonl*"))


def test_spool_waits_for_an_unreachable_store(workdir):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "3600"
    start(mode="spool")
    with tracking.job_run(rule="featurize", wildcards={"dataset": "tiny_a"}) as run:
        run.log_metrics({"n": 3})
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(tracking.TrackingUnavailable, match="127.0.0.1"):
        tracking.sync_spool(uri=down)
    assert run.spool_file.is_file()  # kept for later
    assert tracking.sync_spool() == 1
    assert run_of("featurize").data.metrics == {"n": 3.0}
    assert not run.spool_file.exists()


def test_syncer_thread_syncs_during_the_workflow(workdir):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "0.2"
    start(mode="spool")
    with tracking.job_run(rule="split", wildcards={"dataset": "tiny_a", "seed": 0}) as run:
        run.log_metrics({"n_train": 7})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and run.spool_file.exists():
        time.sleep(0.1)
    assert run_of("split").info.status == "FINISHED"


def test_next_start_syncs_what_a_dead_invocation_spooled(workdir):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "3600"
    first = start(mode="spool")
    tracking.job_run(rule="train_rf", wildcards={"dataset": "tiny_a"}).__enter__()
    tracking._stop_syncer()  # the invocation dies: no workflow_end
    c = client()
    c.set_tag(first, "biomol_dl.pid", _dead_pid())
    start(mode="spool")
    assert run_of("train_rf").info.status == "KILLED"
    assert c.get_run(first).info.status == "KILLED"


def test_lineage_prefers_the_same_path_when_contents_coincide(workdir):
    start()
    for name in ["a", "b"]:
        with tracking.job_run(
            rule="validate",
            wildcards={"dataset": f"tiny_{name}"},
            outputs={"rejects": f"rejects_{name}.csv"},
        ) as run:
            Path(f"rejects_{name}.csv").write_text("row,id,column,value,reason\n")
        if name == "a":
            producer_a = run.run_id
    with tracking.job_run(rule="report", inputs={"rejects": "rejects_a.csv"}) as run:
        pass
    tags = client().get_run(run.run_id).data.tags
    assert tags["lineage.rejects.run_id"] == producer_a


def test_hash_cache_and_size_limit(workdir):
    os.environ["BIOMOL_DL_HASH_CACHE"] = str(workdir / "cache.sqlite")
    path = workdir / "features.pt"
    path.write_bytes(b"x" * 1000)
    first = tracking.file_sha256(path)
    stat = path.stat()
    path.write_bytes(b"y" * 1000)  # same size; restore the mtime: the cache cannot tell
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tracking.file_sha256(path) == first
    path.write_bytes(b"y" * 1001)
    assert tracking.file_sha256(path) != first
    os.environ["BIOMOL_DL_HASH_MAX_MB"] = "0.0001"
    assert tracking.file_sha256(path) is None


def test_unreachable_server_fails_fast_before_the_body(workdir):
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{free_port()}"
    os.environ["BIOMOL_DL_TRACKING_TIMEOUT"] = "3"
    ran = []
    t0 = time.monotonic()
    with pytest.raises(tracking.TrackingUnavailable) as err:
        with tracking.job_run(rule="train_mlp", wildcards={"dataset": "tiny_a"}):
            ran.append(True)
    assert time.monotonic() - t0 < 10
    assert not ran
    message = str(err.value)
    assert "\n" not in message and "127.0.0.1" in message and "BIOMOL_DL_TRACKING=0" in message
    with pytest.raises(tracking.TrackingUnavailable):
        start()


def test_unusable_sqlite_path_fails_fast(workdir):
    blocker = workdir / "not_a_dir"
    blocker.write_text("a file where the store's folder should be")
    with pytest.raises(tracking.TrackingUnavailable, match="not_a_dir"):
        start(uri=f"sqlite:///{blocker}/mlflow.db")


def test_tracking_off_is_a_no_op(workdir):
    assert start(enabled=False) is None
    assert os.environ["BIOMOL_DL_TRACKING"] == "0"
    with tracking.job_run(rule="train_mlp", wildcards={"dataset": "tiny_a"}) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_params({"lr": 1})
        run.log_artifact("nothing.txt")
    assert run.run_id is None
    assert not (workdir / "results").exists()
    tracking.workflow_end("FINISHED")


def test_retry_survives_database_is_locked():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking._retry(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        tracking._retry(lambda: (_ for _ in ()).throw(ValueError("not transient")))


def test_relative_sqlite_uri_is_made_absolute(tmp_path):
    uri = tracking.tracking_uri({"tracking": {"uri": "sqlite:///db/m.db"}}, tmp_path)
    assert uri == f"sqlite:///{tmp_path / 'db/m.db'}"
    assert tracking.tracking_uri({"tracking": {"uri": "http://h:5000"}}) == "http://h:5000"


def test_log_torch_model_registers_a_version(workdir):
    torch = pytest.importorskip("torch")
    import numpy as np

    start()
    with tracking.job_run(rule="train_mlp", wildcards={"dataset": "tiny_a"}) as run:
        uri = tracking.log_torch_model(
            run, torch.nn.Linear(3, 1), np.zeros((2, 3), dtype=np.float32),
            registered_model_name="tiny_a_best",
        )  # fmt: skip
        assert client().get_run(run.run_id).info.status == "RUNNING"
    assert uri
    versions = client().search_model_versions("name = 'tiny_a_best'")
    assert [v.run_id for v in versions] == [run.run_id]
    assert client().get_run(run.run_id).info.status == "FINISHED"


def test_mode_env_overrides_config(workdir):
    assert tracking.tracking_mode({}) == "spool"
    assert tracking.tracking_mode({"tracking": {"mode": "live"}}) == "live"
    os.environ["BIOMOL_DL_TRACKING_MODE"] = "spool"
    assert tracking.tracking_mode({"tracking": {"mode": "live"}}) == "spool"
    os.environ["BIOMOL_DL_TRACKING_MODE"] = "sometimes"
    with pytest.raises(ValueError, match="spool"):
        tracking.tracking_mode({})


def test_sqlite_store_folder_is_created_only_inside_the_working_directory(
    workdir, tmp_path_factory
):
    outside = tmp_path_factory.mktemp("outside")
    missing = outside / "typo" / "mlflow"
    uri = f"sqlite:///{missing}/mlflow.db"
    with pytest.raises(tracking.TrackingUnavailable) as err:
        start(uri=uri)
    message = str(err.value)
    assert "\n" not in message and uri in message and f"{missing} does not exist" in message
    assert not (outside / "typo").exists()
    tracking.check_store(f"sqlite:///{outside}/mlflow.db")  # named outside, folder exists: fine
    start(uri="sqlite:///stores/new/mlflow.db")  # inside the working directory: created
    assert (workdir / "stores/new/mlflow.db").is_file()


def _mark_incomplete(output: str) -> None:
    """What Snakemake's file persistence writes when a job starts (.snakemake/incomplete)."""
    name = base64.urlsafe_b64encode(output.encode()).decode()
    marker = Path(".snakemake/incomplete") / name
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text('{"external_jobid": null}')


def test_finished_job_whose_outputs_snakemake_discarded_becomes_orphaned(workdir):
    os.environ["BIOMOL_DL_SYNC_SECONDS"] = "3600"
    first = start(mode="spool")
    model = "results/tiny_a/train/mlp/seed0/model.pt"
    wildcards = {"dataset": "tiny_a", "model": "mlp", "seed": 0}
    _mark_incomplete(model)  # the job started ...
    with tracking.job_run(rule="train_mlp", wildcards=wildcards, outputs={"model": model}):
        Path(model).parent.mkdir(parents=True)
        Path(model).write_text("weights")
    # ... and finished, but the main process was SIGKILLed before it removed the marker;
    # a job it did accept has no marker left.
    with tracking.job_run(rule="split", wildcards=wildcards, outputs={"split": "seed0.csv"}):
        Path("seed0.csv").write_text("id,part\n")
    tracking._stop_syncer()
    client().set_tag(first, "biomol_dl.pid", _dead_pid())
    start(mode="spool")  # the next invocation (--rerun-incomplete) imports the spool
    orphan = run_of("train_mlp")
    assert orphan.info.status == "KILLED"
    assert orphan.data.tags["biomol_dl.orphaned"] == "true"
    assert model in orphan.data.tags["biomol_dl.killed_reason"]
    assert run_of("split").info.status == "FINISHED"


def test_live_job_outliving_its_workflow_run_is_orphaned(workdir):
    main = start(mode="live")
    job = tracking.job_run(rule="train_rf", wildcards={"dataset": "tiny_a"})
    run = job.__enter__()  # e.g. a SLURM job on another node, still running ...
    client().set_terminated(main, "KILLED")  # ... when the next invocation found its main dead
    job.__exit__(None, None, None)
    got = client().get_run(run.run_id)
    assert got.info.status == "KILLED" and got.data.tags["biomol_dl.orphaned"] == "true"
    assert main in got.data.tags["biomol_dl.killed_reason"]


JOB = """
import sys, time
from biomol_dl import tracking
with tracking.job_run(rule="train_rf", wildcards={"dataset": "tiny_a"}) as run:
    print(run.spool_file, flush=True)
    time.sleep(60)
"""


def test_watchdog_stops_a_job_whose_main_process_died(workdir):
    start(mode="spool")
    main = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    stat = Path(f"/proc/{main.pid}/stat").read_text().rsplit(")", 1)[1].split()
    identity = {
        "host": socket.gethostname(),
        "pid_ns": os.readlink("/proc/self/ns/pid"),
        "pid": main.pid,
        "start_ticks": int(stat[19]),
    }
    env = {
        **os.environ,
        "BIOMOL_DL_WORKFLOW_PROCESS": json.dumps(identity),
        "BIOMOL_DL_WATCHDOG_SECONDS": "0.2",
    }
    job = subprocess.Popen([sys.executable, "-c", JOB], env=env, stdout=subprocess.PIPE, text=True)
    try:
        spool_file = Path(job.stdout.readline().strip())
        assert job.poll() is None, "the job runs while its main process lives"
        main.kill()  # not reaped yet: a zombie is gone too
        assert job.wait(timeout=20) == 143
    finally:
        for proc in (job, main):
            proc.kill()
            proc.wait()
    assert '"status": "KILLED"' in spool_file.read_text()
    tracking.sync_spool()
    orphan = run_of("train_rf")
    assert orphan.info.status == "KILLED" and orphan.data.tags["biomol_dl.orphaned"] == "true"
    assert f"pid {main.pid}" in orphan.data.tags["biomol_dl.killed_reason"]


TRACKING_LAYERS = [
    "settings", "store", "process", "values", "lineage", "sinks", "spool", "runs", "jobs",
    "stale", "hooks",
]  # fmt: skip


def test_each_tracking_module_imports_only_modules_above_it():
    import ast

    package = Path(tracking.__file__).parent
    assert sorted(p.stem for p in package.glob("*.py")) == sorted([*TRACKING_LAYERS, "__init__"])
    for position, name in enumerate(TRACKING_LAYERS):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("biomol_dl.tracking.")
        }
        assert imported <= set(TRACKING_LAYERS[:position]), (name, imported)


def test_job_run_takes_a_job_not_a_snakemake_object(workdir):
    with pytest.raises(TypeError, match="biomol_dl.job.Job"):
        with tracking.job_run(SimpleNamespace(rule="split")):
            pass


def _code_words(tree) -> set[str]:
    """Every identifier, imported module name and non-docstring string constant of a module."""
    import ast

    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            words.add(node.module or "")
        elif isinstance(node, ast.arg):
            words.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                words.add(node.value)
    return words


def test_the_library_never_sees_snakemake_and_only_tracking_imports_mlflow():
    """docs/ARCHITECTURE.md: outside docstrings and comments, nothing under scripts/biomol_dl/
    says `snakemake` (no import, object, attribute or path of it; prose may name the tool), and
    only biomol_dl/tracking/ imports mlflow."""
    import ast

    library = Path(tracking.__file__).parents[1]
    for path in sorted(library.rglob("*.py")):
        tree = ast.parse(path.read_text())
        assert not [w for w in _code_words(tree) if "snakemake" in w], path
        imported = {
            name.split(".")[0]
            for node in ast.walk(tree)
            for name in (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom)
                else []
            )
        }  # fmt: skip
        if "tracking" not in path.relative_to(library).parts:
            assert "mlflow" not in imported, path
