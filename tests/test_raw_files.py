"""Raw runner output: the size cap, content-addressed storage beside the store (a results
folder, or the raw_blobs table of PostgreSQL / a sqlite:// URL), `show --raw`, `gc`, and
the simulator's figures traced back to its stored raw files (real LiteRT)."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pgserver import PgServer, running_server
from test_records import sample_job

from quantlab.harness.environment import new_run
from quantlab.harness.errors import StoreError
from quantlab.harness.records import Plan as PlanRecord
from quantlab.harness.records import RawOutput, RawResult, Settings, load_record, to_dict
from quantlab.harness.results import result_dict
from quantlab.harness.store import Store
from quantlab.harness.store import schema as t

ROOT = Path(__file__).resolve().parent.parent


def _quantlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "quantlab", *args], capture_output=True,
                          cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})),
                          timeout=300)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the cap


def test_output_under_the_cap_is_kept_whole() -> None:
    out = RawOutput.capture("launch-1.stdout", "text/plain", "INFO: Inference timings\n", 100)
    assert out.content == "INFO: Inference timings\n" and out.encoding == "utf-8"
    assert not out.truncated and out.size_bytes == 24 and out.cap_bytes == 100
    assert out.data() == b"INFO: Inference timings\n"


def test_cap_keeps_head_and_tail_and_says_so() -> None:
    data = b"HEAD-" + b"x" * 10_000 + b"-TAIL: avg=119.375\n"
    out = RawOutput.capture("launch-1.stdout", "text/plain", data, cap_bytes=1000)
    kept = out.data()
    assert out.truncated and out.size_bytes == len(data) and out.cap_bytes == 1000
    assert kept.startswith(b"HEAD-") and kept.endswith(b"-TAIL: avg=119.375\n")
    assert b"bytes cut here; raw files keep at most 1000 bytes" in kept
    assert len(kept) < 1000 + 120  # the cap, plus one marker line
    cut = int(kept.split(b"[quantlab: ")[1].split(b" ")[0])
    assert len(kept) - len(kept.split(b"\n[quantlab")[0]) > 0 and cut == len(data) - 1000


def test_cap_never_splits_a_utf8_character_and_binary_goes_base64() -> None:
    text = "é" * 1000  # two bytes each
    out = RawOutput.capture("log", "text/plain", text, cap_bytes=101)
    assert out.encoding == "utf-8" and out.truncated
    out.data().decode("utf-8")  # valid UTF-8 on both sides of the cut
    blob = bytes(range(256)) * 3
    b = RawOutput.capture("profile.bin", "application/octet-stream", blob, cap_bytes=10_000)
    assert b.encoding == "base64" and b.data() == blob
    # plain data: survives JSON (the runner contract) and Ray (dicts) unchanged
    raw = RawResult(job_id="j", status="ok", raw_outputs=(out, b))
    assert load_record(RawResult, json.loads(json.dumps(to_dict(raw)))) == raw


def test_cap_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_RAW_CAP_BYTES", "64")
    out = RawOutput.capture("launch-1.stdout", "text/plain", "y" * 500)
    assert out.truncated and out.cap_bytes == 64


# --------------------------------------------------------------------------- the store


def _stored_run(store: Store, outputs: tuple[RawOutput, ...]) -> tuple[str, str]:
    job = sample_job()
    run = new_run(Settings(), command="quantlab bench m.tflite")
    store.create_run(run, PlanRecord(jobs=(job,)))
    store.mark_running(run.run_id, job.job_id)
    raw = RawResult(job_id=job.job_id, status="ok", samples_ms=((1.0, 2.0),),
                    raw_outputs=outputs)
    assert store.save_result(run.run_id, job.job_id, raw)
    store.finish_run(run.run_id, "done")
    return run.run_id, job.job_id


OUTPUTS = (
    RawOutput.capture("launch-1.stdout", "text/plain", "avg=1.5\n"),
    RawOutput.capture("launch-1.stderr", "text/plain", "warning: slow\n"),
    RawOutput.capture("profile.csv", "text/csv", "op,ms\n" + "CONV_2D,0.5\n" * 400, cap_bytes=512),
)


def test_sqlite_folder_keeps_files_by_content(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id, _ = _stored_run(store, OUTPUTS)
    entry = store.load_run(run_id).entries[0]
    assert entry.raw is not None and entry.raw.raw_outputs == ()
    files = entry.raw.raw_files
    assert [f.name for f in files] == ["launch-1.stdout", "launch-1.stderr", "profile.csv"]
    for f, out in zip(files, OUTPUTS, strict=True):
        path = tmp_path / "raw" / f.sha256[:2] / f.sha256
        assert path.read_bytes() == out.data() and _sha(out.data()) == f.sha256
        assert f.size_bytes == len(out.data()) and f.media_type == out.media_type
        assert store.read_raw(f.sha256) == out.data()
    cut = files[2]
    assert cut.truncated and cut.cap_bytes == 512 and cut.original_size_bytes == 6 + 12 * 400
    assert not files[0].truncated and files[0].original_size_bytes == 8
    assert not list((tmp_path / "raw").rglob("*.tmp"))  # no temporary file left behind
    # the user-facing result JSON lists them
    d = result_dict(entry.job, entry.status, entry.error, entry.raw)
    assert [r["name"] for r in d["raw_files"]] == ["launch-1.stdout", "launch-1.stderr",
                                                   "profile.csv"]
    assert d["raw_files"][2] == {"name": "profile.csv", "sha256": cut.sha256,
                                 "size_bytes": cut.size_bytes, "media_type": "text/csv",
                                 "truncated": True, "original_size_bytes": 4806,
                                 "cap_bytes": 512}
    # the same output in another run is stored once
    _stored_run(store, OUTPUTS[:1])
    assert len([p for p in (tmp_path / "raw").rglob("*") if p.is_file()]) == 3


def test_a_failed_write_leaves_no_file_and_no_result(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(str(tmp_path))
    job = sample_job()
    run = new_run(Settings())
    store.create_run(run, PlanRecord(jobs=(job,)))

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    raw = RawResult(job_id=job.job_id, status="ok", raw_outputs=OUTPUTS[:1])
    with pytest.raises(StoreError, match="No space left"):
        store.save_result(run.run_id, job.job_id, raw)
    monkeypatch.undo()
    assert [p for p in (tmp_path / "raw").rglob("*") if p.is_file()] == []
    assert store.load_run(run.run_id).entries[0].status == "pending"  # rolled back


def test_late_duplicate_writes_no_raw_file(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id, job_id = _stored_run(store, OUTPUTS[:1])
    late = RawResult(job_id=job_id, status="ok",
                     raw_outputs=(RawOutput.capture("launch-1.stdout", "text/plain", "late"),))
    assert store.save_result(run_id, job_id, late) is False
    assert not (tmp_path / "raw" / _sha(b"late")[:2] / _sha(b"late")).exists()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for this module (skipped without the binaries)."""
    with running_server() as server:
        yield server


@pytest.fixture(params=["sqlite-url", "postgresql"])
def table_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store without a results folder: its raw output lives in the raw_blobs table."""
    if request.param == "sqlite-url":
        return f"sqlite:///{tmp_path / 'q.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()


def test_database_store_keeps_raw_output_in_a_table(table_location: str) -> None:
    store = Store.open(table_location)
    run_id, _ = _stored_run(store, OUTPUTS)
    files = store.load_run(run_id).entries[0].raw.raw_files  # type: ignore[union-attr]
    assert [f.name for f in files] == ["launch-1.stdout", "launch-1.stderr", "profile.csv"]
    for f, out in zip(files, OUTPUTS, strict=True):
        assert store.read_raw(f.sha256) == out.data()
    _stored_run(store, OUTPUTS)  # stored once by content
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.raw_blobs)).scalar() == 3
    # gc: an unreferenced old row goes, a young one and the referenced ones stay
    with store.engine.begin() as conn:
        conn.execute(t.raw_blobs.insert(), [
            {"sha256": "a" * 64, "size_bytes": 3, "stored_at": "2000-01-01T00:00:00+00:00",
             "data": b"old"},
            {"sha256": "b" * 64, "size_bytes": 5, "stored_at": "2999-01-01T00:00:00+00:00",
             "data": b"young"},
        ])
    dry = store.gc_raw(dry_run=True, grace_s=60)
    assert (dry.removed, dry.freed_bytes, dry.young, dry.kept) == (1, 3, 1, 3)
    assert store.read_raw("a" * 64) == b"old"
    done = store.gc_raw(grace_s=60)
    assert (done.removed, done.freed_bytes, done.removed_sha256) == (1, 3, ("a" * 64,))
    with pytest.raises(StoreError, match="not in table raw_blobs"):
        store.read_raw("a" * 64)
    for f in files:
        assert store.read_raw(f.sha256)
    store.close()


def test_gc_removes_only_unreferenced_files(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id, _ = _stored_run(store, OUTPUTS)
    referenced = {f.sha256 for f in store.load_run(run_id).entries[0].raw.raw_files}  # type: ignore[union-attr]
    raw_dir = tmp_path / "raw"

    def orphan(data: bytes, age_s: float) -> Path:
        p = raw_dir / _sha(data)[:2] / _sha(data)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, (time.time() - age_s, time.time() - age_s))
        return p

    old, young = orphan(b"left by a killed run" * 10, 7200), orphan(b"being written", 5)
    tmp = raw_dir / "ab" / f".{'ab' * 32}.123.dead.tmp"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(b"half")
    os.utime(tmp, (time.time() - 7200, time.time() - 7200))
    dry = store.gc_raw(dry_run=True)
    assert dry.removed == 2 and dry.freed_bytes == 200 + 4 and old.exists() and tmp.exists()
    report = store.gc_raw()
    assert (report.removed, report.freed_bytes, report.young, report.kept) == (2, 204, 1, 3)
    assert not old.exists() and not tmp.exists() and young.exists()
    left = {p.name for p in raw_dir.rglob("*") if p.is_file()}
    assert left == referenced | {young.name}
    assert store.gc_raw(grace_s=0).removed == 1 and not young.exists()
    assert {p.name for p in raw_dir.rglob("*") if p.is_file()} == referenced
    assert store.gc_raw(grace_s=0).missing == ()
    # a referenced file that vanished is reported, never silently ignored
    next(iter(raw_dir.rglob(sorted(referenced)[0]))).unlink()
    assert store.gc_raw(grace_s=0).missing == (sorted(referenced)[0],)


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    run_id, _ = _stored_run(store, OUTPUTS[:1])
    f = store.load_run(run_id).entries[0].raw.raw_files[0]  # type: ignore[union-attr]
    (tmp_path / "raw" / f.sha256[:2] / f.sha256).write_bytes(b"avg=0.1\n")
    with pytest.raises(StoreError, match="does not match its sha256"):
        store.read_raw(f.sha256)


# --------------------------------------------------------------------------- simulator, CLI


def test_sim_figures_trace_to_stored_raw_files(cnn_tflite: Path, tflite_models: dict[str, Path],
                                               tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = _quantlab("bench", str(cnn_tflite), str(tflite_models["custom_op"]), "--device", "sim",
                     "--delegate", "xnnpack", "--repeats", "2", "--iterations", "20",
                     "--profile-ops", "--json", "--results", str(results))
    assert proc.returncode == 1, proc.stderr.decode()  # the custom-op model fails
    data = json.loads(proc.stdout)
    ok = next(r for r in data["results"] if r["status"] == "ok")
    failed = next(r for r in data["results"] if r["status"] == "failed")
    names = [f["name"] for f in ok["raw_files"]]
    assert {"measure-1.json", "measure-2.json", "profile.json"} <= set(names)
    by_name = {f["name"]: f for f in ok["raw_files"]}
    stored = {n: (results / "raw" / f["sha256"][:2] / f["sha256"]).read_bytes()
              for n, f in by_name.items()}
    # every reported latency figure is re-derived from the stored worker outputs
    measured = [json.loads(stored[f"measure-{k}.json"]) for k in (1, 2)]
    assert ok["samples_ms"] == [m["samples_ms"] for m in measured]
    assert ok["init_ms"] == statistics.median(m["init_ms"] for m in measured)
    assert ok["first_inference_ms"] == statistics.median(m["first_inference_ms"]
                                                         for m in measured)
    assert ok["peak_memory_mb"] == max(m["peak_memory_mb"] for m in measured)
    pooled = [v for m in measured for v in m["samples_ms"]]
    assert ok["latency_ms"]["mean"] == pytest.approx(statistics.fmean(pooled))
    profile = json.loads(stored["profile.json"])
    assert [op["kernel"] for op in ok["ops"]] == [op["kernel"] for op in profile["ops"]]
    assert ok["ops_model_ms"] == profile["ops_model_ms"]
    # a failed job keeps what the worker said
    assert failed["raw_files"], "a failed job keeps the worker's output"
    failed_text = b"".join((results / "raw" / f["sha256"][:2] / f["sha256"]).read_bytes()
                           for f in failed["raw_files"])
    assert b"MatrixDeterminant" in failed_text

    # show --raw: lists the run's files; --raw JOB --file NAME prints one byte for byte
    listed = _quantlab("show", data["run_id"], "--raw", "--json", "--results", str(results))
    assert listed.returncode == 0, listed.stderr.decode()
    rows = json.loads(listed.stdout)["raw_files"]
    assert {r["job_id"] for r in rows} == {ok["job_id"], failed["job_id"]}
    one = _quantlab("show", data["run_id"][:12], "--raw", ok["job_id"][:8], "--file",
                    "measure-2.json", "--results", str(results))
    assert one.returncode == 0 and one.stdout == stored["measure-2.json"]
    table = _quantlab("show", data["run_id"], "--raw", ok["job_id"], "--results", str(results))
    assert table.returncode == 0 and b"measure-1.json" in table.stdout
    wrong = _quantlab("show", data["run_id"], "--raw", ok["job_id"], "--file", "nope",
                      "--results", str(results))
    assert wrong.returncode == 2 and b"measure-1.json" in wrong.stderr
    no_raw = _quantlab("show", data["run_id"], ok["job_id"], "--results", str(results))
    assert no_raw.returncode == 2 and b"only taken with --raw" in no_raw.stderr

    # gc: nothing to remove while every file is referenced; an orphan goes, bytes are counted
    gc = _quantlab("gc", "--json", "--grace", "0", "--results", str(results))
    assert gc.returncode == 0 and json.loads(gc.stdout)["removed"] == 0
    orphan = results / "raw" / "00" / ("00" + "1" * 62)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"z" * 1234)
    dry = json.loads(_quantlab("gc", "--dry-run", "--json", "--grace", "0", "--results",
                               str(results)).stdout)
    assert dry["removed"] == 1 and dry["freed_bytes"] == 1234 and orphan.exists()
    human = _quantlab("gc", "--grace", "0", "--results", str(results))
    assert human.returncode == 0 and b"freed 1.2 kB (1234 bytes)" in human.stdout
    assert not orphan.exists()
    for n, f in by_name.items():
        assert (results / "raw" / f["sha256"][:2] / f["sha256"]).read_bytes() == stored[n]


def test_sim_cap_truncates_and_says_so(cnn_tflite: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = _quantlab("bench", str(cnn_tflite), "--device", "sim", "--repeats", "1",
                     "--iterations", "200", "--json", "--results", str(results),
                     env={"QUANTLAB_RAW_CAP_BYTES": "600"})
    assert proc.returncode == 0, proc.stderr.decode()
    r = json.loads(proc.stdout)["results"][0]
    f = next(f for f in r["raw_files"] if f["name"] == "measure-1.json")
    assert f["truncated"] is True and f["cap_bytes"] == 600
    assert f["original_size_bytes"] > 600 and f["size_bytes"] < 600 + 120
    kept = (results / "raw" / f["sha256"][:2] / f["sha256"]).read_bytes()
    assert b"bytes cut here; raw files keep at most 600 bytes" in kept
    assert len(r["samples_ms"][0]) == 200  # the figures themselves are never cut
    shown = _quantlab("show", "latest", "--raw", r["job_id"], "--file", "measure-1.json",
                      "--results", str(results))
    assert shown.stdout == kept and b"cut to the cap of 600 bytes" in shown.stderr
