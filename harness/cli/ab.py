"""Command: ab — an interleaved A/B of two jobs on one device (harness.ab), its run made,
launched and closed through the measurement session (quantlab.session)."""

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
    results_location,
)
from quantlab.harness.errors import UserError


def register(app: typer.Typer) -> None:
    """Add ab to the app."""
    app.command("ab")(ab)


def _one_job(model: str, device: str | None, delegate: str | None, threads: int,
             settings: Any, fleet: Any, side: str, option: str = "--delegate"
             ) -> tuple[Any, Any]:
    from quantlab.harness.plan import build_plan, expand_models, known_delegates, select_devices

    known = known_delegates(fleet)
    if delegate and delegate not in known:
        raise UserError(f"{option} {delegate}: unknown delegate",
                        hint=f"known delegates: {', '.join(sorted(known))}")

    refs = expand_models([model])
    if len(refs) != 1:
        raise UserError(f"{side} {model}: {len(refs)} models", hint="give one model file per side")
    devices = select_devices(fleet, [device] if device else [])
    if len(devices) != 1:
        raise UserError(f"--device: an A/B runs on one device, not {len(devices)}",
                        hint="name it with --device ID (see quantlab devices)")
    plan = build_plan(refs, devices, fleet, [delegate] if delegate else [], [threads], settings)
    if plan.skipped:
        s = plan.skipped[0]
        raise UserError(f"{side} {s.job.label()}: {s.reason}")
    return plan.jobs[0], devices[0]


@handle_errors
def ab(
    model_a: Annotated[str, typer.Argument(help="Side A (the baseline): a model file.")],
    model_b: Annotated[str | None, typer.Argument(help="Side B: a model file (default: A, "
                                                  "with --delegate-b or --threads-b).")] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="The one device both "
                                               "sides run on (default: the phone, else sim).")]
    = None,
    delegate: Annotated[str | None, typer.Option("--delegate", help="Delegate of A (and of B "
                                                 "unless --delegate-b).")] = None,
    delegate_b: Annotated[str | None, typer.Option("--delegate-b", help="Delegate of B.")]
    = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads of A (and B).")] = 1,
    threads_b: Annotated[int | None, typer.Option("--threads-b", min=1, help="Threads of B.")]
    = None,
    launches: Annotated[int, typer.Option("--launches", min=1, help="Launches per side, each a "
                                          "fresh process, alternating A B B A …")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Warm-up iterations per "
                                        "launch.")] = 10,
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="Measured iterations "
                                            "per launch.")] = 50,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds per launch.")]
    = 600.0,
    threshold: Annotated[str, typer.Option("--threshold", help="Slowdown of B that fails, "
                                           "e.g. 5%.")] = "5%",
    retry_timeout: Annotated[float, typer.Option("--retry-timeout", min=0.0, help="Seconds to "
                                                 "wait for a device that went away.")] = 120.0,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Interleaved A/B on one device: A and B alternate launch by launch, so drift falls on
    both; the verdict comes from the paired launches. Exit 1 when B is slower (or fails)."""
    from quantlab.harness.ab import merge_launches, paired_verdict, pairs_of
    from quantlab.harness.cli.bench import exit_if_incomplete, sigterm_as_ctrl_c
    from quantlab.harness.cli.progress import RichReporter
    from quantlab.harness.records import Plan, RawResult, Settings
    from quantlab.harness.results import entry_dict
    from quantlab.harness.retry import RetryPolicy
    from quantlab.harness.verdicts.latency import parse_threshold
    from quantlab.session import Session, discover

    limit = parse_threshold(threshold)
    settings = Settings(warmup=warmup, iterations=iterations, repeats=launches,
                        timeout_s=timeout)
    fleet = discover()
    job_a, dev = _one_job(model_a, device, delegate, threads, settings, fleet, "A")
    job_b, _ = _one_job(model_b or model_a, dev.id, delegate_b or delegate,
                        threads_b or threads, settings, fleet, "B",
                        "--delegate-b" if delegate_b else "--delegate")
    if job_a.job_id == job_b.job_id:
        raise UserError("A and B are the same job",
                        hint="give another model as B, or --delegate-b / --threads-b")
    session = Session.open(results_location(results), fleet=fleet,
                           retry=RetryPolicy(wait_s=retry_timeout))
    run_id = session.start(Plan(jobs=(job_a, job_b)), [dev], settings)
    with sigterm_as_ctrl_c(), RichReporter(2 * launches, verbose) as reporter:
        done, interrupted = session.interleave(run_id, job_a, job_b, launches, reporter)
    counts = f"{len(done[job_a.job_id])} + {len(done[job_b.job_id])} launches, order A B B A"
    kept: list[tuple[Any, RawResult]] = []
    for job, other in ((job_a, job_b), (job_b, job_a)):
        got = done[job.job_id]
        if got:
            kept.append((job, merge_launches(job, got,
                                             f"interleaved with {other.label()}: {counts}")))
        elif not interrupted and any(r.status != "ok" for r in done[other.job_id]):
            kept.append((job, RawResult.failure(
                job.job_id, f"not run: the other side failed first ({other.label()})")))
    run = session.finish(run_id, session.store_results(run_id, kept), interrupted=interrupted)
    record = session.store.load_run(run_id)
    entries = {e.job.job_id: e for e in record.entries}
    a_ok = all(r.status == "ok" for r in done[job_a.job_id]) and done[job_a.job_id]
    b_ok = all(r.status == "ok" for r in done[job_b.job_id]) and done[job_b.job_id]
    if a_ok and b_ok:
        statistic, pairs = pairs_of(done[job_a.job_id], done[job_b.job_id])
        result = paired_verdict(job_a.label(), job_b.label(), statistic, pairs, limit)
    else:
        from quantlab.harness.ab import ABResult

        failed = None if interrupted else next(
            (r for r in done[job_a.job_id] + done[job_b.job_id] if r.status != "ok"), None)
        result = ABResult(job_a.label(), job_b.label(), "mean",
                          verdict="failed" if failed and not b_ok and a_ok else "untestable",
                          reason=failed.error if failed else
                          f"{'interrupted' if interrupted else 'stopped'} before both sides ran")
    data = {"run_id": run_id, "device": dev.id, "threshold": limit,
            "a": entry_dict(record, entries[job_a.job_id]),
            "b": entry_dict(record, entries[job_b.job_id]), "ab": result.as_dict()}
    if json_out:
        print_json(data)
    else:
        _print(result, run_id, limit)
        console.print(f"[dim]stored as run {run_id} · quantlab show {run_id}[/]")
    if interrupted:
        err_console.print("[yellow]interrupted[/]: the launches that finished are stored")
        raise typer.Exit(130)
    exit_if_incomplete(run, hint=f"fix that, then run the A/B again (quantlab show {run_id} "
                       "has what was stored)")
    if result.verdict in ("slower", "failed"):
        raise typer.Exit(1)


def _print(result: Any, run_id: str, threshold: float) -> None:
    from rich.table import Table

    from quantlab.harness.cli.tables import fmt_ms

    table = Table(title=f"Interleaved A/B (run {run_id}; {result.statistic} per launch)",
                  title_justify="left")
    table.add_column("pair", justify="right")
    table.add_column("A", justify="right")
    table.add_column("B", justify="right")
    table.add_column("B/A", justify="right")
    for k, p in enumerate(result.pairs, 1):
        table.add_row(str(k), fmt_ms(p.a_ms), fmt_ms(p.b_ms), f"×{p.ratio:.3f}")
    console.print(table)
    console.print(f"A: {result.a}\nB: {result.b}", soft_wrap=True)
    colour = {"slower": "red", "faster": "green", "failed": "red"}.get(result.verdict, "yellow")
    if result.ratio is not None and result.ratio_ci95 is not None:
        console.print(f"B/A ×{result.ratio:.3f} [95% CI {result.ratio_ci95[0]:.3f}–"
                      f"{result.ratio_ci95[1]:.3f}], p = {result.p_value:.2g}: "
                      f"[{colour}]{result.verdict}[/] (threshold {100 * threshold:g}%)")
    else:
        console.print(f"[{colour}]{result.verdict}[/]: {result.reason}", soft_wrap=True)
    console.print(f"[dim]{result.test}[/]", soft_wrap=True)

