"""The runner's ``sustained`` mode: the model runs without a pause for ``sustained_s``
seconds, cut into windows of ``window_s``; each window keeps its iteration times and, at its
end, what the machine's sysfs says: thermal zones (°C), CPU frequencies (kHz) and the
battery. What sysfs does not expose (a VM has no thermal zone) is named in ``sensors_note``,
never filled in. ``$QUANTLAB_SYSFS_ROOT`` (or the job's ``sysfs_root``; an SSH gateway's
``thermal_root`` and ``cpu_root``) reads another tree.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .measure import MEMORY_METHOD, peak_memory_mb, prepared
from .runtime import Phases

SYSFS_ROOT_ENV = "QUANTLAB_SYSFS_ROOT"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_sensors(root: Path, thermal_root: Path | None = None, cpu_root: Path | None = None
                 ) -> tuple[dict[str, Any], list[str]]:
    """Thermal zones, CPU frequencies and the battery under a sysfs ``root`` (thermal zones
    and CPUs under their own roots when given), and what could not be read."""
    thermal_root = thermal_root or root / "class/thermal"
    cpu_root = cpu_root or root / "devices/system/cpu"
    thermal: dict[str, float] = {}
    for zone in sorted(thermal_root.glob("thermal_zone*")):
        temp = _read(zone / "temp")
        if temp and temp.lstrip("-").isdigit():
            thermal[_read(zone / "type") or zone.name] = int(temp) / 1000.0
    freqs: dict[str, int] = {}
    for cpu in sorted(cpu_root.glob("cpu[0-9]*")):
        value = _read(cpu / "cpufreq" / "scaling_cur_freq")
        if value and value.isdigit():
            freqs[cpu.name] = int(value)
    battery: dict[str, Any] = {}
    for supply in sorted(root.glob("class/power_supply/*")):
        if _read(supply / "type") != "Battery":
            continue
        capacity, status = _read(supply / "capacity"), _read(supply / "status")
        if capacity and capacity.isdigit():
            battery["battery_pct"] = int(capacity)
        if status:
            battery["charging_status"] = status.lower()
        break
    missing = []
    if not thermal:
        missing.append(f"no thermal zone under {thermal_root} (a VM exposes none): "
                       "no temperatures")
    if not freqs:
        missing.append(f"no cpufreq under {cpu_root}: no CPU frequencies")
    if not battery:
        missing.append("no battery")
    return {"temperatures_c": thermal, "cpu_freq_khz": freqs, **battery}, missing


def sustained(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """Run the model for ``settings.sustained_s`` seconds in windows; returns the windows'
    iteration times and sensor readings, with the load and first-inference times."""
    settings = job["settings"]
    invoke, init_ms, first_ms, where, load_ms = prepared(job, phases)
    root = Path(job.get("sysfs_root") or os.environ.get(SYSFS_ROOT_ENV) or "/sys")
    duration_ns = float(settings["sustained_s"]) * 1e9
    window_ns = max(float(settings["window_s"]), 1e-3) * 1e9
    clock = time.perf_counter_ns
    phases.enter("measuring (sustained)")
    windows: list[dict[str, Any]] = []
    missing: list[str] = []
    current: list[float] = []
    start = w_start = clock()
    while True:
        now = clock()
        if now - w_start >= window_ns or now - start >= duration_ns:
            sensors, missing = read_sensors(
                root, *(Path(job[k]) if job.get(k) else None for k in ("thermal_root", "cpu_root")))
            windows.append({"start_s": (w_start - start) / 1e9, "end_s": (now - start) / 1e9,
                            "samples_ms": current, **sensors})
            current, w_start = [], now
            if now - start >= duration_ns:
                break
        t = clock()
        invoke()
        current.append((clock() - t) / 1e6)
    return {
        "samples_ms": [v for w in windows for v in w["samples_ms"]],
        "windows": windows,
        "sensors_note": "; ".join(missing) or None,
        "init_ms": init_ms,
        "load_ms": load_ms,
        "first_inference_ms": first_ms,
        "peak_memory_mb": peak_memory_mb(),
        "memory_method": MEMORY_METHOD,
        "placement": where,
    }
