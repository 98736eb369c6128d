"""Comparing stored runs and recommending a variant per device, from Python."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantlab._records import Record
    from quantlab.harness.report.recommend import DeviceRecommendation
    from quantlab.harness.store import RunRecord, Store
    from quantlab.harness.verdicts.compare import Comparison



def compare(a: str | Record | RunRecord, b: str | Record | RunRecord, *,
            threshold: str | float = "5%", match: str | tuple[str, ...] | None = None,
            allow_missing: bool = False, results: str | Path | None = None) -> Comparison:
    """Compare run ``b`` against baseline ``a`` (ids, prefixes, ``"latest"``, or the runs
    :func:`quantlab.bench` returned).

    ``threshold``: the slowdown that counts (``"5%"`` or ``0.05``); ``match``: the keys
    that pair jobs (``"model,device,delegate,threads"`` by default); ``allow_missing``:
    baseline jobs absent from ``b`` do not fail it. Returns the same
    :class:`~quantlab.harness.verdicts.compare.Comparison` as ``quantlab compare`` (``as_dict()`` is
    its ``--json``): ``matches`` with a ``verdict`` each, ``regressed``, ``missing``,
    ``fails`` (what makes ``compare`` exit 1), ``untestable``.
    """
    from quantlab._results import opened_store

    with opened_store(results) as store:
        return compare_in(store, a, b, threshold=threshold, match=match,
                          allow_missing=allow_missing)


def compare_in(store: Store, a: str | Record | RunRecord, b: str | Record | RunRecord, *,
               threshold: str | float = "5%", match: str | tuple[str, ...] | None = None,
               allow_missing: bool = False) -> Comparison:
    """:func:`compare` on an open store."""
    from quantlab._results import run_record
    from quantlab.harness.verdicts.compare import compare_runs, parse_match
    from quantlab.harness.verdicts.latency import parse_threshold

    limit = parse_threshold(str(threshold))
    keys = parse_match(",".join(match) if isinstance(match, tuple) else match)
    return compare_runs(run_record(store, a), run_record(store, b), limit, keys, allow_missing)


def recommend(run: str | Record | RunRecord = "latest", *, max_drop: float | None = None,
              by: str = "latency", energy_class: str | None = None,
              results: str | Path | None = None,
              min_top1: float | None = None) -> list[DeviceRecommendation]:
    """Per device of the run, the fastest (``by="latency"``), most frugal (``"energy"``)
    or smallest (``"size"``) variant + delegate that passed its accuracy gate (evaluations
    from :func:`quantlab.evaluate`: each scheme's own max drop, or ``max_drop`` for all) and
    whose numerics, where checked on the device, pass (cosine, and top-1 agreement ≥
    ``min_top1``, default 0.99, for class outputs); the same records as
    ``quantlab recommend``."""
    from quantlab._results import opened_store

    with opened_store(results) as store:
        return recommend_in(store, run, max_drop=max_drop, by=by,
                            energy_class=energy_class, min_top1=min_top1)[1]


def recommend_in(store: Store, run: str | Record | RunRecord, *, max_drop: float | None = None,
                 by: str = "latency", energy_class: str | None = None,
                 min_top1: float | None = None
                 ) -> tuple[RunRecord, list[DeviceRecommendation]]:
    """(the run, :func:`recommend`'s list) on an open store."""
    from quantlab._results import run_record
    from quantlab.harness.numerics import DEFAULT_MIN_TOP1
    from quantlab.harness.report.recommend import recommend as make

    record = run_record(store, run)
    shas = {e.job.model.sha256 for e in record.entries}
    return record, make(record, store.evaluations(shas), max_drop=max_drop, by=by,
                        energy_class=energy_class,
                        min_top1=DEFAULT_MIN_TOP1 if min_top1 is None else min_top1,
                        device_evaluations=store.device_evaluations(shas))


def recommendation_dict(run_id: str, recs: list[DeviceRecommendation], *, max_drop: float | None,
                        by: str, energy_class: str | None) -> dict[str, Any]:
    """The JSON of ``quantlab recommend --json``."""
    from quantlab.harness.report.recommend import as_dicts

    return {"run_id": run_id, "by": by, "max_drop": max_drop,
            **({"energy_class": energy_class} if by == "energy" else {}),
            "devices": as_dicts(recs)}
