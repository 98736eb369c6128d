"""iPhone commands: install the BenchRunner app and show what quantlab sees on USB."""

from __future__ import annotations

from typing import Annotated

import typer

from quantlab.harness.cli.common import JsonOpt, VerboseOpt, console, handle_errors, print_json


def register(app: typer.Typer) -> None:
    """Add ``ios install`` and ``ios status`` to the app."""
    ios = typer.Typer(
        help="iPhones: the BenchRunner app quantlab launches over USB.", no_args_is_help=True
    )
    ios.command("install")(install)
    ios.command("status")(status)
    app.add_typer(ios, name="ios")


@handle_errors
def install(
    path: Annotated[
        str, typer.Argument(help="BenchRunner.ipa or BenchRunner.app (see ios_runner/README.md).")
    ],
    device: Annotated[
        str | None, typer.Option("--device", help="UDID; needed when several iPhones are attached.")
    ] = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Install (or update) the BenchRunner app on an iPhone."""
    from quantlab.agents.ios.agent import BUNDLE_ID, IosAgent

    udid = IosAgent().install(path, device)
    if json_out:
        print_json({"udid": udid, "bundle_id": BUNDLE_ID, "installed": path})
        return
    console.print(f"BenchRunner ({BUNDLE_ID}) installed on [bold]{udid}[/]")


@handle_errors
def status(json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """iPhones on USB: model, iOS, Developer Mode, whether BenchRunner is installed, what to fix."""
    from quantlab.agents.ios.agent import IosAgent

    agent = IosAgent()
    rows = []
    for dev in agent.discover():
        installed = agent.app_installed(dev.id) if dev.state == "ready" else None
        rows.append(
            {
                "udid": dev.id,
                "name": dev.name,
                "model": dev.model,
                "ios": dev.os_version,
                "state": dev.state,
                "hint": dev.state_hint,
                "app_installed": installed,
                "neural_engine": dev.extra.get("neural_engine"),
                "compute_plan": dev.extra.get("compute_plan"),
                "delegates": list(dev.delegates),
            }
        )
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no iPhone on USB (is usbmuxd running and the phone unlocked and trusted?)")
        return
    for r in rows:
        app = {
            True: "BenchRunner installed",
            False: "BenchRunner [yellow]not installed[/]",
            None: "",
        }[bool(r["app_installed"]) if r["app_installed"] is not None else None]
        console.print(
            f"[bold]{r['name']}[/] {r['model']} iOS {r['ios']} · {r['udid']} · {r['state']} {app}"
        )
        if r["hint"]:
            console.print(f"  [yellow]{r['hint']}[/]")
