"""The HTML report's accuracy × device × delegate section: task metrics measured from each
device's own outputs (``quantlab evaluate --device``), stored per (variant, device, delegate).

A matrix (variants × device · delegate: the metric and the gate's verdict) and a table with
each row's drops: against the float model on the host (what the gate judges, with its paired
interval) and against the same variant on the host (what the device changed), the samples
and what ran them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantlab.harness.report.html_markup import _e, _nodata, _table
from quantlab.harness.store import RunRecord, Store


def _pt(drop: Any, metric: str, pt: Any) -> str:
    if drop is None:
        return "–"
    return f"{float(pt):+.2f} pt" if pt is not None else f"{float(drop):+.4g} ({metric})"


def _interval(gate: dict[str, Any]) -> str:
    from quantlab.harness.quantize.gate import interval_text

    iv = gate.get("interval") or {}
    if iv.get("low") is None or iv.get("high") is None:
        return "–"
    metric = str(gate.get("metric"))
    lower = frozenset() if gate.get("drop_pt") is not None else frozenset({metric})
    return interval_text(metric, float(iv["low"]), float(iv["high"]), lower)


def device_accuracy(store: Store, records: list[RunRecord]) -> str:
    """The section's body: every stored device evaluation of the runs' variants."""
    shas = {e.job.model.sha256 for r in records for e in r.entries}
    found = store.device_evaluations(shas)
    if not found:
        return _nodata("no variant of these runs was evaluated on a device "
                       "(quantlab evaluate VARIANTS --data D --device DEV --delegate D)")
    evs = sorted(found.values(), key=lambda ev: (str(ev.get("scheme")), ev["device"],
                                                 ev["delegate"]))
    name = {ev["variant_sha256"]: ev.get("scheme") or Path(str(ev["path"])).name for ev in evs}
    columns = sorted({(ev["device"], ev["delegate"]) for ev in evs})
    cells = {(ev["variant_sha256"], ev["device"], ev["delegate"]): ev for ev in evs}
    head = "".join(f"<th>{_e(d)} · {_e(g)}</th>" for d, g in columns)
    body = []
    for sha in dict.fromkeys(ev["variant_sha256"] for ev in evs):
        row = [f"<td>{_e(name[sha])}</td>"]
        for d, g in columns:
            ev = cells.get((sha, d, g))
            if ev is None:
                row.append('<td class="n">–</td>')
                continue
            value = "–" if ev.get("value") is None else f"{ev['value']:.4g}"
            mark = "pass" if ev.get("passed") else "FAIL"
            row.append(f'<td class="n {"good" if ev.get("passed") else "bad"}">{_e(value)} '
                       f"{mark}</td>")
        body.append("<tr>" + "".join(row) + "</tr>")
    metric = str(evs[0].get("metric"))
    matrix = (f"<p>{_e(metric)} from each device's own outputs, scored by the host's task "
              "plug-in; pass/FAIL: the scheme's gate on the drop against the float model on "
              f"the host.</p><table><thead><tr><th>variant</th>{head}</tr></thead><tbody>"
              + "".join(body) + "</tbody></table>")
    rows = []
    for ev in evs:
        p = ev.get("payload") or {}
        gate, vs = p.get("gate") or {}, p.get("vs_host") or {}
        run = p.get("run") or {}
        rows.append([name[ev["variant_sha256"]], ev["device"], ev["delegate"], ev.get("metric"),
                     "–" if ev.get("value") is None else f"{ev['value']:.4g}",
                     _pt(ev.get("drop"), str(ev.get("metric")), gate.get("drop_pt")),
                     _interval(gate), _pt(vs.get("drop"), str(ev.get("metric")),
                                          vs.get("drop_pt")),
                     "passed" if ev.get("passed") else "failed", p.get("samples"),
                     f"{ev.get('runtime') or '–'} {ev.get('runtime_version') or ''}".strip(),
                     p.get("error") or run.get("runner_detail") or run.get("runner") or "–"])
    return matrix + _table(["variant", "device", "delegate", "metric", "value",
                            "drop vs float (host)", "95 % interval", "drop vs same variant "
                            "(host)", "gate", "samples", "runtime", "runner / reason"], rows,
                           {4, 5, 7, 9})
