"""The store on both back ends: SQLite (embedded) and a real PostgreSQL server (shared lab history).

Same schema through the same Alembic migrations, same results, and the duplicate
rule holds when two controllers race to store one job (a job re-run after a lost
lab host whose first attempt answers late).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pgserver import PgServer, free_port, running_server
from test_records import sample_job

from quantlab.harness.environment import new_run
from quantlab.harness.errors import StoreError
from quantlab.harness.records import (
    Energy,
    EnergySample,
    OpRecord,
    Plan,
    RawResult,
    Settings,
    Skipped,
)
from quantlab.harness.store import HEAD_REVISION, Store
from quantlab.harness.store.schema import metadata

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for this module."""
    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh empty PostgreSQL database."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty results store on each back end."""
    if request.param == "sqlite":
        return str(tmp_path / "results")
    url: str = request.getfixturevalue("pg_url")
    return url


def _raw(job_id: str) -> RawResult:
    return RawResult(
        job_id=job_id, status="ok", samples_ms=((1.5, 2.5, 3.5), (4.0, 5.0)), init_ms=7.0,
        peak_memory_mb=12.5, runner={"name": "t", "argv": ["a", "b"]},
        ops=(OpRecord(index=0, kernel="k", avg_ms=0.5, op_type="CONV_2D", delegate="XNNPACK",
                      detail={"shape": [1, 2]}),),
        energy=Energy(method="rapl", mj_per_inference=1.5, samples=2),
        energy_samples=(EnergySample("load", 0.1, "package-0", 10.0, "uJ"),),
        warnings=("std 12% of mean",),
    )


def test_migrations_build_the_declared_schema(location: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = Store.open(location)
    assert store.current_revision() == HEAD_REVISION
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    store.close()


def test_results_round_trip_and_late_duplicates_are_discarded(location: str) -> None:
    store = Store.open(location)
    job, other = sample_job(), sample_job("cpu")
    run = new_run(Settings(), command="quantlab bench m.tflite --cluster lab:6379")
    store.create_run(run, Plan(jobs=(job,), skipped=(Skipped(other, "no cpu here"),)))
    store.mark_running(run.run_id, job.job_id)
    raw = _raw(job.job_id)
    assert store.save_result(run.run_id, job.job_id, raw) is True
    assert store.save_result(run.run_id, job.job_id, raw) is False
    store.finish_run(run.run_id, "done")
    record = store.load_run(run.run_id)
    ok, skipped = record.entries
    assert ok.raw == raw and ok.status == "ok" and ok.attempts == 1
    assert skipped.status == "skipped" and skipped.error == "no cpu here"
    assert store.list_runs()[0]["jobs"] == {"ok": 1, "skipped": 1}
    store.close()


def test_two_controllers_racing_on_one_job_store_it_once(location: str) -> None:
    stores = [Store.open(location), Store.open(location)]
    for _ in range(20):  # the window is small: race many times
        job = sample_job()
        run = new_run(Settings())
        stores[0].create_run(run, Plan(jobs=(job,)))
        stores[0].mark_running(run.run_id, job.job_id)
        outcomes: list[object] = []
        barrier = threading.Barrier(len(stores))

        def save(store: Store, run_id: str = run.run_id, job_id: str = job.job_id,
                 barrier: threading.Barrier = barrier, outcomes: list[object] = outcomes
                 ) -> None:
            barrier.wait()
            try:
                outcomes.append(store.save_result(run_id, job_id, _raw(job_id)))
            except Exception as exc:  # a race that leaks an error breaks the rule
                outcomes.append(exc)

        threads = [threading.Thread(target=save, args=(s,)) for s in stores]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert sorted(map(repr, outcomes)) == ["False", "True"], outcomes
        assert len(stores[0].table_rows("results", run.run_id)) == 1
        assert len(stores[0].table_rows("samples", run.run_id)) == 5
    for s in stores:
        s.close()


def test_newer_schema_is_refused(location: str) -> None:
    store = Store.open(location)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(StoreError, match="newer quantlab"):
        Store.open(location)


def test_db_migrate_command(location: str) -> None:
    def cli(*args: str) -> dict[str, object]:
        out = subprocess.run([sys.executable, "-m", "quantlab", "db", *args,
                              "--results", location, "--json"],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        data: dict[str, object] = json.loads(out.stdout)
        return data

    assert cli("status")["revision"] is None
    assert cli("migrate") == {"location": cli("status")["location"], "from": None,
                              "to": HEAD_REVISION, "head": HEAD_REVISION}
    assert cli("migrate")["from"] == HEAD_REVISION
    assert cli("status")["up_to_date"] is True


def test_unreachable_database_is_one_clear_error(pg_server: PgServer) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(StoreError, match="results store postgresql://"):
        Store.open(url)


@pytest.mark.parametrize(("ci", "outcome"), [("true", "fail"), ("", "skip")])
def test_a_server_that_does_not_start_fails_under_ci(monkeypatch: pytest.MonkeyPatch,
                                                     ci: str, outcome: str) -> None:
    import pgserver

    def refuse(self: PgServer) -> None:
        raise subprocess.CalledProcessError(1, ["initdb"], stderr=b"initdb: no space left")

    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(pgserver, "find_bin_dir", lambda: Path("/nonexistent/bin"))
    monkeypatch.setattr(PgServer, "start", refuse)
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as info, \
            running_server():
        pass
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    assert info.type is expected and "initdb: no space left" in str(info.value)


def test_a_constraint_broken_by_the_result_is_an_error_not_a_duplicate(location: str) -> None:
    store = Store.open(location)
    job = sample_job()
    run = new_run(Settings())
    store.create_run(run, Plan(jobs=(job,)))
    store.mark_running(run.run_id, job.job_id)
    bad = RawResult(job_id=job.job_id, status="ok", samples_ms=((1.0, 2.0),),
                    ops=(OpRecord(index=0, kernel=None, avg_ms=0.5),))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=f"run {run.run_id} job {job.job_id}: result not "
                       "stored") as info:
        store.save_result(run.run_id, job.job_id, bad)
    assert "\n" not in info.value.one_line() and "kernel" in info.value.one_line()
    assert store.table_rows("jobs", run.run_id)[0]["status"] == "running"  # not finished
    assert store.table_rows("results", run.run_id) == []
    good = RawResult(job_id=job.job_id, status="ok", samples_ms=((1.0, 2.0),))
    assert store.save_result(run.run_id, job.job_id, good) is True
    store.close()


def _at_revision(location: str, target: str) -> None:
    """A store built by an older quantlab: migrated to ``target``, with one run in it."""
    from alembic import command
    from alembic.config import Config

    from quantlab.harness.store.location import url_for
    from quantlab.harness.store.migrate import MIGRATIONS

    engine = sa.create_engine(url_for(location)[0])
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
        conn.execute(sa.text("INSERT INTO runs (run_id, created_at, status, host, "
                             "tool_versions, settings, schema_version) VALUES ('r1', "
                             "'2026-01-01T00:00:00', 'done', 'old', '{}', '{}', 2)"))
    engine.dispose()


PREVIOUS = f"{int(HEAD_REVISION) - 1:04d}"


def test_an_older_postgresql_schema_is_refused_until_db_migrate(pg_url: str) -> None:
    _at_revision(pg_url, PREVIOUS)  # older quantlabs on other lab hosts still use it
    with pytest.raises(StoreError) as info:
        Store.open(pg_url)
    line = info.value.one_line()
    assert f"is at schema {PREVIOUS}, this quantlab needs {HEAD_REVISION}" in line
    assert f"quantlab db migrate --results {pg_url}" in line and "\n" not in line
    cli = [sys.executable, "-m", "quantlab"]
    out = subprocess.run([*cli, "runs", "--results", pg_url], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "quantlab db migrate" in out.stderr
    status = subprocess.run([*cli, "db", "status", "--results", pg_url, "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert json.loads(status.stdout)["revision"] == PREVIOUS  # nothing was migrated
    migrated = subprocess.run([*cli, "db", "migrate", "--results", pg_url, "--json"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["from"] == PREVIOUS
    store = Store.open(pg_url)
    assert store.current_revision() == HEAD_REVISION
    assert [r["run_id"] for r in store.list_runs()] == ["r1"]  # its runs kept
    store.close()


def test_an_older_sqlite_store_still_migrates_itself(tmp_path: Path) -> None:
    _at_revision(str(tmp_path), PREVIOUS)
    store = Store.open(str(tmp_path))
    assert store.current_revision() == HEAD_REVISION
    assert [r["run_id"] for r in store.list_runs()] == ["r1"]
    store.close()


def test_resume_reads_the_owner_and_heartbeat_on_both_back_ends(location: str) -> None:
    import datetime as dt

    from quantlab.harness.errors import UserError
    from quantlab.harness.store import schema as t

    store = Store.open(location)
    job = sample_job()
    run = new_run(Settings())
    store.create_run(run, Plan(jobs=(job,)))
    assert store.heartbeat(run.run_id) is True

    def owner_elsewhere(beat_age: dt.timedelta) -> None:
        with store.engine.begin() as conn:
            conn.execute(t.runs.update().where(t.runs.c.run_id == run.run_id).values(
                owner_host="lab-host-9", owner_pid=4242,
                heartbeat_at=dt.datetime.now(dt.UTC) - beat_age))

    owner_elsewhere(dt.timedelta(seconds=1))
    with pytest.raises(UserError, match="still running: pid 4242 on lab-host-9"):
        store.reopen_run(run.run_id, force=True)
    owner_elsewhere(dt.timedelta(hours=3))
    with pytest.raises(UserError, match="pid 4242 on lab-host-9, started") as info:
        store.reopen_run(run.run_id)
    assert "last heartbeat 3.0 h ago" in info.value.one_line()
    assert store.reopen_run(run.run_id, force=True) == [job]
    assert store.heartbeat(run.run_id) is True  # ours now
    store.close()
