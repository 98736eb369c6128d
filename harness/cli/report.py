"""Commands: report (HTML), compare (CI gate), recommend, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    err_console,
    handle_errors,
    print_json,
    results_location,
)
from quantlab.harness.cli.options import GateOptions, with_options
from quantlab.harness.export_formats import format_names


def register(app: typer.Typer) -> None:
    """Add report, compare, recommend and export to the app."""
    app.command()(report)
    app.command()(compare)
    app.command()(recommend)
    app.command()(export)


@handle_errors
def report(
    run_ids: Annotated[
        list[str] | None, typer.Argument(help="Run ids or prefixes (default: latest).")
    ] = None,
    html_path: Annotated[str, typer.Option("--html", help="Where to write the HTML file.")]
    = "results/report.html",
    baseline: Annotated[str | None, typer.Option("--baseline", help="Run to compare against.")]
    = None,
    history: Annotated[bool, typer.Option(
        "--history", help="Write the trends page instead: one plot per (model, device, "
        "delegate, threads) series across runs, change points marked.")] = False,
    tag: Annotated[str | None, typer.Option("--tag", help="With --history: only runs with "
                                            "this tag.")] = None,
    last: Annotated[int, typer.Option("--last", min=1, help="With --history: how many of the "
                                      "newest runs.")] = 30,
    overlays: Annotated[bool, typer.Option(
        "--overlays", help="Also write each job's Model Explorer overlays (quantlab explore) "
        "beside the report, in REPORT_overlays/JOB/, linked from the delegate matrix.")]
    = False,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write one self-contained HTML report (plots inline, opens from disk); with --history,
    the trends across runs."""
    from quantlab.harness.report.html import write_report
    from quantlab.harness.store import Store

    store = Store.open(results_location(results))
    if history:
        from quantlab.harness.errors import UserError
        from quantlab.harness.report.html import write_history_report
        from quantlab.harness.verdicts.history import load_history

        if run_ids or baseline:
            raise UserError("--history takes no run ids or --baseline",
                            hint="narrow it with --tag and --last")
        found = load_history(store, tag=tag, last=last)
        path = write_history_report(store, found, Path(html_path))
    else:
        path = write_report(store, list(run_ids or []), Path(html_path), baseline, overlays)
    if json_out:
        print_json({"html": str(path)})
    else:
        console.print(f"report written: [bold]{path}[/]")


@handle_errors
@with_options(gate=GateOptions)
def compare(
    run_a: Annotated[str, typer.Argument(help="Baseline run id (or prefix).")],
    run_b: Annotated[str, typer.Argument(help="New run id (or prefix).")],
    gate: GateOptions,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compare run B against baseline A; exit 1 if any job got significantly slower or now
    fails, or a job of A is missing from B (unless --allow-missing), and, with
    --fail-untestable, if any pair cannot be tested."""
    from quantlab._report import compare_in
    from quantlab._results import opened_store
    from quantlab.harness.report.ci import write_outputs

    with opened_store(results) as store:
        c = compare_in(store, run_a, run_b, threshold=gate.threshold or "5%", match=gate.match,
                       allow_missing=gate.allow_missing)
    for written in write_outputs({"junit": gate.junit, "markdown": gate.markdown},
                                 comparison=c):
        err_console.print(f"[dim]written {written}[/]")
    if json_out:
        print_json(c.as_dict())
    else:
        print_comparison(c)
    if c.fails or (gate.fail_untestable and c.untestable):
        raise typer.Exit(1)


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else "–"


def print_comparison(c: Any) -> None:
    """The comparison table and the lines that explain it (reasons, tests, left out)."""
    from quantlab.harness.cli.tables import comparison_table

    methods = {m.method for m in c.matches if m.method}
    console.print(comparison_table(c))
    console.print(f"[dim]matched on {','.join(c.match_keys)}[/]", soft_wrap=True)
    for m in c.matches:
        if m.reason:
            console.print(f"[yellow]{m.verdict}[/] {m.new_label}: {m.reason}", soft_wrap=True)
        if m.drift is not None and m.drift.flagged:
            colour = "red" if m.drift.verdict == "slower" else "green"
            console.print(f"[{colour}]drift {m.drift.verdict}[/] {m.new_label}: "
                          f"{m.drift.text().split(': ', 1)[1]}", soft_wrap=True)
    for m in c.matches:
        conf = m.confirmation
        if conf and conf["state"] == "confirmed":
            console.print(f"[red]confirmed[/] {m.new_label}: slower again in {conf['launches']} "
                          f"confirmation launches (run {conf['run_id']})", soft_wrap=True)
        b, n = (m.startup or {}).get("baseline", {}), (m.startup or {}).get("new", {})
        if b.get("warm_ms") is not None or n.get("warm_ms") is not None:  # a delegate cache
            console.print(f"first second {m.new_label}: cold start {_ms(b['cold_ms'])} → "
                          f"{_ms(n['cold_ms'])}, warm start {_ms(b['warm_ms'])} → "
                          f"{_ms(n['warm_ms'])} (start times get no verdict)",
                          markup=False, highlight=False)
    for method in sorted(methods):  # explanations: wrapped to the terminal's width
        console.print(f"[dim]{method}: {c.tests[method]}[/]")
    if methods:
        console.print(f"[dim]{c.rule}[/]")
    if c.drift_rule:
        console.print(f"[dim]{c.drift_rule}[/]")
    for u in [*c.only_in_baseline, *c.only_in_new]:
        red = u.verdict == "failed" or (u.verdict == "missing" and not c.allow_missing)
        where = "baseline" if u in c.only_in_baseline else "new run"
        what = f"{u.verdict}: {u.reason}" if u.reason else u.status
        if u.verdict == "missing" and c.allow_missing:
            what += " (accepted with --allow-missing)"
        console.print(f"[{'red' if red else 'yellow'}]only in {where}[/]: {u.label} ({what})",
                      soft_wrap=True)


@handle_errors
def recommend(
    run_id: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")] = "latest",
    max_drop: Annotated[float | None, typer.Option(
        "--max-drop", help="Largest accepted accuracy drop for every variant (default: each "
        "variant's own gate from `quantlab evaluate`: the scheme's max drop).")] = None,
    by: Annotated[str, typer.Option("--by", help="Rank by latency, energy or size.")]
    = "latency",
    energy_class: Annotated[str | None, typer.Option(
        "--energy-class", help="With --by energy: the comparability class to rank "
        "(device-rails, battery-gauge, process-estimate, host-package; default: the most "
        "common on each device). Other classes are listed as left out.")] = None,
    min_top1: Annotated[float | None, typer.Option(
        "--min-top1", min=0.0, max=1.0, help="The numerics gate's least top-1 agreement for "
        "class outputs measured on a device (default 0.99).")] = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Name, per device, the best variant + delegate that passes the accuracy gate."""
    from quantlab._report import recommend_in, recommendation_dict
    from quantlab._results import opened_store
    from quantlab.harness.cli.tables import recommendation_table

    with opened_store(results) as store:
        record, recs = recommend_in(store, run_id, max_drop=max_drop, by=by,
                                    energy_class=energy_class, min_top1=min_top1)
    if json_out:
        print_json(recommendation_dict(record.run.run_id, recs, max_drop=max_drop, by=by,
                                       energy_class=energy_class))
        return
    console.print(recommendation_table(record.run.run_id, by, recs))
    for r in recs:
        if r.runner_up is not None and r.gives_up:
            console.print(f"[dim]{r.device}: runner-up {r.runner_up.model} · "
                          f"{r.runner_up.delegate} gives up {r.gives_up}[/]", soft_wrap=True)
        console.print(f"[dim]{r.device}: {r.note}[/]", soft_wrap=True)
        energy = {f"{d['model']} · {d['delegate']}: {d['reason']}" for d in r.energy_left_out}
        for why in r.excluded:  # energy's left-outs are listed below with their figures
            if why not in energy:
                console.print(f"[yellow]left out[/] {r.device}: {why}", soft_wrap=True)
    if by == "energy":
        _print_energy_ranking(recs)


def _print_energy_ranking(recs: list[Any]) -> None:
    """The ranked energy figures with their class and label, and what was left out, why."""
    for r in recs:
        for tag, c in (("best", r.best), ("runner-up", r.runner_up)):
            if c is not None and c.energy_mj is not None:
                console.print(f"{r.device} {tag}: {c.model} · {c.delegate} — "
                              f"{c.energy_mj:.3g} mJ/inference, {r.energy_class} "
                              f"[dim]({c.energy_label or 'no label'})[/]", soft_wrap=True)
        for d in r.energy_left_out:
            console.print(f"[yellow]left out[/] {r.device}: {d['model']} · {d['delegate']} "
                          f"({d['mj_per_inference']:.3g} mJ/inference): {d['reason']}",
                          soft_wrap=True)


@handle_errors
def export(
    run_id: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")],
    fmt: Annotated[str, typer.Option("--format", help=f"{format_names()}.")] = "csv",
    out: Annotated[str, typer.Option("--out", help="Folder for results/samples/ops files.")]
    = "export",
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write flat tables (results, samples, ops) of one run, one file each."""
    from quantlab.harness.report.export import export_run
    from quantlab.harness.store import Store

    store = Store.open(results_location(results))
    written = export_run(store, run_id, fmt, Path(out))
    if json_out:
        print_json({k: str(v) for k, v in written.items()})
    else:
        for name, path in written.items():
            console.print(f"{name}: {path}")
