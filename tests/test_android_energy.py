"""Energy from the on-device sampler: parsing, unit/sign calibration, ODPM rails, no-sensor."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from quantlab.android_runner import energy


def gauge(phase: str, status: str, current: float, voltage: float, n: int = 5) -> str:
    lines = [f"100.00 {phase} battery.status {status}"]
    for k in range(n):
        t = 100 + 0.1 * k
        lines += [f"{t:.2f} {phase} battery.current {current}",
                  f"{t:.2f} {phase} battery.voltage {voltage}"]
    return "\n".join(lines) + "\n"


def test_sampler_script_reads_the_gauge(tmp_path: Path) -> None:
    bat = tmp_path / "sys/class/power_supply/battery"
    bat.mkdir(parents=True)
    (bat / "current_now").write_text("-250000\n")
    (bat / "voltage_now").write_text("3900000\n")
    (bat / "status").write_text("Discharging\n")
    proc = subprocess.run(["/bin/sh", str(energy.SAMPLER), "baseline", "1", "0.2"],
                          capture_output=True, text=True, timeout=30, check=True,
                          env={**os.environ, "QL_ROOT": str(tmp_path)})
    out = energy.parse_sampler(proc.stdout)
    assert out.status == "Discharging"
    cur = [s for s in out.samples if s.channel == "battery.current"]
    assert len(cur) >= 3 and {s.value for s in cur} == {-250000.0}
    assert all(s.phase == "baseline" for s in out.samples)
    assert cur[-1].t_s >= 0.9  # timestamps from /proc/uptime span the second


def test_microamps_negative_when_discharging() -> None:
    base = energy.parse_sampler(gauge("baseline", "Discharging", -200000, 4000000))
    load = energy.parse_sampler(gauge("load", "Discharging", -700000, 3950000))
    out = energy.compute_energy(base, load, latency_ms=20.0, usb_powered=False)
    assert out.energy is not None and out.energy.method == "battery-gauge"
    assert out.energy.baseline_mw == pytest.approx(800.0)
    load_mw = 700000 * 3950000 / 1e9
    assert out.energy.mj_per_inference == pytest.approx((load_mw - 800.0) * 20.0 / 1000)
    assert out.energy.samples == 10 and not out.warnings


def test_milliamps_positive_when_discharging() -> None:
    base = energy.parse_sampler(gauge("baseline", "Discharging", 185, 3987000))
    load = energy.parse_sampler(gauge("load", "Discharging", 912, 3987000))
    out = energy.compute_energy(base, load, latency_ms=10.0, usb_powered=False)
    assert out.energy is not None
    assert out.energy.detail["current_scale_to_uA"] == 1000.0
    assert out.energy.baseline_mw == pytest.approx(185 * 3.987)
    assert out.energy.mj_per_inference == pytest.approx((912 - 185) * 3.987 * 10 / 1000)
    assert out.energy.comparability == "battery-gauge" and not out.energy.on_external_power
    assert not out.warnings


def test_gauge_on_usb_power_is_null_with_the_reason() -> None:
    base = energy.parse_sampler(gauge("baseline", "Discharging", 185, 3987000))
    load = energy.parse_sampler(gauge("load", "Discharging", 912, 3987000))
    out = energy.compute_energy(base, load, latency_ms=10.0, usb_powered=True)
    assert out.energy is None
    assert (out.reason or "").startswith("the phone was on USB power: the gauge reads charge "
                                         "current")
    assert "--energy-on-usb" in (out.reason or "")
    assert out.samples  # the raw readings are still kept
    # a charging status seen by the sampler means external power too
    charging = energy.parse_sampler(gauge("baseline", "Charging", -185, 3987000))
    out = energy.compute_energy(charging, load, latency_ms=10.0, usb_powered=False)
    assert out.energy is None and "was on external power" in (out.reason or "")


def test_gauge_on_usb_power_kept_when_asked_and_labelled() -> None:
    base = energy.parse_sampler(gauge("baseline", "Discharging", 185, 3987000))
    load = energy.parse_sampler(gauge("load", "Discharging", 912, 3987000))
    out = energy.compute_energy(base, load, latency_ms=10.0, usb_powered=True,
                                power_source="USB", keep_on_usb=True)
    assert out.energy is not None and out.energy.on_external_power
    assert out.energy.mj_per_inference == pytest.approx((912 - 185) * 3.987 * 10 / 1000)
    assert "taken on USB power" in (out.energy.label or "")
    assert out.energy.detail["power_source"] == "USB"
    assert out.warnings and "USB power" in out.warnings[0]


def test_odpm_rails_win_over_the_gauge() -> None:
    def rails(phase: str, t0: int, e_cpu: int, e_gpu: int, rate_cpu: int, rate_gpu: int) -> str:
        lines = []
        for k in range(3):
            t = t0 + 1000 * k
            lines.append(f"{t / 1000:.2f} {phase} odpm CH0(T={t})[S4M_VDD_CPUCL0], "
                         f"{e_cpu + rate_cpu * k}")
            lines.append(f"{t / 1000:.2f} {phase} odpm CH1(T={t})[S2S_VDD_G3D], "
                         f"{e_gpu + rate_gpu * k}")
        return "\n".join(lines)
    # cumulative µW·s: 100 mW + 50 mW idle, 400 mW + 150 mW under load
    base = energy.parse_sampler(rails("baseline", 10000, 0, 0, 100000, 50000))
    load = energy.parse_sampler(rails("load", 20000, 500000, 200000, 400000, 150000))
    out = energy.compute_energy(base, load, latency_ms=5.0, usb_powered=False)
    assert out.energy is not None and out.energy.method == "odpm-rails"
    assert out.energy.comparability == "device-rails"
    assert out.energy.baseline_mw == pytest.approx(150.0)
    assert out.energy.mj_per_inference == pytest.approx((550.0 - 150.0) * 5.0 / 1000)
    # rails read the SoC side: USB power does not spoil them, the figure stays
    out = energy.compute_energy(base, load, latency_ms=5.0, usb_powered=True)
    assert out.energy is not None and out.energy.method == "odpm-rails"
    assert out.energy.detail["power_source"] == "USB" and not out.warnings


def test_unreadable_sensors_give_a_reason() -> None:
    empty = energy.parse_sampler("100.00 baseline battery.status unknown\n")
    out = energy.compute_energy(empty, empty, latency_ms=5.0, usb_powered=False)
    assert out.energy is None and "no readable battery" in (out.reason or "")
    assert "SELinux" not in (out.reason or "")  # no guesses


def test_sampler_script_reports_its_own_error(tmp_path: Path) -> None:
    (tmp_path / "sys/class/power_supply/battery").mkdir(parents=True)  # no gauge files
    proc = subprocess.run(["/bin/sh", str(energy.SAMPLER), "load", "1", "0.2"],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "QL_ROOT": str(tmp_path)})
    assert proc.returncode == 3 and proc.stdout == ""
    assert "current_now: No such file or directory" in proc.stderr
    out = energy.parse_sampler(proc.stdout, proc.stderr, proc.returncode, "load")
    assert out.error and out.error.startswith("the load-phase sampler exited with code 3: ")
    assert "nothing to sample" in out.error
    base = energy.parse_sampler(gauge("baseline", "Discharging", -200000, 4000000))
    res = energy.compute_energy(base, out, latency_ms=5.0, usb_powered=False)
    assert res.energy is None and res.reason == f"energy sampler failed: {out.error}"


def test_dead_sampler_thread_reports_its_exception() -> None:
    base = energy.parse_sampler(gauge("baseline", "Discharging", -200000, 4000000))
    dead = energy.sampler_failed("load", ConnectionResetError("adb connection reset"))
    res = energy.compute_energy(base, dead, latency_ms=5.0, usb_powered=False)
    assert res.energy is None
    assert res.reason == ("energy sampler failed: the load-phase sampler died: "
                          "ConnectionResetError: adb connection reset")
    never = energy.parse_sampler("", returncode=None, phase="load")
    res = energy.compute_energy(base, never, latency_ms=5.0, usb_powered=False)
    assert "the load-phase sampler did not finish" in (res.reason or "")


def test_load_not_above_baseline_gives_no_figure() -> None:
    base = energy.parse_sampler(gauge("baseline", "Discharging", -500000, 4000000))
    load = energy.parse_sampler(gauge("load", "Discharging", -400000, 4000000))
    out = energy.compute_energy(base, load, latency_ms=5.0, usb_powered=False)
    assert out.energy is None and "not above the idle baseline" in (out.reason or "")


FIX = Path(__file__).parent / "fixtures" / "android"


def test_timed_loop_span_is_read_off_the_runner_output() -> None:
    text = (FIX / "xnnpack_info_tf73862.txt").read_bytes()
    start, end = energy.timed_loop_span(text) or (0, 0)
    assert text[:start].rstrip().endswith(b"terminate if exceeding 150 seconds.")
    assert text[:start].count(b"Running benchmark for at least") == 2  # after the warm-up
    assert text[end:].startswith(b"INFO: count=74 ")  # the measured runs' results line
    cut = text[:text.rindex(b"INFO: count=74")]  # the loop never finished
    assert energy.timed_loop_span(cut) is None
    assert energy.timed_loop_span(b"INFO: Initialized session in 12.75ms.\n") is None


def test_only_readings_inside_the_loop_are_kept() -> None:
    lines = []
    for k, (cur, before, after) in enumerate([(4000, 0, 300), (4000, 300, 420), (912, 420, 420),
                                              (912, 420, 420), (912, 420, 500), (185, 500, 500)]):
        t = 100 + 0.1 * k
        lines += [f"{t:.2f} load battery.current {cur}", f"{t:.2f} load battery.voltage 3987000",
                  f"{t:.2f} load log.bytes {before} {after}"]
    out = energy.parse_sampler("\n".join(lines), phase="load", span=(420, 420))
    assert {s.value for s in out.samples if s.channel == "battery.current"} == {912.0}
    assert out.window is not None
    assert (out.window.readings, out.window.before, out.window.after) == (2, 2, 2)
    assert (out.window.start_s, out.window.end_s) == (100.2, 100.3)
    base = energy.parse_sampler(gauge("baseline", "Discharging", 185, 3987000))
    res = energy.compute_energy(base, out, latency_ms=10.0, usb_powered=False)
    assert res.energy is not None
    assert res.energy.detail["load_mw"] == pytest.approx(912 * 3.987)
    assert res.energy.detail["window"]["left_out_before"] == 2
    # one reading inside the loop is not enough: no figure, with the counts
    one = energy.parse_sampler("\n".join(lines), phase="load", span=(420, 419))
    res = energy.compute_energy(base, one, latency_ms=10.0, usb_powered=False)
    assert res.energy is None and "0 reading(s) inside the runner's timed loop" in (
        res.reason or "")


def test_sampler_script_watches_the_runner_output_and_stops(tmp_path: Path) -> None:
    bat = tmp_path / "sys/class/power_supply/battery"
    bat.mkdir(parents=True)
    (bat / "current_now").write_text("-250000\n")
    (bat / "voltage_now").write_text("3900000\n")
    log = tmp_path / "data/local/tmp/quantlab/out/j.energy.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"x" * 42)
    (log.parent / "j.energy.stop").write_text("stop\n")  # the runner has already exited
    proc = subprocess.run(["/bin/sh", str(energy.SAMPLER), "load", "60", "0.1",
                           "/data/local/tmp/quantlab/out/j.energy.log",
                           "/data/local/tmp/quantlab/out/j.energy.stop"],
                          capture_output=True, text=True, timeout=30, check=True,
                          env={**os.environ, "QL_ROOT": str(tmp_path)})
    ticks = [line for line in proc.stdout.splitlines() if " log.bytes " in line]
    assert ticks and ticks[0].endswith(" load log.bytes 42 42")
    assert len(ticks) == 1  # stopped at once, not after its 60 s
