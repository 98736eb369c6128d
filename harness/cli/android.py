"""Android commands: provision the benchmark_model runner, show it, import hand-run logs."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
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
    warn,
)
from quantlab.harness.errors import UserError


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
    binary: Annotated[str, typer.Option("--binary", help="benchmark_model built for Android "
                                        "(e.g. the nightly android_aarch64_benchmark_model).")],
    abi: Annotated[str, typer.Option("--abi", help="ABI the binary is built for.")]
    = "arm64-v8a",
    delegate_libs: Annotated[str | None, typer.Option(
        "--delegate-libs", help="Folder of delegate libraries to push with it "
        "(libhexagon_interface.so + libhexagon_nn_skel*.so, or the QNN libQnn*.so).")] = None,
    runner: Annotated[str, typer.Option(
        "--runner", help="benchmark_model (TFLite interpreter; cpu, xnnpack, gpu, nnapi, "
        "hexagon, qnn) or benchmark_litert_model (LiteRT CompiledModel; litert-cpu, "
        "litert-gpu, litert-npu).")] = "benchmark_model",
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Keep a benchmark_model binary (and delegate libraries) for an ABI in quantlab's cache."""
    from quantlab.android_runner.provision import cache_dir, provision_binary

    got = provision_binary(Path(binary), abi, Path(delegate_libs) if delegate_libs else None,
                           runner)
    data = {"runner": got.name, "abi": got.abi, "path": str(got.path), "sha256": got.sha256,
            "size": got.size, "libs": got.libs, "cache": str(cache_dir())}
    if json_out:
        print_json(data)
        return
    console.print(f"{got.name} for [bold]{got.abi}[/] cached at {got.path}\n"
                  f"sha256 {got.sha256} · {got.size} bytes"
                  + (f" · {len(got.libs)} delegate libraries" if got.libs else ""))
    console.print("[dim]it is pushed to /data/local/tmp/quantlab/ on each phone when the "
                  "phone's copy differs[/]")


@handle_errors
def status(json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Show the provisioned runners per ABI."""
    from quantlab.android_runner.provision import ABIS, cache_dir, cached_binary

    rows: list[dict[str, Any]] = []
    for abi in ABIS:
        got = cached_binary(abi)
        rows.append({"abi": abi, "provisioned": got is not None,
                     "sha256": got.sha256 if got else None,
                     "libs": sorted(got.libs) if got else []})
    if json_out:
        print_json({"cache": str(cache_dir()), "runners": rows})
        return
    for r in rows:
        state = f"[green]{r['sha256'][:12]}[/]" if r["provisioned"] else "[dim]not provisioned[/]"
        libs = f" · libs: {', '.join(r['libs'])}" if r["libs"] else ""
        console.print(f"{r['abi']:<12} {state}{libs}")
    console.print(f"[dim]cache: {cache_dir()} · add one with quantlab android provision "
                  "--binary PATH --abi ABI (docs/devices.md)[/]")


# ---------------------------------------------------------------------------- import


def _delegate_from(params: dict[str, str], text: str) -> str:
    """Which delegate a hand-run log used, from the parameters it echoed."""
    def on(*names: str) -> bool:
        return any(params.get(n, "").strip() in ("1", "true") for n in names)

    if on("Use gpu", "Use GPU"):
        return "gpu"
    if on("Use NNAPI", "Use nnapi"):
        return "nnapi"
    if on("Use Hexagon", "Use hexagon"):
        return "hexagon"
    external = params.get("External delegate path", "").strip()
    if external:
        return "qnn" if "qnn" in external.lower() else "external"
    if params.get("Use xnnpack", "").strip() in ("0", "false"):
        return "cpu"
    if "XNNPACK delegate" in text or on("Use xnnpack"):
        return "xnnpack"
    return "cpu"


def _litert_delegate_from(text: str) -> str:
    """Which accelerator a benchmark_litert_model log used, from what it printed (the tool
    echoes none of its --use_* flags; CPU is its default)."""
    if re.search(r"with delegate \((?:LITERT_CL|\w*Gpu\w*|\w*Drift\w*)\)", text) \
            or "GPU accelerator registered" in text:
        return "litert-gpu"
    if re.search(r"with delegate \(\w*(?:Dispatch|Npu|NPU)\w*\)", text):
        return "litert-npu"
    return "litert-cpu"


def _int(params: dict[str, str], *names: str, default: int) -> int:
    for n in names:
        value = params.get(n, "").strip()
        if value.lstrip("-").isdigit() and int(value) > 0:
            return int(value)
    return default


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
    from quantlab.android_runner.litert_parser import is_litert_output, parse_any
    from quantlab.android_runner.result_mapping import profile_ops, to_raw_result
    from quantlab.harness.cli.bench import exit_if_incomplete
    from quantlab.harness.records import (
        DeviceInfo,
        Job,
        ModelRef,
        Plan,
        RawOutput,
        RawResult,
        Settings,
    )
    from quantlab.session import Session

    texts: list[str] = []
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"{file}: no such file", hint="give a saved benchmark_model output")
        text = path.read_text(errors="replace")
        if not text.strip():
            raise UserError(f"{file}: empty file", hint="give a saved benchmark_model output")
        texts.append(text)
    profile_text = None
    if profile:
        if not Path(profile).is_file():
            raise UserError(f"--profile {profile}: no such file")
        profile_text = Path(profile).read_text(errors="replace")
    launches = [parse_any(t, profile_text if k == 0 else None) for k, t in enumerate(texts)]
    for file, parsed in zip(files, launches, strict=True):
        if parsed.summary_layout is None and not parsed.tables and not parsed.params \
                and parsed.inference is None:
            raise UserError(f"{file}: not benchmark_model output",
                            hint="save the tool's stdout (or `adb logcat -s tflite`) to a file")
    parsed = launches[0]
    path = Path(files[0])
    text = texts[0]
    profile_only = (len(launches) == 1 and parsed.summary_layout is None
                    and parsed.run_table() is not None)
    name = device_name.strip() or "hand-run"
    litert = is_litert_output(text)
    used = delegate or (_litert_delegate_from(text) if litert
                        else _delegate_from(parsed.params, text))
    threads = _int(parsed.params, "Num threads", "#threads used for CPU inference", default=1)
    settings = Settings(warmup=_int(parsed.params, "Min warmup runs", default=1),
                        iterations=_int(parsed.params, "Min num runs", default=50),
                        repeats=len(launches), profile_ops=bool(parsed.run_table()))
    for file, other in zip(files[1:], launches[1:], strict=True):
        if (other.params.get("Graph"), _delegate_from(other.params, "")) != \
                (parsed.params.get("Graph"), _delegate_from(parsed.params, "")):
            raise UserError(f"{file}: measures another model or delegate than {files[0]}",
                            hint="import the launches of one job together, other jobs apart")
    if model:
        mpath = Path(model)
        if not mpath.is_file():
            raise UserError(f"--model {model}: no such file")
        sha = hashlib.sha256(mpath.read_bytes()).hexdigest()
        ref = ModelRef(str(mpath.resolve()), sha, mpath.stat().st_size, "tflite")
    else:
        graph = parsed.params.get("Graph") or path.name
        ref = ModelRef(graph, hashlib.sha256("".join(texts).encode()).hexdigest(), 0, "tflite")
    device = DeviceInfo(id=f"imported:{name}", platform="android", name=name,
                        extra={"imported_from": [str(Path(f).resolve()) for f in files]})
    job = Job(ref, device.id, "android", used, threads, settings)
    runner: dict[str, Any] = {"name": "benchmark_litert_model" if litert else "benchmark_model",
                              "imported_from": [str(Path(f).resolve()) for f in files]}
    if profile_only:
        ops, warnings = profile_ops(parsed, used)
        raw = RawResult(job_id=job.job_id, status="ok", ops=tuple(ops), runner=runner,
                        warnings=("profile only: the file has no timings summary",
                                  *warnings))
    else:
        raw = to_raw_result(job.job_id, launches, used, runner=runner)
    # the imported files themselves are the raw output every figure is parsed from
    # (named like an agent's launches: launch-N.stdout, profile.csv)
    kept = [RawOutput.capture(f"launch-{k + 1}.stdout", "text/plain", Path(f).read_bytes())
            for k, f in enumerate(files)]
    if profile:
        kept.append(RawOutput.capture("profile.csv", "text/csv", Path(profile).read_bytes()))
    raw = dataclasses.replace(raw, raw_outputs=(*raw.raw_outputs, *kept))
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
        warn(f"{path.name}: the tool run failed: {raw.error}")
    console.print(f"[dim]stored in {location} · quantlab show {run_id}[/]")
    exit_if_incomplete(data, again)
