"""Statistics: summaries, bootstrap CI coverage, stability warnings."""

from __future__ import annotations

import numpy as np
import pytest

from quantlab.harness.records import RawResult
from quantlab.harness.stats import (
    bootstrap_median_ci,
    stability_warnings,
    summarize,
    summarize_samples,
)


def test_summary_figures() -> None:
    s = summarize_samples([[1.0, 2.0, 3.0, 4.0, 100.0]])
    assert s.median == 3.0 and s.min == 1.0 and s.max == 100.0 and s.count == 5
    assert s.mean == 22.0
    assert s.ci95 is not None and s.ci95[0] <= s.median <= s.ci95[1]
    assert s.p90 == np.percentile([1, 2, 3, 4, 100], 90)


def test_bootstrap_ci_covers_true_median() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    for k in range(40):
        x = rng.lognormal(0.0, 0.3, 200)
        lo, hi = bootstrap_median_ci([x], resamples=500, seed=k)
        hits += lo <= 1.0 <= hi  # the true median of lognormal(0, σ) is 1
    assert hits >= 34  # ~95 % coverage, with slack for 40 trials


def test_between_repeat_variance_widens_the_ci() -> None:
    rng = np.random.default_rng(2)
    same = [rng.normal(10, 0.1, 100) for _ in range(3)]
    shifted = [rng.normal(10 + k, 0.1, 100) for k in range(3)]
    w_same = np.diff(bootstrap_median_ci(same, 500))[0]
    w_shift = np.diff(bootstrap_median_ci(shifted, 500))[0]
    assert w_shift > 5 * w_same


def test_stability_warnings() -> None:
    steady = RawResult(job_id="j", status="ok", samples_ms=(tuple([10.0] * 30),))
    assert stability_warnings(steady) == []
    noisy = RawResult(job_id="j", status="ok",
                      samples_ms=(tuple([10.0, 14.0] * 15 + [40.0]),))
    text = " ".join(stability_warnings(noisy))
    assert "unstable" in text and "outliers" in text
    drifting = RawResult(job_id="j", status="ok",
                         samples_ms=(tuple(10.0 + 0.2 * i for i in range(30)),))
    assert any("drift" in w for w in stability_warnings(drifting))


def test_aggregates_only_result() -> None:
    raw = RawResult(job_id="j", status="ok",
                    aggregates_ms={"avg": 33.2, "min": 32.6, "max": 34.0, "std": 0.45,
                                   "count": 50})
    s = summarize(raw)
    assert s is not None and s.source == "aggregates" and s.mean == 33.2 and s.median is None


def test_launch_figures_give_a_per_launch_mean_with_a_ci_and_no_invented_median() -> None:
    from quantlab.harness.records import LaunchStats
    from quantlab.harness.stats import PER_LAUNCH, SUMMARY, stability

    launches = (LaunchStats(mean_ms=10.0, count=50, std_ms=0.5),
                LaunchStats(mean_ms=10.4, count=50, std_ms=0.5),
                LaunchStats(mean_ms=9.8, count=50, std_ms=0.4))
    raw = RawResult(job_id="j", status="ok", launches=launches)
    s = summarize(raw)
    assert s is not None and s.method == PER_LAUNCH and s.statistic == "mean"
    assert s.value == pytest.approx(10.0667, rel=1e-3) and s.median is None
    assert s.ci95 is not None and s.ci95[0] < s.value < s.ci95[1]
    assert s.count == 150 and s.launches == 3
    # one launch, only an average: a summary whose spread cannot be checked
    only = RawResult(job_id="j", status="ok", launches=(LaunchStats(mean_ms=80.0),))
    s = summarize(only)
    assert s is not None and s.method == SUMMARY and s.std is None and s.min is None
    assert s.ci95 is None and "variance between launches unknown" in (s.note or "")
    checks = stability(only)
    assert checks.warnings == [] and len(checks.not_checkable) == 3
