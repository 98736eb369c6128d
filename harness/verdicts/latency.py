"""The test on two sets of latency figures: slower, faster or no significant difference.

Two measurements of one job are tested at the best level both sides' data supports
(:data:`quantlab.harness.stats.METHODS`):

* ``per-iteration``: Welch's t-test on the log of each launch's median; ratio of
  medians with a two-level bootstrap CI (repeats, then samples);
* ``per-launch``: Welch's t-test on the log of each launch's mean; ratio of means
  with a two-level bootstrap CI (launches, then each launch's own sampling error);
* ``summary``: no p-value; ratio of means with a CI by the delta method on the log
  ratio — within one launch, variance between launches unknown.

The p-value is computed where the variance is: between launches (fresh processes).
Iterations of one launch are not independent samples (they share the process, its
memory layout, clocks and thermal state), so a test that counts them as such prints
p = 1e-30 for two launches a side. With fewer than two launches on a side, and for
a tool's summary, there is no honest p-value: the p-value is None. "slower" needs the
test significant (where there is one), the ratio beyond the threshold and its 95 % CI
clear of 1; "faster" mirrors it.

The verdict words, alpha, the default threshold and ``parse_threshold`` live here too, so
that every verdict — compare, history, drift, recommend, autoquant's ties, an interleaved
A/B, a plan file's threshold — speaks of one rule.
"""

from __future__ import annotations

import math

import numpy as np

from quantlab.harness.errors import UserError
from quantlab.harness.records import LaunchStats
from quantlab.harness.stats import (
    PER_ITERATION,
    PER_LAUNCH,
    SUMMARY,
    SUMMARY_NOTE,
    bootstrap_launch_means,
)

ALPHA = 0.05
DEFAULT_THRESHOLD = 0.05
BOOTSTRAP_RESAMPLES = 2000
SLOWER, FASTER, SAME = "slower", "faster", "no significant difference"
UNTESTABLE, FAILED = "untestable", "failed"
MISSING, NEW = "missing", "new"

TESTS = {
    PER_ITERATION: "Welch's t-test on the log of each launch's median (launches, not "
                   "iterations, are the independent samples; with one launch on a side, no "
                   "p-value); CI of the ratio of medians by a two-level bootstrap (repeats, "
                   "then samples)",
    PER_LAUNCH: "Welch's t-test on the log of each launch's mean; CI of the ratio of means by "
                "a two-level bootstrap (launches, then each launch's sampling error)",
    SUMMARY: f"no p-value ({SUMMARY_NOTE}: the tool's std is of iterations within it); "
             "CI of the ratio of means by the delta method",
}
RULE = (f"alpha {ALPHA} where there is a p-value; slower/faster also needs the ratio beyond the "
        "threshold and its 95% CI clear of 1")
ONE_LAUNCH = ("one launch on a side: no p-value (the iterations of one launch are not "
              "independent samples); the verdict rests on the ratio and its CI within the launch"
              "; measure with --repeats 2 or more")
NO_P_SUMMARY = "no p-value: a within-launch std says nothing about launches"


def ratio_ci(base: list[np.ndarray], new: list[np.ndarray],
             resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap CI of median(new) / median(base), each side resampled on its own at
    two levels (repeats, then samples within a repeat), so a shift between processes
    of one run widens the interval instead of passing for a difference between runs."""
    from quantlab.harness.stats import bootstrap_medians

    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(new, rng, resamples) / bootstrap_medians(base, rng, resamples)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def _word(p: float | None, ratio: float, ci: tuple[float, float], threshold: float) -> str:
    lo, hi = ci
    significant = p is None or p < ALPHA
    if significant and ratio > 1 + threshold and lo > 1:
        return SLOWER
    if significant and ratio < 1 / (1 + threshold) and hi < 1:
        return FASTER
    return SAME


def welch_log(base: list[float], new: list[float]) -> float | None:
    """Two-sided p of Welch's t-test on the logs of per-launch figures; None with fewer
    than two launches on a side (identical launches on each side: 1 when both sides are
    equal, else 0)."""
    from scipy.stats import ttest_ind

    if len(base) < 2 or len(new) < 2:
        return None
    lb, ln = np.log(base), np.log(new)
    if np.ptp(lb) == 0 and np.ptp(ln) == 0:
        return 1.0 if lb[0] == ln[0] else 0.0
    return float(ttest_ind(ln, lb, equal_var=False).pvalue)


def verdict(base: np.ndarray | list[np.ndarray], new: np.ndarray | list[np.ndarray],
            threshold: float, ci: tuple[float, float] | None = None
            ) -> tuple[str, float | None, float]:
    """(verdict, p-value, ratio of medians) for two runs' per-iteration samples: one array
    per launch (a bare array is one launch).

    The p-value is Welch's t-test on the log of each launch's median (None with fewer
    than two launches on a side). "slower" only when that test is significant (or there
    is none), the ratio exceeds 1 + threshold, and the ratio's 95 % CI (``ci``, computed
    when not given) lies wholly above 1; "faster" mirrors it (ratio below
    1 / (1 + threshold), CI below 1). The CI condition keeps a shift the bootstrap cannot
    tell from noise (e.g. between-repeat variance) from failing a CI gate.
    """
    rb = base if isinstance(base, list) else [base]
    rn = new if isinstance(new, list) else [new]
    ratio = float(np.median(np.concatenate(rn)) / np.median(np.concatenate(rb)))
    p = welch_log([float(np.median(r)) for r in rb], [float(np.median(r)) for r in rn])
    ci = ci if ci is not None else ratio_ci(rb, rn)
    return _word(p, ratio, ci, threshold), p, ratio


def launch_verdict(base: list[LaunchStats], new: list[LaunchStats], threshold: float,
                   seed: int = 0) -> tuple[str, float | None, float, tuple[float, float]]:
    """(verdict, p-value, ratio of means, CI) from two runs' per-launch figures (≥ 2 each)."""
    mb = float(np.mean([x.mean_ms for x in base]))
    mn = float(np.mean([x.mean_ms for x in new]))
    ratio = mn / mb
    p = welch_log([x.mean_ms for x in base], [x.mean_ms for x in new])
    rng = np.random.default_rng(seed)
    reps = (bootstrap_launch_means(new, rng, BOOTSTRAP_RESAMPLES)
            / bootstrap_launch_means(base, rng, BOOTSTRAP_RESAMPLES))
    lo, hi = np.percentile(reps, [2.5, 97.5])
    ci = (float(lo), float(hi))
    return _word(p, ratio, ci, threshold), p, ratio, ci


def summary_verdict(base: LaunchStats, new: LaunchStats,
                    threshold: float) -> tuple[str, None, float, tuple[float, float]]:
    """(verdict, None, ratio of means, CI) from two summaries (mean, std, count): no p-value,
    since the std is of iterations within one launch; the verdict rests on the ratio and
    its delta-method CI."""
    assert base.std_ms is not None and new.std_ms is not None
    assert base.count and new.count
    ratio = new.mean_ms / base.mean_ms
    se = math.sqrt((base.std_ms / base.mean_ms) ** 2 / base.count
                   + (new.std_ms / new.mean_ms) ** 2 / new.count)
    ci = (ratio * math.exp(-1.96 * se), ratio * math.exp(1.96 * se))
    return _word(None, ratio, ci, threshold), None, ratio, ci


def parse_threshold(value: str) -> float:
    """``"5%"`` or ``"0.05"`` → 0.05; a UserError for anything else."""
    text = value.strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UserError(f"--threshold {value!r}: not a number",
                        hint="give a percentage such as 5% or a fraction such as 0.05") from None
    if not 0 <= number < 10:
        raise UserError(f"--threshold {value!r}: out of range", hint="use e.g. 5% or 0.05")
    return number
