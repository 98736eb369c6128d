"""A sustained run on a loopback Android phone, through the real adb server: one
benchmark_model launch per window, the phone's thermal state, battery and CPU frequencies
after each; the stand-in throttles on a schedule, and the throttling point is reported within
one window of it (a phone that does not throttle reports none)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from fakes.adbd import FakeAndroidDevice
from test_android_adb import _adb_installed, adb_port, agent, by_id, cache, model, phone

from quantlab.harness.records import Job, ModelRef, Settings

__all__ = ["_adb_installed", "adb_port", "cache", "model", "phone"]  # fixtures used here

WINDOW_S = 0.4
SETTINGS = Settings(warmup=1, iterations=1, repeats=1, timeout_s=60, sustained_s=3.2,
                    window_s=WINDOW_S)


def _sustained(phone: FakeAndroidDevice, model: ModelRef) -> tuple[dict, object]:
    a = agent()
    device = by_id(a.discover(), phone.serial)
    job = Job(model, phone.serial, "android", "gpu", 1, SETTINGS)
    raw = a.run(device, job, lambda *args: None)
    assert raw.status == "ok", raw.error
    return raw.sustained, raw


def test_throttling_point_is_reported_within_one_window(phone: FakeAndroidDevice,
                                                        model: ModelRef, cache: Path) -> None:
    phone.throttle(after_s=1.5, factor=2.0)
    s, raw = _sustained(phone, model)
    windows = s["windows"]
    assert len(windows) >= 4
    launches = phone.benchmark_calls
    assert len(launches) == len(windows)  # one launch per window, of the window's time
    assert all("--num_runs=1" in c for c in launches) and "--min_secs=0.4" in launches[0]
    assert "--warmup_runs=0" in launches[1] and "--warmup_runs=1" in launches[0]
    point = s["throttle"]
    assert point is not None
    spacing = max(b["start_s"] - a["start_s"] for a, b in
                  itertools.pairwise(windows))
    assert abs(point["at_s"] - 1.5) <= spacing  # within one window of the schedule
    assert point["slowdown"] == pytest.approx(2.0, rel=0.01)
    # read after each window: the phone reports severe from the schedule's point on
    hot = next(i for i, w in enumerate(windows) if w["thermal_status"] == 3)
    assert windows[0]["thermal_status"] == 0 and point["window"] - 1 <= hot <= point["window"]
    assert all(w["thermal_status"] == 3 for w in windows[hot:])
    first, last = windows[0], windows[-1]
    assert last["cpu_freq_khz"]["cpu7"] < first["cpu_freq_khz"]["cpu7"] == 2400000
    # the stand-in's Adreno clock (sysfs kgsl gpuclk), lowered with the schedule
    assert first["gpu_freq_hz"] == {"kgsl-3d0": 585000000}
    assert last["gpu_freq_hz"] == {"kgsl-3d0": 292500000}
    assert first["battery_pct"] == 87 and first["temperatures_c"]["cpu"] == 31.5
    assert s["sustained_ips"] == pytest.approx(s["peak_ips"] / 2, rel=0.01)
    assert s["sensors_note"] is None
    assert all(w["p90_ms"] is None for w in windows)  # benchmark_model prints none
    assert "no p90" in s["source"]
    assert any("thermal throttling" in w for w in raw.warnings)  # type: ignore[attr-defined]


def test_a_phone_that_does_not_throttle_reports_none(phone: FakeAndroidDevice,
                                                     model: ModelRef, cache: Path) -> None:
    phone.profile = {**phone.profile, "cpufreq_khz": {}}
    for f in (phone.sandbox / "sys/devices/system/cpu").glob("*/cpufreq/scaling_cur_freq"):
        f.unlink()
    (phone.sandbox / "sys/class/kgsl/kgsl-3d0/gpuclk").unlink()
    s, _raw = _sustained(phone, model)
    assert len(s["windows"]) >= 4
    assert s["throttle"] is None and s["throttle_at_s"] is None
    assert s["sustained_ips"] == pytest.approx(s["peak_ips"])
    assert "no CPU frequencies" in s["sensors_note"]  # said, not invented
    assert "GPU frequency not readable" in s["sensors_note"]
    assert all(w["gpu_freq_hz"] == {} for w in s["windows"])

