"""95 % intervals of a variant's drop against fp32, paired over the same evaluation samples.

The accuracy gate compares one drop with a threshold; with 100 samples, int8's 2-point gate is
two samples, so the drop is reported with its 95 % interval. Both models see the same samples,
so the interval is paired: what varies between the two is per sample, and samples both get
right or wrong say nothing about the difference. The method depends on the metric:

* **top-1 accuracy** (labels): only the discordant samples move the drop, ``b`` (fp32 right,
  the variant wrong) and ``c`` (the reverse): drop = (b − c) / n. :func:`tango_interval` is
  Tango's score interval for a difference of paired proportions (Tango 1998, Statistics in
  Medicine 17:891–908): it inverts the score test of McNemar's design with the constrained
  maximum-likelihood estimate, keeps its coverage near 95 % with few discordant samples, and
  is not empty when there are none (a Wald interval, or a bootstrap over samples, would give
  [0, 0] there, though 0 discordant samples of 100 are compatible with 3.7 % of them).
* **top-1 agreement** (no labels): the variant disagrees with fp32 on ``k`` of ``n`` samples,
  the drop is k / n; :func:`wilson_interval` is the Wilson score interval of that proportion.
* **every other metric** (mAP, mean IoU, MSE, agreement mAP …): :func:`paired_bootstrap`, a
  percentile bootstrap over samples, each resample drawing the same samples (with repeats) for
  both models; :data:`RESAMPLES` seeded resamples, so a report is reproducible. The tasks
  express their metric through per-sample terms (an image's squared errors, its intersections
  and unions, its detections' matches), so a resample costs array sums, not a new evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

LEVEL = 0.95
Z = 1.959963984540054  # the standard normal's 97.5 % point
RESAMPLES = 1000
"""Bootstrap resamples per interval (seeded: the same report every time)."""
SEED = 20250


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)
    return low, 1.0 if k == n else min(1.0, centre + half)


def _tango_score(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic for H0: p12 − p21 = delta (b = n12, c = n21)."""
    big_a = 2.0 * n
    big_b = -b - c + (2.0 * n - b + c) * delta
    big_c = -c * delta * (1.0 - delta)
    p21 = (math.sqrt(max(big_b * big_b - 4 * big_a * big_c, 0.0)) - big_b) / (2 * big_a)
    variance = n * (2 * p21 + delta * (1.0 - delta))
    numerator = b - c - n * delta
    if variance <= 0.0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def tango_interval(b: int, c: int, n: int) -> tuple[float, float]:
    """95 % score interval of (b − c) / n, the difference of two paired proportions
    (Tango 1998): b samples only the first model gets right, c only the second, of n."""
    if n <= 0:
        return -1.0, 1.0
    estimate = (b - c) / n

    def bound(lo: float, hi: float, target: float) -> float:
        # the score decreases in delta: find where it crosses target
        for _ in range(100):
            mid = (lo + hi) / 2
            if _tango_score(b, c, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    return bound(-1.0, estimate, Z), bound(estimate, 1.0, -Z)


def resample_weights(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) counts: how often each sample is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def percentile_interval(drops: np.ndarray) -> tuple[float, float]:
    """The 2.5 % and 97.5 % points of the resamples' drops (NaN ones, resamples without
    anything to score, left out); NaN, NaN when none is left."""
    values = np.asarray(drops, np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return math.nan, math.nan
    low, high = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def paired_bootstrap(drops: Callable[[np.ndarray], np.ndarray], n: int,
                     resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """95 % percentile interval of a drop: ``drops(weights)`` gives the drop of each resample
    from its (resamples, n) sample counts, both models weighted alike."""
    return percentile_interval(drops(resample_weights(n, resamples, seed)))


def mean_drop(ref_terms: np.ndarray, var_terms: np.ndarray, lower_is_better: bool = False
              ) -> Callable[[np.ndarray], np.ndarray]:
    """``drops`` for a metric that is the mean of per-sample terms (MSE, pixel agreement …)."""
    diff = np.asarray(var_terms, np.float64) - np.asarray(ref_terms, np.float64)
    diff = diff if lower_is_better else -diff

    def drops(weights: np.ndarray) -> np.ndarray:
        return np.asarray(weights @ diff / weights.sum(axis=1))
    return drops


def interval_record(low: float, high: float, method: str, started: float,
                    resamples: int | None = None, zero_drop: tuple[float, float] | None = None
                    ) -> dict[str, Any]:
    """The ``gate.interval`` record: bounds of the drop, the method, what it cost, and where
    known, the interval a 0-point drop would get with these samples (``zero_drop``)."""
    out: dict[str, Any] = {"low": low, "high": high, "level": LEVEL, "method": method,
                           "resamples": resamples,
                           "seconds": round(time.perf_counter() - started, 4)}
    if zero_drop is not None:
        out["zero_drop"] = [zero_drop[0], zero_drop[1]]
    return out


def samples_to_resolve(gate: float) -> int | None:
    """About how many samples make the 95 % interval of a 0-point top-1 drop (no discordant
    samples) as narrow as ``gate``: Tango's bound there is z² / (n + z²)."""
    if gate <= 0:
        return None
    return math.ceil(Z * Z * (1 - gate) / gate)
