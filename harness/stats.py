"""Statistics on the host, the same for every platform: summaries, CIs, stability warnings.

Runners hand back raw samples; everything here is computed from them (or, for a
hand-run tool log that only has aggregates, taken from the tool's own figures and
labelled so).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quantlab.harness.records import LaunchStats, RawResult

if TYPE_CHECKING:
    import numpy as np

BOOTSTRAP_RESAMPLES = 2000
STD_WARN = 0.10  # std ≥ 10 % of the mean
RANGE_WARN = 0.50  # min or max ≥ 50 % off the mean
DRIFT_WARN = 0.10  # last third vs first third of a repeat


PER_ITERATION = "per-iteration"
PER_LAUNCH = "per-launch"
SUMMARY = "summary"
METHODS = (PER_ITERATION, PER_LAUNCH, SUMMARY)
"""How a latency figure was measured, best first.

* ``per-iteration``: the runner returned every iteration's time (simulator, iPhone app).
* ``per-launch``: only each launch's own figures (benchmark_model run ``--repeats`` ≥ 2
  times, each a fresh process); the launches are the samples.
* ``summary``: one launch's summary statistics (mean, std, count) as the tool printed
  them; variance between launches is unknown.
"""

SUMMARY_NOTE = "within one launch: variance between launches unknown"

STATS_VERSION = 1
"""Version of what :func:`summarize` computes. The store keeps each result's summary with
this number and reuses it while it matches (``show`` need not bootstrap again); bump it
whenever a figure or CI would come out differently."""

_KNOWN: dict[int, LatencySummary] = {}
"""Summaries already computed or read from the store, by the identity of their RawResult
(which is frozen); an entry goes when its RawResult is collected."""


@dataclass(frozen=True)
class LatencySummary:
    """Latency figures of one job in milliseconds, with how they were measured.

    ``value`` is the headline figure and ``statistic`` says what it is: the median
    where it is known (from samples, or printed by the tool), the mean otherwise.
    Figures the data cannot give (a median from a mean-only log, a std the tool did
    not print) are None, never filled in from another figure.
    """

    statistic: str  # "median" | "mean"
    value: float
    method: str  # one of METHODS
    median: float | None
    mean: float | None
    p90: float | None
    p99: float | None
    min: float | None
    max: float | None
    std: float | None
    ci95: tuple[float, float] | None  # 95 % CI of ``value``
    count: int | None  # measured iterations, None when the tool did not say
    launches: int  # process launches behind the figures
    note: str | None = None

    @property
    def source(self) -> str:
        """``samples`` when per-iteration samples exist, else ``aggregates``."""
        return "samples" if self.method == PER_ITERATION else "aggregates"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencySummary:
        """The summary :meth:`as_dict` wrote (unknown keys ignored)."""
        ci = data.get("ci95")
        return cls(statistic=data["statistic"], value=data["value"], method=data["method"],
                   median=data.get("median"), mean=data.get("mean"), p90=data.get("p90"),
                   p99=data.get("p99"), min=data.get("min"), max=data.get("max"),
                   std=data.get("std"), ci95=(float(ci[0]), float(ci[1])) if ci else None,
                   count=data.get("count"), launches=int(data.get("launches", 1)),
                   note=data.get("note"))

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict (ci95 as a two-item list)."""
        return {
            "statistic": self.statistic,
            "value": self.value,
            "method": self.method,
            "median": self.median,
            "mean": self.mean,
            "p90": self.p90,
            "p99": self.p99,
            "min": self.min,
            "max": self.max,
            "std": self.std,
            "ci95": list(self.ci95) if self.ci95 else None,
            "count": self.count,
            "launches": self.launches,
            "source": self.source,
            "note": self.note,
        }


@dataclass(frozen=True)
class Stability:
    """Stability warnings, and the checks the data could not support (with why)."""

    warnings: list[str]
    not_checkable: list[str]


def bootstrap_medians(repeats: list[np.ndarray], rng: np.random.Generator,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Bootstrap replicates of the median by a two-level resampling.

    Repeats (separate processes) are resampled first, then samples within each
    chosen repeat, so between-process variance widens what is derived from them
    as it should. With one repeat it is the ordinary bootstrap.
    """
    import numpy as np

    reps = [r for r in repeats if r.size]
    if len(reps) == 1:
        x = reps[0]
        idx = rng.integers(0, x.size, size=(resamples, x.size), dtype=np.int32)
        return np.asarray(np.median(x[idx], axis=1))
    sizes = np.array([r.size for r in reps])
    width = int(sizes.max())
    table = np.full((len(reps), width), np.nan)
    for k, r in enumerate(reps):
        table[k, :r.size] = r
    equal = bool((sizes == width).all())
    medians = np.empty(resamples)
    # vectorised in chunks of at most ~4M drawn values, so memory stays bounded
    chunk = max(1, 4_000_000 // (len(reps) * width))
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        chosen = rng.integers(0, len(reps), size=(n, len(reps)))
        idx = (rng.random((n, len(reps), width)) * sizes[chosen][..., None]).astype(np.int64)
        drawn = table[chosen[..., None], idx].reshape(n, -1)
        if not equal:  # a shorter repeat contributes only its own number of samples
            keep = np.arange(width)[None, None, :] < sizes[chosen][..., None]
            drawn = np.where(keep.reshape(n, -1), drawn, np.nan)
            medians[start:start + n] = np.nanmedian(drawn, axis=1)
        else:
            medians[start:start + n] = np.median(drawn, axis=1)
    return medians


def bootstrap_median_ci(
    repeats: list[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % CI of the median by a two-level bootstrap (:func:`bootstrap_medians`)."""
    import numpy as np

    medians = bootstrap_medians(repeats, np.random.default_rng(seed), resamples)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(lo), float(hi)


def summarize_samples(repeats: tuple[tuple[float, ...], ...] | list[list[float]]) -> LatencySummary:
    """Summary of per-iteration samples from one or more repeats."""
    import numpy as np

    arrays = [np.asarray(r, dtype=float) for r in repeats if len(r)]
    allv = np.concatenate(arrays)
    ci = bootstrap_median_ci(arrays) if allv.size >= 2 else None
    median = float(np.median(allv))
    return LatencySummary(
        statistic="median",
        value=median,
        method=PER_ITERATION,
        median=median,
        mean=float(allv.mean()),
        p90=float(np.percentile(allv, 90)),
        p99=float(np.percentile(allv, 99)),
        min=float(allv.min()),
        max=float(allv.max()),
        std=float(allv.std(ddof=1)) if allv.size > 1 else None,
        ci95=ci,
        count=int(allv.size),
        launches=len(arrays),
    )


def launch_figures(raw: RawResult) -> list[LaunchStats]:
    """Each launch's own figures: from its samples, from the runner's per-launch figures,
    or (results stored before those existed) from the per-repeat averages."""
    if any(len(r) for r in raw.samples_ms):
        import numpy as np

        out = []
        for rep in raw.samples_ms:
            if not len(rep):
                continue
            x = np.asarray(rep, dtype=float)
            out.append(LaunchStats(mean_ms=float(x.mean()), count=int(x.size),
                                   std_ms=float(x.std(ddof=1)) if x.size > 1 else None,
                                   min_ms=float(x.min()), max_ms=float(x.max()),
                                   median_ms=float(np.median(x))))
        return out
    if raw.launches:
        return list(raw.launches)
    agg = raw.aggregates_ms
    repeats = [agg[f"repeat{k}_avg"] for k in range(1, int(agg.get("repeats", 0)) + 1)
               if f"repeat{k}_avg" in agg]
    if len(repeats) >= 2:
        return [LaunchStats(mean_ms=float(v)) for v in repeats]
    mean = agg.get("avg", agg.get("mean"))
    if mean is None:
        return []
    count = agg.get("count")
    return [LaunchStats(mean_ms=float(mean), count=int(count) if count else None,
                        std_ms=agg.get("std"), min_ms=agg.get("min"), max_ms=agg.get("max"),
                        median_ms=agg.get("median"))]


def bootstrap_launch_means(launches: list[LaunchStats], rng: np.random.Generator,
                           resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Bootstrap replicates of the mean over launches, by the same two levels as
    :func:`bootstrap_medians`: launches are resampled, then each chosen launch's mean
    is drawn from its own sampling distribution (normal, std/√count) where the tool
    printed std and count, else taken as it is."""
    import numpy as np

    means = np.array([x.mean_ms for x in launches])
    se = np.array([x.std_ms / np.sqrt(x.count) if x.std_ms is not None and x.count else 0.0
                   for x in launches])
    chosen = rng.integers(0, len(launches), size=(resamples, len(launches)))
    draws = means[chosen] + rng.standard_normal(chosen.shape) * se[chosen]
    return np.asarray(draws.mean(axis=1))


def _summary_ci(mean: float, std: float | None, count: int | None) -> tuple[float, float] | None:
    if std is None or not count or count < 2:
        return None
    import numpy as np
    from scipy.stats import t

    half = float(t.ppf(0.975, count - 1)) * std / np.sqrt(count)
    return mean - half, mean + half


def remember(raw: RawResult, summary: LatencySummary) -> None:
    """Let :func:`summarize` answer for ``raw`` with ``summary`` (one the store kept)."""
    key = id(raw)
    if key not in _KNOWN:
        weakref.finalize(raw, _KNOWN.pop, key, None)
    _KNOWN[key] = summary


def summarize(raw: RawResult) -> LatencySummary | None:
    """Latency summary of a result, by the best method its data supports; None without any.

    Computed once per result object (the bootstrap is the costly part)."""
    known = _KNOWN.get(id(raw))
    if known is not None:
        return known
    summary = _summarize(raw)
    if summary is not None:
        remember(raw, summary)
    return summary


def _summarize(raw: RawResult) -> LatencySummary | None:
    import numpy as np

    if any(len(r) for r in raw.samples_ms):
        return summarize_samples(raw.samples_ms)
    launches = launch_figures(raw)
    if not launches:
        return None
    agg = raw.aggregates_ms
    counts = [x.count for x in launches]
    count = sum(c for c in counts if c) if all(counts) else None
    if len(launches) >= 2:
        mean = float(np.mean([x.mean_ms for x in launches]))
        reps = bootstrap_launch_means(launches, np.random.default_rng(0))
        lo, hi = np.percentile(reps, [2.5, 97.5])
        return LatencySummary(
            statistic="mean", value=mean, method=PER_LAUNCH, median=None, mean=mean,
            p90=None, p99=None, min=agg.get("min"), max=agg.get("max"), std=agg.get("std"),
            ci95=(float(lo), float(hi)), count=count, launches=len(launches))
    one = launches[0]
    statistic, value = ("median", one.median_ms) if one.median_ms is not None \
        else ("mean", one.mean_ms)
    return LatencySummary(
        statistic=statistic, value=value, method=SUMMARY, median=one.median_ms,
        mean=one.mean_ms, p90=None, p99=None, min=one.min_ms, max=one.max_ms, std=one.std_ms,
        ci95=_summary_ci(one.mean_ms, one.std_ms, one.count) if statistic == "mean" else None,
        count=one.count, launches=1, note=SUMMARY_NOTE)


def _median(values: Sequence[float]) -> float:
    """``float(np.median(values))`` without numpy, so that ``show`` (which reads stored
    summaries) does not import it: the middle value, or the mean of the two middle
    ones; NaN when any value is NaN."""
    x = sorted(float(v) for v in values)
    if any(math.isnan(v) for v in x):
        return math.nan
    mid = len(x) // 2
    return x[mid] if len(x) % 2 else (x[mid - 1] + x[mid]) / 2


def stability(raw: RawResult, summary: LatencySummary | None = None) -> Stability:
    """Warnings about noisy or drifting measurements, and which checks could not be made
    (``summary``: :func:`summarize` of ``raw`` when the caller has it already)."""
    summary = summary or summarize(raw)
    if summary is None or summary.mean is None or summary.mean <= 0:
        return Stability([], [])
    out: list[str] = []
    unchecked: list[str] = []
    if summary.std is None:
        unchecked.append("spread: the runner gave no std (not checkable)")
    elif summary.std >= STD_WARN * summary.mean:
        out.append(
            f"unstable: std is {100 * summary.std / summary.mean:.0f}% of the mean "
            f"(≥ {100 * STD_WARN:.0f}%)"
        )
    if summary.max is None or summary.min is None:
        unchecked.append("outliers: the runner gave no min/max (not checkable)")
    else:
        if summary.max >= (1 + RANGE_WARN) * summary.mean:
            out.append(f"outliers: max {summary.max:.3g} ms is ≥ 50% above the mean "
                       f"{summary.mean:.3g} ms")
        if summary.min <= (1 - RANGE_WARN) * summary.mean:
            out.append(f"outliers: min {summary.min:.3g} ms is ≥ 50% below the mean "
                       f"{summary.mean:.3g} ms")
    if summary.method != PER_ITERATION:
        unchecked.append("drift: no per-iteration samples (not checkable)")
    for k, rep in enumerate(raw.samples_ms):
        n = len(rep) // 3
        if n < 5:
            continue
        first = _median(rep[:n])
        last = _median(rep[-n:])
        if first > 0 and abs(last - first) / first >= DRIFT_WARN:
            direction = "slower" if last > first else "faster"
            out.append(
                f"drift: repeat {k + 1} got {100 * abs(last - first) / first:.0f}% {direction} "
                f"from its first to its last third (thermal throttling or background load?)"
            )
    return Stability(out, unchecked)


def stability_warnings(raw: RawResult) -> list[str]:
    """Warnings about noisy or drifting measurements (empty when the run looks stable or
    nothing could be checked: see :func:`stability` for the checks not made)."""
    return stability(raw).warnings
