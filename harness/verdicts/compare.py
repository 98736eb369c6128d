"""Compare two stored runs job by job: every job gets a verdict or says why it cannot.

Jobs are matched on ``--match`` keys (default model, device, delegate, threads),
where the model is its sha256 or — for jobs whose file changed between the runs —
its scheme plus its path, as much of it as tells apart files of one name
(:mod:`quantlab.harness.verdicts.pairing`: two variants folders both hold ``int8.tflite``). Each
matched pair is tested at the best level both sides' data supports, by the test of
:mod:`quantlab.harness.verdicts.latency` (per-iteration, per-launch or a tool's summary;
a p-value only between launches, None with the reason where there is no honest one):
"slower" needs the test significant (where there is one), the ratio beyond
the threshold and its 95 % CI clear of 1; "faster" mirrors it. A pair with too little
data is ``untestable`` with the reason; a job that ran in the baseline and failed in
the new run is ``failed`` and counts as a regression. Every job of either run appears
exactly once: in a match, in ``only_in_baseline`` or in ``only_in_new``. A job that ran
in the baseline and is not in the new run at all (a phone missing when the run was
planned, a model removed) is ``missing``, which fails the comparison unless
``allow_missing``; a job only in the new run that failed is ``failed``, a regression too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from quantlab.harness.errors import UserError
from quantlab.harness.records import LaunchStats
from quantlab.harness.startup import cold_and_warm
from quantlab.harness.stats import PER_ITERATION, PER_LAUNCH, SUMMARY, SUMMARY_NOTE, launch_figures
from quantlab.harness.store import JobEntry, RunRecord
from quantlab.harness.verdicts.drift import Drift
from quantlab.harness.verdicts.latency import (
    DEFAULT_THRESHOLD,
    FAILED,
    MISSING,
    NEW,
    NO_P_SUMMARY,
    ONE_LAUNCH,
    RULE,
    SAME,
    SLOWER,
    TESTS,
    UNTESTABLE,
    launch_verdict,
    ratio_ci,
    summary_verdict,
    verdict,
)
from quantlab.harness.verdicts.pairing import display_names, pair_jobs

MATCH_KEYS = ("model", "scheme", "device", "delegate", "threads")
DEFAULT_MATCH = ("model", "device", "delegate", "threads")


NOT_CONFIRMED = "not confirmed"
"""A pair judged slower whose confirmation re-run was not slower (``[measure] confirm``)."""


@dataclass(frozen=True)
class Match:
    """Two jobs paired across the runs, with their verdict (or why there is none)."""

    model: str
    device: str
    delegate: str
    threads: int
    verdict: str  # faster | slower | no significant difference | untestable | failed
    method: str | None  # per-iteration | per-launch | summary; None when untestable
    statistic: str | None  # "median" | "mean": what baseline_ms / new_ms are
    baseline_ms: float | None
    new_ms: float | None
    ratio: float | None  # new / baseline; > 1 means slower
    ratio_ci95: tuple[float, float] | None
    p_value: float | None  # between launches; None where it cannot be computed honestly
    reason: str | None  # why untestable / failed; why there is no p-value; a summary's caveat
    baseline_job: str
    new_job: str
    baseline_label: str
    new_label: str
    drift: Drift | None = None  # the series' slow drift (bench --baseline with a tag)
    startup: dict[str, Any] | None = None  # cold/warm start (ms) of each side; no verdict
    confirmation: dict[str, Any] | None = None  # a slower verdict measured again (confirm)

    @property
    def fails(self) -> bool:
        """True when this pair fails a CI gate: slower, now failing, or drifting slower."""
        return self.verdict in (SLOWER, FAILED) or (
            self.drift is not None and self.drift.verdict == SLOWER)


@dataclass(frozen=True)
class Unmatched:
    """A job of one run with no partner in the other, and what that means.

    In the baseline only: ``missing`` when it ran there (ok or failed), else
    ``untestable``. In the new run only: ``failed`` when it failed, else ``new``."""

    label: str
    job: str
    status: str
    verdict: str = NEW
    reason: str | None = None
    model: str = ""
    device: str = ""
    delegate: str = ""
    threads: int = 0


@dataclass(frozen=True)
class Comparison:
    """The result of comparing run ``new`` against run ``baseline``."""

    baseline: str
    new: str
    threshold: float
    match_keys: tuple[str, ...] = DEFAULT_MATCH
    matches: list[Match] = field(default_factory=list)
    only_in_baseline: list[Unmatched] = field(default_factory=list)
    only_in_new: list[Unmatched] = field(default_factory=list)
    tests: dict[str, str] = field(default_factory=lambda: dict(TESTS))
    rule: str = RULE
    allow_missing: bool = False
    drift_rule: str | None = None  # set when the matches carry each series' drift

    @property
    def regressed(self) -> bool:
        """True when a match got significantly slower beyond the threshold (at once or by
        drifting), or now fails, or a job only in the new run failed."""
        return any(m.fails for m in self.matches) or bool(self.new_failures)

    @property
    def missing(self) -> list[Unmatched]:
        """Jobs that ran in the baseline and are not in the new run."""
        return [u for u in self.only_in_baseline if u.verdict == MISSING]

    @property
    def new_failures(self) -> list[Unmatched]:
        """Jobs only in the new run that failed."""
        return [u for u in self.only_in_new if u.verdict == FAILED]

    @property
    def fails(self) -> bool:
        """True when the comparison fails a CI gate: a regression, or a missing job unless
        ``allow_missing``."""
        return self.regressed or (bool(self.missing) and not self.allow_missing)

    @property
    def untestable(self) -> list[Match]:
        """The pairs that could not be tested, each with its reason."""
        return [m for m in self.matches if m.verdict == UNTESTABLE]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with ``regressed`` and ``untestable`` count)."""
        out = asdict(self)
        out["match_keys"] = list(self.match_keys)
        out["regressed"] = self.regressed
        out["untestable"] = len(self.untestable)
        out["missing"] = len(self.missing)
        out["fails"] = self.fails
        for m, match in zip(out["matches"], self.matches, strict=True):
            if m["ratio_ci95"] is not None:
                m["ratio_ci95"] = list(m["ratio_ci95"])
            m["drift"] = match.drift.as_dict() if match.drift is not None else None
        return out


# ----------------------------------------------------------------------------- one pair


def _repeats(entry: JobEntry) -> list[np.ndarray]:
    assert entry.raw is not None
    return [np.asarray(r, dtype=float) for r in entry.raw.samples_ms if len(r)]


def _pooled_summary(launches: list[LaunchStats]) -> LaunchStats | None:
    """One summary of all launches when every launch has mean, std and count."""
    if not launches or any(x.std_ms is None or not x.count for x in launches):
        return None
    n = sum(x.count or 0 for x in launches)
    mean = sum(x.mean_ms * (x.count or 0) for x in launches) / n
    ss = sum(((x.count or 0) - 1) * (x.std_ms or 0.0) ** 2
             + (x.count or 0) * (x.mean_ms - mean) ** 2 for x in launches)
    return LaunchStats(mean_ms=mean, count=n, std_ms=math.sqrt(ss / (n - 1)) if n > 1 else None)


def _why_no_summary(side: str, launches: list[LaunchStats]) -> str:
    if not launches:
        return f"the {side} job has no latency figures"
    if len(launches) == 1 and launches[0].std_ms is None:
        return (f"the {side} job has one launch and the tool printed only its average (no std "
                "or count): measure with --repeats 2 or more, or a benchmark_model that prints "
                "count=… std=… lines")
    return f"the {side} job has too few measured iterations to test"


def _finished_pair(b: JobEntry, e: JobEntry, threshold: float) -> dict[str, Any]:
    assert b.raw is not None and e.raw is not None
    rb, rn = _repeats(b), _repeats(e)
    xb = np.concatenate(rb) if rb else np.empty(0)
    xn = np.concatenate(rn) if rn else np.empty(0)
    if xb.size >= 2 and xn.size >= 2:
        ci = ratio_ci(rb, rn)
        word, p, ratio = verdict(rb, rn, threshold, ci)
        return dict(verdict=word, method=PER_ITERATION, statistic="median",
                    baseline_ms=float(np.median(xb)), new_ms=float(np.median(xn)),
                    ratio=ratio, ratio_ci95=ci, p_value=p,
                    reason=ONE_LAUNCH if p is None else None)
    lb, ln = launch_figures(b.raw), launch_figures(e.raw)
    if len(lb) >= 2 and len(ln) >= 2:
        word, p, ratio, ci = launch_verdict(lb, ln, threshold)
        return dict(verdict=word, method=PER_LAUNCH, statistic="mean",
                    baseline_ms=float(np.mean([x.mean_ms for x in lb])),
                    new_ms=float(np.mean([x.mean_ms for x in ln])),
                    ratio=ratio, ratio_ci95=ci, p_value=p, reason=None)
    sb, sn = _pooled_summary(lb), _pooled_summary(ln)
    if sb and sn and (sb.count or 0) >= 2 and (sn.count or 0) >= 2:
        word, p, ratio, ci = summary_verdict(sb, sn, threshold)
        note = SUMMARY_NOTE if len(lb) == 1 and len(ln) == 1 else (
            "from pooled summary statistics: variance between launches not accounted for")
        note += f"; {NO_P_SUMMARY}"
        return dict(verdict=word, method=SUMMARY, statistic="mean", baseline_ms=sb.mean_ms,
                    new_ms=sn.mean_ms, ratio=ratio, ratio_ci95=ci, p_value=p, reason=note)
    reason = _why_no_summary("baseline", lb) if not sb or (sb.count or 0) < 2 \
        else _why_no_summary("new", ln)
    mb = float(np.mean([x.mean_ms for x in lb])) if lb else None
    mn = float(np.mean([x.mean_ms for x in ln])) if ln else None
    return dict(verdict=UNTESTABLE, method=None, statistic="mean" if mb and mn else None,
                baseline_ms=mb, new_ms=mn, ratio=mn / mb if mb and mn else None,
                ratio_ci95=None, p_value=None, reason=reason)


def _state(entry: JobEntry) -> str:
    text = entry.status
    return f"{text}: {entry.error}" if entry.error else text


def _pair(b: JobEntry, e: JobEntry, threshold: float, name: str | None = None) -> Match:
    if b.status == "ok" and e.status == "ok" and b.raw is not None and e.raw is not None:
        fields = _finished_pair(b, e, threshold)
    else:
        if b.status == "ok" and e.status == "failed":
            word, reason = FAILED, f"ran in the baseline, failed in the new run ({e.error})"
        elif b.status == e.status:
            word, reason = UNTESTABLE, f"{_state(e)} in both runs"
        else:
            side = "baseline" if b.status != "ok" else "new run"
            job = b if b.status != "ok" else e
            word, reason = UNTESTABLE, f"not measured in the {side} ({_state(job)})"
        fields = dict(verdict=word, method=None, statistic=None, baseline_ms=None, new_ms=None,
                      ratio=None, ratio_ci95=None, p_value=None, reason=reason)
    return Match(model=name or _model_name(e), device=e.job.device_id, delegate=e.job.delegate,
                 threads=e.job.threads, baseline_job=b.job.job_id, new_job=e.job.job_id,
                 baseline_label=b.job.label(), new_label=e.job.label(),
                 startup=_startups(b, e), **fields)


def _startups(b: JobEntry, e: JobEntry) -> dict[str, Any] | None:
    """Each side's cold and warm start (time to first result, ms), where either has one:
    single figures, shown side by side without a verdict."""
    sides = {side: cold_and_warm(x.raw.startup if x.raw is not None else None)
             for side, x in (("baseline", b), ("new", e))}
    if all(v == (None, None) for v in sides.values()):
        return None
    return {side: {"cold_ms": c, "warm_ms": w} for side, (c, w) in sides.items()}


def compare_entries(baseline: JobEntry, new: JobEntry,
                    threshold: float = DEFAULT_THRESHOLD) -> Match:
    """The verdict on one pair of stored jobs, by exactly the test :func:`compare_runs` uses
    (``quantlab history`` calls it on consecutive points of a series)."""
    return _pair(baseline, new, threshold)


def latency_ties(entries: dict[str, JobEntry]) -> dict[str, dict[str, bool]]:
    """For autoquant's measured candidates (entries by file), whether each pair is a tie on
    latency by the same test as ``quantlab compare``: ``ties[a][b]`` is True when compare
    calls ``a`` against ``b`` no significant difference, False when faster or slower; a
    pair compare cannot test is left out (the ladder then compares the medians)."""
    ties: dict[str, dict[str, bool]] = {path: {} for path in entries}
    for a, ea in entries.items():
        for b, eb in entries.items():
            if a != b:
                m = compare_entries(eb, ea)
                if m.verdict != UNTESTABLE:
                    ties[a][b] = m.verdict == SAME
    return ties


# ----------------------------------------------------------------------------- matching


def _model_name(entry: JobEntry) -> str:
    return display_names([[entry]])[id(entry)]


def parse_match(value: str | None) -> tuple[str, ...]:
    """``"model,device"`` → ("model", "device"); a UserError for unknown keys."""
    if not value:
        return DEFAULT_MATCH
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in keys if k not in MATCH_KEYS]
    if bad or not keys:
        raise UserError(f"--match {value!r}: unknown key {', '.join(bad) or '(none)'}",
                        hint=f"use a comma-separated list of {', '.join(MATCH_KEYS)}")
    return tuple(dict.fromkeys(keys))


def _unmatched(e: JobEntry, name: str, in_baseline: bool) -> Unmatched:
    reason: str | None
    if in_baseline and e.status in ("ok", "failed"):
        verdict, reason = MISSING, (f"{_state(e)} in the baseline, not in the new run (a device "
                                    "not attached when it was planned, or a model removed)")
    elif in_baseline:
        verdict, reason = UNTESTABLE, f"{_state(e)} in the baseline, not in the new run"
    elif e.status == "failed":
        verdict, reason = FAILED, f"new job, failed ({e.error})"
    else:
        verdict, reason = NEW, None if e.status == "ok" else f"new job, {_state(e)}"
    return Unmatched(e.job.label(), e.job.job_id, e.status, verdict=verdict, reason=reason,
                     model=name, device=e.job.device_id, delegate=e.job.delegate,
                     threads=e.job.threads)


def compare_runs(baseline: RunRecord, new: RunRecord, threshold: float = DEFAULT_THRESHOLD,
                 match: tuple[str, ...] = DEFAULT_MATCH, allow_missing: bool = False
                 ) -> Comparison:
    """Pair the jobs of two runs on the ``match`` keys and give each pair a verdict (and
    each job left unpaired its own: ``missing``, ``failed``, ``new``)."""
    pairs, base_left, new_left = pair_jobs(list(baseline.entries), list(new.entries), match,
                                           (baseline.run.run_id, new.run.run_id))
    names = display_names([list(baseline.entries), list(new.entries)])
    order = {id(e): k for k, e in enumerate(new.entries)}
    pairs.sort(key=lambda p: order[id(p[1])])
    return Comparison(
        baseline=baseline.run.run_id, new=new.run.run_id, threshold=threshold,
        match_keys=match, allow_missing=allow_missing,
        matches=[_pair(b, e, threshold, names[id(e)]) for b, e in pairs],
        only_in_baseline=[_unmatched(e, names[id(e)], True) for e in base_left],
        only_in_new=[_unmatched(e, names[id(e)], False) for e in new_left])
