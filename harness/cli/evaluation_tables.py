"""Terminal tables of ``quantlab evaluate``: the accuracy table per variant and, with
``--per-delegate``, the verdict per (variant, device, delegate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.cli.common import console


def print_per_delegate(gate: dict[str, Any]) -> None:
    """The per-delegate gate as a table, and the variants no stored run measured."""
    from rich.table import Table

    table = Table(title=f"gate per delegate (accuracy on the host AND numerics on the device, "
                  f"cosine ≥ {gate['min_cosine']:g})")
    for col in ("variant", "device", "delegate", "cosine", "SQNR dB", "gate", "why"):
        table.add_column(col, overflow="fold")
    for r in gate["rows"]:
        n = r["numerics"] or {}
        cos, sqnr = n.get("cosine"), n.get("sqnr_db")
        mark = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[yellow]no verdict[/]"}
        table.add_row(r["scheme"] or Path(r["path"]).name, r["device"], r["delegate"],
                      "–" if cos is None else f"{cos:.4f}",
                      "–" if sqnr is None else f"{sqnr:.1f}", mark[r["passed"]], r["why"])
    console.print(table)
    if gate["not_benchmarked"]:
        console.print(f"[dim]not benchmarked in this store: "
                      f"{', '.join(gate['not_benchmarked'])}[/]")


def print_evaluation(report: dict[str, Any]) -> None:
    """One row per variant: metric, drop, gate, fidelity, calibration shift, edge cases."""
    from rich.table import Table

    metric = report["metric"]
    task = report.get("task") or {}
    agree = task.get("label_free_metric", "top1_agreement")
    console.print(f"[dim]task {task.get('name')} ({task.get('why')})"
                  + "".join(f"; {n}" for n in task.get("notes", [])) + "[/]")
    table = Table(
        title=f"{task.get('name', 'accuracy')} on {report['samples']} samples (reference fp32 "
        f"{metric} = {report['reference']['value']:.4f})"
    )
    for col in ("scheme", metric, "drop", "max", "gate", "SQNR dB", "cosine", agree,
                "score shift", "edge cases"):
        table.add_column(col)
    for v in report["variants"]:
        if v.get("error"):
            table.add_row(v["scheme"] or v["path"], "–", "–", f"{v['gate']['max_drop']:g}",
                          "[red]FAIL[/]", "", "", "", "", f"[red]{v['error'][:80]}[/]")
            continue
        f0 = v["fidelity"]["outputs"][0]
        bad = [e["case"] for e in v["edge_cases"] if not e["ok"]]
        odd = [e["case"] for e in v["edge_cases"] if e["ok"] and
               (e.get("saturated") or e.get("diverged"))]
        edge = (
            ("[red]" + ", ".join(bad) + "[/]")
            if bad
            else ("[yellow]saturated/diverged: " + ", ".join(odd) + "[/]" if odd else "ok")
        )
        gate = v["gate"]
        drop = f"{gate['drop_pt']:+.2f} pt" if gate.get("drop_pt") is not None \
            else f"{gate['drop']:+.4f}"
        value = v["fidelity"].get(agree)
        cal = v.get("calibration") or {}
        table.add_row(
            v["scheme"] or v["path"],
            f"{gate['value']:.4f}",
            drop,
            f"{gate['max_drop']:g}",
            "[green]pass[/]" if gate["passed"] else "[red]FAIL[/]",
            "∞" if f0["sqnr_db"] is None else f"{f0['sqnr_db']:.1f}",
            f"{f0['cosine']:.4f}",
            "" if value is None else f"{value:.3f}",
            "" if cal.get("mean_shift") is None else f"{cal['mean_shift']:+.4f}",
            edge,
        )
    console.print(table)
    for s in report.get("skipped", []):
        console.print(f"[dim]not evaluated: {s['scheme']} ({s['reason']})[/]")


