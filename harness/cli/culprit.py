"""Command: culprit — per-op numerics of a delegate against the host's reference kernels, and
the op where they part (:mod:`quantlab.harness.culprit`). The simulator's probes run through
the LiteRT runner's numerics mode (:mod:`quantlab.agents.litert.probe`); a phone's or a
gateway's run through the device's outputs capability, against the host's reference kernels on
the same inputs (:mod:`quantlab.harness.device_culprit`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from quantlab.harness.cli.common import JsonOpt, console, handle_errors, print_json
from quantlab.harness.errors import UserError

SIM_DELEGATES = ("xnnpack", "cpu")


def register(app: typer.Typer) -> None:
    """Add culprit to the app."""
    app.command()(culprit)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return format(value, spec)


@handle_errors
def culprit(
    variant: Annotated[str, typer.Argument(help="A .tflite model (a variant).")],
    device: Annotated[str, typer.Option("--device", "-d", help="Where the delegate runs: "
                                        "'sim' (this host's LiteRT), or a device id whose "
                                        "outputs come back (quantlab devices).")] = "sim",
    delegate: Annotated[str, typer.Option("--delegate", help="The delegate compared with "
                                          "the reference kernels (sim: xnnpack, cpu; a "
                                          "device: one of its delegates).")]
    = "xnnpack",
    inputs: Annotated[str | None, typer.Option("--inputs", help="An .npz, one array per "
                                               "model input (default: the seeded random "
                                               "inputs of every numerics check).")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1)] = 1,
    min_cosine: Annotated[float, typer.Option("--min-cosine", min=0.0, max=1.0,
                                              help="The bound an op's output must keep "
                                              "(NaN/Inf always fails).")] = 0.99,
    bisect: Annotated[bool, typer.Option("--bisect", help="Search over cut models even when "
                                         "exposing every tensor keeps placement.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Find the op where a delegate's outputs leave the host's reference kernels: probe models
    exposing intermediate tensors run on the delegate and on the reference kernels, one row
    per op (where it ran, cosine, SQNR, max abs error, error added), then the first op over
    the bound and the op that added the most. Device launches are counted and printed."""
    from quantlab.harness.culprit import find
    from quantlab.harness.models import model_ref
    from quantlab.harness.numerics import jsonable

    if device == "sim" and delegate not in SIM_DELEGATES:
        raise UserError(f"--delegate {delegate}: not a simulator delegate",
                        hint=f"the simulator has {', '.join(SIM_DELEGATES)}")
    if inputs is not None and not Path(inputs).is_file():
        raise UserError(f"--inputs {inputs}: no such file")
    ref = model_ref(Path(variant))
    if ref.format != "tflite":
        raise UserError(f"{variant}: culprit probes .tflite models only")
    started = time.monotonic()
    data = Path(ref.path).read_bytes()
    if device == "sim":
        from quantlab.agents.litert.probe import host_launcher

        report = find(data, host_launcher(delegate, threads, inputs), min_cosine,
                      force_bisection=bisect)
    else:
        report = _on_device(ref.path, data, device, delegate, threads, inputs, min_cosine,
                            bisect)
    report = {"model": ref.path, "device": device, "delegate": delegate,
              "seconds": time.monotonic() - started, **report}
    if json_out:
        print_json(jsonable(report))
        return
    _print(report)


def _on_device(path: str, data: bytes, device: str, delegate: str, threads: int,
               inputs: str | None, min_cosine: float, bisect: bool) -> dict[str, Any]:
    """The search with probes run on ``device`` through its outputs capability."""
    from quantlab.harness.culprit import find
    from quantlab.harness.device_culprit import check_device, device_launcher
    from quantlab.harness.plan import select_devices
    from quantlab.session import discover

    fleet = discover()
    info = select_devices(fleet, [device])[0]
    agent = fleet.agent_for(info.id)
    check_device(agent, info, path, delegate, threads)
    with device_launcher(agent, info, delegate, threads, inputs) as launch:
        return find(data, launch, min_cosine, force_bisection=bisect)


def _print(r: dict[str, Any]) -> None:
    from rich.markup import escape

    from quantlab.harness.cli.tables import label_column, new_table, number_column

    table = new_table(f"culprit: {Path(r['model']).name} · {r['device']} · {r['delegate']} "
                      f"vs reference kernels")
    number_column(table, "#")
    label_column(table, "op", 18)
    label_column(table, "tensor", 24)
    label_column(table, "ran on", 22)
    for name in ("cosine", "SQNR dB", "max abs", "added"):
        number_column(table, name)
    table.add_column("verdict", overflow="fold", max_width=34)
    for row in r["ops"]:
        mark = "[red]" if row["failed"] else ""
        table.add_row(str(row["index"]), escape(row["op_type"]), escape(row["tensor"]),
                      escape(row["placement"]) + (" (moved)" if row["placement_changed"] else ""),
                      _fmt(row["cosine"], ".5f"), _fmt(row["sqnr_db"], ".1f"),
                      _fmt(row["max_abs"], ".3g"), _fmt(row["added"], ".2e"),
                      f"{mark}{escape(row['failed'])}[/]" if row["failed"] else "ok")
    console.print(table)
    moved = r["placement"]["changed_by"]
    console.print(f"{r['mode']}: {r['launches']} launches (bound {r['launch_bound']}) in "
                  f"{r['seconds']:.1f} s" + (f"; placement moved in: {', '.join(moved)}"
                                             if moved else ""), soft_wrap=True)
    style = "red" if r["first_failing"] else "green"
    console.print(f"[{style}]{escape(r['verdict'])}[/]", soft_wrap=True)
