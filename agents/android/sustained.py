"""A sustained run on an Android phone (``bench --sustained DURATION --window S``).

benchmark_model prints no per-iteration times, so each window is one launch that runs the
model for the window's seconds (``--num_runs=1 --min_secs=S``; the warm-up only in the
first), back to back; the window's figures are the launch's own (median and p95 where the
tool prints them, else the mean; never a p90, which it does not print). After each window the
phone's thermal status and temperatures (``dumpsys thermalservice``), battery (``dumpsys
battery``) and CPU frequencies (sysfs ``scaling_cur_freq``) are read; what the phone does not
expose is named in ``sensors_note``. Between two windows the model is loaded again: the gap
is visible as the distance between one window's end and the next one's start.
"""

from __future__ import annotations

import re
import shlex
import time
from typing import Any

from quantlab.agents.android.faults import adb_faults
from quantlab.agents.base import Progress
from quantlab.android_runner.parser import BenchmarkOutput
from quantlab.harness.records import DeviceInfo, Job, RawOutput
from quantlab.harness.sustained import sustained_record

SOURCE = ("one benchmark_model launch per window (its own median and p95 where printed, "
          "else its mean; it prints no p90)")
SENSOR_KEYS = ("thermal_status", "thermal_status_name", "temperatures_c", "battery_temp_c",
               "battery_pct", "charging_status")


def cpu_frequencies(agent: Any, d: Any, device: DeviceInfo) -> dict[str, int]:
    """Each core's current frequency (kHz) from sysfs, for the cores that expose it."""
    parts = []
    for i in range(device.cores or 8):
        path = f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq"
        parts.append(f"echo cpu{i}; cat {shlex.quote(path)}")
    text = agent._shell(d, "; ".join(parts), timeout=30).stdout
    out: dict[str, int] = {}
    cpu = None
    for line in text.splitlines():
        line = line.strip()
        if re.fullmatch(r"cpu\d+", line):
            cpu = line
        elif cpu and line.isdigit():
            out[cpu] = int(line)
            cpu = None
    return out


def _window(out: BenchmarkOutput, start_s: float, end_s: float) -> dict[str, Any]:
    """A window's figures from its launch."""
    stats = out.inference
    mean = stats.avg_us / 1000 if stats else out.inference_avg_ms
    median = stats.median_us / 1000 if stats and stats.median_us is not None else None
    p95 = stats.p95_us / 1000 if stats and stats.p95_us is not None else None
    return {"start_s": round(start_s, 4), "end_s": round(end_s, 4),
            "count": stats.count if stats else None, "median_ms": median, "p90_ms": None,
            "p95_ms": p95, "mean_ms": mean,
            "throughput_ips": 1000.0 / mean if mean else 0.0}


def run_windows(agent: Any, d: Any, device: DeviceInfo, job: Job, model: str,
                input_flags: tuple[str, ...], raw: list[RawOutput], progress: Progress
                ) -> tuple[list[BenchmarkOutput], dict[str, Any]]:
    """The window launches of a sustained run, and the ``RawResult.sustained`` dict."""
    s = job.settings
    launches: list[BenchmarkOutput] = []
    windows: list[dict[str, Any]] = []
    missing: set[str] = set()
    t0 = time.monotonic()
    while (start := time.monotonic() - t0) < s.sustained_s:
        progress(f"sustained window {len(windows) + 1} at {start:.0f}s",
                 min(start / s.sustained_s, 1.0))
        secs = min(s.window_s, max(s.sustained_s - start, 0.01))
        cmd = agent._command(job, model, extra_flags=input_flags, num_runs=1, min_secs=secs,
                             warmup_runs=s.warmup if not windows else 0)
        out, _ = agent._launch(d, device, cmd, raw=raw, raw_name=f"window-{len(windows) + 1}")
        end = time.monotonic() - t0
        launches.append(out)
        if not out.ok:
            break
        with adb_faults(device.id, "reading its thermal state"):
            snap = agent._thermal_snapshot(device)
            freqs = cpu_frequencies(agent, d, device)
        sensors = {k: snap[k] for k in SENSOR_KEYS if k in snap}
        if not sensors.get("temperatures_c"):
            missing.add("dumpsys thermalservice gave no temperatures")
        if not freqs:
            missing.add("no CPU frequencies (sysfs scaling_cur_freq not readable)")
        windows.append({**_window(out, start, end), **sensors, "cpu_freq_khz": freqs})
    record = sustained_record(windows, duration_s=s.sustained_s, window_s=s.window_s,
                              threshold_pct=s.throttle_pct, source=SOURCE,
                              sensors_note="; ".join(sorted(missing)) or None)
    return launches, record
