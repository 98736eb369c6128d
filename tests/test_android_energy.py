"""Energy from the on-device sampler: parsing, unit/sign calibration, ODPM rails, no-sensor."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from android_runner import energy


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


def test_milliamps_positive_when_discharging_and_usb_warning() -> None:
    base = energy.parse_sampler(gauge("baseline", "Discharging", 185, 3987000))
    load = energy.parse_sampler(gauge("load", "Discharging", 912, 3987000))
    out = energy.compute_energy(base, load, latency_ms=10.0, usb_powered=True)
    assert out.energy is not None
    assert out.energy.detail["current_scale_to_uA"] == 1000.0
    assert out.energy.baseline_mw == pytest.approx(185 * 3.987)
    assert out.energy.mj_per_inference == pytest.approx((912 - 185) * 3.987 * 10 / 1000)
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
    assert out.energy.baseline_mw == pytest.approx(150.0)
    assert out.energy.mj_per_inference == pytest.approx((550.0 - 150.0) * 5.0 / 1000)


def test_unreadable_sensors_give_a_reason() -> None:
    empty = energy.parse_sampler("100.00 baseline battery.status unknown\n")
    out = energy.compute_energy(empty, empty, latency_ms=5.0, usb_powered=False)
    assert out.energy is None and "no readable battery" in (out.reason or "")


def test_load_not_above_baseline_gives_no_figure() -> None:
    base = energy.parse_sampler(gauge("baseline", "Discharging", -500000, 4000000))
    load = energy.parse_sampler(gauge("load", "Discharging", -400000, 4000000))
    out = energy.compute_energy(base, load, latency_ms=5.0, usb_powered=False)
    assert out.energy is None and "not above the idle baseline" in (out.reason or "")
