"""The nightly lab end to end on the simulator: a plan file run twice, history, a baseline
compared in the same command, JUnit/Markdown for CI, and --resume of a plan run.

The second night grows one model on purpose (about 9x slower: 6 conv layers of 64
filters instead of 3 of 32) and leaves the other untouched; the change threshold is
50 %, so the grown model is far beyond it and the untouched one far below it whatever
the machine does in between (no test here depends on timing noise).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml
from typer.testing import CliRunner

from quantlab.harness.cli.main import app
from quantlab.harness.store import Store

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
PLAN = """\
# the nightly benchmark of the test lab
models = ["models/*.tflite"]
devices = ["sim"]
delegates = ["xnnpack"]
threads = [1]
tags = ["nightly"]

[measure]
warmup = 5
iterations = 30
repeats = 3

[compare]
threshold = "50%"
"""


def _tflite(path: Path, filters: int, layers: int) -> None:
    """A small compute-bound conv net (as in test_report_sim)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    inp = tf.keras.Input(shape=(48, 48, 8), batch_size=1)
    x = inp
    for _ in range(layers):
        x = tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(10)(x))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nightly-nets")
    out = {"small": root / "small.tflite", "big": root / "big.tflite",
           "other": root / "other.tflite"}
    _tflite(out["small"], 32, 3)
    _tflite(out["big"], 64, 6)
    _tflite(out["other"], 32, 3)
    return out


def _lab(tmp_path: Path, nets: dict[str, Path], plan: str = PLAN) -> Path:
    (tmp_path / "models").mkdir()
    shutil.copy(nets["small"], tmp_path / "models" / "net.tflite")
    shutil.copy(nets["other"], tmp_path / "models" / "other.tflite")
    path = tmp_path / "nightly.toml"
    path.write_text(plan)
    return path


def test_two_nights_history_baseline_and_junit(tmp_path: Path, nets: dict[str, Path]) -> None:
    plan = _lab(tmp_path, nets)
    results = str(tmp_path / "results")
    # the first night runs the nightly line too: no run carries the tag yet, nothing compared
    first = runner.invoke(app, ["bench", "--plan", str(plan), "--tag", "git=aaa",
                                "--baseline", "nightly", "--results", results, "--json"])
    assert first.exit_code == 0, first.output
    assert "baseline nightly: no run has this tag or id yet" in first.stderr
    night1 = json.loads(first.stdout)
    assert "comparison" not in night1
    assert night1["tags"] == ["git=aaa", "nightly"]
    assert night1["plan_sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest()
    assert sorted(Path(r["model"]["path"]).name for r in night1["results"]) == [
        "net.tflite", "other.tflite"]

    shutil.copy(nets["big"], tmp_path / "models" / "net.tflite")  # the model grew
    second = runner.invoke(app, [
        "bench", "--plan", str(plan), "--tag", "git=bbb", "--baseline", "nightly",
        "--iterations", "25",  # beside --plan: overrides the file's 30
        "--junit", str(tmp_path / "ci" / "junit.xml"), "--markdown", str(tmp_path / "ci.md"),
        "--results", results, "--json"])
    assert second.exit_code == 1, second.output  # compare's exit code: a regression
    night2 = json.loads(second.stdout)
    settings = night2["results"][0]["settings"]
    assert settings["iterations"] == 25 and settings["repeats"] == 3 and settings["warmup"] == 5
    comparison = night2["comparison"]
    assert comparison["baseline"] == night1["run_id"] and comparison["threshold"] == 0.5
    verdicts = {m["model"]: m["verdict"] for m in comparison["matches"]}
    assert verdicts == {"net.tflite": "slower", "other.tflite": "no significant difference"}

    # JUnit, read by a JUnit reader: one case per matched pair, exactly one failure
    [suite] = list(JUnitXml.fromfile(str(tmp_path / "ci" / "junit.xml")))
    assert suite.tests == 2 and suite.failures == 1 and suite.skipped == 0
    failures = [c for c in suite for r in c.result if isinstance(r, Failure)]
    assert [c.name for c in failures] == ["net.tflite · xnnpack · 1t"]
    assert "slower: median" in failures[0].result[0].message
    md = (tmp_path / "ci.md").read_text()
    assert "❌ regression" in md and "| ❌ | net.tflite |" in md and "| ✅ | other.tflite |" in md

    # history: both points of both series, a change point for the grown model only
    res = runner.invoke(app, ["history", "--json", "--threshold", "50%", "--tag", "nightly",
                              "--results", results])
    assert res.exit_code == 0, res.output
    series = {s["model"]: s for s in json.loads(res.stdout)["series"]}
    assert set(series) == {"net.tflite", "other.tflite"}
    for s in series.values():
        assert [p["run_id"] for p in s["points"]] == [night1["run_id"], night2["run_id"]]
        assert all(p["statistic"] == "median" and p["method"] == "per-iteration"
                   and p["ci95"] for p in s["points"])
    assert series["other.tflite"]["change_points"] == []
    [change] = series["net.tflite"]["change_points"]
    assert change["run_id"] == night2["run_id"] and change["verdict"] == "slower"
    assert change["status"] == "unconfirmed" and change["ratio"] > 3

    # a baseline that is neither a tag nor a run stops before measuring anything
    typo = runner.invoke(app, ["bench", "--plan", str(plan), "--baseline", "nigthly",
                               "--results", results])
    assert typo.exit_code == 2, typo.output
    assert "--baseline nigthly: no run has this tag or id" in typo.stderr
    bad = runner.invoke(app, ["bench", "--plan", str(plan), "--baseline", "nightly",
                              "--threshold", "fast", "--results", results])
    assert bad.exit_code == 2 and "--threshold 'fast': not a number" in bad.stderr
    store = Store.open(results)
    assert len(store.list_runs()) == 2  # neither measured anything
    store.close()

    # the plan text is stored byte for byte with both runs
    store = Store.open(results)
    assert store.run_plan_text(night2["run_id"]) == plan.read_text()
    store.close()
    table = runner.invoke(app, ["history", "--threshold", "50%", "--results", results])
    assert table.exit_code == 0 and "unconfirmed" in table.stdout


def _stored_results(folder: Path) -> int:
    db = folder / "quantlab.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_resume_finishes_a_plan_run_without_remeasuring(tmp_path: Path,
                                                         nets: dict[str, Path]) -> None:
    plan = _lab(tmp_path, nets, PLAN.replace('delegates = ["xnnpack"]',
                                             'delegates = ["xnnpack", "cpu"]')
                .replace("repeats = 3", "repeats = 2\nmin_time = 1.0"))
    results = tmp_path / "results"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "quantlab", "bench", "--plan", str(plan),
           "--tag", "git=ccc", "--results", str(results)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while _stored_results(results) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the plan run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run_id = err.split("--resume ")[1].split()[0]
    store = Store.open(str(results))
    before = store.load_run(run_id)
    done = {e.job.job_id: e.raw for e in before.entries if e.status == "ok"}
    assert 1 <= len(done) < 4 and before.plan_sha256 is not None
    store.close()

    resumed = runner.invoke(app, ["bench", "--resume", run_id, "--junit",
                                  str(tmp_path / "junit.xml"), "--results", str(results),
                                  "--json"])
    assert resumed.exit_code == 0, resumed.output
    data = json.loads(resumed.stdout)
    assert [r["status"] for r in data["results"]] == ["ok"] * 4
    assert data["tags"] == ["git=ccc", "nightly"]
    store = Store.open(str(results))
    after = store.load_run(run_id)
    assert after.status == "done" and after.plan_sha256 == before.plan_sha256
    for entry in after.entries:  # measured before Ctrl-C: kept, not measured again
        if entry.job.job_id in done:
            assert entry.raw == done[entry.job.job_id] and entry.attempts == 1
    store.close()
    [suite] = list(JUnitXml.fromfile(str(tmp_path / "junit.xml")))
    assert suite.tests == 4 and suite.failures == 0  # no baseline: one case per job
