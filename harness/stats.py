"""Statistics on the host, the same for every platform: summaries, CIs, stability warnings.

Runners hand back raw samples; everything here is computed from them (or, for a
hand-run tool log that only has aggregates, taken from the tool's own figures and
labelled so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.records import RawResult

BOOTSTRAP_RESAMPLES = 2000
STD_WARN = 0.10  # std ≥ 10 % of the mean
RANGE_WARN = 0.50  # min or max ≥ 50 % off the mean
DRIFT_WARN = 0.10  # last third vs first third of a repeat


@dataclass(frozen=True)
class LatencySummary:
    """Latency figures of one job in milliseconds."""

    median: float | None
    mean: float
    p90: float | None
    p99: float | None
    min: float
    max: float
    std: float
    ci95: tuple[float, float] | None  # bootstrap 95 % CI of the median
    count: int
    source: str = "samples"  # "samples", or "aggregates" when the tool gave only those

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict (ci95 as a two-item list)."""
        return {
            "median": self.median,
            "mean": self.mean,
            "p90": self.p90,
            "p99": self.p99,
            "min": self.min,
            "max": self.max,
            "std": self.std,
            "ci95": list(self.ci95) if self.ci95 else None,
            "count": self.count,
            "source": self.source,
        }


def bootstrap_medians(repeats: list[np.ndarray], rng: np.random.Generator,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Bootstrap replicates of the median by a two-level resampling.

    Repeats (separate processes) are resampled first, then samples within each
    chosen repeat, so between-process variance widens what is derived from them
    as it should. With one repeat it is the ordinary bootstrap.
    """
    reps = [r for r in repeats if r.size]
    if len(reps) == 1:
        x = reps[0]
        idx = rng.integers(0, x.size, size=(resamples, x.size), dtype=np.int32)
        return np.asarray(np.median(x[idx], axis=1))
    medians = np.empty(resamples)
    sizes = np.array([r.size for r in reps])
    for b in range(resamples):
        chosen = rng.integers(0, len(reps), size=len(reps))
        parts = [reps[c][rng.integers(0, sizes[c], size=sizes[c])] for c in chosen]
        medians[b] = np.median(np.concatenate(parts))
    return medians


def bootstrap_median_ci(
    repeats: list[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % CI of the median by a two-level bootstrap (:func:`bootstrap_medians`)."""
    medians = bootstrap_medians(repeats, np.random.default_rng(seed), resamples)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(lo), float(hi)


def summarize_samples(repeats: tuple[tuple[float, ...], ...] | list[list[float]]) -> LatencySummary:
    """Summary of per-iteration samples from one or more repeats."""
    arrays = [np.asarray(r, dtype=float) for r in repeats if len(r)]
    allv = np.concatenate(arrays)
    ci = bootstrap_median_ci(arrays) if allv.size >= 2 else None
    return LatencySummary(
        median=float(np.median(allv)),
        mean=float(allv.mean()),
        p90=float(np.percentile(allv, 90)),
        p99=float(np.percentile(allv, 99)),
        min=float(allv.min()),
        max=float(allv.max()),
        std=float(allv.std(ddof=1)) if allv.size > 1 else 0.0,
        ci95=ci,
        count=int(allv.size),
    )


def summarize(raw: RawResult) -> LatencySummary | None:
    """Latency summary of a result: from samples, else from the tool's aggregates, else None."""
    if any(len(r) for r in raw.samples_ms):
        return summarize_samples(raw.samples_ms)
    agg = raw.aggregates_ms
    if "avg" in agg or "mean" in agg:
        mean = float(agg.get("avg", agg.get("mean", 0.0)))
        return LatencySummary(
            median=agg.get("median"),
            mean=mean,
            p90=agg.get("p90"),
            p99=agg.get("p99"),
            min=float(agg.get("min", mean)),
            max=float(agg.get("max", mean)),
            std=float(agg.get("std", 0.0)),
            ci95=None,
            count=int(agg.get("count", 0)),
            source="aggregates",
        )
    return None


def stability_warnings(raw: RawResult) -> list[str]:
    """Warnings about noisy or drifting measurements (empty when the run looks stable)."""
    summary = summarize(raw)
    if summary is None or summary.mean <= 0:
        return []
    out = []
    if summary.std >= STD_WARN * summary.mean:
        out.append(
            f"unstable: std is {100 * summary.std / summary.mean:.0f}% of the mean "
            f"(≥ {100 * STD_WARN:.0f}%)"
        )
    if summary.max >= (1 + RANGE_WARN) * summary.mean:
        out.append(f"outliers: max {summary.max:.3g} ms is ≥ 50% above the mean "
                   f"{summary.mean:.3g} ms")
    if summary.min <= (1 - RANGE_WARN) * summary.mean:
        out.append(f"outliers: min {summary.min:.3g} ms is ≥ 50% below the mean "
                   f"{summary.mean:.3g} ms")
    for k, rep in enumerate(raw.samples_ms):
        n = len(rep) // 3
        if n < 5:
            continue
        first = float(np.median(rep[:n]))
        last = float(np.median(rep[-n:]))
        if first > 0 and abs(last - first) / first >= DRIFT_WARN:
            direction = "slower" if last > first else "faster"
            out.append(
                f"drift: repeat {k + 1} got {100 * abs(last - first) / first:.0f}% {direction} "
                f"from its first to its last third (thermal throttling or background load?)"
            )
    return out
