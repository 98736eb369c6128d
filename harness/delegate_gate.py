"""The gate per (variant, delegate): ``quantlab evaluate --per-delegate``.

``evaluate`` measures a variant's accuracy on the host (LiteRT's CPU kernels). On a phone
the same file runs on a delegate whose arithmetic differs (the GPU's fp16, an NPU's own
int8), so a variant that passes on the host can still answer differently there. Each
(variant, device, delegate) measured with ``bench --numerics`` gets its own verdict: the
variant's accuracy gate AND the delegate's numerics (its outputs on the device vs the
variant's own on the host's reference kernels where those were run, else vs the float
model's, on the same inputs: :func:`quantlab.harness.numerics.verdict`), from the newest
stored job that has them. A pair whose numerics were not measured, or could not be,
gets no verdict and says why; a variant never benchmarked is listed as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from quantlab.harness.numerics import (
    DEFAULT_MIN_COSINE,
    DEFAULT_MIN_TOP1,
    NUMERIC_FIELDS,
    as_float,
    verdict,
)
from quantlab.harness.store import RunRecord


def _newest_jobs(records: Iterable[RunRecord], sha256: str) -> dict[tuple[str, str], Any]:
    """Per (device, delegate), the newest finished job of the variant: one with numerics
    where any run has them, else the newest at all (records come newest first)."""
    picked: dict[tuple[str, str], Any] = {}
    for record in records:
        for e in record.entries:
            if e.job.model.sha256 != sha256 or e.status != "ok" or e.raw is None:
                continue
            key = (e.job.device_id, e.job.delegate)
            have = picked.get(key)
            if have is None or (not have[1].raw.numerics and e.raw.numerics):
                picked[key] = (record.run.run_id, e)
    return picked


def per_delegate(report: Mapping[str, Any], records: Iterable[RunRecord],
                 min_cosine: float = DEFAULT_MIN_COSINE,
                 min_top1: float = DEFAULT_MIN_TOP1) -> dict[str, Any]:
    """The verdict of every (variant, device, delegate) of ``report``'s variants found in
    ``records`` (newest first), the numerics judged against ``min_cosine`` and, where an
    output is a class vector, ``min_top1``. Returns ``rows`` (scheme, device, delegate, run and job,
    ``accuracy_passed``, ``numerics`` figures vs the float model, ``numerics_delegate_only``
    vs the variant itself on the host (None when not run), ``numerics_passed``, ``passed``: True,
    False, or None with ``why``), ``failed`` (labels of failing pairs) and
    ``not_benchmarked`` (variants with no stored job)."""
    runs = list(records)
    rows: list[dict[str, Any]] = []
    not_benchmarked: list[str] = []
    for v in report["variants"]:
        label = v.get("scheme") or v["path"]
        accuracy = bool(v.get("gate", {}).get("passed")) and not v.get("error")
        jobs = _newest_jobs(runs, v["sha256"]) if v.get("sha256") else {}
        if not jobs:
            not_benchmarked.append(label)
            continue
        for (device, delegate), (run_id, e) in sorted(jobs.items()):
            ok, why = verdict(e.raw.numerics, min_cosine, min_top1)
            if not accuracy:
                passed: bool | None = False
                why = "accuracy gate failed on the host" + (f"; {why}" if ok is False else "")
            else:
                passed = ok
            figures = ({k: as_float(e.raw.numerics.get(k)) for k in NUMERIC_FIELDS}
                       if e.raw.numerics and not e.raw.numerics.get("error") else None)
            own = (e.raw.numerics or {}).get("delegate_only")
            own_figures = ({k: as_float(own.get(k)) for k in NUMERIC_FIELDS}
                           if isinstance(own, Mapping) and not own.get("error") else None)
            rows.append({"scheme": v.get("scheme"), "path": v["path"], "device": device,
                         "delegate": delegate, "run_id": run_id, "job_id": e.job.job_id,
                         "accuracy_passed": accuracy, "numerics": figures,
                         "numerics_delegate_only": own_figures,
                         "numerics_passed": ok,
                         "computed_by": (e.raw.numerics or {}).get("computed_by"),
                         "passed": passed, "why": why})
    failed = [f"{r['scheme'] or r['path']} · {r['device']} · {r['delegate']}"
              for r in rows if r["passed"] is False]
    return {"min_cosine": min_cosine, "min_top1": min_top1, "rows": rows, "failed": failed,
            "not_benchmarked": not_benchmarked}


def from_store(report: Mapping[str, Any], location: str, runs_per_variant: int = 20,
               min_cosine: float = DEFAULT_MIN_COSINE,
               min_top1: float = DEFAULT_MIN_TOP1) -> dict[str, Any]:
    """:func:`per_delegate` over the stored runs at ``location`` that hold the report's
    variants (the newest ``runs_per_variant`` runs of each)."""
    from quantlab.harness.store import Store

    store = Store.open(location)
    try:
        ids: list[str] = []
        for v in report["variants"]:
            if v.get("sha256"):
                ids += [r for r in store.find_runs(model=v["sha256"], limit=runs_per_variant)
                        if r not in ids]
        records = sorted((store.load_run(r) for r in ids),
                         key=lambda rec: rec.run.created_at, reverse=True)
    finally:
        store.close()
    return per_delegate(report, records, min_cosine, min_top1)
