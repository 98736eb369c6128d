"""benchmark_model launches → one :class:`~quantlab.harness.records.RawResult`.

:func:`to_raw_result` maps the launches of one job (one per repeat, as read by
:func:`quantlab.android_runner.parser.parse_output`) and an optional profiling launch to a
RawResult: the tool's aggregates pooled over repeats, each launch's own figures, the
per-op profile with delegate partitions marked, and what the delegate took over.
Any failed launch, or a requested delegate that the tool did not apply, fails the result.
"""

from __future__ import annotations

import math
import re
from statistics import median
from typing import Any

from quantlab.android_runner.parser import BenchmarkOutput, PhaseStats, ProfileRow
from quantlab.harness.records import LaunchStats, OpRecord, RawResult

PARTITION_KERNELS: dict[str, str] = {
    "TfLiteGpuDelegateV2": "gpu",
    "TfLiteGpuDelegate": "gpu",
    "TfLiteNnapiDelegate": "nnapi",
    "TfLiteHexagonDelegate": "hexagon",
    "TfLiteXNNPackDelegate": "xnnpack",
    "TfLiteQnnDelegate": "qnn",
    "LITERT_CL": "litert-gpu",  # LiteRT's OpenCL GPU accelerator (CompiledModel)
    "DELEGATE": "delegate",
}
"""Node types that stand for a whole delegated partition, and the delegate they belong to."""


def _pooled(phases: list[PhaseStats]) -> dict[str, float]:
    """Aggregate the measured-run lines of several launches (µs → ms).

    A figure the tool did not print (std, min, max) stays out: it is never filled in.
    """
    n = sum(p.count for p in phases)
    mean = sum(p.avg_us * p.count for p in phases) / n
    out = {"avg": mean / 1000, "count": float(n)}
    if all(p.std_us is not None for p in phases):
        ss = 0.0
        for p in phases:
            std = p.std_us or 0.0
            ss += max(p.count - 1, 0) * std * std + p.count * (p.avg_us - mean) ** 2
        out["std"] = (math.sqrt(ss / (n - 1)) if n > 1 else 0.0) / 1000
    mins = [p.min_us for p in phases if p.min_us is not None]
    maxs = [p.max_us for p in phases if p.max_us is not None]
    if mins and len(mins) == len(phases):
        out["min"] = min(mins) / 1000
    if maxs and len(maxs) == len(phases):
        out["max"] = max(maxs) / 1000
    if len(phases) == 1 and phases[0].median_us is not None:
        out["median"] = phases[0].median_us / 1000
    return out


def launch_stats(out: BenchmarkOutput) -> LaunchStats | None:
    """One launch's own figures (ms), from its measured-run line or else its summary line."""
    p = out.inference
    if p is not None:
        def ms(v: float | None) -> float | None:
            return v / 1000 if v is not None else None
        return LaunchStats(mean_ms=p.avg_us / 1000, count=p.count, std_ms=ms(p.std_us),
                           min_ms=ms(p.min_us), max_ms=ms(p.max_us), median_ms=ms(p.median_us),
                           p5_ms=ms(p.p5_us), p95_ms=ms(p.p95_us))
    if out.inference_avg_ms is not None:
        return LaunchStats(mean_ms=out.inference_avg_ms)
    return None


def _is_builtin(op: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]+", op)) and op != "DELEGATE"


_DELEGATE_OP_ROW = re.compile(r"Delegate/.+:\d+")
"""Name of an op a delegate profiled itself (TFLite's DELEGATE_PROFILED_OPERATOR events,
e.g. XNNPACK's ``Delegate/Fully Connected (NC, F32) GEMM:1``): it ran inside the delegate."""


def _runtime_event(row: ProfileRow) -> bool:
    """A row of a runtime event, not an op: TFLite names those ``<tag>/<subgraph>``
    (``AllocateTensors/0``, LiteRT's ``LiteRT::Run[Buffer sync]/0``); ops are named by
    their outputs and node index (``[conv1]:0``) or ``Delegate/<kernel>:<n>``."""
    return bool(re.fullmatch(re.escape(row.node_type) + r"/\d+", row.name or ""))


def _profiled_delegate(out: BenchmarkOutput, delegate: str | None) -> str:
    """The delegate the per-op rows of a delegate's own profiling ran inside: the one the
    delegation line names, else the job's."""
    owners = {PARTITION_KERNELS.get(d.kernel, d.kernel) for d in out.delegations}
    if len(owners) == 1:
        return owners.pop()
    return delegate or "delegate"


def profile_ops(out: BenchmarkOutput, delegate: str | None) -> tuple[list[OpRecord], list[str]]:
    """Per-op records of the measured runs, delegate partitions marked; plus warnings.

    Ops a delegate profiled itself (``Delegate/<kernel>:<n>``) are ops of that delegate.
    Runtime events (``AllocateTensors/0``, ``LiteRT::Run[...]/0``) are kept as rows with
    ``detail.runtime`` (they are part of each run's time, not ops); one that ran fewer
    times than once a run (times called 0, e.g. the initial AllocateTensors) is left out
    with a warning, as its time is not per inference.
    """
    table = out.run_table()
    if table is None:
        return [], []
    hexagon_cycles = delegate == "hexagon" and out.params.get(
        "Hexagon profiling", out.params.get("Hexagon Profiling", "0")) == "1"
    ops: list[OpRecord] = []
    cpu_ops: list[str] = []
    partitions: list[str] = []
    outside: list[str] = []
    by_type = table.title == "Summary by node type"
    for row in table.rows:
        part = PARTITION_KERNELS.get(row.node_type)
        detail: dict[str, Any] = {"aggregated_by_type": True, "count": row.count} if by_type \
            else {}
        runtime = not by_type and _runtime_event(row)
        if runtime and row.times_called == 0:
            outside.append(f"{row.node_type} ({row.avg_ms:g} ms)")
            continue
        if row.name:
            detail["name"] = row.name
        if row.first_ms is not None:
            detail["first_ms"] = row.first_ms
        unit, value = "ms", row.avg_ms
        if part:
            detail["partition"] = True
            partitions.append(row.node_type)
            owner: str | None = delegate if part == "delegate" and delegate else part
        elif runtime:
            detail["runtime"] = True
            owner = None
        elif _DELEGATE_OP_ROW.fullmatch(row.name or ""):
            owner = _profiled_delegate(out, delegate)
        elif hexagon_cycles and not _is_builtin(row.node_type):
            owner, unit, value = "hexagon", "cycles", row.avg_ms * 1000
        else:
            owner = None
            cpu_ops.append(row.node_type)
        ops.append(OpRecord(index=len(ops), kernel=row.node_type, avg_ms=value,
                            op_type=row.node_type if _is_builtin(row.node_type) else None,
                            delegate=owner, times_called=row.times_called, unit=unit,
                            detail=detail))
    warnings = []
    if partitions and cpu_ops:
        warnings.append(f"{len(cpu_ops)} op(s) stayed on the CPU outside the delegate "
                        f"partition(s): {', '.join(sorted(set(cpu_ops)))}")
    if outside:
        warnings.append("left out of the op rows, ran outside the measured runs (times "
                        f"called 0): {', '.join(outside)}")
    return ops, warnings


def to_raw_result(
    job_id: str,
    launches: list[BenchmarkOutput],
    delegate: str | None = None,
    profile: BenchmarkOutput | None = None,
    runner: dict[str, Any] | None = None,
    **extra: Any,
) -> RawResult:
    """Map the measured launches (one per repeat) and an optional profiling launch to a RawResult.

    benchmark_model prints aggregates, not per-iteration samples, so the result carries
    ``aggregates_ms`` (pooled over repeats) and no ``samples_ms``. Any failed launch, or a
    requested delegate that the tool did not apply, makes the whole result failed.
    """
    runner = dict(runner or {})
    for k, out in enumerate(launches):
        prefix = f"repeat {k + 1}: " if len(launches) > 1 else ""
        if not out.ok:
            return RawResult.failure(job_id, prefix + (out.error or "benchmark_model failed"),
                                     runner=runner, **extra)
        if out.delegate_not_applied and delegate not in (None, "cpu", "xnnpack"):
            return RawResult.failure(
                job_id, f"{prefix}{delegate} delegate not applied: {out.delegate_not_applied}",
                runner=runner, **extra)
    if not launches:
        return RawResult.failure(job_id, "no benchmark_model output", runner=runner, **extra)
    phases = [o.inference for o in launches if o.inference]
    if phases:
        aggregates = _pooled(phases)
    else:  # old layout without count lines: only the averages
        avgs = [o.inference_avg_ms for o in launches if o.inference_avg_ms is not None]
        aggregates = {"avg": sum(avgs) / len(avgs)}
    warm = [o.warmup_avg_ms for o in launches if o.warmup_avg_ms is not None]
    if warm:
        aggregates["warmup_avg"] = sum(warm) / len(warm)
    aggregates["repeats"] = float(len(launches))
    for k, o in enumerate(launches):
        if o.inference_avg_ms is not None:
            aggregates[f"repeat{k + 1}_avg"] = o.inference_avg_ms
    inits = [o.init_ms for o in launches if o.init_ms is not None]
    firsts = [o.first_inference_ms for o in launches if o.first_inference_ms is not None]
    mems = [o.peak_memory_mb for o in launches if o.peak_memory_mb is not None]
    warnings: list[str] = []
    ops: list[OpRecord] = []
    ops_model_ms = None
    source = profile or next((o for o in launches if o.run_table()), None)
    if profile is not None and not profile.ok:
        warnings.append(f"op profile failed: {profile.error}")
    elif source is not None:
        ops, w = profile_ops(source, delegate)
        warnings.extend(w)
        ops_model_ms = source.inference_avg_ms
    delegations = [d for o in launches for d in o.delegations]
    if delegations:
        d = delegations[-1]
        runner["delegation"] = {"kernel": d.kernel, "nodes": d.nodes, "total": d.total,
                                "partitions": d.partitions}
        refused = {k: v for o in launches for k, v in o.unsupported.items()}
        if refused:
            runner["delegation"]["unsupported"] = refused
        if d.total and d.nodes < d.total:
            warnings.append(f"{d.kernel} took {d.nodes} of {d.total} nodes in {d.partitions} "
                            "partition(s); the rest ran on the CPU")
    for msg in launches[-1].delegate_messages:
        if "partially executed" in msg or "not be completely executed" in msg:
            warnings.append(msg)
    runner.setdefault("layouts", sorted({x for o in launches for x in o.layouts}))
    launch_figures = tuple(x for x in (launch_stats(o) for o in launches) if x is not None)
    return RawResult(
        job_id=job_id, status="ok", aggregates_ms=aggregates, launches=launch_figures,
        init_ms=median(inits) if inits else None,
        first_inference_ms=median(firsts) if firsts else None,
        peak_memory_mb=max(mems) if mems else None,
        memory_method=launches[0].memory_method, ops=tuple(ops), ops_model_ms=ops_model_ms,
        runner=runner, warnings=tuple(dict.fromkeys(warnings)), **extra)
