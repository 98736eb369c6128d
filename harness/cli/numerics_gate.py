"""The numerics gate at the end of ``bench``: every job of the run whose outputs were checked
(``--numerics``, or ``--profile-ops`` on the simulator) is judged by
:func:`quantlab.harness.numerics.verdict` (cosine, top-1 agreement for class outputs, NaN/Inf), the
failures are named, and with ``--numerics`` asked for, a failure makes ``bench`` exit 1.

Kept apart from :mod:`quantlab.harness.cli.bench` so the bench command itself only calls in here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantlab.harness.cli.common import err_console
from quantlab.harness.numerics import DEFAULT_MIN_COSINE, DEFAULT_MIN_TOP1, verdict


def min_top1_of(option: float | None, plan_gate: dict[str, Any] | None) -> float:
    """The top-1 bound: ``--min-top1``, else the plan's ``[gate] min_top1``, else 0.99."""
    if option is not None:
        return option
    if plan_gate and plan_gate.get("min_top1") is not None:
        return float(plan_gate["min_top1"])
    return DEFAULT_MIN_TOP1


def judge_run(record: Any, min_top1: float) -> dict[str, Any] | None:
    """``{"min_cosine", "min_top1", "verdicts": [{job_id, model, device, delegate, passed,
    why}], "failed": [labels]}`` for the jobs of a stored run that carry numerics; None
    when none does."""
    verdicts = []
    for e in record.entries:
        if e.raw is None or not e.raw.numerics:
            continue
        ok, why = verdict(e.raw.numerics, DEFAULT_MIN_COSINE, min_top1)
        model = e.job.model.scheme or Path(e.job.model.path).name
        verdicts.append({"job_id": e.job.job_id, "model": model, "device": e.job.device_id,
                         "delegate": e.job.delegate, "passed": ok, "why": why})
    if not verdicts:
        return None
    return {"min_cosine": DEFAULT_MIN_COSINE, "min_top1": min_top1, "verdicts": verdicts,
            "failed": [f"{v['model']} · {v['device']} · {v['delegate']}"
                       for v in verdicts if v["passed"] is False]}


def numerics_exit_code(store: Any, run_id: str, data: dict[str, Any], min_top1: float,
                       json_out: bool) -> int:
    """Judge the run's numerics, put the verdicts under ``"numerics_gate"`` in ``data``,
    name each failure on stderr (terminal output); 1 when one failed and the run's jobs
    asked for ``--numerics``, else 0."""
    from rich.markup import escape

    record = store.load_run(run_id)
    gate = judge_run(record, min_top1)
    if gate is None:
        return 0
    data["numerics_gate"] = gate
    asked = any(e.job.settings.numerics for e in record.entries)
    if not json_out:
        for v in gate["verdicts"]:
            if v["passed"] is False:
                err_console.print(f"[red]numerics failed[/] {escape(v['model'])} · "
                                  f"{escape(v['device'])} · {escape(v['delegate'])}: "
                                  f"{escape(v['why'])}", soft_wrap=True)
        if gate["failed"] and not asked:
            err_console.print("[dim]numerics were checked as part of --profile-ops: bench "
                              "exits 1 for them only with --numerics[/]")
    return 1 if gate["failed"] and asked else 0
