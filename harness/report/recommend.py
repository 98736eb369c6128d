"""Recommend, per device, the best variant + delegate that passes the accuracy gate.

Candidates are the finished jobs of a run. A variant passes the gate when its
newest stored evaluation (keyed by the variant's sha256) has ``drop <= max_drop``.
Candidates are ranked by median latency, energy per inference, or file size; the
runner-up is named with what it gives up. When no variant on a device was ever
evaluated, the recommendation is on the ranking alone and labelled so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.stats import summarize
from harness.store import JobEntry, RunRecord

BY_CHOICES = ("latency", "energy", "size")
UNITS = {"latency": "ms", "energy": "mJ/inference", "size": "bytes"}
NOT_EVALUATED = "accuracy not evaluated"


@dataclass(frozen=True)
class Candidate:
    """One (variant, delegate, threads) on a device with the figures it is ranked by."""

    model: str
    sha256: str
    scheme: str | None
    delegate: str
    threads: int
    latency_ms: float
    energy_mj: float | None
    size_bytes: int
    accuracy: str  # "passed" | "failed" | NOT_EVALUATED
    drop: float | None
    metric: str | None
    job_id: str

    def value(self, by: str) -> float | None:
        """The figure this candidate is ranked by."""
        return {"latency": self.latency_ms, "energy": self.energy_mj,
                "size": float(self.size_bytes)}[by]


@dataclass(frozen=True)
class DeviceRecommendation:
    """The pick for one device, the runner-up, and why others were left out."""

    device: str
    by: str
    best: Candidate | None
    runner_up: Candidate | None
    gives_up: str | None  # what the runner-up gives up against the best
    note: str  # plain words: gate used, "accuracy not evaluated", "nothing passes" …
    excluded: list[str] = field(default_factory=list)


def _latency(entry: JobEntry) -> float | None:
    if entry.raw is None:
        return None
    s = summarize(entry.raw)
    if s is None:
        return None
    return s.median if s.median is not None else s.mean


def candidates(record: RunRecord, evaluations: dict[str, dict[str, Any]],
               max_drop: float) -> dict[str, list[Candidate]]:
    """Every finished job with a latency figure, grouped by device, with its gate state."""
    out: dict[str, list[Candidate]] = {}
    for e in record.entries:
        lat = _latency(e) if e.status == "ok" else None
        if lat is None:
            continue
        m = e.job.model
        ev = evaluations.get(m.sha256)
        if ev is None:
            acc, drop, metric = NOT_EVALUATED, None, None
        else:
            drop = ev.get("drop")
            metric = ev.get("metric")
            ok = drop <= max_drop if drop is not None else bool(ev.get("passed"))
            acc = "passed" if ok else "failed"
        name = Path(m.path).name
        out.setdefault(e.job.device_id, []).append(Candidate(
            model=f"{m.scheme} ({name})" if m.scheme else name, sha256=m.sha256,
            scheme=m.scheme, delegate=e.job.delegate, threads=e.job.threads, latency_ms=lat,
            energy_mj=e.raw.energy.mj_per_inference if e.raw and e.raw.energy else None,
            size_bytes=m.size_bytes, accuracy=acc, drop=drop, metric=metric, job_id=e.job.job_id,
        ))
    return out


def _gives_up(best: Candidate, other: Candidate, by: str) -> str:
    a, b = best.value(by), other.value(by)
    assert a is not None and b is not None
    pct = f" ({100 * (b - a) / a:+.1f}%)" if a else ""
    if by == "size":
        return f"{(b - a) / 1024:+.1f} KiB{pct}"
    return f"{b - a:+.3g} {UNITS[by]}{pct}"


def recommend_device(device: str, cands: list[Candidate], by: str,
                     max_drop: float) -> DeviceRecommendation:
    """Rank one device's candidates and pick the best that passes the gate."""
    excluded: list[str] = []
    evaluated = [c for c in cands if c.accuracy != NOT_EVALUATED]
    if evaluated:
        pool = [c for c in cands if c.accuracy == "passed"]
        for c in cands:
            if c.accuracy == "failed":
                excluded.append(f"{c.model} · {c.delegate}: accuracy drop {c.drop} > {max_drop}")
            elif c.accuracy == NOT_EVALUATED:
                excluded.append(f"{c.model} · {c.delegate}: {NOT_EVALUATED}")
        note = f"accuracy gate: drop ≤ {max_drop:g}"
    else:
        pool = list(cands)
        note = f"{NOT_EVALUATED}: ranked by {by} alone"
    ranked = [c for c in pool if c.value(by) is not None]
    for c in pool:
        if c.value(by) is None:
            excluded.append(f"{c.model} · {c.delegate}: no {by} figure measured")
    ranked.sort(key=lambda c: (c.value(by), c.latency_ms, c.size_bytes, c.model, c.delegate))
    if not ranked:
        why = ("no variant passes the accuracy gate" if evaluated and not pool
               else f"no candidate has a {by} figure")
        return DeviceRecommendation(device, by, None, None, None, f"{note}; {why}", excluded)
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    return DeviceRecommendation(device, by, best, runner,
                                _gives_up(best, runner, by) if runner else None, note, excluded)


def recommend(record: RunRecord, evaluations: dict[str, dict[str, Any]], *,
              max_drop: float = 0.03, by: str = "latency") -> list[DeviceRecommendation]:
    """One recommendation per device of the run (sorted by device id)."""
    if by not in BY_CHOICES:
        raise UserError(f"--by {by!r}: unknown ranking", hint=f"use one of {', '.join(BY_CHOICES)}")
    if not 0 <= max_drop <= 1:
        raise UserError(f"--max-drop {max_drop}: out of range", hint="give a fraction such as 0.03")
    grouped = candidates(record, evaluations, max_drop)
    devices = sorted({e.job.device_id for e in record.entries})
    return [recommend_device(d, grouped.get(d, []), by, max_drop) if grouped.get(d)
            else DeviceRecommendation(d, by, None, None, None, "no finished job on this device")
            for d in devices]


def as_dicts(recs: list[DeviceRecommendation]) -> list[dict[str, Any]]:
    """JSON-ready recommendations."""
    return [asdict(r) for r in recs]
