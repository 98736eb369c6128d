"""The bench CLI as a user drives it: Ctrl-C in the middle, --resume, and bad input (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quantlab.harness.store import Store

QUANTLAB = [sys.executable, "-m", "quantlab"]
ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _quantlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*QUANTLAB, *args], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=300)


def _stored_results(folder: Path) -> int:
    db = folder / "quantlab.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def test_ctrl_c_keeps_finished_jobs_and_resume_completes(cnn_tflite: Path, tmp_path: Path) -> None:
    args = ["bench", str(cnn_tflite), "--device", "sim", "--delegate", "xnnpack,cpu",
            "--threads", "1,2", "--repeats", "2", "--min-time", "1", "--results", str(tmp_path)]
    # A terminal's Ctrl-C reaches the whole foreground process group: do the same.
    proc = subprocess.Popen([*QUANTLAB, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while _stored_results(tmp_path) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "bench finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run_id = err.split("--resume ")[1].split()[0]

    store = Store.open(str(tmp_path))
    record = store.load_run(run_id)
    assert record.status == "interrupted"
    statuses = [e.status for e in record.entries]
    assert len(statuses) == 4 and 1 <= statuses.count("ok") < 4
    assert "interrupted" in statuses and set(statuses) <= {"ok", "interrupted", "pending"}
    done_before = {e.job.job_id: e.raw for e in record.entries if e.status == "ok"}
    store.close()

    resumed = _quantlab("bench", "--resume", run_id[:12], "--json", "--results", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads(resumed.stdout)["results"]
    assert [r["status"] for r in results] == ["ok"] * 4
    store = Store.open(str(tmp_path))
    record = store.load_run(run_id)
    assert record.status == "done"
    for entry in record.entries:  # measurements taken before Ctrl-C were kept, not redone
        if entry.job.job_id in done_before:
            assert entry.raw == done_before[entry.job.job_id]
    store.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "pixel-9"], "pixel-9"),
        (["--delegate", "tpu"], "--delegate tpu: unknown delegate"),
        (["--threads", "two"], "--threads two: not a whole number"),
        (["--inputs", "nowhere.npz"], "--inputs nowhere.npz: no such file"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    cnn_tflite: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    proc = _quantlab("bench", str(cnn_tflite), *extra, "--results", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert _stored_results(tmp_path) == 0


def test_results_that_is_a_file_exits_2(cnn_tflite: Path, tmp_path: Path) -> None:
    file = tmp_path / "results"
    file.write_text("not a folder")
    proc = _quantlab("bench", str(cnn_tflite), "--device", "sim", "--results", str(file))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(file) in lines[0]
    assert file.read_text() == "not a folder"


def test_resume_of_unknown_run_exits_2(tmp_path: Path) -> None:
    Store.open(str(tmp_path)).close()
    proc = _quantlab("bench", "--resume", "19990101", "--results", str(tmp_path))
    assert proc.returncode == 2
    assert "run 19990101: not found" in proc.stderr


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    proc = _quantlab("bench", str(tmp_path / "missing.tflite"), "--verbose",
                     "--results", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
