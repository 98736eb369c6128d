"""The plan file's accuracy gate on the simulator: ``[gate]`` evaluates each variants folder
among the models before it is measured (``quantlab evaluate``), stores the evaluations
(``quantlab recommend`` reads them), still measures every variant, and makes ``bench``
exit 1 when a variant fails; ``quantlab plan --plan`` shows the same expansion and runs
nothing.

The variants are fp32 and int8 of the digits model, int8 calibrated on 8 nearly black
images: its top-1 drops by tens of points (see test_quantize_gate), far beyond the
default int8 gate (2 points) and far below a ``max_drop`` of 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import quantize_fixtures as qf
from typer.testing import CliRunner

from quantlab.harness.cli.main import app
from quantlab.harness.store import Store

bad_calib = qf.bad_calib
digits = qf.digits
runner = CliRunner()
PLAN = """\
models = ["variants"]
devices = ["sim"]
delegates = ["xnnpack"]
threads = [1]
tags = ["nightly"]

[measure]
warmup = 1
iterations = 5
repeats = 1

[gate]
data = "data/val.npz"
"""


@pytest.fixture(scope="module")
def lab(digits: tuple[Path, Path], bad_calib: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with variants/ (fp32, poorly calibrated int8) and data/val.npz."""
    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.variants import quantize

    root = tmp_path_factory.mktemp("gate-lab")
    quantize(QuantizeRequest.create(digits[0], ["fp32", "int8"], bad_calib, root / "variants"))
    (root / "data").mkdir()
    shutil.copy(digits[1], root / "data" / "val.npz")
    return root


def _plan(lab: Path, name: str, text: str = PLAN) -> Path:
    path = lab / name
    path.write_text(text)
    return path


def test_plan_dry_run_expands_the_plan_file_and_runs_nothing(lab: Path, tmp_path: Path
                                                             ) -> None:
    plan = _plan(lab, "dry.toml")
    results = tmp_path / "results"
    res = runner.invoke(app, ["plan", "--plan", str(plan), "--json"],
                        env={"QUANTLAB_RESULTS": str(results)})
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert sorted(j["model"]["scheme"] for j in data["jobs"]) == ["fp32", "int8"]
    assert {(j["device_id"], j["delegate"], j["threads"]) for j in data["jobs"]} == {
        ("sim", "xnnpack", 1)}
    assert {j["settings"]["iterations"] for j in data["jobs"]} == {5}
    summary = data["plan_file"]
    assert summary["tags"] == ["nightly"] and len(summary["sha256"]) == 64
    assert summary["gate"]["folders"] == [str(lab / "variants")]
    assert not results.exists()  # nothing evaluated, nothing stored

    # options beside --plan override the file's, as with bench
    over = runner.invoke(app, ["plan", "--plan", str(plan), "--threads", "2",
                               "--iterations", "7", "--json"])
    assert over.exit_code == 0, over.output
    jobs = json.loads(over.stdout)["jobs"]
    assert {(j["threads"], j["settings"]["iterations"]) for j in jobs} == {(2, 7)}
    table = runner.invoke(app, ["plan", "--plan", str(plan)], env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "accuracy gate: bench evaluates 1 variants" in table.stdout

    bad = _plan(lab, "bad.toml", PLAN.replace("iterations = 5", 'iterations = "5"'))
    wrong = runner.invoke(app, ["plan", "--plan", str(bad)])
    assert wrong.exit_code == 2 and "bad.toml:9: measure.iterations" in wrong.stderr
    none = runner.invoke(app, ["plan"])
    assert none.exit_code == 2 and "no models given" in none.stderr


def test_a_failing_gate_is_stored_measured_and_exits_1(lab: Path, tmp_path: Path) -> None:
    plan = _plan(lab, "gate.toml")
    results = str(tmp_path / "results")
    res = runner.invoke(app, ["bench", "--plan", str(plan), "--results", results, "--json"])
    assert res.exit_code == 1, res.output  # the gate failed: a CI job goes red
    assert "accuracy gate failed for int8" in res.stderr
    data = json.loads(res.stdout)
    gate = data["gate"]
    assert gate["failed"] == [f"int8 ({lab / 'variants'})"]
    verdicts = {v["scheme"]: v for v in gate["variants"]}
    assert verdicts["fp32"]["passed"] and verdicts["fp32"]["drop"] == 0
    assert not verdicts["int8"]["passed"] and verdicts["int8"]["drop"] > 0.2
    assert verdicts["int8"]["max_drop"] == 0.02 and verdicts["int8"]["metric"] == "top1"
    # every variant is measured all the same: the timings are there for the record
    assert sorted((r["model"]["scheme"], r["status"]) for r in data["results"]) == [
        ("fp32", "ok"), ("int8", "ok")]

    store = Store.open(results)
    try:
        saved = store.evaluations()
    finally:
        store.close()
    assert {saved[v["sha256"]]["passed"] for v in gate["variants"]} == {True, False}
    assert saved[verdicts["int8"]["sha256"]]["passed"] is False

    # recommend reads the stored evaluations: the fast int8 variant is not recommended
    rec = runner.invoke(app, ["recommend", data["run_id"], "--results", results, "--json"])
    assert rec.exit_code == 0, rec.output
    [device] = json.loads(rec.stdout)["devices"]
    assert device["best"]["scheme"] == "fp32"
    human = runner.invoke(app, ["bench", "--plan", str(plan), "--results", results],
                          env={"COLUMNS": "200"})
    assert human.exit_code == 1 and "accuracy gate failed for int8" in human.stderr
    assert "ranks only variants within its --max-drop" in human.stderr


def test_a_passing_gate_exits_0(lab: Path, tmp_path: Path) -> None:
    plan = _plan(lab, "loose.toml", PLAN + "max_drop = 1.0\n")
    results = str(tmp_path / "results")
    res = runner.invoke(app, ["bench", "--plan", str(plan), "--results", results, "--json"])
    assert res.exit_code == 0, res.output
    gate = json.loads(res.stdout)["gate"]
    assert gate["failed"] == [] and all(v["passed"] for v in gate["variants"])


def test_the_gate_can_judge_by_the_interval(lab: Path, tmp_path: Path) -> None:
    """[gate] gate_confidence = true is evaluate --gate-confidence: a drop fails only when
    its whole interval lies beyond max_drop. int8's drop (> 20 pt) is beyond it either way."""
    plan = _plan(lab, "confident.toml", PLAN + "gate_confidence = true\n")
    results = str(tmp_path / "results")
    res = runner.invoke(app, ["bench", "--plan", str(plan), "--results", results, "--json"])
    assert res.exit_code == 1, res.output
    gate = json.loads(res.stdout)["gate"]
    assert gate["gate_confidence"] is True and gate["failed"] == [f"int8 ({lab / 'variants'})"]
    int8 = next(v for v in gate["variants"] if v["scheme"] == "int8")
    assert int8["interval"]["low"] > int8["max_drop"], int8
