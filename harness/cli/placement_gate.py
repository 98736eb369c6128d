"""The placement gate at the end of ``bench``: ``--min-delegated SHARE`` and ``--no-fallback``
(or a plan file's ``[gate] min_delegated`` / ``no_fallback``). Every job of the run that asked a
delegate (not a CPU baseline) is judged on its recorded placement
(:func:`quantlab.harness.report.delegates.placement`): a delegate that took less of the graph
than the share, or left any op on the CPU under ``--no-fallback``, fails with the ops left on the
CPU and the runtime's reason where it printed one; ``bench`` then exits 1.

A job whose placement was not recorded is ``unchecked`` (named, not failed): the gate judges
what was measured.
"""

from __future__ import annotations

from typing import Any

from quantlab.harness.cli.common import err_console
from quantlab.harness.errors import UserError


def gate_options(min_delegated: float | None, no_fallback: bool,
                 plan_gate: dict[str, Any] | None) -> tuple[float | None, bool]:
    """The bounds: the options where given, else the plan's ``[gate]`` keys."""
    plan_gate = plan_gate or {}
    if min_delegated is None and plan_gate.get("min_delegated") is not None:
        min_delegated = float(plan_gate["min_delegated"])
    if min_delegated is not None and not 0.0 <= min_delegated <= 1.0:
        raise UserError(f"--min-delegated {min_delegated}: a share between 0 and 1",
                        hint="e.g. --min-delegated 0.9 (90 % of the graph's ops on the delegate)")
    return min_delegated, bool(no_fallback or plan_gate.get("no_fallback"))


def _fallback_text(ops: list[dict[str, Any]], limit: int = 8) -> str:
    named = [f"{o.get('op_type')}#{o.get('index')}" + (f" ({o['reason']})" if o.get("reason")
                                                       else "") for o in ops[:limit]]
    more = f" +{len(ops) - limit} more" if len(ops) > limit else ""
    return ", ".join(named) + more


def judge(place: dict[str, Any], delegate: str, min_share: float | None,
          no_fallback: bool) -> tuple[bool | None, str]:
    """(passed, why) of one job's placement; passed is None when it was not recorded."""
    total, taken = place.get("ops_total"), place.get("ops_delegated")
    share = place.get("delegated_share")
    if share is None or total is None or taken is None:
        return None, f"placement not recorded ({place.get('placement_source')})"
    took = f"{delegate} took {taken} of {total} ops ({share:.0%})"
    fallback = place.get("fallback_ops") or []
    left = (f"; left on the CPU: {_fallback_text(fallback)}" if fallback else
            (f"; {place['fallback_ops_note']}" if place.get("fallback_ops_note") else ""))
    if min_share is not None and share < min_share:
        return False, f"{took} < {min_share:.0%}{left}"
    if no_fallback and taken < total:
        return False, f"{took}, --no-fallback{left}"
    return True, took


def judge_run(record: Any, min_share: float | None, no_fallback: bool) -> dict[str, Any]:
    """``{"min_delegated", "no_fallback", "verdicts": [{job_id, model, device, delegate,
    passed, why, delegated_share, fallback_ops}], "failed": [labels]}`` over the run's
    delegated jobs that finished ``ok``."""
    from quantlab.harness.report.delegates import CPU_DELEGATES, model_name, placement

    verdicts = []
    for e in record.entries:
        if e.status != "ok" or e.job.delegate in CPU_DELEGATES:
            continue
        place = placement(e.raw, e.job.delegate)
        ok, why = judge(place, e.job.delegate, min_share, no_fallback)
        verdicts.append({"job_id": e.job.job_id, "model": model_name(e),
                         "device": e.job.device_id, "delegate": e.job.delegate, "passed": ok,
                         "why": why, "delegated_share": place.get("delegated_share"),
                         "fallback_ops": place.get("fallback_ops") or []})
    return {"min_delegated": min_share, "no_fallback": no_fallback, "verdicts": verdicts,
            "failed": [f"{v['model']} · {v['device']} · {v['delegate']}"
                       for v in verdicts if v["passed"] is False]}


def placement_exit_code(store: Any, run_id: str, data: dict[str, Any], min_share: float | None,
                        no_fallback: bool, json_out: bool) -> int:
    """Judge the run's placement when a bound was asked for: the verdicts go under
    ``"placement_gate"`` in ``data``, each failure (and unchecked job) is named on stderr
    (terminal output); 1 when one failed, else 0."""
    from rich.markup import escape

    if min_share is None and not no_fallback:
        return 0
    gate = judge_run(store.load_run(run_id), min_share, no_fallback)
    data["placement_gate"] = gate
    if not json_out:
        for v in gate["verdicts"]:
            if v["passed"] is not True:
                word = "[red]placement failed[/]" if v["passed"] is False else \
                    "[yellow]placement unchecked[/]"
                err_console.print(f"{word} {escape(v['model'])} · {escape(v['device'])} · "
                                  f"{escape(v['delegate'])}: {escape(v['why'])}", soft_wrap=True)
    return 1 if gate["failed"] else 0
