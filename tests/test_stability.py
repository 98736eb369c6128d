"""Stability scores and plan --resolve: the noise between and within launches, drift within a
launch, and the repeats and iterations a change needs at that noise (fixed numbers), then
``quantlab plan --resolve 5%`` on a store with one measured job and one never measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import quantlab
from quantlab.harness.cli.main import app
from quantlab.harness.records import LaunchStats, RawResult
from quantlab.harness.stability import describe, resolve, score


def _launch(level: float, n: int = 30, slope: float = 0.0) -> tuple[float, ...]:
    """``n`` samples around ``level`` (±1 % pattern), rising by ``slope`` over the launch."""
    return tuple(level * (1 + 0.01 * ((i * 7) % 5 - 2) / 2) * (1 + slope * i / n)
                 for i in range(n))


def test_stable_noisy_unstable_and_drift() -> None:
    stable = score(RawResult("j", "ok", samples_ms=(_launch(10), _launch(10.05), _launch(9.98))))
    assert stable is not None and stable["verdict"] == "stable"
    assert stable["launches"] == 3 and stable["cv_between"] < 0.01
    noisy = score(RawResult("j", "ok", samples_ms=(_launch(10), _launch(10.4), _launch(9.7))))
    assert noisy is not None and noisy["verdict"] == "noisy"
    assert noisy["cv_between"] == pytest.approx(0.035, abs=0.005)
    drifting = score(RawResult("j", "ok", samples_ms=(_launch(10, slope=0.15),
                                                      _launch(10, slope=0.15))))
    assert drifting is not None and drifting["drift"] > 0.08 and drifting["verdict"] != "stable"
    assert "drift +" in describe(drifting)
    wild = score(RawResult("j", "ok", samples_ms=(_launch(10), _launch(14))))
    assert wild is not None and wild["verdict"] == "unstable"


def test_no_score_without_two_launches() -> None:
    assert score(RawResult("j", "ok", samples_ms=(_launch(10),))) is None
    assert score(RawResult("j", "failed")) is None
    assert score(None) is None


def test_launch_figures_of_a_phone_count_too() -> None:
    raw = RawResult("j", "ok", launches=(LaunchStats(mean_ms=100.0, std_ms=2.0),
                                         LaunchStats(mean_ms=101.0, std_ms=2.0)))
    s = score(raw)
    assert s is not None and s["cv_within"] == pytest.approx(0.02, rel=0.01)
    assert s["drift"] is None  # no per-iteration samples


def test_resolve_arithmetic() -> None:
    # 2 (z_0.975 + z_0.8)^2 sd^2 / ln(1.05)^2 = 15.698 * 0.0025 / 0.0023805 = 16.5 → 17
    need = resolve({"sd_log_between": 0.05, "cv_within": 0.02}, 0.05)
    assert need == {"change": 0.05, "repeats": 17, "iterations": 10}
    assert resolve({"sd_log_between": 0.05, "cv_within": 0.1}, 0.05)["iterations"] == 64
    assert resolve({"sd_log_between": 0.0, "cv_within": None}, 0.05) == {
        "change": 0.05, "repeats": 2, "iterations": None}
    # a smaller change needs more: four times the launches for half the change
    assert resolve({"sd_log_between": 0.05, "cv_within": 0.02}, 0.025)["repeats"] >= 4 * 16


def test_plan_resolve_on_a_store(cnn_tflite: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "results")
    quantlab.bench([cnn_tflite], device="sim", delegate="xnnpack", repeats=3, iterations=10,
                   warmup=2, results=store)
    runner = CliRunner()
    out = runner.invoke(app, ["plan", str(cnn_tflite), "--device", "sim", "--delegate",
                              "xnnpack,cpu", "--resolve", "5%", "--results", store, "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["label"].split(" · ")[2]: r for r in json.loads(out.stdout)["resolve"]}
    measured, never = rows["xnnpack"], rows["cpu"]
    assert measured["stability"]["launches"] == 3 and measured["resolve"]["repeats"] >= 2
    assert measured["resolve"]["change"] == pytest.approx(0.05)
    assert never["stability"] is None and "measure it once" in never["note"]
    text = runner.invoke(app, ["plan", str(cnn_tflite), "--device", "sim", "--resolve", "5%",
                               "--results", store])
    assert "To resolve a 5% change" in text.output
    bad = runner.invoke(app, ["plan", str(cnn_tflite), "--resolve", "lots", "--results", store])
    assert bad.exit_code == 2 and "--resolve lots: not a percentage" in bad.output
