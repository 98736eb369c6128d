"""Make a per-op profile add up to the profiled Invoke time, or say why it cannot.

Used by the runner's ``profile`` mode (:mod:`.measure`), on this host or on a gateway (the
runner package is shipped there whole; stdlib only).
"""

from __future__ import annotations

from typing import Any

CONTROL_FLOW_OPS = ("CALL_ONCE", "WHILE", "IF", "CALL")
"""Ops that run other subgraphs: when the ops of that subgraph were profiled (as rows of
their own, right after the control-flow op), its time includes theirs."""

COVERAGE_LOW, COVERAGE_HIGH = 0.85, 1.05
"""The op rows of a profile must sum to this share of the profiled Invoke time; what is
missing below it is reported as its own row."""

UNATTRIBUTED_REASON = (
    "Invoke time no op event covers: interpreter work outside the ops (input checks, tensor "
    "allocation of dynamic shapes, delegate-boundary copies, control flow running its "
    "subgraphs)")

PROFILER_REASON = (
    "{ms:.4f} ms is the profiler's own time: each non-op event it opens reads the process's "
    "memory usage (TFLite memory::GetMemoryUsage parses /proc/self/status) inside the time "
    "it measures, {reads} per Invoke here ({what}), {cost:.4f} ms each (measured: "
    "{source})")

BETWEEN_REASON = (
    "{ms:.4f} ms passes between one op's event and the next (the interpreter's loop over "
    "the nodes and the profiler's bookkeeping per op), measured from their timestamps")

UNTIMED_REASON = (
    "{n} of {m} XNNPACK kernels reported 0 µs in every profiled run: XNNPACK gives each "
    "kernel's time in whole microseconds, so kernels that run under 1 µs lose their time "
    "(it is in this row)")


def _subgraph(row: dict[str, Any]) -> int:
    return int((row.get("detail") or {}).get("subgraph", 0))


def mark_inclusive(rows: list[dict[str, Any]]) -> None:
    """Give control-flow ops whose subgraph's ops follow them as rows unit ``ms-inclusive``
    (their time includes those rows), so that no sum counts that time twice. A CALL_ONCE
    after its first run executes nothing: its row keeps its own (tiny) time."""
    for k, r in enumerate(rows):
        if r.get("op_type") not in CONTROL_FLOW_OPS or k + 1 >= len(rows):
            continue
        if _subgraph(rows[k + 1]) != _subgraph(r):
            r["unit"] = "ms-inclusive"
            r["detail"] = {**(r.get("detail") or {}), "inclusive": True,
                           "note": "time includes the ops of the subgraph it runs"}


def unattributed_reason(missing_ms: float,
                        accounting: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Why ``missing_ms`` of Invoke has no op row: the parts the profile measured
    (the profiler's own time, XNNPACK kernels below its resolution), then the rest."""
    acc = accounting or {}
    parts: list[str] = []
    detail: dict[str, Any] = {}
    overhead = acc.get("profiler_overhead_ms")
    if overhead:
        reads = float(acc.get("memory_reads_per_invoke") or 1)
        nested = reads > 1.5
        what = ("the Invoke itself, and each subgraph Invoke and AllocateTensors that control "
                "flow runs inside it, at its start and end" if nested else "the Invoke itself")
        shown = min(float(overhead), missing_ms)
        missing_ms -= shown
        count = f"{reads:g} read" + ("" if reads == 1 else "s")
        parts.append(PROFILER_REASON.format(ms=shown, reads=count, what=what,
                                            cost=float(acc["event_cost_ms"]),
                                            source=acc.get("event_cost_source")))
        detail["profiler_overhead_ms"] = shown
    between = min(float(acc.get("between_ops_ms") or 0.0), missing_ms)
    if between >= 0.0005:
        parts.append(BETWEEN_REASON.format(ms=between))
        detail["between_ops_ms"] = between
    untimed = int(acc.get("untimed_kernels") or 0)
    if untimed:
        parts.append(UNTIMED_REASON.format(n=untimed, m=acc.get("delegate_kernels")))
        detail["untimed_kernels"] = untimed
    parts.append(("the rest: " if parts else "") + UNATTRIBUTED_REASON)
    return "; ".join(parts), detail


def account_for_invoke(rows: list[dict[str, Any]], invoke_ms: float,
                       accounting: dict[str, Any] | None = None
                       ) -> tuple[list[dict[str, Any]], str | None]:
    """Make the op rows add up to the profiled Invoke time, or say why they cannot.

    Control-flow ops (CALL_ONCE, WHILE, IF) whose subgraph's ops were profiled are kept
    with unit ``ms-inclusive`` (:func:`mark_inclusive`). When the remaining rows cover
    less than 85 % of Invoke, the rest becomes one ``(unattributed)`` row whose reason
    names what the profile measured of it (``accounting`` from
    :func:`.profiler.account_events`).
    """
    mark_inclusive(rows)
    total = sum(r["avg_ms"] for r in rows if r.get("unit", "ms") == "ms")
    if invoke_ms <= 0:
        return rows, None
    share = total / invoke_ms
    if share < COVERAGE_LOW:
        missing = invoke_ms - total
        reason, parts = unattributed_reason(missing, accounting)
        detail: dict[str, Any] = {"unattributed": True, "reason": reason,
                                  "ops_share_before": round(share, 4), **parts}
        overhead = parts.get("profiler_overhead_ms")
        if overhead and invoke_ms > overhead:
            detail["ops_share_of_invoke_without_profiler"] = round(
                total / (invoke_ms - overhead), 4)
        rows.append({"index": len(rows), "kernel": "(unattributed)", "op_type": None,
                     "delegate": None, "node_index": None, "avg_ms": missing,
                     "detail": detail})
        note = (f"op rows covered {100 * share:.0f}% of Invoke; the other "
                f"{100 * (1 - share):.0f}% is the (unattributed) row")
        if overhead:
            note += f", {100 * overhead / invoke_ms:.0f}% of Invoke being the profiler's own time"
        return rows, note
    if share > COVERAGE_HIGH:
        return rows, (f"op rows sum to {100 * share:.0f}% of Invoke: the profiler timed some "
                      "work twice (nested events); shares are of the op sum")
    return rows, None
