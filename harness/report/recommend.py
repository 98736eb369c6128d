"""Recommend, per device, the best variant + delegate that passes the accuracy gate.

Candidates are the finished jobs of a run. A variant passes the gate when its
newest stored evaluation (keyed by the variant's sha256) passed its own gate (the
scheme's max drop ``quantlab evaluate`` applied: fp16 0.005, int8 0.02 … unless set
there), or, with ``max_drop``, when its drop is at most that; a
(variant, delegate) whose numerics were checked on the device (``bench --numerics``)
and fail (:func:`quantlab.harness.numerics.verdict`) is left out with the reason, whatever its
accuracy on the host. Where the (variant, device, delegate) was evaluated on the device itself
(``quantlab evaluate --device``: the task metric from the device's own outputs), that
evaluation gates it instead of the host's, and the note and each candidate say which gate
was used.
Candidates are ranked by latency (the median where every candidate on the device has
one, else the mean, and labelled so), energy per inference, or file size; the
runner-up is named with what it gives up, and by latency with the verdict of the same
test as ``quantlab compare`` on the pair (overlapping confidence intervals do not mean
no difference). When no variant on a device was ever evaluated, the recommendation is
on the ranking alone and labelled so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.numerics import DEFAULT_MIN_COSINE, DEFAULT_MIN_TOP1, verdict
from quantlab.harness.stats import LatencySummary, summarize
from quantlab.harness.store import JobEntry, RunRecord

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
    latency_statistic: str  # "median" | "mean": what latency_ms is
    latency_method: str  # per-iteration | per-launch | summary
    energy_mj: float | None
    size_bytes: int
    accuracy: str  # "passed" | "failed" | NOT_EVALUATED
    drop: float | None
    metric: str | None
    job_id: str
    energy_class: str | None = None  # comparability class of energy_mj (records.energy_class)
    energy_label: str | None = None  # what the energy figure measures
    energy_on_usb: bool = False  # a battery-gauge figure kept although on USB/AC power
    latency_ci95: tuple[float, float] | None = None  # 95 % CI of latency_ms, where known
    numerics: bool | None = None  # the delegate's outputs vs the float model (None: not judged)
    numerics_why: str = ""  # harness.numerics.verdict's reason
    gate: float | None = None  # the largest drop its accuracy gate allowed
    energy_missing: str | None = None  # why the job has no energy figure (the agent's reason)
    gated_on: str | None = None  # "device" (evaluate --device) | "host" | None (not evaluated)

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
    energy_class: str | None = None  # --by energy: the one class ranked on this device
    energy_left_out: list[dict[str, Any]] = field(default_factory=list)  # other classes, why


def _latency(entry: JobEntry) -> LatencySummary | None:
    return summarize(entry.raw) if entry.raw is not None and entry.status == "ok" else None


def candidates(record: RunRecord, evaluations: dict[str, dict[str, Any]],
               max_drop: float | None,
               min_top1: float = DEFAULT_MIN_TOP1,
               device_evaluations: dict[tuple[str, str, str], dict[str, Any]] | None = None,
               ) -> dict[str, list[Candidate]]:
    """Every finished job with a latency figure, grouped by device, with its gate state
    (the numerics gate: cosine, and top-1 agreement ≥ ``min_top1`` for class outputs); the
    accuracy gate is the (variant, device, delegate)'s evaluation on the device where one is
    in ``device_evaluations`` (by (sha256, device id, delegate)), else the host's."""
    out: dict[str, list[Candidate]] = {}
    summaries = {id(e): s for e in record.entries if (s := _latency(e)) is not None}
    # a device's candidates are ranked on one statistic: the median where every one of
    # them has it, else the mean (which every latency figure has)
    no_median = {e.job.device_id for e in record.entries
                 if id(e) in summaries and summaries[id(e)].median is None}
    for e in record.entries:
        summary = summaries.get(id(e))
        if summary is None:
            continue
        statistic = "mean" if e.job.device_id in no_median else "median"
        lat = summary.mean if statistic == "mean" else summary.median
        if lat is None:
            continue
        m = e.job.model
        on_device = (device_evaluations or {}).get((m.sha256, e.job.device_id, e.job.delegate))
        ev = on_device or evaluations.get(m.sha256)
        gate = None
        if ev is None:
            acc, drop, metric = NOT_EVALUATED, None, None
        else:
            drop = ev.get("drop")
            metric = ev.get("metric")
            gate = max_drop if max_drop is not None else ev.get("max_drop")
            ok = drop <= gate if drop is not None and gate is not None \
                else bool(ev.get("passed"))
            acc = "passed" if ok else "failed"
        name = Path(m.path).name
        ok_numerics, why_numerics = verdict(e.raw.numerics if e.raw else None,
                                            min_top1=min_top1)
        out.setdefault(e.job.device_id, []).append(Candidate(
            model=f"{m.scheme} ({name})" if m.scheme else name, sha256=m.sha256,
            scheme=m.scheme, delegate=e.job.delegate, threads=e.job.threads, latency_ms=lat,
            latency_statistic=statistic, latency_method=summary.method,
            latency_ci95=summary.ci95 if summary.statistic == statistic else None,
            energy_mj=e.raw.energy.mj_per_inference if e.raw and e.raw.energy else None,
            energy_class=e.raw.energy.comparability if e.raw and e.raw.energy else None,
            energy_label=e.raw.energy.label if e.raw and e.raw.energy else None,
            energy_on_usb=bool(e.raw and e.raw.energy and e.raw.energy.on_external_power),
            size_bytes=m.size_bytes, accuracy=acc, drop=drop, metric=metric, job_id=e.job.job_id,
            numerics=ok_numerics, numerics_why=why_numerics, gate=gate,
            energy_missing=e.raw.energy_unavailable_reason if e.raw else None,
            gated_on=None if ev is None else "device" if on_device else "host",
        ))
    return out


def _gives_up(best: Candidate, other: Candidate, by: str) -> str:
    a, b = best.value(by), other.value(by)
    assert a is not None and b is not None
    pct = f" ({100 * (b - a) / a:+.1f}%)" if a else ""
    if by == "size":
        return f"{(b - a) / 1024:+.1f} KiB{pct}"
    if by == "latency":  # recommend() adds compare's verdict on the pair
        return f"{b - a:+.3g} ms {best.latency_statistic} latency{pct}"
    return f"{b - a:+.3g} {UNITS[by]}{pct}"


def _significance(rec: DeviceRecommendation, entries: dict[str, JobEntry]) -> str:
    """compare's verdict on the runner-up against the best: "; compare's test: …"."""
    from quantlab.harness.verdicts.compare import compare_entries
    from quantlab.harness.verdicts.latency import UNTESTABLE

    assert rec.best is not None and rec.runner_up is not None
    m = compare_entries(entries[rec.best.job_id], entries[rec.runner_up.job_id])
    if m.verdict == UNTESTABLE:
        return f"; significance not known: {m.reason}"
    ci = f" [{m.ratio_ci95[0]:.3f}–{m.ratio_ci95[1]:.3f}]" if m.ratio_ci95 else ""
    p = f", p={m.p_value:.2g}" if m.p_value is not None else ""
    text = f"; compare's test: {m.verdict} (×{m.ratio:.3f}{ci}{p}, {m.method})"
    return text + (f"; {m.reason}" if m.reason else "")


def _drop_text(c: Candidate) -> str:
    """A failed candidate's drop against its gate in the evaluate table's units."""
    where = " on the device" if c.gated_on == "device" else ""
    if c.drop is None or c.gate is None:
        return f"gate failed in evaluate{where}"
    from quantlab.harness.quantize.gate import drop_text

    return drop_text(c.metric or "", c.drop, c.gate, c.drop <= c.gate) + where


def recommend_device(device: str, cands: list[Candidate], by: str,
                     max_drop: float | None) -> DeviceRecommendation:
    """Rank one device's candidates and pick the best that passes the gate."""
    wrong = [c for c in cands if c.numerics is False]  # numerics failed on the device
    excluded = [f"{c.model} · {c.delegate}: {c.numerics_why} (measured on the device)"
                for c in wrong]
    cands = [c for c in cands if c.numerics is not False]
    evaluated = [c for c in cands if c.accuracy != NOT_EVALUATED]
    if evaluated:
        pool = [c for c in cands if c.accuracy == "passed"]
        for c in cands:
            if c.accuracy == "failed":
                excluded.append(f"{c.model} · {c.delegate}: accuracy {_drop_text(c)}")
            elif c.accuracy == NOT_EVALUATED:
                excluded.append(f"{c.model} · {c.delegate}: {NOT_EVALUATED}")
        note = (f"accuracy gate: drop ≤ {max_drop:g}" if max_drop is not None else
                "accuracy gate: each variant's own from evaluate")
        on_device = sum(c.gated_on == "device" for c in evaluated)
        if on_device:
            note += (f", on the device's own outputs (evaluate --device) for {on_device} of "
                     f"{len(evaluated)} evaluated candidates, else on the host")
    else:
        pool = list(cands)
        note = f"{NOT_EVALUATED}: ranked by {by} alone"
    ranked = [c for c in pool if c.value(by) is not None]
    for c in pool:
        if c.value(by) is None:
            why = f": {c.energy_missing}" if by == "energy" and c.energy_missing else ""
            excluded.append(f"{c.model} · {c.delegate}: no {by} figure measured{why}")
    ranked.sort(key=lambda c: (c.value(by), c.latency_ms, c.size_bytes, c.model, c.delegate))
    if wrong:
        note += (f"; numerics gate: cosine ≥ {DEFAULT_MIN_COSINE:g} where measured (and "
                 "top-1 agreement for class outputs)")
    if not ranked:
        why = ("every candidate fails the numerics gate" if wrong and not cands
               else "no variant passes the accuracy gate" if evaluated and not pool
               else f"no candidate has a {by} figure")
        return DeviceRecommendation(device, by, None, None, None, f"{note}; {why}", excluded)
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    return DeviceRecommendation(device, by, best, runner,
                                _gives_up(best, runner, by) if runner else None, note, excluded)


ON_USB = " on USB power"
ENERGY_CLASS_ORDER = ("device-rails", "battery-gauge", "host-package", "process-estimate")
"""Which class is ranked when a device has as many figures of several classes."""


def _energy_group(c: Candidate) -> str | None:
    """The class a candidate's energy figure is ranked in (None: no figure). A gauge
    figure kept on USB power (--energy-on-usb) is a group of its own."""
    if c.energy_mj is None or c.energy_class is None:
        return None
    return c.energy_class + (ON_USB if c.energy_on_usb else "")


def _group_order(group: str) -> tuple[int, bool, str]:
    base = group.removesuffix(ON_USB)
    rank = ENERGY_CLASS_ORDER.index(base) if base in ENERGY_CLASS_ORDER else len(ENERGY_CLASS_ORDER)
    return rank, group.endswith(ON_USB), group


def _recommend_energy(device: str, cands: list[Candidate], max_drop: float | None,
                      energy_class: str | None) -> DeviceRecommendation:
    """Rank energy figures of one comparability class only; list the others with why.

    The class is ``energy_class`` when given, else the one with the most figures among
    the candidates that pass the gate (ties: rails, gauge, host package, estimate).
    """
    from quantlab.harness.records import ENERGY_CLASS_MEANING

    evaluated = any(c.accuracy != NOT_EVALUATED for c in cands)
    gated = [c for c in cands if c.accuracy == "passed"] if evaluated else cands
    counts: dict[str, int] = {}
    for c in gated:
        if (g := _energy_group(c)) is not None:
            counts[g] = counts.get(g, 0) + 1
    chosen = energy_class or (min(counts, key=lambda g: (-counts[g], _group_order(g)))
                              if counts else None)
    keep = [c for c in cands if _energy_group(c) in (None, chosen)]
    left_out: list[dict[str, Any]] = []
    for c in cands:
        group = _energy_group(c)
        if group is None or group == chosen:
            continue
        why = (f"energy figure is {group} ({c.energy_label or 'no label'}); only "
               f"{chosen} figures are ranked on this device: figures of different classes "
               "measure different things and are not compared")
        if energy_class:
            why += f" (--energy-class {energy_class})"
        left_out.append({"model": c.model, "delegate": c.delegate, "threads": c.threads,
                         "job_id": c.job_id, "energy_class": group,
                         "mj_per_inference": c.energy_mj, "reason": why})
    rec = recommend_device(device, keep, "energy", max_drop)
    note = rec.note
    if chosen is not None:
        meaning = ENERGY_CLASS_MEANING.get(chosen.removesuffix(ON_USB), "")
        note += f"; energy ranked within {chosen} only" + (f" ({meaning})" if meaning else "")
        if left_out:
            note += (f"; {len(left_out)} figure(s) of other classes left out "
                     f"({', '.join(sorted({d['energy_class'] for d in left_out}))})")
    return replace(rec, note=note, energy_class=chosen, energy_left_out=left_out,
                   excluded=rec.excluded + [f"{d['model']} · {d['delegate']}: {d['reason']}"
                                            for d in left_out])


def recommend(record: RunRecord, evaluations: dict[str, dict[str, Any]], *,
              max_drop: float | None = None, by: str = "latency",
              energy_class: str | None = None,
              min_top1: float = DEFAULT_MIN_TOP1,
              device_evaluations: dict[tuple[str, str, str], dict[str, Any]] | None = None,
              ) -> list[DeviceRecommendation]:
    """One recommendation per device of the run (sorted by device id); a (variant, device,
    delegate) evaluated on the device is gated on that (``device_evaluations``).

    ``by="energy"`` ranks only figures of one comparability class per device
    (``energy_class``, or the most common one) and lists the others as left out.
    """
    if by not in BY_CHOICES:
        raise UserError(f"--by {by!r}: unknown ranking", hint=f"use one of {', '.join(BY_CHOICES)}")
    if energy_class is not None and by != "energy":
        raise UserError(f"--energy-class {energy_class}: only used with --by energy",
                        hint="add --by energy, or drop --energy-class")
    if energy_class is not None:
        from quantlab.harness.records import ENERGY_CLASS_MEANING

        base = energy_class.removesuffix(ON_USB)
        if base not in ENERGY_CLASS_MEANING and not base.startswith("other:"):
            raise UserError(f"--energy-class {energy_class!r}: unknown class",
                            hint=f"use one of {', '.join(ENERGY_CLASS_MEANING)}")
    if max_drop is not None and not 0 <= max_drop <= 1:
        raise UserError(f"--max-drop {max_drop}: out of range", hint="give a fraction such as 0.03")
    grouped = candidates(record, evaluations, max_drop, min_top1, device_evaluations)
    devices = sorted({e.job.device_id for e in record.entries})
    recs = [(_recommend_energy(d, grouped[d], max_drop, energy_class) if by == "energy"
             else recommend_device(d, grouped[d], by, max_drop)) if grouped.get(d)
            else DeviceRecommendation(d, by, None, None, None, "no finished job on this device")
            for d in devices]
    entries = {e.job.job_id: e for e in record.entries}
    return [replace(r, gives_up=r.gives_up + _significance(r, entries))
            if by == "latency" and r.gives_up and r.runner_up else r for r in recs]


def as_dicts(recs: list[DeviceRecommendation]) -> list[dict[str, Any]]:
    """JSON-ready recommendations."""
    return [asdict(r) for r in recs]
