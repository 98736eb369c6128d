"""Commands that read the store: runs (the list) and show (one run)."""

from __future__ import annotations

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
)
from quantlab.harness.errors import UserError


def register(app: typer.Typer) -> None:
    """Add runs and show to the app."""
    app.command("runs")(runs)
    app.command("show")(show)


@handle_errors
def runs(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs to list.")] = 20,
    tag: Annotated[str | None, typer.Option(
        "--tag", help="Only runs with this tag (T matches the tag T and every T=…).")] = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List stored runs, newest first, with their tags."""
    from quantlab._results import opened_store
    from quantlab.harness.cli.tables import runs_table

    with opened_store(results) as store:
        rows = store.list_runs(limit, tag=tag)
        location = store.location
    if json_out:
        print_json({"runs": rows})
        return
    console.print(runs_table(rows, location))
    if not rows and tag:
        err_console.print(f"no run has the tag {tag!r}", markup=False, highlight=False)
    elif not rows:
        err_console.print("no runs yet: try [bold]quantlab demo[/] or [bold]quantlab bench[/]")


@handle_errors
def show(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix, or 'latest'.")] = "latest",
    job: Annotated[str | None, typer.Argument(help="With --raw: a job id (or prefix) whose raw "
                                              "files to list or print.", show_default=False)]
    = None,
    ops: Annotated[bool, typer.Option("--ops", help="Also print the top ops of each job.")]
    = False,
    raw: Annotated[bool, typer.Option("--raw", help="List the run's raw runner output; with "
                                      "JOB, that job's (printed when it has one file).")]
    = False,
    raw_file: Annotated[str | None, typer.Option("--file", help="With --raw JOB: print this raw "
                                                 "file byte for byte.")] = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show one stored run: results, failures, warnings (top ops with --ops, raw output with
    --raw)."""
    from quantlab._results import opened_store

    if (job is not None or raw_file is not None) and not raw:
        raise UserError("a JOB or --file is only taken with --raw",
                        hint="quantlab show RUN --raw JOB [--file NAME]")
    with opened_store(results) as store:
        if raw:
            from quantlab.harness.cli.raw import show_raw

            show_raw(store, run_id, job, raw_file, json_out)
            return
        from quantlab.harness.results import run_dict

        data = run_dict(store.load_run(run_id))
    if json_out:
        print_json(data)
        return
    print_run(data, ops)


def print_run(data: dict[str, Any], ops: bool = False) -> None:
    """A stored run for people: header, results table, energy, failures, warnings."""
    from quantlab.harness.cli.tables import (
        energy_lines,
        model_label,
        ops_table,
        results_table,
        startup_table,
        sustained_table,
    )

    console.print(f"[bold]Run {data['run_id']}[/] · {data['status']} · {data['created_at']} · "
                  f"host {data['host']}")
    console.print(results_table(data["results"], title="Results"))
    for line in energy_lines(data["results"]):
        console.print(line, soft_wrap=True)
    for r in data["results"]:
        label = f"{model_label(r['model'])} · {r['device']['id']} · {r['delegate']}"
        if r["status"] in ("failed", "skipped", "interrupted") and r["error"]:
            console.print(f"[yellow]{r['status']}[/] {label}: {r['error']}", soft_wrap=True)
        for w in r["warnings"]:
            console.print(f"[yellow]warning[/] {label}: {w}", soft_wrap=True)
        if r["status"] == "ok" and r["energy"] is None and r["energy_unavailable_reason"] \
                and r["settings"].get("energy"):
            console.print(f"[dim]energy {label}: {r['energy_unavailable_reason']}[/]")
    for r in data["results"]:
        if r.get("stability"):
            from quantlab.harness.stability import describe as stability_text

            console.print(f"stability {model_label(r['model'])} · {r['device']['id']} · "
                          f"{r['delegate']}: {stability_text(r['stability'])}", style="dim",
                          soft_wrap=True, markup=False, highlight=False)
    if any(r.get("startup") for r in data["results"]):
        console.print(startup_table(data["results"]))
        for why in sorted({str(r["startup"]["warm_unavailable"]) for r in data["results"]
                           if r.get("startup") and r["startup"].get("warm_unavailable")}):
            console.print(f"no warm start: {why}", style="dim", soft_wrap=True, markup=False)
    for r in data["results"]:
        if r.get("sustained"):
            from quantlab.harness.sustained import describe

            console.print(sustained_table(r))
            console.print(f"sustained {model_label(r['model'])} · {r['device']['id']} · "
                          f"{r['delegate']}: {describe(r['sustained'])}", soft_wrap=True,
                          markup=False)
    if ops:
        for r in data["results"]:
            if r["ops"]:
                console.print(ops_table(r))
