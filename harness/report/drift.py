"""Slow drift: a series that gets a little slower every run, each step under the threshold.

``history``'s change points judge each run against the latest point of the current
level, and ``bench --baseline nightly`` against the night before: both references move
with the series, so 4 % a night under a 5 % threshold never makes a change. Drift is
judged against a fixed reference instead, over a window of runs:

* **window**: the series' finished points since its last confirmed change point (the
  current level), among the runs considered (``history --last``; for ``bench
  --baseline TAG``, the newest finished runs carrying the tag, and the new run);
* **cumulative change**: the window's latest point against its first, by the same
  test as ``quantlab compare`` (:func:`quantlab.harness.report.compare.compare_entries`);
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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from quantlab.harness.report.compare import Comparison, compare_entries
from quantlab.harness.store import JobEntry
from quantlab.harness.verdicts.latency import FASTER, SLOWER

if TYPE_CHECKING:
    from quantlab.harness.report.history import History, Point

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


def series_drift(points: Sequence[Point], entries: Sequence[JobEntry], start: int,
                 threshold: float) -> Drift:
    """The drift of one series over its points from index ``start`` (its current level)."""
    idx = [i for i in range(start, len(points))
           if entries[i].status == "ok" and entries[i].raw is not None
           and points[i].value_ms]
    if len(idx) < 2:
        return Drift(NONE, "fewer than two finished runs since the reference",
                     runs=len(idx))
    ref, last = idx[0], idx[-1]
    m = compare_entries(entries[ref], entries[last], threshold)
    base = Drift(NONE, "", reference_run=points[ref].run_id, latest_run=points[last].run_id,
                 runs=len(idx), cumulative=m.ratio,
                 cumulative_ci95=(m.ratio_ci95[0], m.ratio_ci95[1]) if m.ratio_ci95 else None,
                 cumulative_verdict=m.verdict)
    if m.ratio is None:
        return replace(base, reason=f"compare cannot test the pair: {m.reason}")
    if len(idx) < MIN_POINTS:
        return replace(base, reason=f"a trend needs {MIN_POINTS} runs since the reference")
    if len({points[i].statistic for i in idx}) > 1:
        return replace(base, reason="the window mixes medians and means: no trend")
    per_run, change, ci, p = trend([float(points[i].value_ms or 0) for i in idx])
    found = replace(base, trend_per_run=per_run, trend_change=change, trend_ci95=ci, trend_p=p)
    limit = 1 + threshold
    if m.verdict == SLOWER and ci[0] > limit:
        return replace(found, verdict=SLOWER, reason=f"beyond the {100 * threshold:g}% "
                       "threshold by compare's test and by the trend's whole 95% interval")
    if m.verdict == FASTER and ci[1] < 1 / limit:
        return replace(found, verdict=FASTER, reason=f"beyond the {100 * threshold:g}% "
                       "threshold by compare's test and by the trend's whole 95% interval")
    if m.verdict not in (SLOWER, FASTER):
        why = f"compare's test on the latest run against the reference: {m.verdict}"
    else:
        why = (f"compare calls the latest run {m.verdict}, but the trend's 95% interval "
               f"({ci[0]:.3f}–{ci[1]:.3f}) is not wholly beyond the {100 * threshold:g}% "
               "threshold: the run-to-run scatter explains it")
    return replace(found, reason=why)


def with_drift(c: Comparison, found: History) -> Comparison:
    """``c`` with each match's drift from ``found`` (a history whose newest run is ``c``'s
    new run): matched by the new run's job."""
    by_job = {s.points[-1].job_id: s.drift for s in found.series
              if s.points and s.points[-1].run_id == c.new and s.drift is not None}
    return replace(c, matches=[replace(m, drift=by_job.get(m.new_job)) for m in c.matches],
                   drift_rule=DRIFT_RULE)
