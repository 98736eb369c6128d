"""Make a per-op profile add up to the profiled Invoke time, or say why it cannot.

Used by the measuring worker's ``profile`` mode (:mod:`agents.sim_worker`), on this host
or on a gateway (pushed there with the worker; stdlib only).
"""

from __future__ import annotations

from typing import Any

CONTROL_FLOW_OPS = ("CALL_ONCE", "WHILE", "IF", "CALL")
"""Ops whose time includes the ops of the subgraphs they run (counted again as their own rows)."""

COVERAGE_LOW, COVERAGE_HIGH = 0.85, 1.05
"""The op rows of a profile must sum to this share of the profiled Invoke time; what is
missing below it is reported as its own row."""

UNATTRIBUTED_REASON = (
    "Invoke time no op event covers: interpreter work between ops (tensor allocation of "
    "dynamic shapes, delegate-boundary copies, variable handles) and ops the profiler does not "
    "instrument (custom ops, ops inside subgraphs run by control flow)")


def account_for_invoke(rows: list[dict[str, Any]], invoke_ms: float
                       ) -> tuple[list[dict[str, Any]], str | None]:
    """Make the op rows add up to the profiled Invoke time, or say why they cannot.

    Control-flow ops (CALL_ONCE, WHILE, IF) are timed including the subgraph ops that also
    appear as rows: they are kept, with unit ``ms-inclusive`` so no sum counts them twice.
    When the remaining rows cover less than 85 % of Invoke, the rest becomes one
    ``(unattributed)`` row carrying the reason.
    """
    nested = any(r["node_index"] is None and r["delegate"] is None for r in rows)
    for r in rows:
        if r.get("op_type") in CONTROL_FLOW_OPS and (nested or len(rows) > 1):
            r["unit"] = "ms-inclusive"
            r["detail"] = {**r.get("detail", {}), "inclusive": True,
                           "note": "time includes the ops of the subgraph it runs"}
    total = sum(r["avg_ms"] for r in rows if r.get("unit", "ms") == "ms")
    if invoke_ms <= 0:
        return rows, None
    share = total / invoke_ms
    if share < COVERAGE_LOW:
        rows.append({"index": len(rows), "kernel": "(unattributed)", "op_type": None,
                     "delegate": None, "node_index": None, "avg_ms": invoke_ms - total,
                     "detail": {"unattributed": True, "reason": UNATTRIBUTED_REASON,
                                "ops_share_before": round(share, 4)}})
        return rows, (f"op rows covered {100 * share:.0f}% of Invoke; the other "
                      f"{100 * (1 - share):.0f}% is the (unattributed) row")
    if share > COVERAGE_HIGH:
        return rows, (f"op rows sum to {100 * share:.0f}% of Invoke: the profiler timed some "
                      "work twice (nested events); shares are of the op sum")
    return rows, None
