"""Commands of the benchmark spine: devices, plan, bench, runs, show."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    err_console,
    handle_errors,
    print_json,
    results_location,
    split_list,
    warn,
)
from harness.errors import UserError
from harness.records import DeviceInfo, Plan, Settings, to_dict

DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", "-d", help="Comma-separated device ids, or 'all' (every attached "
                 "device, the simulator included). Default: attached phones, else 'sim'."),
]
DelegateOpt = Annotated[
    str | None,
    typer.Option("--delegate", help="Comma-separated delegates (sim: xnnpack, cpu; Android: cpu, "
                 "xnnpack, gpu, nnapi, hexagon, qnn; iOS: coreml-*, tflite-*). Default: each "
                 "device's first."),
]
ThreadsOpt = Annotated[str, typer.Option("--threads", help="Comma-separated thread counts.")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Warm-up iterations per repeat.")]
ItersOpt = Annotated[int, typer.Option("--iterations", min=1,
                                       help="Measured iterations per repeat (at least).")]
MinTimeOpt = Annotated[float, typer.Option("--min-time", min=0.0,
                                           help="Keep measuring until this many seconds passed.")]
RepeatsOpt = Annotated[int, typer.Option("--repeats", min=1,
                                         help="Process-level repeats (each a fresh process).")]
ProfileOpt = Annotated[bool, typer.Option("--profile-ops", help="Per-operator latency profile.")]
InputsOpt = Annotated[str | None, typer.Option("--inputs", help=".npz with one array per input.")]
EnergyOpt = Annotated[bool, typer.Option("--energy", help="Measure energy where a sensor exists.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds per job attempt.")]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", envvar="QUANTLAB_CLUSTER", help="Run "
                                                "on a lab's devices (head HOST:PORT, see "
                                                "docs/lab.md) instead of local ones.")]


def register(app: typer.Typer) -> None:
    """Add devices, plan, bench, runs and show to the app."""
    app.command("devices")(devices)
    app.command("plan")(plan)
    app.command("bench")(bench)
    app.command("runs")(runs)
    app.command("show")(show)


# ---------------------------------------------------------------------------- devices


@handle_errors
def devices(json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """List every attached device (the simulator included) with its state and health."""
    from harness.plan import discover

    fleet = discover()
    if json_out:
        print_json({"devices": [to_dict(d) for d in fleet.devices], "notes": list(fleet.notes)})
        return
    table = Table(title="Devices", title_justify="left")
    for col in ("id", "platform", "name", "SoC", "OS", "state", "delegates"):
        table.add_column(col, overflow="fold")
    for d in fleet.devices:
        state = d.state if d.state == "ready" else f"[red]{d.state}[/]"
        table.add_row(d.id, d.platform, d.name, d.soc or "–",
                      d.os_version or "–", state, ", ".join(d.delegates))
    console.print(table)
    for d in fleet.devices:
        if d.state != "ready" and d.state_hint:
            warn(f"{d.id} is {d.state}: {d.state_hint}")
    for note in fleet.notes:
        err_console.print(f"[dim]{note}[/]")


# ---------------------------------------------------------------------------- plan


def _settings(warmup: int, iterations: int, min_time: float, repeats: int, profile_ops: bool,
              inputs: str | None, energy: bool, timeout: float) -> Settings:
    inputs_sha = None
    if inputs:
        from harness.models import file_sha256

        path = Path(inputs)
        if not path.is_file():
            raise UserError(f"--inputs {inputs}: no such file", hint="give an .npz file")
        if path.suffix != ".npz":
            raise UserError(f"--inputs {inputs}: not an .npz file",
                            hint="save inputs with numpy.savez(path, input_name=array, …)")
        inputs = str(path.resolve())
        inputs_sha = file_sha256(path)
    return Settings(warmup=warmup, iterations=iterations, min_time_s=min_time, repeats=repeats,
                    profile_ops=profile_ops, inputs=inputs, inputs_sha256=inputs_sha,
                    energy=energy, timeout_s=timeout)


def _threads(value: str) -> list[int]:
    out = []
    for item in split_list(value):
        try:
            out.append(int(item))
        except ValueError:
            raise UserError(f"--threads {item}: not a whole number") from None
    return out or [1]


def _discover(cluster: str | None = None) -> Any:
    """Local devices, or with ``cluster`` the lab's devices (agents.lab)."""
    from harness.plan import discover

    if not cluster:
        return discover()
    from agents.lab import lab_agents

    return discover(agents=lab_agents(cluster))


def _make_plan(models: list[str], device: str | None, delegate: str | None, threads: str,
               settings: Settings, cluster: str | None = None
               ) -> tuple[Plan, Any, list[DeviceInfo]]:
    from harness.plan import build_plan, expand_models, select_devices

    refs = expand_models(models)
    fleet = _discover(cluster)
    chosen = select_devices(fleet, split_list(device))
    plan = build_plan(refs, chosen, fleet, split_list(delegate), _threads(threads), settings)
    return plan, fleet, chosen


def _plan_table(plan: Plan) -> Table:
    table = Table(title=f"Plan: {len(plan.jobs)} jobs, {len(plan.skipped)} skipped",
                  title_justify="left")
    table.add_column("model", overflow="fold", max_width=28)
    table.add_column("device", overflow="fold", max_width=18)
    table.add_column("delegate")
    table.add_column("thr", justify="right")
    table.add_column("status / reason", overflow="fold", max_width=40)
    for job in plan.jobs:
        table.add_row(Path(job.model.path).name, job.device_id, job.delegate, str(job.threads),
                      "[green]planned[/]")
    for s in plan.skipped:
        table.add_row(Path(s.job.model.path).name, s.job.device_id, s.job.delegate,
                      str(s.job.threads), f"[yellow]skipped[/]: {s.reason}")
    return table


@handle_errors
def plan(
    models: Annotated[list[str], typer.Argument(help="Model files or variants folders.")],
    device: DeviceOpt = None,
    delegate: DelegateOpt = None,
    threads: ThreadsOpt = "1",
    warmup: WarmupOpt = 10,
    iterations: ItersOpt = 50,
    min_time: MinTimeOpt = 0.0,
    repeats: RepeatsOpt = 3,
    profile_ops: ProfileOpt = False,
    inputs: InputsOpt = None,
    energy: EnergyOpt = False,
    timeout: TimeoutOpt = 600.0,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show the jobs a bench would run, and what it would skip and why; runs nothing."""
    settings = _settings(warmup, iterations, min_time, repeats, profile_ops, inputs, energy,
                         timeout)
    the_plan, _, _ = _make_plan(models, device, delegate, threads, settings)
    if json_out:
        print_json({"jobs": [{"job_id": j.job_id, **to_dict(j)} for j in the_plan.jobs],
                    "skipped": [{"job_id": s.job.job_id, **to_dict(s.job), "reason": s.reason}
                                for s in the_plan.skipped],
                    "schema_version": the_plan.schema_version})
        return
    console.print(_plan_table(the_plan))


# ---------------------------------------------------------------------------- bench


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@handle_errors
def bench(
    models: Annotated[list[str] | None, typer.Argument(help="Model files or variants folders.")]
    = None,
    device: DeviceOpt = None,
    delegate: DelegateOpt = None,
    threads: ThreadsOpt = "1",
    warmup: WarmupOpt = 10,
    iterations: ItersOpt = 50,
    min_time: MinTimeOpt = 0.0,
    repeats: RepeatsOpt = 3,
    profile_ops: ProfileOpt = False,
    inputs: InputsOpt = None,
    energy: EnergyOpt = False,
    timeout: TimeoutOpt = 600.0,
    resume: Annotated[str | None, typer.Option("--resume", help="Run the missing jobs of an "
                                               "interrupted run.")] = None,
    retry_timeout: Annotated[float, typer.Option("--retry-timeout", min=0.0, help="Seconds to "
                                                 "wait for a device that went away.")] = 120.0,
    cluster: ClusterOpt = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Benchmark models on devices; every measurement goes into the store."""
    from harness.store import Store

    store = Store.open(results_location(results))
    if resume:
        run_id, jobs, fleet = _resume(store, resume, cluster)
        skipped_count = 0
    else:
        if not models:
            raise UserError("no models given", hint="quantlab bench MODEL.tflite [...]")
        settings = _settings(warmup, iterations, min_time, repeats, profile_ops, inputs, energy,
                             timeout)
        the_plan, fleet, chosen = _make_plan(models, device, delegate, threads, settings,
                                             cluster)
        from harness.environment import new_run

        run = new_run(settings)
        store.create_run(run, the_plan, chosen)
        run_id, jobs, skipped_count = run.run_id, list(the_plan.jobs), len(the_plan.skipped)
        for s in the_plan.skipped:
            err_console.print(f"[yellow]skipped[/] {s.job.label()}: {s.reason}", soft_wrap=True)
    accounts = dispatch_jobs(store, run_id, fleet, jobs, retry_timeout, verbose)
    _finish(store, run_id, accounts, json_out, skipped_count)


def _resume(store: Any, run_id: str, cluster: str | None = None) -> tuple[str, list[Any], Any]:
    run_id = store.resolve_run_id(run_id)
    jobs = store.reopen_run(run_id)
    fleet = _discover(cluster)
    known = {d.id for d in fleet.devices}
    missing = sorted({j.device_id for j in jobs} - known)
    if missing:
        raise UserError(f"cannot resume {run_id}: device(s) {', '.join(missing)} not attached",
                        hint="attach them and try again")
    store.add_devices(run_id, [d for d in fleet.devices if d.id in {j.device_id for j in jobs}])
    err_console.print(f"resuming {run_id}: {len(jobs)} job(s) left")
    return run_id, jobs, fleet


def dispatch_jobs(store: Any, run_id: str, fleet: Any, jobs: list[Any], retry_timeout: float,
                  verbose: bool) -> list[Any]:
    """Run stored jobs with a progress display; on Ctrl-C (or SIGTERM) mark the run
    interrupted, say how to resume, and exit 130."""
    from harness.cli.progress import RichReporter
    from harness.dispatch import Dispatcher, Interrupted

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with RichReporter(len(jobs), verbose) as reporter:
            dispatcher = Dispatcher(store, run_id, fleet, reporter, retry_timeout_s=retry_timeout)
            try:
                return dispatcher.run(jobs)
            except Interrupted:
                pass
        store.finish_run(run_id, "interrupted")
        err_console.print(f"[yellow]interrupted[/]: finished jobs are stored; resume with "
                          f"[bold]quantlab bench --resume {run_id}[/]")
        raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish(store: Any, run_id: str, accounts: list[Any], json_out: bool,
            skipped_count: int) -> None:
    from harness.results import run_dict

    store.finish_run(run_id, "done")
    record = store.load_run(run_id)
    data = run_dict(record)
    data["devices"] = [a.as_dict() for a in accounts]
    if json_out:
        print_json(data)
    else:
        console.print(results_table(data["results"], title=f"Run {run_id}"))
        if len({a.device_id for a in accounts}) > 1:
            console.print(accounts_line(accounts))
        console.print(f"[dim]stored in {store.location} · quantlab show {run_id}[/]")
    if any(r["status"] == "failed" for r in data["results"]):
        raise typer.Exit(1)


def accounts_line(accounts: list[Any]) -> str:
    """One line per device: ok / failed / interrupted / retries."""
    parts = []
    for a in accounts:
        where = f" on {a.host}" if a.host else ""
        parts.append(f"{a.device_id}{where}: {a.ok} ok, {a.failed} failed"
                     + (f", {a.retries} retried" if a.retries else "")
                     + (f", {a.interrupted} interrupted" if a.interrupted else ""))
    return "per device — " + "; ".join(parts)


# ---------------------------------------------------------------------------- tables


def fmt_ms(value: float | None) -> str:
    """Milliseconds with a unit and sensible precision."""
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    if value < 0.1:
        return f"{value * 1000:.3g} µs"
    return f"{value:.3g} ms"


def results_table(results: list[dict[str, Any]], title: str = "Results") -> Table:
    """The summary table of a run (fits 100 columns)."""
    table = Table(title=title, title_justify="left")
    table.add_column("model", overflow="fold", max_width=22)
    table.add_column("device", overflow="fold", max_width=14)
    table.add_column("delegate", max_width=12)
    table.add_column("thr", justify="right")
    table.add_column("median [95% CI]", justify="right")
    table.add_column("p90", justify="right")
    table.add_column("init", justify="right")
    table.add_column("mem", justify="right")
    table.add_column("status", overflow="fold", max_width=16)
    for r in results:
        lat = r.get("latency_ms") or {}
        if r["status"] == "ok" and lat:
            ci = lat.get("ci95")
            median = fmt_ms(lat.get("median") if lat.get("median") is not None else lat["mean"])
            cell = f"{median}\n[dim][{ci[0]:.3g}–{ci[1]:.3g}][/]" if ci else median
        else:
            cell = "–"
        status = {"ok": "[green]ok[/]", "failed": "[red]failed[/]",
                  "skipped": "[yellow]skipped[/]"}.get(r["status"], r["status"])
        if r.get("warnings"):
            status += f" [yellow]⚠{len(r['warnings'])}[/]"
        mem = r.get("peak_memory_mb")
        name = Path(r["model"]["path"]).name
        if r["model"].get("scheme"):
            name = f"{r['model']['scheme']} ({name})"
        table.add_row(name, r["device"]["id"], r["delegate"], str(r["threads"]), cell,
                      fmt_ms(lat.get("p90")) if lat else "–", fmt_ms(r.get("init_ms")),
                      f"{mem:.0f} MB" if mem else "–", status)
    return table


def ops_table(result: dict[str, Any], top: int = 15) -> Table:
    """Top ops of one result by time, with coverage (op sum vs whole model)."""
    ops = sorted(result["ops"], key=lambda o: -o["avg_ms"])[:top]
    cover = ""
    if result.get("ops_sum_ms") and result.get("ops_model_ms"):
        cover = (f" · op sum {fmt_ms(result['ops_sum_ms'])} of "
                 f"{fmt_ms(result['ops_model_ms'])} model time "
                 f"({100 * result['ops_sum_ms'] / result['ops_model_ms']:.0f}%)")
    table = Table(title=f"Top ops: {Path(result['model']['path']).name} · "
                  f"{result['device']['id']} · {result['delegate']}{cover}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("op type", max_width=22, overflow="fold")
    table.add_column("kernel", max_width=36, overflow="fold")
    table.add_column("delegate", max_width=12, overflow="fold")
    table.add_column("avg", justify="right")
    table.add_column("%", justify="right")
    for o in ops:
        avg = fmt_ms(o["avg_ms"]) if o["unit"] == "ms" else f"{o['avg_ms']:.0f} {o['unit']}"
        table.add_row(str(o["index"]), o["op_type"] or "?", o["kernel"], o["delegate"] or "CPU",
                      avg, f"{o['pct']:.1f}" if o["pct"] is not None else "–")
    return table


# ---------------------------------------------------------------------------- runs / show


@handle_errors
def runs(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs to list.")] = 20,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List stored runs, newest first."""
    from harness.store import Store

    store = Store.open(results_location(results))
    rows = store.list_runs(limit)
    if json_out:
        print_json({"runs": rows})
        return
    table = Table(title=f"Runs in {store.location}", title_justify="left")
    for col in ("run", "when (UTC)", "status", "jobs", "models", "devices"):
        table.add_column(col, overflow="fold", max_width=30)
    for r in rows:
        jobs = ", ".join(f"{n} {s}" for s, n in sorted(r["jobs"].items()))
        table.add_row(r["run_id"], r["created_at"].replace("T", " ")[:19], r["status"], jobs,
                      ", ".join(r["models"]), ", ".join(r["devices"]))
    console.print(table)
    if not rows:
        err_console.print("no runs yet: try [bold]quantlab demo[/] or [bold]quantlab bench[/]")


@handle_errors
def show(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix, or 'latest'.")] = "latest",
    ops: Annotated[bool, typer.Option("--ops", help="Also print the top ops of each job.")]
    = False,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show one stored run: results, failures, warnings (and top ops with --ops)."""
    from harness.results import run_dict
    from harness.store import Store

    store = Store.open(results_location(results))
    data = run_dict(store.load_run(run_id))
    if json_out:
        print_json(data)
        return
    console.print(f"[bold]Run {data['run_id']}[/] · {data['status']} · {data['created_at']} · "
                  f"host {data['host']}")
    console.print(results_table(data["results"], title="Results"))
    for r in data["results"]:
        label = f"{Path(r['model']['path']).name} · {r['device']['id']} · {r['delegate']}"
        if r["status"] in ("failed", "skipped", "interrupted") and r["error"]:
            console.print(f"[yellow]{r['status']}[/] {label}: {r['error']}", soft_wrap=True)
        for w in r["warnings"]:
            console.print(f"[yellow]warning[/] {label}: {w}", soft_wrap=True)
        if r["status"] == "ok" and r["energy"] is None and r["energy_unavailable_reason"] \
                and r["settings"].get("energy"):
            console.print(f"[dim]energy {label}: {r['energy_unavailable_reason']}[/]")
    if ops:
        for r in data["results"]:
            if r["ops"]:
                console.print(ops_table(r))
