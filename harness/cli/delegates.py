"""Commands: delegates (the delegate matrix of a run), diff (op-level diff of two jobs),
compile (NPU ahead-of-time compilation of a variant)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    handle_errors,
    print_json,
    results_location,
)


def register(app: typer.Typer) -> None:
    """Add delegates, diff and compile to the app."""
    app.command()(delegates)
    app.command()(diff)
    app.command(name="compile")(compile_variant)


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def _num(value: Any, fmt: str = ".4f") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return format(value, fmt)


@handle_errors
def delegates(
    run_ids: Annotated[list[str] | None, typer.Argument(
        help="Run ids or prefixes (default: latest).")] = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Per (model, device), one row per delegate: latency, speedup vs CPU, init, how much of
    the graph the delegate took, the ops left on the CPU, and numerics vs the float model."""
    from quantlab.harness.cli.tables import label_column, new_table, number_column
    from quantlab.harness.report.delegates import delegate_rows
    from quantlab.harness.store import Store

    store = Store.open(results_location(results))
    records = [store.load_run(r) for r in (run_ids or ["latest"])]
    rows = delegate_rows(records)
    if json_out:
        print_json({"runs": [r.run.run_id for r in records], "rows": rows})
        return
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["device"], row["model"]), []).append(row)
    runs = ", ".join(r.run.run_id for r in records)
    not_run: dict[tuple[str, str, str], list[str]] = {}  # (status, delegate, why) → models
    for (device, model), dev_rows in groups.items():
        stats = {(r["latency"] or {}).get("statistic") for r in dev_rows if r["latency"]}
        table = new_table(f"{model} on {device} (run {runs})")
        label_column(table, "delegate", 14)
        for col in ("latency", "×cpu", "cold", "warm", "delegated"):
            number_column(table, col)
        label_column(table, "CPU fallback", 14)
        number_column(table, "cosine")
        number_column(table, "SQNR")
        notes = []
        for r in dev_rows:
            lat = r["latency"]
            latency = (f"{lat['statistic'] if len(stats) > 1 else ''} {_ms(lat['value_ms'])}"
                       .strip() if lat else f"[red]{r['status']}[/]")
            ops = (f"{r['ops_delegated']}/{r['ops_total']}" if r["ops_total"] is not None
                   else (str(r["ops_delegated"]) if r["ops_delegated"] is not None else "?"))
            ops += f" in {r['partitions']}p" if r["partitions"] else ""
            fb = r["fallback_ops"]
            fallback = (", ".join(f"{o['op_type']}#{o['index']}" for o in fb[:2])
                        + (f" +{len(fb) - 2}" if len(fb) > 2 else "")) if fb else "–"
            reasons = [f"{o['op_type']}#{o['index']}: {o['reason']}" for o in fb if o.get("reason")]
            if reasons:
                notes.append(f"{r['delegate']} left on the CPU: " + "; ".join(reasons[:4])
                             + (f" (+{len(reasons) - 4} more, --json)" if len(reasons) > 4 else ""))
            n = r["numerics"] or {}
            cosine, sqnr = _num(n.get("cosine")), f"{_num(n.get('sqnr_db'), '.0f')} dB"
            if not n:
                note = r["numerics_note"] or ""
                cosine, sqnr = (("[red]failed[/]", "") if note.startswith("failed") else
                                ("[yellow]unchecked[/]", "") if note.startswith("not checked")
                                else ("–", "–"))
                if r["status"] == "ok" and (note.startswith(("failed", "not checked"))
                                            or verbose):
                    notes.append(f"{r['delegate']} numerics: {note}")
            elif n.get("top1_agreement") is not None and n["top1_agreement"] < 1.0:
                notes.append(f"{r['delegate']}: top-1 agrees with float on "
                             f"{n['top1_agreement']:.1%} of the inputs")
            table.add_row(f"{r['delegate']} {r['threads']}t", latency,
                          f"{r['speedup_vs_cpu']:.2f}" if r["speedup_vs_cpu"] else "–",
                          _ms(r["cold_start_ms"]), _ms(r["warm_start_ms"]), ops, fallback,
                          cosine, sqnr)
            if r["status"] != "ok":
                not_run.setdefault((r["status"], r["delegate"], r["error"] or ""),
                                   []).append(model)
        console.print(table)
        if len(stats) == 1:
            console.print(f"[dim]latency: {next(iter(stats))}s; speedup = CPU delegate's "
                          f"{next(iter(stats))} / this delegate's; cold/warm: time to the "
                          "first result without / with the delegate's cache; cosine and SQNR: "
                          "outputs vs the float model on the same inputs[/]")
        for note in notes:
            console.print(f"[dim]{note}[/]")
    for (status, delegate, why), models in not_run.items():
        console.print(f"[yellow]{delegate} {status}[/] ({len(models)} job"
                      f"{'s' if len(models) > 1 else ''}: {', '.join(models)}): {why}")


@handle_errors
def diff(
    job_a: Annotated[str, typer.Argument(help="Job id (or prefix, or RUN:JOB) before.")],
    job_b: Annotated[str, typer.Argument(help="Job id (or prefix, or RUN:JOB) after.")],
    top: Annotated[int, typer.Option("--top", min=1, help="Op types/ops to print.")] = 15,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Op-level diff of two jobs (two delegates, two variants, two runs): ops that moved
    between the CPU and a delegate, time per op type and per op, partitions."""
    from rich import box
    from rich.table import Table

    from quantlab.harness.report.diff import diff_jobs, find_job
    from quantlab.harness.store import Store

    store = Store.open(results_location(results))
    d = diff_jobs(find_job(store, job_a), find_job(store, job_b))
    if json_out:
        print_json(d)
        return
    for side in ("a", "b"):
        s = d[side]
        lat = s["latency"]
        taken = "?" if s["ops_delegated"] is None else s["ops_delegated"]
        total = "?" if s["ops_total"] is None else s["ops_total"]
        console.print(f"[bold]{side.upper()}[/] {s['label']} (job {s['job_id']}): "
                      f"{lat['statistic'] + ' ' + _ms(lat['value_ms']) if lat else s['status']}"
                      f"; ops delegated {taken}/{total} in {len(s['partitions'])} partition(s)",
                      soft_wrap=True)
    changes = d["placement_changes"]
    if changes:
        t = Table(title=f"Placement changes ({len(changes)})", title_justify="left",
                  box=box.SIMPLE_HEAD)
        for c in ("#", "op type", "A", "B"):
            t.add_column(c)
        for c in changes:
            t.add_row(str(c["index"]), c["op_type"] or "?", c["a"], c["b"])
        console.print(t)
    else:
        console.print("placement changes: none" + (" (see below)" if d["missing"] else ""))
    t = Table(title="Time per op type", title_justify="left", box=box.SIMPLE_HEAD)
    for c in ("op type", "A", "B", "delta", "A share", "B share"):
        t.add_column(c, justify="left" if c == "op type" else "right")
    for o in d["ops"][:top]:
        t.add_row(o["op_type"], _ms(o["a_ms"]), _ms(o["b_ms"]),
                  f"{o['delta_ms']:+.3g} ms" if o["delta_ms"] is not None else "–",
                  f"{100 * o['a_share']:.1f}%" if o["a_share"] is not None else "–",
                  f"{100 * o['b_share']:.1f}%" if o["b_share"] is not None else "–")
    console.print(t)
    if d["per_op"]:
        t = Table(title="Per op (largest change first)", title_justify="left",
                  box=box.SIMPLE_HEAD)
        for c in ("#", "op type", "A", "B", "delta", "A ran in", "B ran in"):
            t.add_column(c, justify="right" if c in ("A", "B", "delta", "#") else "left")
        for o in sorted(d["per_op"], key=lambda o: -abs(o["delta_ms"]))[:top]:
            t.add_row(str(o["index"]), o["op_type"] or "?", _ms(o["a_ms"]), _ms(o["b_ms"]),
                      f"{o['delta_ms']:+.3g} ms", o["a_where"] or "?", o["b_where"] or "?")
        console.print(t)
    for m in d["missing"]:
        console.print(f"[yellow]missing[/]: {m}", soft_wrap=True)


@handle_errors
def compile_variant(
    variant: Annotated[str, typer.Argument(help="A .tflite variant to compile.")],
    target: Annotated[str, typer.Option("--target", help="SoC model, e.g. SM8650 (Qualcomm), "
                                        "MT6989 (MediaTek).")],
    out: Annotated[str | None, typer.Option("--out", help="Folder for the compiled models "
                                            "(default: beside the variant, npu/<SOC>/).")] = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compile a variant ahead of time for one NPU (ai-edge-litert AOT + the vendor's SDK);
    `litert-npu` jobs use it on phones with that SoC while its record (the variant's sha256,
    the compiler's versions) still matches."""
    from quantlab.agents.android.npu_compile import compile_for_soc

    result = compile_for_soc(variant, target, out)
    if json_out:
        print_json(result)
        return
    console.print(f"compiled for {result['target']}: [bold]{result['path']}[/] "
                  f"({result['backend']})")
    for note in result.get("notes", []):
        console.print(f"[dim]{note}[/]", soft_wrap=True)
