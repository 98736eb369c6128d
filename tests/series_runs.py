"""Run records made of fixed numbers, for compare, history and drift tests.

Each job's samples are a level times a fixed pattern (the same in every run), so a
median is exactly the level times the pattern's median, and a verdict or a trend
depends on the levels the test chose, never on timing noise. Records are built in
memory (:func:`record`) or stored (:func:`store_record`) for the CLI.
"""

from __future__ import annotations

import struct

from quantlab.harness.records import Job, ModelRef, Plan, RawResult, Run, Settings
from quantlab.harness.store import JobEntry, RunRecord, Store

SETTINGS = Settings(warmup=2, iterations=40, repeats=3)
PATTERN = tuple(1.0 + 0.002 * ((i * 7) % 11 - 5) for i in range(40))
"""Forty iterations within ±1 % of the level (median exactly 1.0)."""


def samples(level: float, launches: tuple[float, ...] = (1.0, 1.0, 1.0),
            pattern: tuple[float, ...] = PATTERN) -> tuple[tuple[float, ...], ...]:
    """One repeat per entry of ``launches`` (each launch's own factor) at ``level`` ms."""
    return tuple(tuple(level * f * x for x in pattern) for f in launches)


def job(path: str, sha: str, scheme: str | None = None, device: str = "phone-1",
        delegate: str = "cpu", threads: int = 1) -> Job:
    """A job of the model file at ``path`` (``sha`` repeated to 64 hex digits)."""
    model = ModelRef(path=path, sha256=(sha * 64)[:64], size_bytes=100, format="tflite",
                     scheme=scheme)
    return Job(model=model, device_id=device, platform="android", delegate=delegate,
               threads=threads, settings=SETTINGS)


def entry(j: Job, level: float | None = None, status: str = "ok", error: str | None = None,
          launches: tuple[float, ...] = (1.0, 1.0, 1.0), seq: int = 0,
          pattern: tuple[float, ...] = PATTERN) -> JobEntry:
    """A stored job: ``ok`` with samples at ``level``, or another status with ``error``."""
    raw = None
    if status == "ok":
        assert level is not None
        raw = RawResult(job_id=j.job_id, status="ok",
                        samples_ms=samples(level, launches, pattern))
    return JobEntry(job=j, seq=seq, status=status, error=error, attempts=1, raw=raw)


def run_id(night: int) -> str:
    """The id of night ``night`` (1-based): sorts by night."""
    return f"202611{night:02d}-030000-{night:04d}"


def record(night: int, entries: list[JobEntry], tags: tuple[str, ...] = ("nightly",)
           ) -> RunRecord:
    """A finished run of ``entries`` made on night ``night``."""
    run = Run(run_id=run_id(night), created_at=f"2026-11-{night:02d}T03:00:00+00:00",
              host="lab", settings=SETTINGS)
    return RunRecord(run=run, status="done", finished_at=run.created_at, devices={},
                     entries=tuple(entries), tags=tags)


def store_record(store: Store, rec: RunRecord) -> str:
    """Write ``rec`` to ``store`` as a finished run; returns its id."""
    store.create_run(rec.run, Plan(jobs=tuple(e.job for e in rec.entries)), tags=rec.tags)
    for e in rec.entries:
        store.mark_running(rec.run.run_id, e.job.job_id)
        if e.raw is not None:
            store.save_result(rec.run.run_id, e.job.job_id, e.raw)
        else:
            store.set_status(rec.run.run_id, e.job.job_id, e.status, e.error)
    store.finish_run(rec.run.run_id, "done")
    return rec.run.run_id


def tiny_tflite(tag: bytes = b"") -> bytes:
    """The smallest file quantlab accepts as a .tflite (a Model table with one empty
    subgraph); ``tag`` is appended, so files of different tags differ in sha256."""
    data = bytearray()
    data += struct.pack("<I", 20) + b"TFL3"  # root table at 20, file identifier
    data += struct.pack("<HHHHH", 10, 8, 0, 0, 4) + b"\x00\x00"  # Model vtable (field 2)
    data += struct.pack("<iI", 12, 4)  # Model table: vtable 12 back; subgraphs vector +4
    data += struct.pack("<II", 1, 8)  # the vector: one subgraph, 8 bytes on
    data += struct.pack("<HH", 4, 4)  # SubGraph vtable: no fields
    data += struct.pack("<i", 4)  # SubGraph table
    return bytes(data) + tag
