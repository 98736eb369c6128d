"""Commands that measure: plan (a dry run) and bench (run and store), through the one
measurement session (:mod:`quantlab.session`); also the helpers every measuring command
shares: the progress display, Ctrl-C/SIGTERM and the incomplete-run exit."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
    results_location,
)
from quantlab.harness.cli.options import GateOptions, MeasureOptions, with_options
from quantlab.harness.errors import UserError

if TYPE_CHECKING:
    from quantlab.harness.records import Plan
    from quantlab.session import Session

DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", "-d", help="Comma-separated device ids, or 'all' (every attached "
                 "device, the simulator included). Default: attached phones, else 'sim'."),
]
DelegateOpt = Annotated[
    str | None,
    typer.Option("--delegate", help="Comma-separated delegates (sim: xnnpack, cpu, et-xnnpack for "
                 ".pte; Android: cpu, xnnpack, gpu, nnapi, hexagon, qnn; iOS: coreml-*, "
                 "tflite-*). Default: each device's first for the model's runtime."),
]
ThreadsOpt = Annotated[str, typer.Option("--threads", help="Comma-separated thread counts.")]
PlanOpt = Annotated[str | None, typer.Option(
    "--plan", help="A plan file (TOML, see docs/nightly-lab.md): models, devices, delegates, "
    "threads, measuring options, gate and compare rules. Options given beside it override "
    "the file's.")]
TagOpt = Annotated[list[str] | None, typer.Option(
    "--tag", help="Tag the run (repeatable): --tag nightly --tag git=$SHA.")]
BaselineOpt = Annotated[str | None, typer.Option(
    "--baseline", help="Compare the new run with this run, or with the newest finished run "
    "carrying this tag, and exit as compare does (with the options --threshold, --match, "
    "--fail-untestable; --junit and --markdown also without it, one test case per job).")]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", envvar="QUANTLAB_CLUSTER", help="Run "
                                                "on a lab's devices (head HOST:PORT, see "
                                                "docs/lab.md) instead of local ones.")]


def register(app: typer.Typer) -> None:
    """Add plan and bench to the app."""
    app.command("plan")(plan)
    app.command("bench")(bench)


# ---------------------------------------------------------------------------- plan


def _plan_table(the_plan: Plan) -> Any:
    from quantlab.harness.cli.tables import label_column, model_label, new_table

    table = new_table(f"Plan: {len(the_plan.jobs)} jobs, {len(the_plan.skipped)} skipped")
    label_column(table, "model", 18)
    label_column(table, "device", 12)
    label_column(table, "delegate", 12)
    table.add_column("status / reason", overflow="fold", max_width=40)
    for job in the_plan.jobs:
        table.add_row(model_label({"path": job.model.path, "scheme": job.model.scheme}),
                      job.device_id, f"{job.delegate}/{job.threads}t", "[green]planned[/]")
    for s in the_plan.skipped:
        table.add_row(model_label({"path": s.job.model.path, "scheme": s.job.model.scheme}),
                      s.job.device_id, f"{s.job.delegate}/{s.job.threads}t",
                      f"[yellow]skipped[/]: {s.reason}")
    return table


@handle_errors
@with_options(measure=MeasureOptions)
def plan(
    ctx: typer.Context,
    measure: MeasureOptions,
    models: Annotated[list[str] | None, typer.Argument(help="Model files or variants folders.")]
    = None,
    device: DeviceOpt = None,
    delegate: DelegateOpt = None,
    threads: ThreadsOpt = "1",
    cluster: ClusterOpt = None,
    plan_file: PlanOpt = None,
    resolve: Annotated[str | None, typer.Option(
        "--resolve", metavar="CHANGE", help="For each job, the noise of its newest stored "
        "result and the repeats and iterations it would take to resolve a change this size "
        "(e.g. 5%).")] = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show the jobs a bench would run, what it would skip and why, and the jobs whose
    delegate cannot take the whole graph (float ops to Hexagon, Flex ops), naming the ops;
    runs nothing. With --plan, the plan file expanded as bench --plan expands it (the gate is
    shown, not run). With --resolve 5%, what each job needs to resolve a 5% change at its
    stored noise."""
    from quantlab._bench import make_plan, measure_settings
    from quantlab.harness.cli import plan_run
    from quantlab.harness.placement_check import placement_warnings
    from quantlab.harness.planfile import load_plan_file
    from quantlab.harness.records import to_dict

    given = plan_run.given_on_command_line(ctx)
    pf = load_plan_file(plan_file) if plan_file else None
    opts = plan_run.merged_options(pf, dict(ctx.params), given)
    if not opts["models"]:
        raise UserError("no models given",
                        hint="quantlab plan MODEL.tflite [...] or --plan PLAN.toml")
    settings = measure_settings(**{k: opts[k] for k in measure.as_kwargs()})
    if pf is not None:
        from quantlab.session import discover

        the_plan, _ = plan_run.plan_jobs(pf, opts, given, settings, discover(cluster))
    else:
        the_plan, _, _ = make_plan(opts["models"], device, delegate, threads, settings, cluster)
    summary = plan_run.plan_summary(pf, opts["models"]) if pf is not None else None
    warnings = placement_warnings(the_plan)
    rows = None
    if resolve is not None:
        from quantlab.harness.cli.resolve import print_rows, resolve_rows
        from quantlab.harness.store import Store
        from quantlab.harness.sustained import parse_percent

        change = parse_percent(resolve, "--resolve") / 100
        rows = resolve_rows(Store.open(results_location(results)), list(the_plan.jobs), change)
    if json_out:
        print_json({"jobs": [{"job_id": j.job_id, **to_dict(j)} for j in the_plan.jobs],
                    "placement_warnings": warnings,
                    **({"resolve": rows} if rows is not None else {}),
                    "skipped": [{"job_id": s.job.job_id, **to_dict(s.job), "reason": s.reason}
                                for s in the_plan.skipped],
                    **({"plan_file": summary} if summary is not None else {}),
                    "schema_version": the_plan.schema_version})
        return
    console.print(_plan_table(the_plan))
    if summary is not None:
        _print_plan_summary(summary)
    if rows is not None:
        print_rows(rows, change)
    _print_placement_warnings(warnings)


def _print_placement_warnings(warnings: list[dict[str, Any]]) -> None:
    from rich.markup import escape

    for w in warnings:
        err_console.print(f"[yellow]placement[/] {escape(w['model'])} · {escape(w['device'])} · "
                          f"{escape(w['delegate'])}: {escape(w['why'])}", soft_wrap=True)


def _print_plan_summary(summary: dict[str, Any]) -> None:
    from rich.markup import escape

    lines = [f"plan {summary['path']} (sha256 {summary['sha256'][:12]}…)"]
    if summary["tags"]:
        lines.append(f"tags: {', '.join(summary['tags'])}")
    gate = summary["gate"]
    if gate is not None:
        folders = gate["folders"]
        where = (f"{len(folders)} variants folder(s)" if folders
                 else "nothing (no model is a variants folder)")
        lines.append(f"accuracy gate: bench evaluates {where} on {gate['data']} first")
    if summary.get("placement_gate"):
        lines.append("placement gate: " + ", ".join(
            f"{k} {v}" for k, v in summary["placement_gate"].items()))
    if summary["compare"]:
        lines.append("compare: " + ", ".join(f"{k} {v}" for k, v in summary["compare"].items()))
    for line in lines:
        console.print(f"[dim]{escape(line)}[/]", soft_wrap=True)


# ---------------------------------------------------------------------------- bench


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@handle_errors
@with_options(measure=MeasureOptions, gate=GateOptions)
def bench(
    ctx: typer.Context,
    measure: MeasureOptions,
    gate: GateOptions,
    models: Annotated[list[str] | None, typer.Argument(help="Model files or variants folders.")]
    = None,
    device: DeviceOpt = None,
    delegate: DelegateOpt = None,
    threads: ThreadsOpt = "1",
    resume: Annotated[str | None, typer.Option("--resume", help="Run the missing jobs of an "
                                               "interrupted or incomplete run (refused while "
                                               "another quantlab is still running it).")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="With --resume: take over a run "
                                        "whose owner is gone but cannot be checked (another "
                                        "host that crashed) once it has stopped beating.")]
    = False,
    retry_timeout: Annotated[float, typer.Option("--retry-timeout", min=0.0, help="Seconds to "
                                                 "wait for a device that went away.")] = 120.0,
    cluster: ClusterOpt = None,
    plan_file: PlanOpt = None,
    tag: TagOpt = None,
    baseline: BaselineOpt = None,
    min_top1: Annotated[float | None, typer.Option(
        "--min-top1", min=0.0, max=1.0, help="The numerics gate's least top-1 agreement of a "
        "delegate's class outputs (default: the plan's [gate] min_top1, else 0.99); with "
        "--numerics a job that fails the gate (cosine ≥ 0.99, NaN/Inf) makes bench exit 1.")
    ] = None,
    min_delegated: Annotated[float | None, typer.Option(
        "--min-delegated", help="The placement gate: a job whose delegate took less than this "
        "share of the graph's ops (0.9 = 90 %) fails, naming the ops left on the CPU; bench "
        "exits 1 (default: the plan's [gate] min_delegated).")] = None,
    no_fallback: Annotated[bool, typer.Option(
        "--no-fallback", help="The placement gate: a job whose delegate left any op on the CPU "
        "fails (plan files: [gate] no_fallback = true).")] = False,
    confirm: Annotated[int, typer.Option(
        "--confirm", min=0, help="With a baseline: a job judged slower is measured again with "
        "this many launches before it is reported; not slower again = 'not confirmed' "
        "(the plan's [measure] confirm).")] = 0,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Benchmark models on devices (or run a plan file); every measurement goes into the
    store. With --baseline, compare with it and exit as compare does. Outputs checked with
    --numerics are judged by the numerics gate, placement by --min-delegated/--no-fallback
    (the placement gate); a failure exits 1."""
    from quantlab._bench import make_plan, measure_settings
    from quantlab.harness.cli import plan_run
    from quantlab.harness.cli.placement_gate import gate_options, placement_exit_code
    from quantlab.harness.planfile import load_plan_file
    from quantlab.harness.retry import RetryPolicy
    from quantlab.harness.store import check_tags
    from quantlab.session import Session

    plan_run.check_output_paths(gate.junit, gate.markdown)
    if force and not resume:
        raise UserError("--force: only with --resume RUN_ID")
    given = plan_run.given_on_command_line(ctx)
    pf = load_plan_file(plan_file) if plan_file else None
    tags = check_tags([*(pf.tags if pf else ()), *(tag or [])])
    opts = plan_run.merged_options(pf, dict(ctx.params), given)
    min_share, strict = gate_options(min_delegated, no_fallback, pf.gate if pf else None)
    session = Session.open(results_location(results), cluster=cluster,
                           retry=RetryPolicy(wait_s=opts["retry_timeout"]))
    store = session.store
    gate_result: dict[str, Any] | None = None  # the plan's accuracy gate, when it ran
    if resume:
        resume = store.resolve_run_id(resume)
        plan_compare = pf.compare if pf else plan_run.stored_plan_compare(store, resume)
        rules = plan_run.compare_rules(plan_compare, dict(ctx.params), given)
        base_id = plan_run.resolve_baseline(store, rules, [resume],
                                            [*store.load_run(resume).tags, *tags])
        run_id, jobs = session.resume(resume, force)
        err_console.print(f"resuming {run_id}: {len(jobs)} job(s) left")
        skipped_count = 0
        if tags:
            store.add_tags(run_id, tags)
    else:
        rules = plan_run.compare_rules(pf.compare if pf else {}, dict(ctx.params), given)
        base_id = plan_run.resolve_baseline(store, rules, [], tags)
        if not opts["models"]:
            raise UserError("no models given",
                            hint="quantlab bench MODEL.tflite [...] or --plan PLAN.toml")
        settings = measure_settings(**{k: opts[k] for k in measure.as_kwargs()})
        if pf is not None:
            the_plan, chosen = plan_run.plan_jobs(pf, opts, given, settings, session.fleet)
            if pf.gate and pf.gate.get("data"):
                gate_result = plan_run.run_gate(pf, opts["models"], results_location(results))
        else:
            the_plan, _, chosen = make_plan(models or [], device, delegate, threads, settings,
                                            fleet=session.fleet)
        run_id = session.start(the_plan, chosen, settings, tags,
                               plan_text=pf.text if pf else None)
        jobs, skipped_count = list(the_plan.jobs), len(the_plan.skipped)
        for s in the_plan.skipped:
            err_console.print(f"[yellow]skipped[/] {s.job.label()}: {s.reason}", soft_wrap=True)
        if not json_out:
            from quantlab.harness.placement_check import placement_warnings

            _print_placement_warnings(placement_warnings(the_plan))
    accounts = dispatch_jobs(session, run_id, jobs, verbose)

    def compare_and_write(data: dict[str, Any]) -> int:
        from quantlab.harness.cli.numerics_gate import min_top1_of, numerics_exit_code

        confirm = None
        if opts.get("confirm"):
            from quantlab.harness.cli.confirm import confirm_slower

            def confirm(c: Any) -> Any:
                return confirm_slower(session, run_id, c, int(opts["confirm"]), c.threshold,
                                      c.match_keys)
        code = plan_run.finish_with_baseline(store, run_id, base_id, rules, gate.junit,
                                             gate.markdown, data, json_out, gate_result,
                                             confirm=confirm)
        numerics = numerics_exit_code(store, run_id, data,
                                      min_top1_of(min_top1, pf.gate if pf else None), json_out)
        placed = placement_exit_code(store, run_id, data, min_share, strict, json_out)
        return (plan_run.gate_exit_code(gate_result, data, json_out) or numerics or placed
                or code)

    _finish(session, run_id, accounts, json_out, skipped_count, compare_and_write)


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """While measuring, a SIGTERM (a CI job cancelled, ``kill``) stops the run as a Ctrl-C
    does: stored ``interrupted``, resumable."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def dispatch_jobs(session: Session, run_id: str, jobs: list[Any], verbose: bool) -> list[Any]:
    """Run stored jobs through the session with a progress display; after a Ctrl-C (or
    SIGTERM), which the session stores as an ``interrupted`` run, say how to resume and
    exit 130."""
    from quantlab.harness.cli.progress import RichReporter
    from quantlab.session import RunInterrupted

    with sigterm_as_ctrl_c():
        try:
            with RichReporter(len(jobs), verbose) as reporter:
                return session.dispatch(run_id, jobs, reporter)
        except RunInterrupted:
            pass
    err_console.print(f"[yellow]interrupted[/]: finished jobs are stored; resume with "
                      f"[bold]quantlab bench --resume {run_id}[/]")
    raise typer.Exit(130)


def exit_if_incomplete(data: dict[str, Any], hint: str | None = None) -> None:
    """One line and exit 1 when the session finished the run ``incomplete`` (jobs left
    unfinished), as every command that measures does."""
    from quantlab.harness.errors import RunIncomplete
    from quantlab.session import Session

    try:
        Session.check(data, hint)
    except RunIncomplete as exc:
        raise fail(exc.one_line(), 1) from None


def _finish(session: Session, run_id: str, accounts: list[Any], json_out: bool,
            skipped_count: int, then: Callable[[dict[str, Any]], int] | None = None) -> None:
    """Close the run, print it, run ``then`` (compare with a baseline, CI outputs) and
    exit 1 when a job failed or ``then`` says so, or with one line when the run is
    incomplete (jobs left unfinished: ``--resume`` finishes it)."""
    from quantlab.harness.cli.tables import accounts_line, energy_lines, model_label, results_table

    data = session.finish(run_id, accounts)
    code = 0
    if then is not None and json_out:
        code = then(data)
    if json_out:
        print_json(data)
    else:
        console.print(results_table(data["results"], title=f"Run {run_id}"))
        for line in energy_lines(data["results"]):
            console.print(line, soft_wrap=True)
        for r in data["results"]:
            if r["status"] == "ok" and r["energy"] is None and r["settings"].get("energy") \
                    and r["energy_unavailable_reason"]:
                console.print(f"[dim]energy {model_label(r['model'])} · {r['device']['id']}"
                              f" · {r['delegate']}: {r['energy_unavailable_reason']}[/]",
                              soft_wrap=True)
        if len({a.device_id for a in accounts}) > 1 or any(a.skipped for a in accounts):
            console.print(accounts_line(accounts))
        console.print(f"[dim]stored in {session.store.location} · quantlab show {run_id}[/]")
        if then is not None:
            code = then(data)
    exit_if_incomplete(data)
    if code or any(r["status"] == "failed" for r in data["results"]):
        raise typer.Exit(1)
