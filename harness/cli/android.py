"""Android commands: provision the benchmark_model runner, show it, import hand-run logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from quantlab.android_runner.command import BENCHMARK_MODEL, LITERT_RUNNER, delegates_of
from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    handle_errors,
    print_json,
    results_location,
    warn,
)


def register(app: typer.Typer) -> None:
    """Add ``android provision``, ``android status`` and ``import`` to the app."""
    android = typer.Typer(help="Android phones: the benchmark_model runner quantlab pushes.",
                          no_args_is_help=True)
    android.command("provision")(provision)
    android.command("status")(status)
    app.add_typer(android, name="android")
    app.command("import")(import_log)


@handle_errors
def provision(
    binary: Annotated[str | None, typer.Option("--binary", help="benchmark_model built for "
                                               "Android (e.g. the nightly "
                                               "android_aarch64_benchmark_model).")] = None,
    abi: Annotated[str, typer.Option("--abi", help="ABI the binary is built for.")]
    = "arm64-v8a",
    delegate_libs: Annotated[str | None, typer.Option(
        "--delegate-libs", help="Folder of delegate libraries to push with it "
        "(libhexagon_interface.so + libhexagon_nn_skel*.so, or the QNN libQnn*.so).")] = None,
    runner: Annotated[str, typer.Option(
        "--runner", help=f"{BENCHMARK_MODEL} (TFLite interpreter; "
        f"{', '.join(delegates_of(BENCHMARK_MODEL))}) or {LITERT_RUNNER} (LiteRT "
        f"CompiledModel; {', '.join(delegates_of(LITERT_RUNNER))}).")] = BENCHMARK_MODEL,
    executorch_runner: Annotated[str | None, typer.Option(
        "--executorch-runner", help="ExecuTorch's executor_runner built for Android with "
        "XNNPACK and ETDump (runs .pte jobs, et-xnnpack); instead of --binary.")] = None,
    executorch_version: Annotated[str | None, typer.Option(
        "--executorch-version", help="The ExecuTorch release the executor_runner was built "
        "from, recorded on every job it runs.")] = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Keep a runner binary (benchmark_model, benchmark_litert_model or ExecuTorch's
    executor_runner, and delegate libraries) for an ABI in quantlab's cache."""
    from quantlab.android_runner.provision import cache_dir, provision_binary
    from quantlab.harness.errors import UserError

    if (binary is None) == (executorch_runner is None):
        raise UserError("give one runner: --binary PATH (benchmark_model, "
                        "benchmark_litert_model) or --executorch-runner PATH")
    if executorch_runner is not None:
        got = provision_binary(Path(executorch_runner), abi, None, "executor_runner",
                               executorch_version)
    else:
        got = provision_binary(Path(str(binary)), abi,
                               Path(delegate_libs) if delegate_libs else None, runner)
    data = {"runner": got.name, "abi": got.abi, "path": str(got.path), "sha256": got.sha256,
            "size": got.size, "libs": got.libs, "version": got.version,
            "cache": str(cache_dir())}
    if json_out:
        print_json(data)
        return
    console.print(f"{got.name} for [bold]{got.abi}[/] cached at {got.path}\n"
                  f"sha256 {got.sha256} · {got.size} bytes"
                  + (f" · ExecuTorch {got.version}" if got.version else "")
                  + (f" · {len(got.libs)} delegate libraries" if got.libs else ""))
    console.print("[dim]it is pushed to /data/local/tmp/quantlab/ on each phone when the "
                  "phone's copy differs[/]")


@handle_errors
def status(json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Show the provisioned runners per ABI (benchmark_model, and ExecuTorch's
    executor_runner for .pte jobs)."""
    from quantlab.android_runner.provision import ABIS, cache_dir, cached_binary

    rows: list[dict[str, Any]] = []
    for abi in ABIS:
        got, et = cached_binary(abi), cached_binary(abi, "executor_runner")
        rows.append({"abi": abi, "provisioned": got is not None,
                     "sha256": got.sha256 if got else None,
                     "libs": sorted(got.libs) if got else [],
                     "executor_runner": {"sha256": et.sha256, "version": et.version}
                     if et else None})
    if json_out:
        print_json({"cache": str(cache_dir()), "runners": rows})
        return
    for r in rows:
        state = f"[green]{r['sha256'][:12]}[/]" if r["provisioned"] else "[dim]not provisioned[/]"
        libs = f" · libs: {', '.join(r['libs'])}" if r["libs"] else ""
        et = r["executor_runner"]
        et_text = (f" · executor_runner {et['sha256'][:12]}"
                   + (f" (ExecuTorch {et['version']})" if et["version"] else "")) if et else ""
        console.print(f"{r['abi']:<12} {state}{libs}{et_text}")
    console.print(f"[dim]cache: {cache_dir()} · add one with quantlab android provision "
                  "--binary PATH --abi ABI (docs/devices.md)[/]")


# ---------------------------------------------------------------------------- import


@handle_errors
def import_log(
    files: Annotated[list[str], typer.Argument(
        help="benchmark_model or benchmark_litert_model output (stdout, logcat), or "
        "benchmark_model's CSV op profile; several files of the same model, device and "
        "settings are the launches (repeats) of one job.")],
    device_name: Annotated[str, typer.Option("--device-name", help="Name of the phone it ran "
                                             "on; stored as device imported:NAME.")]
    = "hand-run",
    delegate: Annotated[str | None, typer.Option("--delegate", help="Delegate it used (default: "
                                                 "read from the log).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="The .tflite it measured, to "
                                              "identify the model by content.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="The op-profile CSV written "
                                                "by the same run.")] = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Store a benchmark_model (or benchmark_litert_model) run made by hand as a result
    (a failed run stays failed)."""
    from quantlab.agents.android.log_import import read_hand_run
    from quantlab.harness.cli.bench import exit_if_incomplete
    from quantlab.harness.records import Plan
    from quantlab.session import Session

    imported = read_hand_run(files, device_name, delegate, model, profile)
    device, job, raw, settings = imported.device, imported.job, imported.raw, imported.settings
    with Session.open(results_location(results)) as session:  # a run like any measured one
        run_id = session.start(Plan(jobs=(job,)), [device], settings)
        data = session.finish(run_id, session.store_results(run_id, [(job, raw)]))
        location = session.store.location
    again = "fix that, then import the file(s) again"
    if json_out:
        print_json({"run_id": run_id, "results": data["results"]})
        return exit_if_incomplete(data, again)
    from quantlab.harness.cli.tables import results_table

    console.print(results_table(data["results"], title=f"Imported as run {run_id}"))
    if raw.status == "failed":
        warn(f"{Path(files[0]).name}: the tool run failed: {raw.error}")
    console.print(f"[dim]stored in {location} · quantlab show {run_id}[/]")
    exit_if_incomplete(data, again)
