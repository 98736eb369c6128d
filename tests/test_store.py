"""Store: migrations match the schema, results round-trip, duplicates are discarded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_records import sample_job

from quantlab.harness.environment import new_run
from quantlab.harness.errors import StoreError, UserError
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


def test_head_revision_matches_migrations(tmp_path: Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path("harness/store/migrations").resolve()))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION
    store = Store.open(str(tmp_path))
    assert store.current_revision() == HEAD_REVISION


def test_migrated_schema_matches_metadata(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = Store.open(str(tmp_path))
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_result_round_trip(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    job = sample_job()
    skipped = sample_job("gpu")
    run = new_run(Settings(), command="quantlab bench m.tflite")
    store.create_run(run, Plan(jobs=(job,), skipped=(Skipped(skipped, "no gpu here"),)))
    raw = RawResult(
        job_id=job.job_id, status="ok", samples_ms=((1.0, 2.0, 3.0), (4.0, 5.0)), init_ms=7.0,
        ops=(OpRecord(index=0, kernel="k", avg_ms=0.5, op_type="CONV_2D", delegate="XNNPACK"),),
        energy=Energy(method="rapl", mj_per_inference=1.5, samples=2),
        energy_samples=(EnergySample("load", 0.1, "package-0", 10.0, "uJ"),),
    )
    store.mark_running(run.run_id, job.job_id)
    assert store.save_result(run.run_id, job.job_id, raw) is True
    assert store.save_result(run.run_id, job.job_id, raw) is False  # late duplicate discarded
    store.finish_run(run.run_id, "done")
    record = store.load_run(run.run_id[:10])
    assert record.status == "done"
    ok, skip = record.entries
    assert ok.status == "ok" and ok.attempts == 1 and ok.raw == raw
    assert skip.status == "skipped" and skip.error == "no gpu here" and skip.raw is None
    assert store.list_runs()[0]["jobs"] == {"ok": 1, "skipped": 1}
    assert len(store.table_rows("samples", run.run_id)) == 5


def test_a_bare_nan_never_reaches_stored_json(tmp_path: Path) -> None:
    """A NaN figure a producer forgot to write as a string is refused in one line naming the
    job, not stored as a bare token (PostgreSQL's json type rejects it; SQLite kept it)."""
    store = Store.open(str(tmp_path))
    job = sample_job()
    run = new_run(Settings(), command="quantlab bench m.tflite")
    store.create_run(run, Plan(jobs=(job,)))
    store.mark_running(run.run_id, job.job_id)
    raw = RawResult(job_id=job.job_id, status="ok", samples_ms=((1.0, 2.0),),
                    runner={"numerics": {"cosine": float("nan")}})
    where = r"result not stored \(runner.numerics.cosine is NaN"
    with pytest.raises(StoreError, match=f"job {job.job_id}: {where}"):
        store.save_result(run.run_id, job.job_id, raw)
    assert store.load_run(run.run_id).entries[0].raw is None  # nothing half-written


def test_interrupted_jobs_are_reopened(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    a, b = sample_job(), sample_job("cpu")
    run = new_run(Settings())
    store.create_run(run, Plan(jobs=(a, b)))
    store.mark_running(run.run_id, a.job_id)
    store.save_result(run.run_id, a.job_id, RawResult(job_id=a.job_id, status="ok",
                                                      samples_ms=((1.0,),)))
    store.mark_running(run.run_id, b.job_id)
    store.mark_interrupted(run.run_id, b.job_id)
    store.finish_run(run.run_id, "interrupted")
    assert [e.status for e in store.load_run(run.run_id).entries] == ["ok", "interrupted"]
    assert store.reopen_run(run.run_id) == [b]
    assert store.load_run(run.run_id).status == "running"


def test_runs_made_within_one_second_keep_their_order(tmp_path: Path) -> None:
    """Two runs in one second whose random id suffixes sort the other way round: ``latest``
    and the run list still put the second one first (created_at has milliseconds; with
    seconds a fast nightly plan run twice took the first run for the newest)."""
    import dataclasses
    import time

    store = Store.open(str(tmp_path))
    first = dataclasses.replace(new_run(Settings()), run_id="20261128-155356-ffff")
    store.create_run(first, Plan(jobs=(sample_job(),)))
    time.sleep(0.002)
    second = dataclasses.replace(new_run(Settings()), run_id="20261128-155356-0000")
    store.create_run(second, Plan(jobs=(sample_job(),)))
    assert first.created_at[:19] == second.created_at[:19] or \
        first.created_at < second.created_at
    assert store.resolve_run_id("latest") == second.run_id
    assert [r["run_id"] for r in store.list_runs()] == [second.run_id, first.run_id]


def test_jobs_are_found_by_a_prefix_of_their_id(tmp_path: Path) -> None:
    """``diff`` names jobs by id prefix, optionally in one run: the store answers with
    (run, job) pairs and ``diff`` runs no SQL of its own."""
    import dataclasses

    from quantlab.harness.store import JobRef

    store = Store.open(str(tmp_path))
    xnn, cpu = sample_job(), sample_job("cpu")
    first = dataclasses.replace(new_run(Settings()), run_id="20261128-155356-aaaa")
    second = dataclasses.replace(new_run(Settings()), run_id="20261128-155357-bbbb")
    store.create_run(first, Plan(jobs=(xnn,)))
    store.create_run(second, Plan(jobs=(xnn, cpu)))
    assert store.find_jobs(xnn.job_id[:6]) == [JobRef(first.run_id, xnn.job_id),
                                               JobRef(second.run_id, xnn.job_id)]
    assert store.find_jobs(xnn.job_id[:6], "20261128-155357") == [
        JobRef(second.run_id, xnn.job_id)]
    assert store.find_jobs(cpu.job_id, "latest") == [JobRef(second.run_id, cpu.job_id)]
    assert store.find_jobs(cpu.job_id, first.run_id) == []
    assert len(store.find_jobs("")) == 3
    with pytest.raises(UserError, match="not found"):
        store.find_jobs(cpu.job_id, "19990101")


def test_evaluations_newest_per_variant(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    for value in (0.9, 0.95):
        store.save_evaluation("s" * 64, "int8", "v/int8.tflite", None, "top1", value, 0.96,
                              0.96 - value, 0.03, 0.96 - value <= 0.03, {"v": value})
    evals = store.evaluations(["s" * 64])
    assert evals["s" * 64]["value"] == 0.95 and evals["s" * 64]["passed"] is True


def test_unwritable_results_folder_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(folder, os.W_OK):  # root ignores permissions
        pytest.skip("running as root: permissions are not enforced")
    with pytest.raises(StoreError, match="not writable"):
        Store.open(str(folder))


def test_results_path_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(StoreError, match=r"cannot create it|not a folder"):
        Store.open(str(file))


def test_newer_database_is_refused(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer quantlab"):
        Store.open(str(tmp_path))
