"""Op-level diff of two stored jobs: two delegates, two variants or two runs (read model only).

:func:`diff_jobs` puts side by side

* ``placement_changes``: model ops that ran on the CPU on one side and inside an
  accelerator partition on the other (op index and type), where both sides know their
  placement per op;
* ``ops``: time per op type on each side, its delta and share of each side's op total;
  ``per_op``: the same per model op index, where both sides' rows carry one;
* ``partitions``: each side's delegate partitions;
* ``missing``: what could not be compared and why (no profile on one side, a delegate
  partition timed as one row, cycles instead of milliseconds …).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.records import OpRecord, RawResult
from quantlab.harness.report.delegates import model_name, placement
from quantlab.harness.stats import summarize
from quantlab.harness.store import JobEntry, RunRecord, Store

CPU = "CPU"


@dataclass(frozen=True)
class StoredJob:
    """One job of one stored run."""

    record: RunRecord
    entry: JobEntry

    @property
    def label(self) -> str:
        """model · device · delegate · threads · run."""
        e = self.entry
        return (f"{model_name(e)} · {e.job.device_id} · {e.job.delegate} · {e.job.threads}t"
                f" · run {self.record.run.run_id}")


def find_job(store: Store, ref: str) -> StoredJob:
    """The stored job ``ref`` names: ``JOB_ID`` or a prefix of it (the newest run holding it),
    or ``RUN_ID:JOB_ID``. A UserError names what is ambiguous or missing."""
    run_ref, _, job_ref = ref.rpartition(":")
    job_ref = job_ref.strip()
    if not job_ref:
        raise UserError(f"{ref!r}: no job id", hint="give JOB_ID or RUN_ID:JOB_ID")
    hits = store.find_jobs(job_ref, run_ref or None)
    if not hits:
        raise UserError(f"job {ref}: not in the store",
                        hint="job ids are in `quantlab show RUN --json` (job_id)")
    if len({h.job_id for h in hits}) > 1:
        raise UserError(f"job {ref}: prefix matches {len({h.job_id for h in hits})} jobs",
                        hint="give more characters of the job id")
    run_id = max(h.run_id for h in hits)  # run ids sort by time
    record = store.load_run(run_id)
    entry = next(e for e in record.entries if e.job.job_id == hits[0].job_id)
    return StoredJob(record, entry)


def node_placement(raw: RawResult) -> tuple[dict[int, tuple[str | None, str]], str | None]:
    """Where each model op ran (op index → (op type, CPU or delegate)), or why not known."""
    p = raw.placement or {}
    if p.get("ops_total") is not None:
        where: dict[int, tuple[str | None, str]] = {}
        for part in p.get("partitions", []):
            for n, ty in zip(part.get("nodes", []), _types_for(raw, part.get("nodes", [])),
                             strict=True):
                where[int(n)] = (ty, str(part.get("delegate") or "delegate"))
        for o in p.get("cpu_ops", []):
            where[int(o["index"])] = (o.get("op_type"), CPU)
        return where, None
    rows = [o for o in raw.ops if not o.detail.get("unattributed")]
    if not rows:
        return {}, "no op profile and no placement"
    if any(o.detail.get("partition") for o in rows):
        # a delegate partition is one row: the ops inside it are not named
        return {}, "a delegate partition is one profile row: the ops inside it are not named"
    where = {}
    for o in rows:
        if o.node_index is not None:
            where[o.node_index] = (o.op_type, o.delegate or CPU)
    if not where:
        return {}, "profile rows carry no model op index"
    return where, None


def _types_for(raw: RawResult, nodes: list[int]) -> list[str | None]:
    by_node = {o.node_index: o.op_type for o in raw.ops if o.node_index is not None}
    types = {int(x["index"]): x.get("op_type") for x in (raw.placement or {}).get("cpu_ops", [])}
    part_types: dict[int, str | None] = {}
    for part in (raw.placement or {}).get("partitions", []):
        if len(part.get("op_types", [])) == 1:
            part_types.update({int(n): part["op_types"][0] for n in part.get("nodes", [])})
    return [by_node.get(n) or types.get(n) or part_types.get(n) for n in nodes]


def _ms_rows(raw: RawResult) -> list[OpRecord]:
    return [o for o in raw.ops if o.unit == "ms"]


def _per_type(raw: RawResult) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for o in _ms_rows(raw):
        key = "(unattributed)" if o.detail.get("unattributed") else (o.op_type or o.kernel)
        out[key] += o.avg_ms
    return dict(out)


def _per_node(raw: RawResult) -> dict[int, tuple[str | None, float]]:
    out: dict[int, tuple[str | None, float]] = {}
    for o in _ms_rows(raw):
        if o.node_index is not None:
            ty, ms = out.get(o.node_index, (o.op_type, 0.0))
            out[o.node_index] = (ty or o.op_type, ms + o.avg_ms)
    return out


def _side(job: StoredJob) -> dict[str, Any]:
    e = job.entry
    raw = e.raw
    s = summarize(raw) if raw is not None else None
    p = placement(raw, e.job.delegate)
    return {
        "job_id": e.job.job_id, "run_id": job.record.run.run_id, "label": job.label,
        "model": model_name(e), "device": e.job.device_id, "delegate": e.job.delegate,
        "threads": e.job.threads, "status": e.status,
        "latency": ({"statistic": s.statistic, "value_ms": s.value, "method": s.method}
                    if s else None),
        "ops_sum_ms": sum(o.avg_ms for o in _ms_rows(raw)) if raw and raw.ops else None,
        "ops_model_ms": raw.ops_model_ms if raw else None,
        "ops_total": p["ops_total"], "ops_delegated": p["ops_delegated"],
        "partitions": p["partition_list"], "placement_source": p["placement_source"],
    }


def diff_jobs(a: StoredJob, b: StoredJob) -> dict[str, Any]:
    """The op-level comparison of job ``a`` (before) and job ``b`` (after); see module doc."""
    missing: list[str] = []
    ra, rb = a.entry.raw, b.entry.raw
    out: dict[str, Any] = {"a": _side(a), "b": _side(b), "placement_changes": [], "ops": [],
                           "per_op": [], "missing": missing}
    for name, raw, job in (("A", ra, a), ("B", rb, b)):
        if raw is None:
            missing.append(f"{name} ({job.label}) has no result ({job.entry.status})")
    if ra is None or rb is None:
        return out
    wa, why_a = node_placement(ra)
    wb, why_b = node_placement(rb)
    if why_a:
        missing.append(f"placement of A per op: {why_a}")
    if why_b:
        missing.append(f"placement of B per op: {why_b}")
    for n in sorted(set(wa) & set(wb)):
        (ta, pa), (tb, pb) = wa[n], wb[n]
        if pa != pb:
            out["placement_changes"].append({"index": n, "op_type": ta or tb, "a": pa, "b": pb,
                                             "moved": f"{pa} → {pb}"})
    if wa and wb and set(wa) != set(wb):
        missing.append("the two jobs' graphs have different op indices (different models?): "
                       "placement compared on the common indices only")
    for name, raw in (("A", ra), ("B", rb)):
        if not raw.ops:
            missing.append(f"{name} has no op profile (bench --profile-ops)")
        elif any(o.unit != "ms" and not o.unit.startswith("ms") for o in raw.ops):
            missing.append(f"{name}: some rows are in {sorted({o.unit for o in raw.ops})}, not "
                           "ms; left out of the time comparison")
        for o in raw.ops:
            if o.detail.get("partition"):
                missing.append(f"{name}: time inside the {o.kernel} partition is one row; the "
                               "ops inside it have no time of their own")
    ta_, tb_ = _per_type(ra), _per_type(rb)
    sa_, sb_ = sum(ta_.values()), sum(tb_.values())
    for ty in sorted(set(ta_) | set(tb_), key=lambda k: -max(ta_.get(k, 0), tb_.get(k, 0))):
        va, vb = ta_.get(ty), tb_.get(ty)
        out["ops"].append({
            "op_type": ty, "a_ms": va, "b_ms": vb,
            "delta_ms": (vb - va) if va is not None and vb is not None else None,
            "a_share": va / sa_ if va is not None and sa_ else None,
            "b_share": vb / sb_ if vb is not None and sb_ else None,
        })
    na, nb = _per_node(ra), _per_node(rb)
    if ra.ops and rb.ops and not (set(na) & set(nb)):
        missing.append("per-op times: the two profiles share no model op index (a delegate's "
                       "kernels that map to no model op, or partition rows)")
    for n in sorted(set(na) & set(nb)):
        (ty_a, va), (ty_b, vb) = na[n], nb[n]
        out["per_op"].append({
            "index": n, "op_type": ty_a or ty_b, "a_ms": va, "b_ms": vb, "delta_ms": vb - va,
            "a_where": wa.get(n, (None, None))[1], "b_where": wb.get(n, (None, None))[1],
            "a_share": va / sa_ if sa_ else None, "b_share": vb / sb_ if sb_ else None,
        })
    out["missing"] = list(dict.fromkeys(missing))
    return out
