"""Sustained runs: window figures, the throttling point, peak vs sustained throughput, and the
simulator's sustained mode (windows over one runner process, sysfs sensors or the reason)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantlab.agents.litert.runner.sustained import read_sensors
from quantlab.agents.sim.agent import SimAgent
from quantlab.harness.records import Job, ModelRef, RawResult, Settings, load_record, to_dict
from quantlab.harness.sustained import describe, summarize, throttle_point, window_figures


def _windows(latencies: list[float], window_s: float = 1.0) -> list[dict[str, object]]:
    return [{"start_s": i * window_s, "end_s": (i + 1) * window_s, "median_ms": v,
             "p90_ms": v * 1.1, "throughput_ips": 1000.0 / v} for i, v in enumerate(latencies)]


def test_window_figures_of_fixed_times() -> None:
    w = window_figures([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 2.0, 4.0)
    assert w["count"] == 10 and w["median_ms"] == pytest.approx(5.5)
    assert w["p90_ms"] == pytest.approx(9.1) and w["throughput_ips"] == pytest.approx(5.0)
    assert window_figures([], 0.0, 1.0)["median_ms"] is None


def test_throttling_point_is_where_latency_stays_up() -> None:
    # a spike that comes back down is not throttling; the stretch that stays up is
    point = throttle_point(_windows([10, 10.5, 14, 10.2, 10, 13, 13.5, 14, 13.8]), 10.0)
    assert point is not None and point["window"] == 5 and point["at_s"] == 5.0
    assert point["slowdown"] == pytest.approx(1.3)


@pytest.mark.parametrize("latencies", [[10, 10.4, 10.9, 10.2, 10.8], [10, 10, 10, 10, 30],
                                       [10], []])
def test_no_throttling_point(latencies: list[float]) -> None:
    # within the threshold; a last window alone (noise) does not count; too few windows
    assert throttle_point(_windows(latencies), 10.0) is None


def test_summary_peak_and_sustained_throughput() -> None:
    summary = summarize(_windows([10, 10, 10, 20, 20, 20, 20, 20]), 10.0)
    assert summary["peak_ips"] == pytest.approx(100.0)
    assert summary["sustained_ips"] == pytest.approx(50.0)  # the last quarter
    assert summary["sustained_ratio"] == pytest.approx(0.5)
    assert summary["throttle_at_s"] == 3.0
    assert "throttled from 3.0s (window 4)" in describe({**summary, "sensors_note": None})
    calm = summarize(_windows([10, 10, 10]), 10.0)
    assert calm["throttle_at_s"] is None and "no throttling" in describe(calm)


def test_sensors_from_a_sysfs_tree(tmp_path: Path) -> None:
    zone = tmp_path / "class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("x86_pkg_temp\n")
    (zone / "temp").write_text("54000\n")
    cpu = tmp_path / "devices/system/cpu/cpu0/cpufreq"
    cpu.mkdir(parents=True)
    (cpu / "scaling_cur_freq").write_text("2400000\n")
    sensors, missing = read_sensors(tmp_path)
    assert sensors["temperatures_c"] == {"x86_pkg_temp": 54.0}
    assert sensors["cpu_freq_khz"] == {"cpu0": 2400000}
    assert missing == ["no battery"]
    empty, missing = read_sensors(tmp_path / "none")
    assert empty["temperatures_c"] == {} and empty["cpu_freq_khz"] == {}
    assert any("no thermal zone" in m for m in missing)


def test_simulator_sustained_run(cnn_tflite: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_SYSFS_ROOT", str(tmp_path))  # a VM: no thermal zone
    agent = SimAgent(rapl_root="/nonexistent/powercap")
    device = agent.discover()[0]
    ref = ModelRef(str(cnn_tflite), "0" * 64, cnn_tflite.stat().st_size, "tflite")
    settings = Settings(warmup=2, iterations=10, repeats=3, timeout_s=120,
                        sustained_s=1.2, window_s=0.3)
    raw = agent.run(device, Job(ref, "sim", "sim", "xnnpack", 1, settings), lambda *a: None)
    assert raw.status == "ok", raw.error
    s = raw.sustained
    assert 4 <= len(s["windows"]) <= 5  # 1.2 s in 0.3 s windows (the last may be short)
    assert all(w["count"] > 0 and w["p90_ms"] >= w["median_ms"] for w in s["windows"])
    assert s["windows"][-1]["end_s"] >= 1.2
    assert len(raw.samples_ms) == 1  # one process, no repeats
    assert sum(w["count"] for w in s["windows"]) == len(raw.samples_ms[0])
    assert "no thermal zone" in s["sensors_note"]  # said, not invented
    assert all(w["temperatures_c"] == {} for w in s["windows"])
    assert s["peak_ips"] >= s["sustained_ips"] > 0
    assert load_record(RawResult, to_dict(raw)).sustained == s  # survives JSON


def test_sustained_settings_change_the_job_id_only_when_set() -> None:
    ref = ModelRef("/m.tflite", "ab" * 32, 1, "tflite")
    plain = Job(ref, "sim", "sim", "xnnpack", 1, Settings())
    assert plain.job_id == "3e530912ce193e07"  # pinned in test_records too
    long = dataclasses.replace(plain, settings=Settings(sustained_s=60.0))
    assert long.job_id != plain.job_id


def _quantlab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quantlab", *args], capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                          timeout=300, check=False)


def test_bench_sustained_then_show_and_report(cnn_tflite: Path, tmp_path: Path) -> None:
    env = {"QUANTLAB_RESULTS": str(tmp_path / "results"), "QUANTLAB_SYSFS_ROOT": str(tmp_path),
           "COLUMNS": "200"}
    bench = _quantlab("bench", str(cnn_tflite), "--sustained", "1s", "--window", "0.25",
                      "--json", env=env)
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout)["results"][0]
    assert result["sustained"]["window_s"] == 0.25 and len(result["sustained"]["windows"]) >= 4
    assert result["settings"]["sustained_s"] == 1.0
    show = _quantlab("show", env=env)
    assert show.returncode == 0, show.stderr
    assert "Sustained: cnn" in show.stdout and "0.25s windows" in show.stdout
    assert "peak" in show.stdout and "sustained" in show.stdout
    assert "no thermal zone" in show.stdout
    html = tmp_path / "r.html"
    report = _quantlab("report", "--html", str(html), env=env)
    assert report.returncode == 0, report.stderr
    section = html.read_text().split('id="sustained"', 1)[1].split("</section>", 1)[0]
    assert "<svg" in section and "no thermal zone" in section


@pytest.mark.parametrize(("args", "message"), [
    (["--sustained", "ten"], "--sustained ten: not a duration"),
    (["--sustained", "2s", "--window", "5"], "--window 5: not within the --sustained"),
    (["--sustained", "2s", "--window", "1", "--throttle", "x%"], "--throttle x%: not a percentage"),
])
def test_bad_sustained_options_are_one_line_errors(cnn_tflite: Path, tmp_path: Path,
                                                   args: list[str], message: str) -> None:
    out = _quantlab("bench", str(cnn_tflite), *args,
                    env={"QUANTLAB_RESULTS": str(tmp_path / "results")})
    assert out.returncode == 2 and message in out.stderr
    assert "Traceback" not in out.stderr



def test_a_plan_file_asks_for_a_sustained_run(cnn_tflite: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from quantlab.harness.cli.main import app

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.tflite").write_bytes(cnn_tflite.read_bytes())
    plan = tmp_path / "plan.toml"
    plan.write_text('models = ["models/a.tflite"]\ndevices = ["sim"]\n\n[measure]\n'
                    'sustained = "2m"\nwindow = 15\nthrottle = "20%"\nconfirm = 2\n')
    out = CliRunner().invoke(app, ["plan", "--plan", str(plan), "--json"])
    assert out.exit_code == 0, out.output
    settings = json.loads(out.stdout)["jobs"][0]["settings"]
    assert (settings["sustained_s"], settings["window_s"], settings["throttle_pct"]) == (
        120.0, 15.0, 20.0)
