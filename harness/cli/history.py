"""Command: history — one series per (model, device, delegate, threads) across runs, with
change points (the nightly lab's "what changed since last week?")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

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

ModelFilterOpt = Annotated[str | None, typer.Option(
    "--model", help="Only this model: file name, path, sha256, scheme, or the form history "
    "prints, e.g. 'int8 (model.tflite)'.")]
DeviceFilterOpt = Annotated[str | None, typer.Option("--device", "-d", help="Only this device.")]
DelegateFilterOpt = Annotated[str | None, typer.Option("--delegate", help="Only this delegate.")]
TagFilterOpt = Annotated[str | None, typer.Option(
    "--tag", help="Only runs with this tag (T matches the tag T and every T=…).")]
LastOpt = Annotated[int, typer.Option("--last", min=1, help="How many of the newest matching "
                                      "runs to include.")]
SPARKS = "▁▂▃▄▅▆▇█"

if TYPE_CHECKING:
    from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add history to the app."""
    app.command("history")(history)


@handle_errors
def history(
    model: ModelFilterOpt = None,
    device: DeviceFilterOpt = None,
    delegate: DelegateFilterOpt = None,
    tag: TagFilterOpt = None,
    last: LastOpt = 30,
    threshold: Annotated[str, typer.Option("--threshold", help="Smallest shift that counts as "
                                           "a change, e.g. 5% (the test is compare's).")]
    = "5%",
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Trends across runs: each series' points (median or mean, CI, method), its change
    points (a change not yet confirmed by a following run is marked unconfirmed) and its
    drift: the cumulative change since a fixed reference, and a trend over those runs."""
    from quantlab.harness.store import Store
    from quantlab.harness.verdicts.history import load_history
    from quantlab.harness.verdicts.latency import parse_threshold

    limit = parse_threshold(threshold)
    store = Store.open(results_location(results))
    found = load_history(store, model=model, device=device, delegate=delegate, tag=tag,
                         last=last, threshold=limit)
    if json_out:
        print_json(found.as_dict())
        return
    if not found.series:
        if model:
            err_console.print(f"no matching runs for --model {model!r} (a file name, path, "
                              "sha256, scheme, or the form history prints, e.g. "
                              "'int8 (model.tflite)'): see quantlab runs",
                              soft_wrap=True, markup=False, highlight=False)
        else:
            err_console.print("no matching runs: see [bold]quantlab runs[/]")
        return
    console.print(history_table(found))
    for line in change_lines(found):
        console.print(line, soft_wrap=True)
    console.print(f"[dim]{len(found.runs)} run(s), oldest → newest; change: {found.rule}; "
                  f"threshold {100 * found.threshold:g}%[/]", soft_wrap=True)
    from quantlab.harness.verdicts.drift import DRIFT_RULE

    console.print(f"[dim]{DRIFT_RULE}[/]", soft_wrap=True)


def _ms(value: float | None) -> str:
    from quantlab.harness.cli.tables import fmt_ms

    return fmt_ms(value)


def sparkline(values: list[float | None], min_span: float = 0.10) -> str:
    """One character per value, from the smallest value up; ``·`` for a point without a
    figure. The scale spans at least ``min_span`` of the largest value, so run-to-run
    noise of a few percent draws a flat line rather than a cliff."""
    known = [v for v in values if v is not None]
    if not known:
        return "·" * len(values)
    lo, hi = min(known), max(known)
    span = max(hi - lo, min_span * abs(hi))
    out = []
    for v in values:
        if v is None:
            out.append("·")
        elif span == 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[round((v - lo) / span * (len(SPARKS) - 1))])
    return "".join(out)


def _trend(series: Any) -> str:
    chars = list(sparkline([p.value_ms for p in series.points]))
    for c in series.change_points:
        colour = "red" if c.verdict == "slower" else "green"
        style = f"bold {colour}" if c.status == "confirmed" else f"{colour} underline"
        chars[c.point] = f"[{style}]{chars[c.point]}[/]"
    for i, p in enumerate(series.points):
        if p.status == "failed":
            chars[i] = "[red]✗[/]"
    return "".join(chars)


def history_table(found: Any) -> Table:
    """A compact table: one row per series with a sparkline of its points."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"History of {len(found.runs)} run(s)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", overflow="fold", max_width=24)
    table.add_column("device", overflow="fold", max_width=12)
    table.add_column("delegate", overflow="fold", max_width=10)
    table.add_column("thr", justify="right")
    table.add_column("trend", no_wrap=True)
    table.add_column("latest [95% CI]", justify="right")
    table.add_column("change", overflow="fold", max_width=26)
    table.add_column("since ref", justify="right", no_wrap=True)
    for s in found.series:
        latest = next((p for p in reversed(s.points) if p.value_ms is not None), None)
        cell = "–"
        if latest is not None:
            cell = f"{latest.statistic} {_ms(latest.value_ms)}"
            if latest.method != "per-iteration":
                cell += f" [dim]({latest.method})[/]"
            if latest.ci95:
                cell += f"\n[dim][{latest.ci95[0]:.3g}–{latest.ci95[1]:.3g}][/]"
        change = "–"
        if s.change_points:
            c = s.change_points[-1]
            colour = "red" if c.verdict == "slower" else "green"
            ratio = f" ×{c.ratio:.2f}" if c.ratio is not None else ""
            change = f"[{colour}]{c.verdict}{ratio}[/] {c.run_id}"
            if c.unconfirmed:
                change += " [yellow]unconfirmed[/]"
        table.add_row(s.model, s.device, s.delegate, str(s.threads), _trend(s), cell, change,
                      _cumulative(s.drift))
    return table


def _cumulative(drift: Any) -> str:
    """The drift column: the cumulative change since the reference, red/green when it is a
    drift."""
    if drift is None or drift.cumulative is None:
        return "–"
    text = f"×{drift.cumulative:.3f}/{drift.runs}r"
    if drift.flagged:
        colour = "red" if drift.verdict == "slower" else "green"
        return f"[bold {colour}]{text}[/]"
    return text


def change_lines(found: Any) -> list[str]:
    """One line per change point (and per blip a later run did not confirm)."""
    lines = []
    for s in found.series:
        label = f"{s.model} · {s.device} · {s.delegate} · {s.threads}t"
        for c in [*s.change_points, *s.transients]:
            colour = "red" if c.verdict == "slower" else "green"
            ci = f" [{c.ratio_ci95[0]:.3f}–{c.ratio_ci95[1]:.3f}]" if c.ratio_ci95 else ""
            stat = f"{c.statistic} " if c.statistic else ""
            what = {"unconfirmed": "[yellow]unconfirmed[/]: the next run confirms it or not",
                    "confirmed": f"confirmed by {c.checked_by}",
                    "not confirmed": f"[dim]not confirmed by {c.checked_by} (a one-run "
                                     "blip)[/]"}[c.status]
            lines.append(f"[{colour}]{c.verdict}[/] {label} at {c.run_id}: "
                         f"{stat}{_ms(c.baseline_ms)} → {_ms(c.new_ms)} "
                         f"(×{c.ratio:.3f}{ci}, {c.method}, vs {c.baseline_run}) — {what}")
        if s.drift is not None and s.drift.flagged:
            colour = "red" if s.drift.verdict == "slower" else "green"
            text = s.drift.text().replace(f"drift {s.drift.verdict}",
                                          f"[{colour}]drift {s.drift.verdict}[/]", 1)
            lines.append(f"{text.split(':', 1)[0]} {label}:{text.split(':', 1)[1]}")
    return lines
