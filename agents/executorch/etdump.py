"""An ETDump read with ExecuTorch's own Inspector into quantlab's per-op rows: each XNNPACK
kernel inside a delegate, what each delegate call spent outside its kernels, each operator
left to the portable kernels, against ``Method::execute``.

Every place an ETDump comes from reads it here: the simulator's runner process
(:mod:`.runner`, mode ``profile``) and a file pulled from a phone (``executor_runner
--etdump_path``, :mod:`quantlab.agents.android.executorch`). Needs the ``torch`` extra.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

PROFILER = "ETDump read with executorch.devtools.Inspector"


class EtdumpError(Exception):
    """The ETDump holds no execution to read (the job's profile is unavailable, with why)."""


def read_etdump(path: Path) -> dict[str, Any]:
    """``{"ops", "ops_model_ms", "ops_note", "profiler"}`` from the ETDump at ``path``: op rows
    in ms per inference (Inspector's p10/p50/p90 in ``detail``), ``ops_model_ms`` the mean
    ``Method::execute``, ``ops_note`` when the rows hold under 85% of it."""
    from executorch.devtools import Inspector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no debug buffer: no tensor data, as asked
        try:
            inspector = Inspector(etdump_path=str(path))
        except Exception as exc:
            raise EtdumpError(f"ExecuTorch's Inspector could not read {path.name}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
                              ) from None
    rows: list[dict[str, Any]] = []
    execute_ms, kernels_ms, partition = None, 0.0, 0
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for event in block.events:
            perf = event.perf_data
            if perf is None:
                continue
            times = {"p10": float(perf.p10), "p50": float(perf.p50), "p90": float(perf.p90)}
            if event.name == "Method::execute":
                execute_ms = float(perf.avg)
            elif event.is_delegated_op:
                kernels_ms += float(perf.avg)
                rows.append(_row(rows, event.name, float(perf.avg), "XNNPACK",
                                 {**times, "partition": partition}))
            elif event.name == "DELEGATE_CALL":
                rows.append(_row(rows, f"DELEGATE_CALL #{partition} (outside its kernels)",
                                 max(float(perf.avg) - kernels_ms, 0.0), "XNNPACK",
                                 {"partition": partition, "call_ms": float(perf.avg)}))
                partition, kernels_ms = partition + 1, 0.0
            elif event.name != "OPERATOR_CALL":  # OPERATOR_CALL wraps the native call
                rows.append(_row(rows, str(event.name), float(perf.avg), None, times))
    if execute_ms is None:
        raise EtdumpError("ETDump holds no Method::execute event")
    shown = sum(r["avg_ms"] for r in rows)
    note = None if shown >= 0.85 * execute_ms else (
        f"the op rows hold {shown / execute_ms:.0%} of Method::execute; the rest is the "
        "runtime's own work between operators")
    return {"ops": rows, "ops_model_ms": execute_ms, "ops_note": note, "profiler": PROFILER}


def _row(rows: list[dict[str, Any]], kernel: str, avg_ms: float, delegate: str | None,
         detail: dict[str, Any]) -> dict[str, Any]:
    return {"index": len(rows), "kernel": kernel, "avg_ms": avg_ms, "delegate": delegate,
            "detail": detail}
