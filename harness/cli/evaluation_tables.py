"""Terminal tables of ``quantlab evaluate``: the accuracy table per variant and, with
``--per-delegate``, the verdict per (variant, device, delegate). One line per row in an
80-column terminal (:mod:`quantlab.harness.cli.tables`); long reasons go below the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from quantlab.harness.cli.common import console
from quantlab.harness.cli.tables import label_column, new_table, number_column, shorten

PASS, FAIL = "[green]pass[/]", "[red]FAIL[/]"


def _figure(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def print_per_delegate(gate: dict[str, Any]) -> None:
    """The per-delegate gate as a table; below it, why a pair failed or has no verdict,
    and the variants no stored run measured."""
    table = new_table(f"Gate per delegate: host accuracy AND device numerics "
                      f"(cosine ≥ {gate['min_cosine']:g}, top-1 ≥ "
                      f"{100 * gate.get('min_top1', 0.99):g}%)")
    label_column(table, "variant", 14)
    label_column(table, "device", 16)
    label_column(table, "delegate", 12)
    number_column(table, "cosine")
    number_column(table, "SQNR dB")
    table.add_column("gate", no_wrap=True)
    notes = []
    for r in gate["rows"]:
        n = r["numerics"] or {}
        name = r["scheme"] or Path(r["path"]).name
        mark = {True: PASS, False: FAIL, None: "[yellow]none[/]"}[r["passed"]]
        table.add_row(name, r["device"], r["delegate"], _figure(n.get("cosine"), ".4f"),
                      _figure(n.get("sqnr_db"), ".1f"), mark)
        if r["passed"] is not True:
            notes.append(f"{name} · {r['device']} · {r['delegate']}: {r['why']}")
    console.print(table)
    for note in notes:
        console.print(f"[dim]{note}[/]")
    if gate["not_benchmarked"]:
        console.print(f"[dim]not benchmarked in this store: "
                      f"{', '.join(gate['not_benchmarked'])}[/]")


def _edge_cases(v: dict[str, Any]) -> str:
    bad = [e["case"] for e in v["edge_cases"] if not e["ok"]]
    odd = [e["case"] for e in v["edge_cases"] if e["ok"] and
           (e.get("saturated") or e.get("diverged"))]
    if bad:
        return "[red]" + ", ".join(bad) + "[/]"
    return "[yellow]odd: " + ", ".join(odd) + "[/]" if odd else "ok"


def _interval_cell(gate: dict[str, Any]) -> str:
    """Half the width of the drop's 95 % interval, short (``±0.6`` points; the metric's own
    units where lower is better; "–" without one): the bounds are printed below the table."""
    interval = gate.get("interval") or {}
    low, high = interval.get("low"), interval.get("high")
    if low is None or high is None or low != low or high != high:  # none, or NaN
        return "–"
    half = (high - low) / 2
    return f"±{half:.2g}" if gate.get("drop_pt") is None else f"±{100 * half:.1f}"


def print_evaluation(report: dict[str, Any]) -> None:
    """One row per variant: metric, drop, gate, fidelity of the first output, the label-free
    agreement, calibration (mean score) shift, edge cases; errors and skipped schemes below."""
    metric = report["metric"]
    task = report.get("task") or {}
    agree = task.get("label_free_metric", "top1_agreement")
    console.print(f"[dim]task {task.get('name')} ({task.get('why')})"
                  + "".join(f"; {n}" for n in task.get("notes", [])) + "[/]")
    table = new_table(f"{task.get('name', 'accuracy')} on {report['samples']} samples: "
                      f"{metric} (fp32 {report['reference']['value']:.4f}); agree = {agree}")
    table.add_column("scheme", no_wrap=True, overflow="ellipsis", min_width=12, max_width=14)
    for col in (metric, "drop", "±95%"):
        number_column(table, shorten(col, 8))
    table.add_column("gate", no_wrap=True)
    for col in ("SQNR", "cosine", "agree", "shift"):
        number_column(table, col)
    label_column(table, "edge", 16)
    errors = []
    reasons: list[tuple[bool, str]] = []
    for v in report["variants"]:
        name = v["scheme"] or Path(v["path"]).name
        if v.get("error"):
            table.add_row(name, "–", "–", "–", FAIL,
                          "", "", "", "", "[red]error[/]")
            errors.append(f"{name}: {v['error']}")
            continue
        f0 = v["fidelity"]["outputs"][0]
        gate = v["gate"]
        drop = f"{gate['drop_pt']:+.2f}pt" if gate.get("drop_pt") is not None \
            else _figure(gate["drop"], "+.4f")
        if gate.get("why"):
            reasons.append((gate["passed"], f"{name}: {gate['why']}"))
        cal = v.get("calibration") or {}
        table.add_row(
            name, _figure(gate["value"], ".4f"), drop, _interval_cell(gate),
            PASS if gate["passed"] else FAIL,
            "∞" if f0["sqnr_db"] is None and f0["cosine"] is not None  # identical outputs
            else _figure(f0["sqnr_db"], ".1f"),
            _figure(f0["cosine"], ".4f"), _figure(v["fidelity"].get(agree), ".3f"),
            _figure(cal.get("mean_shift"), "+.3f"), _edge_cases(v))
    console.print(table)
    for passed, line in reasons:  # each gate with its max and its drop's 95 % interval
        console.print(f"[dim]{escape(line)}[/]" if passed else f"[red]{escape(line)}[/]",
                      soft_wrap=True)
    for e in errors:
        console.print(f"[red]{e}[/]")
    _print_recalibration(report["variants"])
    if report.get("gate_confidence"):
        console.print("[dim]--gate-confidence: a variant fails only when the whole 95 % "
                      "interval of its drop lies beyond its gate[/]")
    for s in report.get("skipped", []):
        console.print(f"[dim]not evaluated: {s['scheme']} ({s['reason']})[/]")


def _print_recalibration(variants: list[dict[str, Any]]) -> None:
    """evaluate --recalibrate: each variant's fitted temperature and its held-out ECE."""
    for v in variants:
        rec = (v.get("calibration") or {}).get("recalibration")
        if not rec:
            continue
        name = v["scheme"] or Path(v["path"]).name
        if rec.get("method") == "score threshold":
            at = "no threshold reaches it" if rec["threshold"] is None else \
                f"score ≥ {rec['threshold']:.3f} gives recall {rec['recall']:.3f}"
            console.print(f"recalibrated {name}: fp32's recall at score ≥ "
                          f"{rec['reference_threshold']:g} is {rec['reference_recall']:.3f}; "
                          f"{at} (at {rec['reference_threshold']:g}: "
                          f"{rec['recall_at_reference_threshold']:.3f})", soft_wrap=True)
            continue
        part = rec["split"]
        console.print(f"recalibrated {name}: temperature "
                      f"{rec['temperature']:.3f} (fit on {part['fit']} samples, seed "
                      f"{part['seed']}); ECE on {part['held_out']} held-out "
                      f"{_figure(rec['ece_before'], '.4f')} → "
                      f"{_figure(rec['ece_after'], '.4f')}", soft_wrap=True)
