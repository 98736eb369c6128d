"""Commands: report (HTML), compare (CI gate), recommend, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    handle_errors,
    print_json,
    results_location,
)


def register(app: typer.Typer) -> None:
    """Add report, compare, recommend and export to the app."""
    app.command()(report)
    app.command()(compare)
    app.command()(recommend)
    app.command()(export)


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


@handle_errors
def report(
    run_ids: Annotated[
        list[str] | None, typer.Argument(help="Run ids or prefixes (default: latest).")
    ] = None,
    html_path: Annotated[str, typer.Option("--html", help="Where to write the HTML file.")]
    = "results/report.html",
    baseline: Annotated[str | None, typer.Option("--baseline", help="Run to compare against.")]
    = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write one self-contained HTML report (plots inline, opens from disk)."""
    from harness.report.html import write_report
    from harness.store import Store

    store = Store.open(results_location(results))
    path = write_report(store, list(run_ids or []), Path(html_path), baseline)
    if json_out:
        print_json({"html": str(path)})
    else:
        console.print(f"report written: [bold]{path}[/]")


@handle_errors
def compare(
    run_a: Annotated[str, typer.Argument(help="Baseline run id (or prefix).")],
    run_b: Annotated[str, typer.Argument(help="New run id (or prefix).")],
    threshold: Annotated[str, typer.Option("--threshold", help="Slowdown that fails, e.g. 5%.")]
    = "5%",
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compare run B against baseline A; exit 1 if any job got significantly slower."""
    from harness.report.compare import compare_runs, parse_threshold
    from harness.store import Store

    limit = parse_threshold(threshold)
    store = Store.open(results_location(results))
    c = compare_runs(store.load_run(run_a), store.load_run(run_b), limit)
    if json_out:
        print_json(c.as_dict())
    else:
        table = Table(title=f"{c.new} vs baseline {c.baseline} (threshold "
                      f"{100 * c.threshold:g}%)", title_justify="left")
        table.add_column("variant", overflow="fold", max_width=26)
        table.add_column("device", overflow="fold", max_width=12)
        table.add_column("delegate", overflow="fold", max_width=10)
        table.add_column("thr", justify="right")
        table.add_column("base", justify="right")
        table.add_column("new", justify="right")
        table.add_column("ratio [95% CI]", justify="right")
        table.add_column("verdict", overflow="fold", max_width=14)
        colors = {"slower": "red", "faster": "green"}
        for m in c.matches:
            col = colors.get(m.verdict, "dim")
            table.add_row(m.model, m.device, m.delegate, str(m.threads),
                          _ms(m.baseline_median_ms), _ms(m.new_median_ms),
                          f"×{m.ratio:.3f}\n[dim][{m.ratio_ci95[0]:.3f}–{m.ratio_ci95[1]:.3f}][/]",
                          f"[{col}]{m.verdict}[/]")
        console.print(table)
        console.print(f"[dim]{c.test}[/]")
        for lab in c.only_in_baseline:
            console.print(f"[yellow]only in baseline[/]: {lab}", soft_wrap=True)
        for lab in c.only_in_new:
            console.print(f"[yellow]only in new run[/]: {lab}", soft_wrap=True)
    if c.regressed:
        raise typer.Exit(1)


@handle_errors
def recommend(
    run_id: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")] = "latest",
    max_drop: Annotated[float, typer.Option("--max-drop", help="Largest accepted accuracy drop.")]
    = 0.03,
    by: Annotated[str, typer.Option("--by", help="Rank by latency, energy or size.")]
    = "latency",
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Name, per device, the best variant + delegate that passes the accuracy gate."""
    from harness.report.recommend import as_dicts
    from harness.report.recommend import recommend as make
    from harness.store import Store

    store = Store.open(results_location(results))
    record = store.load_run(run_id)
    evals = store.evaluations({e.job.model.sha256 for e in record.entries})
    recs = make(record, evals, max_drop=max_drop, by=by)
    if json_out:
        print_json({"run_id": record.run.run_id, "by": by, "max_drop": max_drop,
                    "devices": as_dicts(recs)})
        return
    table = Table(title=f"Recommendation for run {record.run.run_id} (by {by})",
                  title_justify="left")
    table.add_column("device", overflow="fold", max_width=14)
    table.add_column("best", overflow="fold", max_width=26)
    table.add_column("median", justify="right")
    table.add_column("accuracy", overflow="fold", max_width=16)
    table.add_column("runner-up (gives up)", overflow="fold", max_width=30)
    for r in recs:
        if r.best is None:
            table.add_row(r.device, f"[red]none[/]: {r.note}", "–", "–", "–")
            continue
        b = r.best
        acc: Any = b.accuracy if b.drop is None else f"{b.accuracy} (drop {b.drop:.3g})"
        runner = (f"{r.runner_up.model} · {r.runner_up.delegate}\n[dim]{r.gives_up}[/]"
                  if r.runner_up else "–")
        table.add_row(r.device, f"[bold]{b.model}[/] · {b.delegate} · {b.threads}t",
                      _ms(b.latency_ms), acc, runner)
    console.print(table)
    for r in recs:
        console.print(f"[dim]{r.device}: {r.note}[/]", soft_wrap=True)


@handle_errors
def export(
    run_id: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, json or parquet.")] = "csv",
    out: Annotated[str, typer.Option("--out", help="Folder for results/samples/ops files.")]
    = "export",
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write flat tables (results, samples, ops) of one run, one file each."""
    from harness.report.export import export_run
    from harness.store import Store

    store = Store.open(results_location(results))
    written = export_run(store, run_id, fmt, Path(out))
    if json_out:
        print_json({k: str(v) for k, v in written.items()})
    else:
        for name, path in written.items():
            console.print(f"{name}: {path}")
