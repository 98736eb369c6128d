"""Runs carry an owner and a heartbeat: ``--resume`` refuses a run another process is
still measuring (one line naming it), takes over one whose owner is gone, and needs
``--force`` only where quantlab cannot tell (another host that stopped beating)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fake_agent import ScriptedAgent
from test_records import sample_job

from quantlab.harness.dispatch import Dispatcher
from quantlab.harness.environment import new_run
from quantlab.harness.errors import StoreError, UserError
from quantlab.harness.plan import build_plan, discover, select_devices
from quantlab.harness.records import ModelRef, Plan, RawResult, Settings
from quantlab.harness.store import Store
from quantlab.harness.store import schema as t

ROOT = Path(__file__).resolve().parent.parent
QUANTLAB = [sys.executable, "-m", "quantlab"]
OWNER = """
import sys, time
sys.path.insert(0, "tests")
from test_records import sample_job
from quantlab.harness.environment import new_run
from quantlab.harness.records import Plan, Settings
from quantlab.harness.store import Store
store = Store.open(sys.argv[1])
run = new_run(Settings())
store.create_run(run, Plan(jobs=(sample_job(), sample_job("cpu"))))
store.mark_running(run.run_id, sample_job().job_id)
print(run.run_id, flush=True)
time.sleep(600)
"""


def _owner_process(results: Path) -> tuple[subprocess.Popen[str], str]:
    """Another quantlab process on this host that made a run and is measuring it."""
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(results)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _set_run(store: Store, run_id: str, **values: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(t.runs.update().where(t.runs.c.run_id == run_id).values(**values))


def _one_run(store: Store) -> str:
    run = new_run(Settings())
    store.create_run(run, Plan(jobs=(sample_job(), sample_job("cpu"))))
    return run.run_id


def test_resume_refuses_a_live_owner_and_takes_over_once_it_is_killed(tmp_path: Path) -> None:
    proc, run_id = _owner_process(tmp_path)
    try:
        store = Store.open(str(tmp_path))
        for force in (False, True):  # a live owner on this host: --force does not help
            with pytest.raises(UserError) as info:
                store.reopen_run(run_id, force=force)
            line = info.value.one_line()
            assert f"run {run_id} is still running: pid {proc.pid} on {socket.gethostname()}" \
                in line and "last heartbeat" in line and f"kill {proc.pid}" in line
            assert "\n" not in line
        assert store.load_run(run_id).status == "running"
        assert [e.status for e in store.load_run(run_id).entries] == ["running", "pending"]
        proc.send_signal(signal.SIGKILL)  # as a crash or an OOM kill would
        proc.wait()
        jobs = store.reopen_run(run_id)  # its pid is gone: no --force needed
        assert [j.job_id for j in jobs] == [sample_job().job_id, sample_job("cpu").job_id]
        row = store.table_rows("runs", run_id)[0]
        assert (row["owner_host"], row["owner_pid"]) == (socket.gethostname(), os.getpid())
    finally:
        proc.kill()
        proc.wait()


def test_bench_resume_of_a_live_run_is_one_line_exit_2(tmp_path: Path) -> None:
    proc, run_id = _owner_process(tmp_path)
    try:
        out = subprocess.run([*QUANTLAB, "bench", "--resume", "latest", "--results",
                              str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and f"run {run_id} is still running: pid {proc.pid}" in lines[0]
    finally:
        proc.kill()
        proc.wait()


def test_a_reused_pid_is_not_the_owner(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id = _one_run(store)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the owner's pid now belongs to a process that started an hour later
        started = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
        _set_run(store, run_id, owner_pid=other.pid, owner_started_at=started)
        assert len(store.reopen_run(run_id)) == 2
    finally:
        other.kill()
        other.wait()


def test_another_hosts_owner_needs_force_once_it_stopped_beating(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id = _one_run(store)
    _set_run(store, run_id, owner_host="lab-host-9", owner_pid=4242)
    for force in (False, True):  # it beat just now: it is running there
        with pytest.raises(UserError, match="is still running: pid 4242 on lab-host-9"):
            store.reopen_run(run_id, force=force)
    _set_run(store, run_id, heartbeat_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    with pytest.raises(UserError) as info:
        store.reopen_run(run_id)
    line = info.value.one_line()
    assert "pid 4242 on lab-host-9" in line and "last heartbeat 10 min ago" in line
    assert "--force" in line
    assert len(store.reopen_run(run_id, force=True)) == 2
    assert store.table_rows("runs", run_id)[0]["owner_host"] == socket.gethostname()


def test_a_run_from_before_owners_needs_force(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id = _one_run(store)
    _set_run(store, run_id, owner_host=None, owner_pid=None, owner_started_at=None,
             heartbeat_at=None)
    with pytest.raises(UserError, match="records no owner") as info:
        store.reopen_run(run_id)
    assert "resume it with --force" in info.value.one_line()
    assert len(store.reopen_run(run_id, force=True)) == 2


def test_a_run_its_owner_closed_resumes_while_the_owner_lives(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id = _one_run(store)  # owned by this live process
    assert store.finish_run(run_id, "interrupted") == "interrupted"
    assert len(store.reopen_run(run_id)) == 2


def test_a_finished_job_is_not_marked_running_again(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id = _one_run(store)
    job = sample_job()
    assert store.mark_running(run_id, job.job_id) is True
    store.save_result(run_id, job.job_id, RawResult(job_id=job.job_id, status="ok",
                                                    samples_ms=((1.0,),)))
    assert store.mark_running(run_id, job.job_id) is False
    row = next(r for r in store.table_rows("jobs", run_id) if r["job_id"] == job.job_id)
    assert row["status"] == "ok" and row["attempts"] == 1


def test_a_run_taken_over_is_left_alone_by_its_old_owner(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id = _one_run(store)
    assert store.heartbeat(run_id) is True
    _set_run(store, run_id, owner_host="lab-host-9", owner_pid=4242)  # --resume --force there
    assert store.heartbeat(run_id) is False
    with pytest.raises(StoreError, match="taken over"):
        store.mark_running(run_id, sample_job().job_id)
    store.set_status(run_id, sample_job().job_id, "interrupted", "stopped")
    assert store.finish_run(run_id, "done") is None
    assert store.load_run(run_id).status == "running"
    assert {r["status"] for r in store.table_rows("jobs", run_id)} == {"pending"}


# ------------------------------------------------------------------ the dispatcher


MODEL = ModelRef(path="/m/a.tflite", sha256="c" * 64, size_bytes=10, format="tflite")


def _one_device_plan(agent: ScriptedAgent, threads: list[int]):  # type: ignore[no-untyped-def]
    fleet = discover(agents=[agent])
    plan = build_plan([MODEL], select_devices(fleet, ["all"]), fleet, ["cpu"], threads,
                      Settings(repeats=1))
    return fleet, plan


def test_the_dispatcher_does_not_measure_a_job_finished_elsewhere(tmp_path: Path) -> None:
    agent = ScriptedAgent(device_ids=("fake-a",))
    fleet, plan = _one_device_plan(agent, [1, 2])
    store = Store.open(str(tmp_path))
    run = new_run(Settings())
    store.create_run(run, plan, fleet.devices)
    done = plan.jobs[0]
    store.save_result(run.run_id, done.job_id, RawResult(job_id=done.job_id, status="ok",
                                                         samples_ms=((9.0,),)))
    Dispatcher(store, run.run_id, fleet).run(list(plan.jobs))
    assert [job_id for _, job_id in agent.calls] == [plan.jobs[1].job_id]
    assert store.load_run(run.run_id).entries[0].raw.samples_ms == ((9.0,),)  # type: ignore[union-attr]


def test_the_dispatcher_beats_and_stops_when_the_run_is_taken_over(tmp_path: Path) -> None:
    agent = ScriptedAgent(device_ids=("fake-a",), delay_s=0.3)
    fleet, plan = _one_device_plan(agent, [1, 2, 3, 4])
    store = Store.open(str(tmp_path))
    run = new_run(Settings())
    store.create_run(run, plan, fleet.devices)
    _set_run(store, run.run_id, heartbeat_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))

    class TakeOverAfterFirst:
        def job_started(self, job: object, attempt: int) -> None:
            pass

        def job_progress(self, job: object, phase: str, fraction: float | None) -> None:
            pass

        def job_finished(self, job: object, status: str, error: str | None) -> None:
            time.sleep(0.3)  # a beat or more
            _set_run(store, run.run_id, owner_host="lab-host-9", owner_pid=4242)

        def note(self, message: str) -> None:
            pass

    accounts = Dispatcher(store, run.run_id, fleet, reporter=TakeOverAfterFirst(),
                          heartbeat_s=0.05).run(list(plan.jobs))
    beat = store.table_rows("runs", run.run_id)[0]["heartbeat_at"]
    assert beat.replace(tzinfo=dt.UTC) > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    assert len(agent.calls) == 1  # no job started after the takeover
    assert accounts[0].ok == 1 and "taken over" in (accounts[0].stopped or "")
    statuses = [e.status for e in store.load_run(run.run_id).entries]
    assert statuses == ["ok", "pending", "pending", "pending"]  # left to the new owner


def test_migrated_runs_from_0003_have_no_owner(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from quantlab.harness.store.migrate import MIGRATIONS

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'quantlab.db'}")
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.execute(sa.text("INSERT INTO runs (run_id, created_at, status, host, "
                             "tool_versions, settings, schema_version) VALUES ('r1', "
                             "'2026-01-01T00:00:00', 'running', 'old', '{}', '{}', 2)"))
    engine.dispose()
    store = Store.open(str(tmp_path))  # SQLite migrates itself
    row = store.table_rows("runs", "r1")[0]
    assert row["owner_pid"] is None and row["heartbeat_at"] is None
    with pytest.raises(UserError, match="records no owner"):
        store.reopen_run("r1")


def test_a_sigkilled_bench_resumes_without_force(cnn_tflite: Path, tmp_path: Path) -> None:
    import json
    import sqlite3

    def stored() -> int:
        try:
            with sqlite3.connect(tmp_path / "quantlab.db", timeout=5) as conn:
                return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return 0

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    bench = subprocess.Popen([*QUANTLAB, "bench", str(cnn_tflite), "--device", "sim",
                              "--delegate", "xnnpack,cpu", "--threads", "1,2", "--repeats",
                              "2", "--min-time", "1", "--results", str(tmp_path)],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while stored() < 1 and bench.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bench.poll() is None, "bench finished before it could be killed"
    os.killpg(bench.pid, signal.SIGKILL)  # no chance to mark anything interrupted
    bench.wait()
    resumed = subprocess.run([*QUANTLAB, "bench", "--resume", "latest", "--json", "--results",
                              str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                             env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["status"] == "done" and [r["status"] for r in data["results"]] == ["ok"] * 4
