"""Before a plan runs: jobs whose delegate cannot take the whole graph, read from the model file
(``quantlab plan`` and ``bench`` warn, naming the ops). Two cases are certain from the file
alone: float ops sent to an accelerator that runs only quantized ops (Hexagon), and Flex ops
(TensorFlow ops) sent to any delegate, which runs none of them — both stay on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantlab.harness.records import Plan
from quantlab.harness.tflite_graph import GraphOp, read_ops

INT8_ONLY: dict[str, str] = {
    "hexagon": "the Hexagon delegate runs only int8/uint8-quantized ops",
}
"""Delegates that take no float op, with why."""

CPU_DELEGATES = frozenset({"cpu", "tflite-cpu", "litert-cpu", "coreml-cpu"})
LISTED = 6
"""Ops named per warning (the rest counted)."""


def _names(ops: list[GraphOp]) -> str:
    shown = ", ".join(f"{o.op_type}#{o.index}" for o in ops[:LISTED])
    return shown + (f" +{len(ops) - LISTED} more" if len(ops) > LISTED else "")


def job_warning(ops: list[GraphOp], delegate: str) -> tuple[str, list[GraphOp]] | None:
    """(why, the ops) when ``delegate`` cannot take these ops, else None."""
    if delegate in CPU_DELEGATES:
        return None
    flex = [o for o in ops if o.flex]
    if delegate in INT8_ONLY:
        floating = [o for o in ops if o.float_compute or o.flex]
        if floating:
            share = f"{len(floating)} of {len(ops)} ops"
            return (f"{share} compute in float and stay on the CPU ({INT8_ONLY[delegate]}; "
                    f"send an int8 variant): {_names(floating)}", floating)
    if flex:
        return (f"{len(flex)} Flex op(s) no delegate runs stay on the CPU: {_names(flex)}",
                flex)
    return None


def placement_warnings(plan: Plan) -> list[dict[str, Any]]:
    """One warning per planned .tflite job whose delegate cannot take the whole graph:
    ``{job_id, model, device, delegate, why, ops: [{index, op_type}]}``."""
    graphs: dict[str, list[GraphOp] | None] = {}
    out = []
    for job in plan.jobs:
        if job.model.format != "tflite":
            continue
        if job.model.path not in graphs:
            try:
                graphs[job.model.path] = read_ops(Path(job.model.path))
            except Exception:  # a file models.py accepted but this reader cannot: no warning
                graphs[job.model.path] = None
        ops = graphs[job.model.path]
        found = job_warning(ops, job.delegate) if ops else None
        if found is None:
            continue
        why, named = found
        out.append({"job_id": job.job_id, "model": job.model.scheme or Path(job.model.path).name,
                    "device": job.device_id, "delegate": job.delegate, "why": why,
                    "ops": [{"index": o.index, "op_type": o.op_type} for o in named]})
    return out
