"""Interleaved A/B on one device: the two sides alternate launch by launch.

Two jobs (two variants, or one variant under two delegates or thread counts) run
on the same device as fresh processes in the order A B B A A B B A …, so whatever
drifts while they run — the phone warming up, a background sync, another tenant
of a shared machine — falls on both sides alike. Each pair of neighbouring
launches gives one ratio B/A; the verdict comes from those paired ratios (a
t-test on their logs and the CI of their geometric mean — a rank test needs 6
pairs before it can reach p < 0.05 at all), not from two pooled distributions
measured at different times.

The two sides are stored as one run of two jobs (each launch a repeat), so
``show``, ``report`` and ``compare`` read them like any other run.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np

from quantlab.harness.records import DeviceInfo, Job, RawResult
from quantlab.harness.retry import RetryPolicy, launch
from quantlab.harness.stats import launch_figures
from quantlab.harness.verdicts.latency import ALPHA, FASTER, SAME, SLOWER

PAIRED_TEST = ("one-sample t-test on the log of paired launch ratios B/A (launches "
               "interleaved A B B A …), with the CI of their geometric mean from the same t "
               f"distribution; alpha {ALPHA}; slower/faster also needs the ratio beyond the "
               "threshold and its 95% CI clear of 1")


@dataclass(frozen=True)
class Pair:
    """One pair of neighbouring launches."""

    a_ms: float
    b_ms: float

    @property
    def ratio(self) -> float:
        """B / A (NaN unless both are positive, finite times)."""
        return self.b_ms / self.a_ms if self.valid else math.nan

    @property
    def valid(self) -> bool:
        """Whether both launch figures are positive, finite times."""
        return all(math.isfinite(x) and x > 0 for x in (self.a_ms, self.b_ms))


@dataclass(frozen=True)
class ABResult:
    """The verdict of an interleaved A/B, from its paired launches."""

    a: str  # job labels
    b: str
    statistic: str  # per launch: "median" of its iterations, or its "mean"
    pairs: list[Pair] = field(default_factory=list)
    ratio: float | None = None  # geometric mean of the paired ratios B/A
    ratio_ci95: tuple[float, float] | None = None
    p_value: float | None = None
    verdict: str = "untestable"
    reason: str | None = None
    test: str = PAIRED_TEST

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["pairs"] = [{"a_ms": _finite(p.a_ms), "b_ms": _finite(p.b_ms),
                         "ratio": p.ratio if p.valid else None} for p in self.pairs]
        if self.ratio_ci95 is not None:
            out["ratio_ci95"] = list(self.ratio_ci95)
        return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN


def launch_value(raw: RawResult) -> tuple[str, float] | None:
    """One launch's figure: the median of its iterations where it has them, else its mean."""
    figures = launch_figures(raw)
    if len(figures) != 1:
        return None
    one = figures[0]
    if one.median_ms is not None and any(len(r) for r in raw.samples_ms):
        return "median", one.median_ms
    return "mean", one.mean_ms


def paired_verdict(a: str, b: str, statistic: str, pairs: list[Pair],
                   threshold: float) -> ABResult:
    """Verdict from paired launch figures (needs at least 3 pairs)."""
    from scipy.stats import t, ttest_1samp

    if len(pairs) < 3:
        return ABResult(a, b, statistic, pairs, reason=f"{len(pairs)} pair(s) of launches: "
                        "give --launches 3 or more (6 or more for a 5% effect)")
    bad = next((k for k, p in enumerate(pairs, 1) if not p.valid), None)
    if bad is not None:  # a zero, infinite or missing figure would read as a verdict
        p = pairs[bad - 1]
        return ABResult(a, b, statistic, pairs, reason=f"pair {bad}: A {p.a_ms} ms, B "
                        f"{p.b_ms} ms is not a positive time for both launches")
    logs = np.log([p.ratio for p in pairs])
    ratio = float(np.exp(logs.mean()))
    spread = float(logs.std(ddof=1))
    if spread == 0.0:
        p_value = 1.0 if logs[0] == 0 else 0.0
        ci = (ratio, ratio)
    else:
        p_value = float(ttest_1samp(logs, 0.0).pvalue)
        half = float(t.ppf(0.975, len(logs) - 1)) * spread / math.sqrt(len(logs))
        ci = (float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half)))
    word = SAME
    if p_value < ALPHA and ratio > 1 + threshold and ci[0] > 1:
        word = SLOWER
    elif p_value < ALPHA and ratio < 1 / (1 + threshold) and ci[1] < 1:
        word = FASTER
    return ABResult(a, b, statistic, pairs, ratio, ci, p_value, word)


def merge_launches(job: Job, launches: list[RawResult], note: str) -> RawResult:
    """One job's launches (each a one-repeat result) as one result with a repeat per launch."""
    k, failed = next(((k, r) for k, r in enumerate(launches, 1) if r.status != "ok"),
                     (0, None))
    if failed is not None:  # say where: the launches before it are not kept
        return dataclasses.replace(failed, error=f"launch {k} failed ({k - 1} before it ok): "
                                   f"{failed.error}")
    first = launches[0]
    inits = [r.init_ms for r in launches if r.init_ms is not None]
    firsts = [r.first_inference_ms for r in launches if r.first_inference_ms is not None]
    mems = [r.peak_memory_mb for r in launches if r.peak_memory_mb is not None]
    with_ops = next((r for r in launches if r.ops), first)
    has_samples = all(any(len(s) for s in r.samples_ms) for r in launches)
    return RawResult(
        job_id=job.job_id, status="ok",
        samples_ms=tuple(s for r in launches for s in r.samples_ms if len(s)),
        launches=() if has_samples else tuple(x for r in launches for x in launch_figures(r)),
        init_ms=median(inits) if inits else None,
        first_inference_ms=median(firsts) if firsts else None,
        peak_memory_mb=max(mems) if mems else None, memory_method=first.memory_method,
        ops=with_ops.ops, ops_model_ms=with_ops.ops_model_ms,
        thermal_before=first.thermal_before, thermal_after=launches[-1].thermal_after,
        runner={**first.runner, "interleaved": note},
        warnings=tuple(dict.fromkeys(w for r in launches for w in r.warnings)),
    )


def interleaved(agent: Any, device: DeviceInfo, job_a: Job, job_b: Job, launches: int,
                retry_timeout_s: float = 120.0, *, retry: RetryPolicy | None = None,
                cancel: threading.Event | None = None,
                note: Callable[[str], None] | None = None) -> Iterator[tuple[Job, RawResult]]:
    """Run ``launches`` launches of each job alternately (A B B A …) on one device,
    yielding each launch's one-repeat result as it ends.

    Each launch goes through :func:`quantlab.harness.retry.launch` under ``retry``, the
    run's policy (default: a device fault is retried once the device is back within
    ``retry_timeout_s``, three launches at most), as the dispatcher's jobs do. A failed
    launch is yielded and ends the A/B; ``cancel`` set (a Ctrl-C) ends it before the
    launch it stopped, which is not yielded.
    """
    policy = retry or RetryPolicy(wait_s=retry_timeout_s)
    single = {j.job_id: dataclasses.replace(j, settings=dataclasses.replace(j.settings,
                                                                             repeats=1))
              for j in (job_a, job_b)}
    order = ([job_a, job_b, job_b, job_a] * ((launches + 1) // 2))[:2 * launches]
    for job in order:
        if cancel is not None and cancel.is_set():
            return
        outcome = launch(agent, device, single[job.job_id], policy, cancel=cancel, note=note)
        if outcome.raw is None:  # interrupted
            return
        raw = dataclasses.replace(outcome.raw, job_id=job.job_id)
        yield job, raw
        if raw.status != "ok":
            return


def pairs_of(a: list[RawResult], b: list[RawResult]) -> tuple[str, list[Pair]]:
    """Neighbouring launches paired in order, and the statistic each launch gives."""
    va = [launch_value(r) for r in a]
    vb = [launch_value(r) for r in b]
    statistic = "median" if all(v and v[0] == "median" for v in va + vb) else "mean"

    def figure(raw: RawResult) -> float:  # NaN where a launch gave no single figure
        figures = launch_figures(raw)
        if len(figures) != 1:
            return math.nan
        value = figures[0].median_ms if statistic == "median" else figures[0].mean_ms
        return math.nan if value is None else float(value)

    return statistic, [Pair(figure(ra), figure(rb)) for ra, rb in zip(a, b, strict=False)]
