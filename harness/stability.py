"""Stability you can see before you trust a figure: a job's noise between and within launches,
and what it would take to resolve a given change at that noise (``plan --resolve 5%``).

:func:`score` reads one stored result: the coefficient of variation between its launches
(each launch's median, else its mean), the typical CV within a launch (per-iteration samples,
or the tool's std where it printed one), and the drift within a launch (first third to last
third, the largest over the launches). :func:`resolve` turns that into the launches (repeats)
per side that a two-sided test at alpha 0.05 with 80 % power needs to tell a change of that
size from the launch-to-launch noise, and the iterations per launch that keep a launch's own
figure within a quarter of the change (within-launch noise). Both are plain arithmetic on
measured figures; a result with fewer than two launches has no score (nothing to compare).
"""

from __future__ import annotations

import math
from statistics import fmean, median, stdev
from typing import Any

from quantlab.harness.records import RawResult
from quantlab.harness.stats import launch_figures

Z_ALPHA = 1.959964  # two-sided, alpha 0.05
Z_POWER = 0.841621  # power 0.80
STABLE_CV, NOISY_CV, STABLE_DRIFT = 0.02, 0.05, 0.03


def _drift(raw: RawResult) -> float | None:
    """The largest change (signed) from a launch's first third to its last third."""
    worst: float | None = None
    for rep in raw.samples_ms:
        third = len(rep) // 3
        if third < 3:
            continue
        first, last = fmean(rep[:third]), fmean(rep[-third:])
        if first > 0:
            change = last / first - 1
            worst = change if worst is None or abs(change) > abs(worst) else worst
    return worst


def _per_launch(raw: RawResult) -> tuple[list[float], list[float]]:
    """Each launch's figure (median, else mean) and the CVs within launches. Stored samples are
    read with the standard library: `quantlab show` prints this line, and numpy would add a
    fifth to its start-up."""
    if any(len(r) for r in raw.samples_ms):
        reps = [r for r in raw.samples_ms if len(r)]
        means = [fmean(r) for r in reps]
        return ([median(r) for r in reps],
                [stdev(r) / m for r, m in zip(reps, means, strict=True) if len(r) > 1 and m > 0])
    launches = launch_figures(raw)
    return ([x.median_ms if x.median_ms is not None else x.mean_ms for x in launches],
            [x.std_ms / x.mean_ms for x in launches if x.std_ms is not None and x.mean_ms > 0])


def score(raw: RawResult | None) -> dict[str, Any] | None:
    """The stability of one result (None with fewer than two launches)."""
    if raw is None or raw.status != "ok":
        return None
    figures, within = _per_launch(raw)
    figures = [f for f in figures if f and f > 0 and math.isfinite(f)]
    if len(figures) < 2:
        return None
    cv_between = stdev(figures) / fmean(figures)
    drift = _drift(raw)
    if cv_between <= STABLE_CV and (drift is None or abs(drift) <= STABLE_DRIFT):
        verdict = "stable"
    elif cv_between <= NOISY_CV:
        verdict = "noisy"
    else:
        verdict = "unstable"
    return {"launches": len(figures), "cv_between": cv_between,
            "sd_log_between": stdev(math.log(f) for f in figures),
            "cv_within": median(within) if within else None, "drift": drift,
            "verdict": verdict}


def resolve(stability: dict[str, Any], change: float) -> dict[str, Any]:
    """Launches per side and iterations per launch to resolve ``change`` (0.05 = 5 %)."""
    delta = math.log1p(change)
    repeats = max(2, math.ceil(2 * (Z_ALPHA + Z_POWER) ** 2
                               * stability["sd_log_between"] ** 2 / delta ** 2))
    within = stability.get("cv_within")
    iterations = max(10, math.ceil((4 * within / change) ** 2)) if within else None
    return {"change": change, "repeats": repeats, "iterations": iterations}


def describe(stability: dict[str, Any]) -> str:
    """One line: the verdict, the CV between launches, within a launch and the drift."""
    parts = [f"{stability['verdict']}: CV {stability['cv_between']:.1%} between "
             f"{stability['launches']} launches"]
    if stability.get("cv_within") is not None:
        parts.append(f"{stability['cv_within']:.1%} within a launch")
    if stability.get("drift") is not None:
        parts.append(f"drift {stability['drift']:+.1%} within a launch")
    return ", ".join(parts)
