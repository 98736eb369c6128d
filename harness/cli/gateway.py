"""Linux gateway commands: check or install the measuring worker's dependencies over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    VerboseOpt,
    console,
    err_console,
    handle_errors,
    print_json,
)


def register(app: typer.Typer) -> None:
    """Add ``gateway provision`` to the app."""
    gateway = typer.Typer(help="Linux gateways over SSH (the hosts file: $QUANTLAB_HOSTS or "
                          "~/.config/quantlab/hosts.toml; docs/devices.md).",
                          no_args_is_help=True)
    gateway.command("provision")(provision)
    app.add_typer(gateway, name="gateway")


@handle_errors
def provision(
    name: Annotated[str, typer.Argument(help="Gateway name from the hosts file (or ssh:NAME).")],
    install: Annotated[bool, typer.Option("--install", help="pip-install what is missing into "
                                          "a venv in the gateway's work folder.")] = False,
    wheels: Annotated[str | None, typer.Option("--wheels", help="Folder of wheels (for the "
                                               "gateway's arch) to push and install from, "
                                               "for a gateway without an index.")] = None,
    index_url: Annotated[str | None, typer.Option("--index-url", help="Package index the "
                                                  "gateway's pip uses (default: its own "
                                                  "pip configuration).")] = None,
    executorch: Annotated[bool, typer.Option("--executorch", help="Also torch and ExecuTorch "
                                             "(the torch extra's pins, torch's CPU build), "
                                             "for .pte jobs: about 1 GB on the gateway.")
                          ] = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check the measuring worker's Python dependencies on a gateway (--install: add them).

    Exit code 0 when the gateway is ready to measure, 1 when something is still missing,
    2 when the gateway cannot be reached as configured (unknown name, refused host key
    or login).
    """
    from quantlab.agents.linux.agent import SshAgent

    agent = SshAgent()

    def say(message: str) -> None:
        if not json_out:
            err_console.print(f"[dim]{message}[/]")

    report: dict[str, Any] = agent.provision(
        name, install=install or wheels is not None, wheels=Path(wheels) if wheels else None,
        index_url=index_url, progress=say, executorch=executorch)
    if json_out:
        print_json(report)
    else:
        state = "[green]ready[/]" if report["ready"] else "[red]not ready[/]"
        where = " · ".join(str(report[k]) for k in ("arch", "os") if report.get(k))
        console.print(f"[bold]{report['device']}[/] {state} · python {report['python']}"
                      + (f" ({report.get('python_version')})" if report.get("python_version")
                         else "") + (f" · {where}" if where else ""))
        for dist, version in (report.get("deps") or {}).items():
            console.print(f"  {dist:<16} {version or '[red]missing[/]'}")
        if executorch:
            console.print(f"  {'executorch':<16} {report.get('executorch') or '[red]missing[/]'}")
        if report["missing"]:
            console.print(f"missing: {', '.join(report['missing'])} "
                          f"(needs {', '.join(report['requirements'])})")
        for note in report["notes"]:
            console.print(f"[dim]{note}[/]")
    if not report["ready"]:
        raise typer.Exit(1)
