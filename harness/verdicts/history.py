"""History: one series per (model, device, runtime, delegate, threads) across stored runs, with
its change points.

A point is one job of one run, its figure labelled with what it is (median or mean)
and how it was measured (per-iteration, per-launch, summary), with its 95 % CI.

A **change point** is a point whose job the same test as ``quantlab compare``
(:func:`quantlab.harness.verdicts.compare.compare_entries`) calls slower or faster than the
series' reference point — significant, beyond the threshold, CI clear of 1. The
reference is the latest point of the current level. A change point stays
``unconfirmed`` until the next run is measured: when that run, too, differs from the
reference in the same direction the change is ``confirmed`` and the new level
becomes the reference; when it does not, the shift was a one-run blip and moves to
the series' ``transients`` (status ``not confirmed``), the reference staying put.

Each series also reports its **drift** (the rule: :mod:`quantlab.harness.verdicts.drift`;
:func:`series_drift` here): the cumulative change of its latest point against a fixed
reference (the first point since the last confirmed change) and a trend over those runs,
which catch a series that gets slower by less than the threshold every run and so never
makes a change point; :func:`with_drift` hands each series' drift to ``bench --baseline``'s
comparison.

Models are matched across runs by scheme and file name (a nightly rebuilds
``model.tflite`` in place; its sha256 changes, its name does not), as ``compare``
does for a changed file; two files of one name in one run are told apart by path.
How a history is drawn (the trends page, the terminal's sparklines) is the reports' and the CLI's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from quantlab.harness.runtimes import runtime_of
from quantlab.harness.stats import summarize
from quantlab.harness.store import JobEntry, RunRecord, Store
from quantlab.harness.verdicts.compare import Comparison, compare_entries
from quantlab.harness.verdicts.drift import DRIFT_RULE, MIN_POINTS, NONE, Drift, trend
from quantlab.harness.verdicts.latency import DEFAULT_THRESHOLD, FASTER, RULE, SLOWER, TESTS

DEFAULT_LAST = 30
UNCONFIRMED, CONFIRMED, NOT_CONFIRMED = "unconfirmed", "confirmed", "not confirmed"


@dataclass(frozen=True)
class Point:
    """One job of one run in a series."""

    run_id: str
    created_at: str
    tags: tuple[str, ...]
    git_sha: str | None
    job_id: str
    model_path: str
    model_sha256: str
    status: str  # ok | failed | skipped | interrupted | pending | running
    statistic: str | None  # median | mean: what value_ms is
    value_ms: float | None
    method: str | None  # per-iteration | per-launch | summary
    ci95: tuple[float, float] | None
    launches: int | None
    error: str | None


@dataclass(frozen=True)
class ChangePoint:
    """A shift at ``run_id`` against the reference point of run ``baseline_run``."""

    run_id: str
    created_at: str
    point: int  # index into the series' points
    verdict: str  # slower | faster
    baseline_run: str
    method: str | None
    statistic: str | None
    baseline_ms: float | None
    new_ms: float | None
    ratio: float | None
    ratio_ci95: tuple[float, float] | None
    p_value: float | None
    status: str  # unconfirmed | confirmed | not confirmed
    checked_by: str | None = None  # the run that confirmed (or did not confirm) it

    @property
    def unconfirmed(self) -> bool:
        """True while no following run has been measured."""
        return self.status == UNCONFIRMED


@dataclass(frozen=True)
class Series:
    """Every point of one (model, device, delegate, threads), oldest first."""

    model: str
    device: str
    delegate: str
    threads: int
    points: list[Point] = field(default_factory=list)
    change_points: list[ChangePoint] = field(default_factory=list)
    transients: list[ChangePoint] = field(default_factory=list)
    drift: Drift | None = None  # the latest point against a fixed reference, and the trend
    runtime: str = "litert"  # litert | executorch | coreml (quantlab.harness.runtimes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists, ``unconfirmed`` on each change point)."""
        def change(c: ChangePoint) -> dict[str, Any]:
            d = asdict(c)
            d["ratio_ci95"] = list(c.ratio_ci95) if c.ratio_ci95 else None
            d["unconfirmed"] = c.unconfirmed
            return d

        points = []
        for p in self.points:
            d = asdict(p)
            d["tags"] = list(p.tags)
            d["ci95"] = list(p.ci95) if p.ci95 else None
            points.append(d)
        return {"model": self.model, "device": self.device, "runtime": self.runtime,
                "delegate": self.delegate, "threads": self.threads, "points": points,
                "change_points": [change(c) for c in self.change_points],
                "transients": [change(c) for c in self.transients],
                "drift": self.drift.as_dict() if self.drift else None}


@dataclass(frozen=True)
class History:
    """The series of the runs considered, and how change points were found."""

    series: list[Series]
    runs: list[str]
    threshold: float
    tests: dict[str, str] = field(default_factory=lambda: dict(TESTS))
    rule: str = RULE

    def as_dict(self) -> dict[str, Any]:
        """``{"series": [...], "runs": [...], "threshold", "tests", "rule", "drift_rule"}``."""
        return {"series": [s.as_dict() for s in self.series], "runs": list(self.runs),
                "threshold": self.threshold, "tests": dict(self.tests), "rule": self.rule,
                "drift_rule": DRIFT_RULE}


# ----------------------------------------------------------------------------- building


def _model_name(entry: JobEntry) -> str:
    name = Path(entry.job.model.path).name
    return f"{entry.job.model.scheme} ({name})" if entry.job.model.scheme else name


def _matches_model(entry: JobEntry, model: str) -> bool:
    m = entry.job.model
    return model in (m.path, Path(m.path).name, m.sha256, m.scheme, _model_name(entry))


def _point(record: RunRecord, entry: JobEntry) -> Point:
    summary = summarize(entry.raw) if entry.status == "ok" and entry.raw is not None else None
    return Point(
        run_id=record.run.run_id, created_at=record.run.created_at, tags=record.tags,
        git_sha=record.run.git_sha, job_id=entry.job.job_id, model_path=entry.job.model.path,
        model_sha256=entry.job.model.sha256, status=entry.status,
        statistic=summary.statistic if summary else None,
        value_ms=summary.value if summary else None,
        method=summary.method if summary else None,
        ci95=summary.ci95 if summary else None,
        launches=summary.launches if summary else None, error=entry.error)


def _change(points: list[Point], index: int, ref: int, match: Any) -> ChangePoint:
    p = points[index]
    return ChangePoint(
        run_id=p.run_id, created_at=p.created_at, point=index, verdict=match.verdict,
        baseline_run=points[ref].run_id, method=match.method, statistic=match.statistic,
        baseline_ms=match.baseline_ms, new_ms=match.new_ms, ratio=match.ratio,
        ratio_ci95=tuple(match.ratio_ci95) if match.ratio_ci95 else None,
        p_value=match.p_value, status=UNCONFIRMED)


def change_points(points: list[Point], entries: list[JobEntry], threshold: float
                  ) -> tuple[list[ChangePoint], list[ChangePoint]]:
    """(change points, transients) of one series; see the module doc for the rule."""
    found: list[ChangePoint] = []
    blips: list[ChangePoint] = []
    ref: int | None = None
    pending: ChangePoint | None = None
    for i, entry in enumerate(entries):
        if entry.status != "ok" or entry.raw is None:
            continue
        if ref is None:
            ref = i
            continue
        m = compare_entries(entries[ref], entry, threshold)
        if pending is not None:
            if m.verdict == pending.verdict:
                found.append(_with(pending, CONFIRMED, points[i].run_id))
                pending, ref = None, i
                continue
            blips.append(_with(pending, NOT_CONFIRMED, points[i].run_id))
            pending = None
        if m.verdict in (SLOWER, FASTER):
            pending = _change(points, i, ref, m)
        else:
            ref = i
    if pending is not None:
        found.append(pending)
    return found, blips


def _with(c: ChangePoint, status: str, run_id: str) -> ChangePoint:
    return replace(c, status=status, checked_by=run_id)


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


def build_history(records: list[RunRecord], threshold: float = DEFAULT_THRESHOLD, *,
                  model: str | None = None, device: str | None = None,
                  delegate: str | None = None, threads: int | None = None) -> History:
    """Series of the given runs (oldest first), filtered, with their change points."""
    keyed: dict[tuple[str, str, str, int, str], list[tuple[RunRecord, JobEntry]]] = {}
    for record in records:
        entries = [e for e in record.entries
                   if (model is None or _matches_model(e, model))
                   and (device is None or e.job.device_id == device)
                   and (delegate is None or e.job.delegate == delegate)
                   and (threads is None or e.job.threads == threads)]
        names: dict[tuple[str, str, str, int, str], int] = {}
        for e in entries:
            k = (_model_name(e), e.job.device_id, e.job.delegate, e.job.threads,
                 runtime_of(e.job))
            names[k] = names.get(k, 0) + 1
        for e in entries:
            k = (_model_name(e), e.job.device_id, e.job.delegate, e.job.threads,
                 runtime_of(e.job))
            if names[k] > 1:  # two files of one name in one run: tell them apart by path
                k = (e.job.model.path, *k[1:])
            keyed.setdefault(k, []).append((record, e))
    series = []
    for (name, dev, dlg, thr, runtime), items in keyed.items():
        points = [_point(r, e) for r, e in items]
        entries = [e for _, e in items]
        found, blips = change_points(points, entries, threshold)
        level = max((c.point for c in found if c.status == CONFIRMED), default=0)
        series.append(Series(model=name, device=dev, delegate=dlg, threads=thr, points=points,
                             change_points=found, transients=blips,
                             drift=series_drift(points, entries, level, threshold),
                             runtime=runtime))
    series.sort(key=lambda s: (s.model, s.device, s.delegate, s.threads))
    return History(series=series, runs=[r.run.run_id for r in records], threshold=threshold)


def load_history(store: Store, *, model: str | None = None, device: str | None = None,
                 delegate: str | None = None, tag: str | None = None,
                 last: int = DEFAULT_LAST, threshold: float = DEFAULT_THRESHOLD) -> History:
    """The history of the ``last`` newest runs that carry ``tag`` and have a matching job."""
    ids = store.find_runs(tag=tag, model=model, device=device, delegate=delegate, limit=last)
    records = [store.load_run(run_id) for run_id in reversed(ids)]
    return build_history(records, threshold, model=model, device=device, delegate=delegate)


def with_drift(c: Comparison, found: History) -> Comparison:
    """``c`` with each match's drift from ``found`` (a history whose newest run is ``c``'s
    new run): matched by the new run's job."""
    by_job = {s.points[-1].job_id: s.drift for s in found.series
              if s.points and s.points[-1].run_id == c.new and s.drift is not None}
    return replace(c, matches=[replace(m, drift=by_job.get(m.new_job)) for m in c.matches],
                   drift_rule=DRIFT_RULE)
