"""Sustained runs: per-window latency figures, and what they say over time.

A sustained run (``bench --sustained DURATION --window S``) measures continuously and
records, per window, the latency median and p90 (where the runner gives per-iteration
times), the device's thermal state, temperatures, CPU frequencies and battery where they
are readable. :func:`window_figures` turns one window's iteration times into its figures;
:func:`summarize` reads the windows: peak and sustained throughput, and the **throttling
point**, the start of the first window from which every later window's latency stays more
than ``threshold_pct`` above the first window's. A run whose latency never stays up has
none (``throttle_at_s`` null). Agents call both, so the record stores the summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from quantlab.harness.errors import UserError

SUSTAINED_TAIL = 0.25
"""Sustained throughput: over the last quarter of the windows (at least one)."""

MIN_STAY = 2
"""Latency must stay up for at least this many windows (the last window alone is noise)."""


_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: str | float, option: str) -> float:
    """Seconds of a duration: ``90``, ``90s``, ``10m``, ``1h``; a UserError otherwise."""
    text = str(value).strip().lower()
    number, unit = text, "s"
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            number, unit = text[:-len(suffix)].strip(), suffix
            break
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{option} {value}: not a duration",
                        hint="give seconds or a number with s, m or h, e.g. 90s or 10m")
    return seconds


def parse_percent(value: str | float, option: str) -> float:
    """A percentage (``10%`` or ``10``) as a number; a UserError otherwise."""
    text = str(value).strip().rstrip("%").strip()
    try:
        pct = float(text)
    except ValueError:
        pct = -1.0
    if not math.isfinite(pct) or pct <= 0:
        raise UserError(f"{option} {value}: not a percentage", hint="e.g. 10%")
    return pct


def _percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation (numpy's default)."""
    data = sorted(values)
    pos = (len(data) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def window_figures(samples_ms: Sequence[float], start_s: float, end_s: float
                   ) -> dict[str, Any]:
    """One window's figures from its iteration times: count, median, p90, mean,
    throughput (inferences per second of the window's wall time)."""
    wall = max(end_s - start_s, 1e-9)
    if not samples_ms:
        return {"start_s": round(start_s, 4), "end_s": round(end_s, 4), "count": 0,
                "median_ms": None, "p90_ms": None, "mean_ms": None, "throughput_ips": 0.0}
    return {
        "start_s": round(start_s, 4),
        "end_s": round(end_s, 4),
        "count": len(samples_ms),
        "median_ms": _percentile(samples_ms, 0.5),
        "p90_ms": _percentile(samples_ms, 0.9),
        "mean_ms": sum(samples_ms) / len(samples_ms),
        "throughput_ips": len(samples_ms) / wall,
    }


def _latency(window: dict[str, Any]) -> float | None:
    """A window's latency figure: its median, else its mean (a tool that prints no median)."""
    value = window.get("median_ms")
    return value if value is not None else window.get("mean_ms")


def throttle_point(windows: Sequence[dict[str, Any]], threshold_pct: float
                   ) -> dict[str, Any] | None:
    """The first window from which every later window's latency stays more than
    ``threshold_pct`` above the first window's (for at least :data:`MIN_STAY` windows);
    None when there is none."""
    figures = [_latency(w) for w in windows]
    if len(figures) < 2 or figures[0] is None or figures[0] <= 0:
        return None
    limit = figures[0] * (1 + threshold_pct / 100.0)
    first_high = None
    for i in range(len(figures) - 1, 0, -1):
        value = figures[i]
        if value is None or value <= limit:
            break
        first_high = i
    if first_high is None or len(figures) - first_high < min(MIN_STAY, len(figures) - 1):
        return None
    window, high = windows[first_high], float(figures[first_high] or 0.0)
    return {"window": first_high, "at_s": window["start_s"], "latency_ms": high,
            "first_window_ms": figures[0], "slowdown": high / figures[0]}


def summarize(windows: Sequence[dict[str, Any]], threshold_pct: float) -> dict[str, Any]:
    """Peak vs sustained throughput and the throttling point of a run's windows."""
    rates = [float(w["throughput_ips"]) for w in windows if w.get("throughput_ips")]
    tail = rates[-max(1, math.ceil(len(rates) * SUSTAINED_TAIL)):] if rates else []
    point = throttle_point(windows, threshold_pct)
    peak = max(rates) if rates else None
    sustained = sum(tail) / len(tail) if tail else None
    return {
        "peak_ips": peak,
        "sustained_ips": sustained,
        "sustained_ratio": sustained / peak if peak and sustained is not None else None,
        "throttle_pct": threshold_pct,
        "throttle_at_s": point["at_s"] if point else None,
        "throttle": point,
    }


def sustained_record(windows: list[dict[str, Any]], *, duration_s: float, window_s: float,
                     threshold_pct: float, source: str, sensors_note: str | None
                     ) -> dict[str, Any]:
    """The ``RawResult.sustained`` dict: the settings, the windows, where the figures came
    from (``source``), what could not be read (``sensors_note``) and the summary."""
    return {"duration_s": duration_s, "window_s": window_s, "source": source,
            "sensors_note": sensors_note, "windows": windows,
            **summarize(windows, threshold_pct)}


def describe(sustained: dict[str, Any]) -> str:
    """One line: peak vs sustained throughput and the throttling point (or none)."""
    peak, kept = sustained.get("peak_ips"), sustained.get("sustained_ips")
    parts = []
    if peak is not None and kept is not None:
        parts.append(f"peak {peak:.1f}/s, sustained {kept:.1f}/s ({kept / peak:.0%} of peak)")
    point = sustained.get("throttle")
    pct = sustained.get("throttle_pct", 10.0)
    if point:
        parts.append(f"throttled from {point['at_s']:.1f}s (window {point['window'] + 1}): "
                     f"latency stays {point['slowdown'] - 1:+.0%} over the first window "
                     f"(> {pct:g}%)")
    else:
        parts.append(f"no throttling (latency never stays > {pct:g}% above the first window)")
    if sustained.get("sensors_note"):
        parts.append(str(sustained["sensors_note"]))
    return "; ".join(parts)
