"""Runs that neither lose nor double work: a store that fails mid-run leaves the run
``incomplete`` (never ``done``) and ``--resume`` finishes it; Ctrl-C inside
``quantlab.bench()`` ends quantlab's own processes and none of the caller's."""

from __future__ import annotations

import _thread
import builtins
import errno
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from fake_agent import ScriptedAgent
from typer.testing import CliRunner

from quantlab.harness.dispatch import Dispatcher
from quantlab.harness.environment import new_run
from quantlab.harness.errors import StoreError
from quantlab.harness.plan import build_plan, discover, select_devices
from quantlab.harness.records import ModelRef, RawResult, Settings
from quantlab.harness.store import Store

MODEL = ModelRef(path="/m/a.tflite", sha256="c" * 64, size_bytes=10, format="tflite")


class FullDiskStore(Store):
    """A store whose disk fills up when the ``fail_at``-th result is written."""

    fail_at = 2
    saves = 0

    def save_result(self, run_id: str, job_id: str, raw: RawResult) -> bool:
        self.saves += 1
        if self.saves == self.fail_at:
            raise StoreError("raw output results/raw/ab/ab…: cannot write it (No space left "
                             "on device)", hint="check free space and permissions")
        return super().save_result(run_id, job_id, raw)


def test_a_store_error_leaves_the_device_jobs_unfinished_not_abandoned(tmp_path: Path) -> None:
    agent = ScriptedAgent()
    fleet = discover(agents=[agent])
    plan = build_plan([MODEL], select_devices(fleet, ["all"]), fleet, ["cpu"], [1, 2, 3],
                      Settings(repeats=1))
    store = Store.open(str(tmp_path))
    store.__class__ = FullDiskStore
    run = new_run(Settings())
    store.create_run(run, plan, fleet.devices)
    # one device at a time, so that the second save is fake-a's second job
    a_jobs = [j for j in plan.jobs if j.device_id == "fake-a"]
    b_jobs = [j for j in plan.jobs if j.device_id == "fake-b"]
    accounts = {a.device_id: a for a in Dispatcher(store, run.run_id, fleet).run(a_jobs)}
    accounts.update({a.device_id: a for a in Dispatcher(store, run.run_id, fleet).run(b_jobs)})

    a = accounts["fake-a"]
    assert a.ok == 1 and a.unfinished == 2 and "No space left on device" in (a.stopped or "")
    entries = {e.job.job_id: e for e in store.load_run(run.run_id).entries}
    assert [entries[j.job_id].status for j in a_jobs] == ["ok", "interrupted", "pending"]
    assert "not finished: raw output" in (entries[a_jobs[1].job_id].error or "")
    assert [entries[j.job_id].status for j in b_jobs] == ["ok"] * 3  # the others carry on
    assert len(agent.calls) == 5  # the third job of fake-a never ran
    assert store.finish_run(run.run_id, "done") == "incomplete"
    assert store.load_run(run.run_id).status == "incomplete"
    assert [j.job_id for j in store.reopen_run(run.run_id)] == [j.job_id for j in a_jobs[1:]]


def _full_disk_after_first_result(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """Raw files cannot be written once the store holds one result (disk full)."""
    import quantlab.harness.store.raw as raw_module

    def results() -> int:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])

    def open_on_a_full_disk(path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        if "w" in mode and results() >= 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return builtins.open(path, mode, *args, **kw)

    monkeypatch.setattr(raw_module, "open", open_on_a_full_disk, raising=False)


def test_bench_with_a_full_disk_exits_non_zero_and_resume_finishes(
        cnn_tflite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quantlab.harness.cli.main import app

    runner = CliRunner()
    results = tmp_path / "results"
    args = ["bench", str(cnn_tflite), "--device", "sim", "--delegate", "xnnpack,cpu",
            "--threads", "1,2", "--repeats", "1", "--warmup", "1", "--iterations", "5",
            "--results", str(results)]
    with monkeypatch.context() as patch:
        _full_disk_after_first_result(patch, results / "quantlab.db")
        first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 1, first.output
    lines = first.stderr.strip().splitlines()  # a note when the device stopped, then why
    assert [k for k, line in enumerate(lines) if line.startswith("error:")] == [len(lines) - 1]
    assert "is incomplete, 3 job(s) not finished" in lines[-1], first.stderr
    assert "No space left on device" in lines[-1] and "bench --resume" in lines[-1]
    data = json.loads(first.stdout)
    assert data["status"] == "incomplete"
    assert [r["status"] for r in data["results"]] == ["ok", "interrupted", "pending", "pending"]
    run_id = data["run_id"]
    kept = Store.open(str(results)).load_run(run_id).entries[0].raw

    resumed = runner.invoke(app, ["bench", "--resume", run_id, "--results", str(results),
                                  "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.stderr and "3 job(s) left" in resumed.stderr
    after = json.loads(resumed.stdout)
    assert after["status"] == "done" and [r["status"] for r in after["results"]] == ["ok"] * 4
    assert Store.open(str(results)).load_run(run_id).entries[0].raw == kept  # not redone


def _workers_of_this_process() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "quantlab.agents.litert.runner" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_ctrl_c_in_bench_ends_quantlab_workers_and_spares_the_callers(
        cnn_tflite: Path, tmp_path: Path) -> None:
    import quantlab

    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    stop = threading.Event()

    def ctrl_c_once_a_worker_runs() -> None:
        while not stop.is_set():
            if _workers_of_this_process():
                _thread.interrupt_main()  # what a Ctrl-C in a notebook does
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=ctrl_c_once_a_worker_runs, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted"):
            quantlab.bench([cnn_tflite], device="sim", delegate="xnnpack,cpu", repeats=3,
                           min_time=2.0, results=tmp_path)
        assert mine.poll() is None, "quantlab ended a process it did not start"
        assert _workers_of_this_process() == []  # its own are gone
        runs = Store.open(str(tmp_path)).list_runs()
        assert runs[0]["status"] == "interrupted"
    finally:
        stop.set()
        mine.kill()
        mine.wait()
