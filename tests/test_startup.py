"""The first second: cold and warm start per job. The simulator's load, delegate and first
inference; a GPU job on the loopback phone (through the real adb server) with its warm start
from the delegate's cache, shown by show, delegates, compare and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.adbd import FakeAndroidDevice
from test_android_adb import _adb_installed, adb_port, cache, phone
from typer.testing import CliRunner

import quantlab
from quantlab.agents.sim.agent import SimAgent
from quantlab.harness.cli.main import app
from quantlab.harness.records import Job, ModelRef, Settings

__all__ = ["_adb_installed", "adb_port", "cache", "phone"]  # fixtures used here


def test_simulator_first_second(cnn_tflite: Path) -> None:
    agent = SimAgent(rapl_root="/nonexistent/powercap")
    device = agent.discover()[0]
    ref = ModelRef(str(cnn_tflite), "0" * 64, cnn_tflite.stat().st_size, "tflite")
    settings = Settings(warmup=1, iterations=3, repeats=2, timeout_s=120)
    for delegate in ("xnnpack", "cpu"):
        raw = agent.run(device, Job(ref, "sim", "sim", delegate, 1, settings), lambda *a: None)
        assert raw.status == "ok", raw.error
        cold = raw.startup["cold"]
        assert cold["first_inference_ms"] == raw.first_inference_ms
        if delegate == "xnnpack":  # load + delegate = init, both measured
            assert cold["load_ms"] > 0 and cold["delegate_ms"] > 0
            assert cold["load_ms"] + cold["delegate_ms"] == pytest.approx(raw.init_ms)
        else:  # builtin kernels: no delegate step
            assert cold["delegate_ms"] is None and cold["load_ms"] == raw.init_ms
        assert raw.startup["warm"] is None and "no delegate cache" in \
            raw.startup["warm_unavailable"]


def test_gpu_cold_and_warm_start_in_show_delegates_compare_and_report(
        phone: FakeAndroidDevice, cnn_tflite: Path, cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_COOLDOWN_S", "0")
    monkeypatch.setenv("COLUMNS", "200")
    store = tmp_path / "results"
    runs = [quantlab.bench([cnn_tflite], device=phone.serial, delegate="gpu,cpu", repeats=1,
                           iterations=2, warmup=1, results=store)["run_id"] for _ in range(2)]
    runner = CliRunner()
    show = runner.invoke(app, ["show", runs[1], "--results", str(store)])
    assert show.exit_code == 0, show.output
    assert "First second: cold and warm start" in show.output
    table = show.output.split("First second", 1)[1]
    gpu = next(line for line in table.splitlines() if "gpu/1t" in line)
    assert "1001 ms" in gpu  # cold: Init 870.6 + first inference 130.6
    assert "305 ms" in gpu  # warm: Init from the cache 174.1 + 130.6
    assert "cpu: benchmark_model keeps no delegate cache" in show.output
    shown = json.loads(runner.invoke(app, ["show", runs[1], "--json", "--results",
                                           str(store)]).output)
    start = next(r for r in shown["results"] if r["delegate"] == "gpu")["startup"]
    assert start["cold"]["load_ms"] == pytest.approx(870.557)
    assert start["warm"]["load_ms"] == pytest.approx(174.111, rel=1e-4)
    delegates = runner.invoke(app, ["delegates", runs[1], "--json", "--results", str(store)])
    row = next(r for r in json.loads(delegates.output)["rows"] if r["delegate"] == "gpu")
    assert row["cold_start_ms"] == pytest.approx(870.557 + 130.565)
    assert row["warm_start_ms"] == pytest.approx(174.111 + 130.565, rel=1e-4)
    text = runner.invoke(app, ["delegates", runs[1], "--results", str(store)]).output
    assert "cold" in text and "warm" in text
    compare = runner.invoke(app, ["compare", runs[0], runs[1], "--results", str(store)])
    assert "first second" in compare.output and "warm start 304.7 ms → 304.7 ms" in \
        compare.output
    html = tmp_path / "r.html"
    report = runner.invoke(app, ["report", runs[1], "--html", str(html), "--results",
                                 str(store)])
    assert report.exit_code == 0, report.output
    section = html.read_text().split('id="startup"', 1)[1].split("</section>", 1)[0]
    assert "305 ms" in section and "1001 ms" in section
