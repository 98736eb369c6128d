"""The runner's ``sustained`` mode: the model runs without a pause for ``sustained_s``
seconds, cut into windows of ``window_s``; each window's figures (count, median, p90, mean,
throughput) come from every iteration time it measured, and it keeps at most
``window_samples`` of those times (a uniform sample seeded by the window's index, in the order
measured: a 30-minute run of a 1 ms model does not ship millions of rows), with, at its end,
what the machine's sysfs says: thermal zones (°C), CPU frequencies (kHz), GPU frequencies
(Hz: an Adreno's ``class/kgsl/kgsl-3d0/gpuclk``, a GPU's ``class/devfreq/*/cur_freq``, named
gpu, mali or kgsl and not a bus's bandwidth) and the battery. What sysfs does not expose (a VM
has no thermal zone, a host no GPU devfreq) is named in ``sensors_note``, never filled in.
``$QUANTLAB_SYSFS_ROOT`` (or the job's ``sysfs_root``; an SSH gateway's ``thermal_root``,
``cpu_root`` and ``gpu_root``) reads another tree.
"""

from __future__ import annotations

import math
import os
import random
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


def is_gpu_devfreq(name: str) -> bool:
    """Whether a devfreq device is a GPU's clock (not its bus's bandwidth vote)."""
    low = name.lower()
    return any(k in low for k in ("gpu", "mali", "kgsl")) and not any(
        k in low for k in ("bw", "bus"))


def gpu_frequencies(root: Path) -> dict[str, int]:
    """GPU clocks (Hz) under a sysfs ``root``: kgsl's gpuclk and GPU devfreq devices."""
    out: dict[str, int] = {}
    clock = _read(root / "class/kgsl/kgsl-3d0/gpuclk")
    if clock and clock.isdigit():
        out["kgsl-3d0"] = int(clock)
    for dev in sorted((root / "class/devfreq").glob("*")):
        value = _read(dev / "cur_freq")
        if is_gpu_devfreq(dev.name) and value and value.isdigit():
            out[dev.name] = int(value)
    return out


def read_sensors(root: Path, thermal_root: Path | None = None, cpu_root: Path | None = None,
                 gpu_root: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """Thermal zones, CPU and GPU frequencies and the battery under a sysfs ``root`` (thermal
    zones, CPUs and GPUs under their own roots when given), and what could not be read."""
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
    gpus = gpu_frequencies(gpu_root or root)
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
    if not gpus:
        missing.append(f"GPU frequency not readable (no kgsl gpuclk or GPU devfreq under "
                       f"{gpu_root or root})")
    if not battery:
        missing.append("no battery")
    return {"temperatures_c": thermal, "cpu_freq_khz": freqs, "gpu_freq_hz": gpus,
            **battery}, missing


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q``-quantile of sorted values by linear interpolation (numpy's default)."""
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def window_record(samples: list[float], start_s: float, end_s: float, cap: int, index: int
                  ) -> dict[str, Any]:
    """One window: figures from all its ``samples``, and at most ``cap`` of them kept (a
    uniform sample seeded by ``index``, in measured order; all of them when ``cap`` ≤ 0)."""
    n = len(samples)
    out: dict[str, Any] = {"start_s": round(start_s, 4), "end_s": round(end_s, 4), "count": n,
                           "median_ms": None, "p90_ms": None, "mean_ms": None,
                           "throughput_ips": n / max(end_s - start_s, 1e-9)}
    if n:
        ordered = sorted(samples)
        out.update(median_ms=_quantile(ordered, 0.5), p90_ms=_quantile(ordered, 0.9),
                   mean_ms=math.fsum(samples) / n)
    kept = samples if cap <= 0 or n <= cap else [
        samples[i] for i in sorted(random.Random(index).sample(range(n), cap))]
    return {**out, "samples_ms": kept, "kept": len(kept)}


def sustained(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """Run the model for ``settings.sustained_s`` seconds in windows; returns the windows'
    figures, kept iteration times and sensor readings, with the load and first-inference
    times."""
    settings = job["settings"]
    invoke, init_ms, first_ms, where, load_ms = prepared(job, phases)
    root = Path(job.get("sysfs_root") or os.environ.get(SYSFS_ROOT_ENV) or "/sys")
    duration_ns = float(settings["sustained_s"]) * 1e9
    window_ns = max(float(settings["window_s"]), 1e-3) * 1e9
    cap = int(settings.get("window_samples") or 0)
    clock = time.perf_counter_ns
    phases.enter("measuring (sustained)")
    windows: list[dict[str, Any]] = []
    missing: list[str] = []
    current: list[float] = []
    start = w_start = clock()
    while True:
        now = clock()
        if now - w_start >= window_ns or now - start >= duration_ns:
            sensors, missing = read_sensors(root, *(Path(job[k]) if job.get(k) else None
                                                    for k in ("thermal_root", "cpu_root",
                                                              "gpu_root")))
            windows.append({**window_record(current, (w_start - start) / 1e9,
                                            (now - start) / 1e9, cap, len(windows)),
                            **sensors})
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
