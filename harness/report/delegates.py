"""The delegate matrix: per (model, device), one row per delegate (read model only).

Each row says how fast the delegate was (the headline statistic of
:func:`quantlab.harness.stats.summarize`, labelled), how much faster than the plain CPU
delegate of the same device, model and threads, what it cost to start (``init_ms``, and
the cold and warm start's time to first result: :mod:`quantlab.harness.startup`), how much
of the graph it took (``ops_total``, ``ops_delegated``, ``partitions``,
``fallback_ops``) and whether it still computes the float model's answer
(``numerics``). Nothing here runs a model: the figures come from stored results.

Where placement comes from, best first (``placement_source`` names it):

1. ``RawResult.placement`` — the simulator reads it from the interpreter's graph;
2. the runner's delegation line (benchmark_model: "Replacing N out of M node(s) with
   delegate …, yielding K partitions"), with the CPU ops of its op profile;
3. Core ML's compute plan (``MLComputePlan``, dumped by the iOS runner for ``coreml-*`` jobs):
   each op's preferred device; an op the plan keeps off the job's compute unit (the Neural
   Engine for ``coreml-ane``) is a fallback op like an Android delegate's, with the devices
   that could run it as the reason;
4. the per-op profile alone (partition rows and the ops outside them);
5. a CPU delegate without any of those: nothing delegated, by construction.

``delegated_share`` is ``ops_delegated / ops_total`` where both are known (the placement
gate, ``bench --min-delegated``, judges it), else None.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quantlab.harness.numerics import NUMERIC_FIELDS, as_float
from quantlab.harness.records import OpRecord, RawResult
from quantlab.harness.startup import cold_and_warm
from quantlab.harness.stats import summarize
from quantlab.harness.store import JobEntry, RunRecord

CPU_BASELINES = ("cpu", "tflite-cpu", "litert-cpu", "coreml-cpu")
"""The plain CPU delegate a device's speedups are measured against, first found wins."""

CPU_DELEGATES = frozenset(CPU_BASELINES)

COREML_UNITS: dict[str, frozenset[str]] = {
    "coreml-ane": frozenset({"neuralEngine"}),
    "coreml-gpu": frozenset({"gpu"}),
    "coreml-all": frozenset({"neuralEngine", "gpu"}),
}
"""The compute units a ``coreml-*`` job asks Core ML for, as MLComputePlan names them; an op
it prefers elsewhere (the CPU) fell back. ``coreml-cpu`` is the CPU baseline."""

UNIT_NAMES = {"neuralEngine": "the Neural Engine", "gpu": "the GPU", "cpu": "the CPU"}


def model_name(entry: JobEntry) -> str:
    """``scheme (file)`` of a variant, or the file name."""
    m = entry.job.model
    name = Path(m.path).name
    return f"{m.scheme} ({name})" if m.scheme else name


def placement(raw: RawResult | None, delegate: str) -> dict[str, Any]:
    """ops_total, ops_delegated, delegated_share, partitions, fallback_ops (each with the
    runtime's reason where it gave one) and where they were read from."""
    out = _placement(raw, delegate)
    total, taken = out.get("ops_total"), out.get("ops_delegated")
    out["delegated_share"] = taken / total if total and taken is not None else None
    return out


def _placement(raw: RawResult | None, delegate: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ops_total": None, "ops_delegated": None, "partitions": None,
                           "partition_list": [], "fallback_ops": [], "placement_source": None}
    if raw is None:
        out["placement_source"] = "no result"
        return out
    p = raw.placement or {}
    if p.get("ops_total") is not None:
        parts = p.get("partitions", [])
        out.update(ops_total=p["ops_total"], ops_delegated=p.get("ops_delegated"),
                   partitions=len(parts),
                   partition_list=[{"delegate": x.get("delegate"), "nodes": x.get("nodes", [])}
                                   for x in parts],
                   fallback_ops=[{"index": o["index"], "op_type": o.get("op_type")}
                                 for o in p.get("cpu_ops", [])] if parts else [],
                   placement_source=p.get("source", "runner placement"))
        return out
    op_rows = _op_rows(raw)
    if op_rows and all(o.detail.get("anticipated") for o in op_rows):
        out.update(compute_plan_placement(op_rows, delegate))
        return out
    profile_cpu = [{"index": o.node_index if o.node_index is not None else o.index,
                    "op_type": o.op_type or o.kernel}
                   for o in op_rows if o.delegate is None]
    profile_parts = [o for o in op_rows if o.detail.get("partition")]
    d = raw.runner.get("delegation") if isinstance(raw.runner, dict) else None
    if d and d.get("nodes") is not None:
        out.update(ops_total=d.get("total"), ops_delegated=d["nodes"],
                   partitions=d.get("partitions"),
                   partition_list=[{"delegate": d.get("kernel"), "nodes": None}],
                   fallback_ops=profile_cpu if raw.ops else [],
                   placement_source="runner log: " + str(d.get("kernel")) + " delegation line"
                   + (" + op profile" if raw.ops else ""))
        refused = d.get("unsupported") or {}
        for o in out["fallback_ops"]:
            if o["op_type"] in refused:
                o["reason"] = refused[o["op_type"]]
        if not raw.ops and d.get("total") and d["nodes"] < d["total"]:
            said = "; ".join(f"{k}: {v}" for k, v in refused.items())
            out["fallback_ops_note"] = (f"{d['total'] - d['nodes']} op(s) on the CPU; which ones "
                                        "needs an op profile (--profile-ops)"
                                        + (f"; the delegate refused {said}" if said else ""))
        return out
    if op_rows:
        delegated = [o for o in op_rows if o.delegate is not None
                     and not o.detail.get("partition")]
        if profile_parts:  # a partition row hides how many ops it holds
            out.update(ops_total=None, ops_delegated=None, partitions=len(profile_parts),
                       partition_list=[{"delegate": o.delegate, "nodes": None}
                                       for o in profile_parts],
                       fallback_ops=profile_cpu,
                       placement_source="op profile (partition rows hide their op count)")
        else:
            runs = _runs([o.delegate for o in op_rows])
            out.update(ops_total=len(delegated) + len(profile_cpu), ops_delegated=len(delegated),
                       partitions=runs, fallback_ops=profile_cpu if delegated else [],
                       placement_source="op profile")
        return out
    if delegate in CPU_DELEGATES:
        out.update(ops_delegated=0, partitions=0,
                   placement_source="CPU delegate: nothing delegated by construction")
        return out
    out["placement_source"] = "unknown: no placement, delegation line or op profile"
    return out


def compute_plan_placement(ops: list[OpRecord], delegate: str) -> dict[str, Any]:
    """Placement from Core ML's compute plan (one row per op, ``detail.preferred`` and
    ``detail.supported``): the ops Core ML prefers on the job's compute units are delegated,
    the rest fell back, each with why (the unit cannot run it, or Core ML prefers another)."""
    units = COREML_UNITS.get(delegate)
    if units is None:  # coreml-cpu, or a delegate this table does not know
        return {"ops_total": len(ops), "ops_delegated": 0 if delegate in CPU_DELEGATES else None,
                "partitions": 0 if delegate in CPU_DELEGATES else None,
                "placement_source": "MLComputePlan (anticipated)"}
    wanted = " or ".join(UNIT_NAMES.get(u, u) for u in sorted(units, reverse=True))
    fallback, owners = [], []
    for o in ops:
        preferred = str(o.detail.get("preferred"))
        supported = [str(x) for x in o.detail.get("supported") or []]
        owners.append(preferred if preferred in units else None)
        if preferred in units:
            continue
        listed = ", ".join(supported) or "none listed"
        reason = (f"Core ML prefers {UNIT_NAMES.get(preferred, preferred)} (supported: {listed})"
                  if units & set(supported) else
                  f"cannot run on {wanted} (supported: {listed})")
        fallback.append({"index": o.node_index if o.node_index is not None else o.index,
                         "op_type": o.op_type or o.kernel, "reason": reason,
                         "function": o.detail.get("function")})
    taken = len(ops) - len(fallback)
    parts = _runs(owners)
    return {"ops_total": len(ops), "ops_delegated": taken, "partitions": parts,
            "partition_list": [{"delegate": wanted, "nodes": None} for _ in range(parts)],
            "fallback_ops": fallback,
            "placement_source": "MLComputePlan (anticipated: Core ML's plan, not a measurement)"}


def _op_rows(raw: RawResult) -> list[OpRecord]:
    """The profile rows that are ops of the model: not the (unattributed) rest, not runtime
    events (LiteRT::Run[...]), and an op of a subgraph that control flow ran (a WHILE body
    runs once per iteration) once, not once per time it ran."""
    rows: list[OpRecord] = []
    seen: set[tuple[Any, Any, str]] = set()
    for o in raw.ops:
        if o.detail.get("unattributed") or o.detail.get("runtime"):
            continue
        if o.detail.get("subgraph"):
            key = (o.detail["subgraph"], o.detail.get("subgraph_node"), o.kernel)
            if key in seen:
                continue
            seen.add(key)
        rows.append(o)
    return rows


def _runs(owners: list[str | None]) -> int:
    """Number of consecutive runs of ops inside a delegate (its partitions)."""
    count, prev = 0, None
    for o in owners:
        if o is not None and o != prev:
            count += 1
        prev = o
    return count


def _numerics(raw: RawResult | None) -> tuple[dict[str, Any] | None, str | None]:
    if raw is None or not raw.numerics:
        return None, "not measured (bench --numerics; the simulator also checks with --profile-ops)"
    n = raw.numerics
    if n.get("error"):
        return None, (f"not checked: {n['error']}" if n.get("unchecked")
                      else f"failed: {n['error']}")
    figures = {k: as_float(n.get(k)) for k in NUMERIC_FIELDS}
    return figures, n.get("computed_by")


def delegate_rows(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    """One row per (model, device, delegate, threads) job of the runs (see module doc)."""
    entries = [(r, e) for r in records for e in r.entries]
    rows: list[dict[str, Any]] = []
    summaries = {}
    for r, e in entries:
        s = summarize(e.raw) if e.raw is not None and e.status == "ok" else None
        summaries[(r.run.run_id, e.job.job_id)] = s
    baseline: dict[tuple[str, str, str, int], tuple[str, Any]] = {}
    for r, e in entries:
        s = summaries[(r.run.run_id, e.job.job_id)]
        if s is None or e.job.delegate not in CPU_DELEGATES:
            continue
        key = (r.run.run_id, e.job.model.sha256, e.job.device_id, e.job.threads)
        have = baseline.get(key)
        rank = CPU_BASELINES.index(e.job.delegate)
        if have is None or rank < CPU_BASELINES.index(have[0]):
            baseline[key] = (e.job.delegate, s)
    for r, e in entries:
        s = summaries[(r.run.run_id, e.job.job_id)]
        raw = e.raw if e.status == "ok" else None
        key = (r.run.run_id, e.job.model.sha256, e.job.device_id, e.job.threads)
        speedup, speedup_note = None, None
        base = baseline.get(key)
        if s is None:
            speedup_note = "no latency"
        elif base is None:
            speedup_note = "no CPU delegate measured for this model, device and threads"
        elif (base[1].statistic, base[1].method) != (s.statistic, s.method):
            speedup_note = (f"CPU figure is a {base[1].method} {base[1].statistic}, this one a "
                            f"{s.method} {s.statistic}: not compared")
        else:
            speedup = base[1].value / s.value if s.value else None
            speedup_note = f"{s.statistic} of {base[0]} / {s.statistic} of {e.job.delegate}"
        numerics, numerics_note = _numerics(raw)
        rows.append({
            "run_id": r.run.run_id,
            "job_id": e.job.job_id,
            "model": model_name(e),
            "model_sha256": e.job.model.sha256,
            "scheme": e.job.model.scheme,
            "device": e.job.device_id,
            "platform": e.job.platform,
            "delegate": e.job.delegate,
            "threads": e.job.threads,
            "status": e.status,
            "error": e.error,
            "latency": ({"statistic": s.statistic, "value_ms": s.value, "method": s.method}
                        if s else None),
            "speedup_vs_cpu": speedup,
            "speedup_basis": speedup_note,
            "init_ms": raw.init_ms if raw else None,
            "first_inference_ms": raw.first_inference_ms if raw else None,
            **dict(zip(("cold_start_ms", "warm_start_ms"),
                       cold_and_warm(raw.startup if raw else None), strict=True)),
            **placement(raw, e.job.delegate),
            "numerics": numerics,
            "numerics_note": numerics_note,
        })
    rows.sort(key=lambda x: (x["device"], x["model"], x["delegate"] not in CPU_DELEGATES,
                             x["delegate"], x["threads"], x["run_id"]))
    return rows


def matrix(rows: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """Rows arranged per device as {(model, delegate): row} (the last row of a cell wins)."""
    out: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        out[row["device"]][(row["model"], f"{row['delegate']} {row['threads']}t")] = row
    return dict(out)


def placement_bar(row: dict[str, Any], width: int = 120) -> str:
    """An inline SVG bar: the delegated share of the graph (blue) and the CPU rest (grey)."""
    total, taken = row.get("ops_total"), row.get("ops_delegated")
    if not total or taken is None:
        label = "placement unknown" if taken is None else f"{taken} delegated"
        return f'<span class="nodata">{label}</span>'
    w = round(width * taken / total)
    title = f"{taken} of {total} ops delegated in {row.get('partitions') or 0} partition(s)"
    return (f'<svg width="{width}" height="12" role="img" aria-label="{title}">'
            f"<title>{title}</title>"
            f'<rect width="{width}" height="12" fill="#c9d1d9"/>'
            f'<rect width="{w}" height="12" fill="#2980b9"/></svg> {taken}/{total}')
