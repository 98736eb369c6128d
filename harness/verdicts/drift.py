"""Slow drift: a series that gets a little slower every run, each step under the threshold.

``history``'s change points judge each run against the latest point of the current
level, and ``bench --baseline nightly`` against the night before: both references move
with the series, so 4 % a night under a 5 % threshold never makes a change. Drift is
judged against a fixed reference instead, over a window of runs:

* **window**: the series' finished points since its last confirmed change point (the
  current level), among the runs considered (``history --last``; for ``bench
  --baseline TAG``, the newest finished runs carrying the tag, and the new run);
* **cumulative change**: the window's latest point against its first, by the same
  test as ``quantlab compare`` (:func:`quantlab.harness.verdicts.compare.compare_entries`);
* **trend**: a least-squares line through the logs of the points' figures, one
  observation per run, so the run-to-run scatter is the variance the trend is judged
  by: its change over the window with a 95 % t interval (n − 2 degrees of freedom) and
  the p-value of its slope.

Drift is ``slower`` when compare's test calls the latest point slower than the
reference *and* the trend's whole 95 % interval of change lies beyond the threshold;
``faster`` mirrors it; it needs three points. A point that compare calls beyond the
threshold but that the run-to-run scatter explains (noise of ± 3 % around a flat line
can put two runs 6 % apart) is not drift: the line through it does not fit well enough.
Mann–Kendall is not used: with three runs its smallest two-sided p-value is 1/3, with
four 1/12, so it could flag nothing before the fifth run.

This module holds the rule, the trend and the :class:`Drift` record; a series' drift is
found by :func:`quantlab.harness.verdicts.history.series_drift`, where the series are
(a comparison's matches carry a :class:`Drift`, so this module imports no comparison).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from quantlab.harness.verdicts.latency import FASTER, SLOWER

NONE = "none"
MIN_POINTS = 3
DRIFT_RULE = ("drift: the latest point against the window's first (a fixed reference, since "
              "the last confirmed change) is slower/faster by compare's test, and a "
              "least-squares trend over the window's runs (one observation per run) has its "
              "whole 95% interval of change beyond the threshold; needs 3 runs")


@dataclass(frozen=True)
class Drift:
    """How far a series moved since a fixed reference, and whether that is a drift."""

    verdict: str  # slower | faster | none
    reason: str
    reference_run: str | None = None
    latest_run: str | None = None
    runs: int = 0  # points in the window
    cumulative: float | None = None  # latest / reference, compare's ratio
    cumulative_ci95: tuple[float, float] | None = None
    cumulative_verdict: str | None = None  # compare's verdict, latest vs reference
    trend_per_run: float | None = None  # fitted ratio from one run to the next
    trend_change: float | None = None  # fitted ratio over the window
    trend_ci95: tuple[float, float] | None = None  # 95 % CI of trend_change
    trend_p: float | None = None  # two-sided p of the slope

    @property
    def flagged(self) -> bool:
        """True when the series drifted (slower or faster)."""
        return self.verdict in (SLOWER, FASTER)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists, with ``flagged``)."""
        out = asdict(self)
        for key in ("cumulative_ci95", "trend_ci95"):
            out[key] = list(out[key]) if out[key] else None
        out["flagged"] = self.flagged
        return out

    def text(self) -> str:
        """One line: the verdict, the cumulative change and the trend."""
        if self.cumulative is None:
            return f"no drift measured: {self.reason}"
        head = f"drift {self.verdict}" if self.flagged else "no drift"
        text = f"{head}: ×{self.cumulative:.3f} since {self.reference_run} ({self.runs} runs)"
        if self.trend_change is not None and self.trend_ci95 and self.trend_per_run:
            p = f", p={self.trend_p:.2g}" if self.trend_p is not None else ""
            text += (f", trend ×{self.trend_per_run:.3f} a run, ×{self.trend_change:.3f} "
                     f"over the window [95% CI {self.trend_ci95[0]:.3f}–"
                     f"{self.trend_ci95[1]:.3f}]{p}")
        return text if self.flagged else f"{text}; {self.reason}"


def trend(values: Sequence[float]) -> tuple[float, float, tuple[float, float], float]:
    """(ratio per run, ratio over the window, its 95 % CI, p of the slope) of a
    least-squares line through ``log(values)`` at 0, 1, … (at least three values)."""
    import numpy as np
    from scipy.stats import t

    n = len(values)
    y = np.log(np.asarray(values, dtype=float))
    xc = np.arange(n) - (n - 1) / 2
    sxx = float((xc ** 2).sum())
    slope = float((xc * (y - y.mean())).sum() / sxx)
    resid = y - y.mean() - slope * xc
    se = math.sqrt(float((resid ** 2).sum()) / (n - 2) / sxx)
    if se <= 1e-12 * max(abs(slope), 1e-300):  # on the line to rounding
        p = 0.0 if slope else 1.0
    else:
        p = float(2 * t.sf(abs(slope) / se, n - 2))
    half = float(t.ppf(0.975, n - 2)) * se * (n - 1)
    change = slope * (n - 1)
    return (math.exp(slope), math.exp(change),
            (math.exp(change - half), math.exp(change + half)), p)
