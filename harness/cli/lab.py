"""``quantlab lab``: run a lab of many hosts on Ray (head, join, status).

Ray is imported inside the commands only, so ``quantlab --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Annotated, Any

import typer

from quantlab.harness import kinds
from quantlab.harness.cli.common import (
    JsonOpt,
    VerboseOpt,
    console,
    err_console,
    handle_errors,
    print_json,
    split_list,
)
from quantlab.harness.errors import UserError

lab_app = typer.Typer(help="A lab of many hosts on Ray: start a head, join hosts with their "
                      "devices, show what every device is doing (see docs/lab.md).",
                      no_args_is_help=True)

AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="The lab head, HOST:PORT. Default: $QUANTLAB_CLUSTER.",
                 show_default=False),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token-file", help="The lab's token file (mode 0600). Default: "
                 "$QUANTLAB_LAB_TOKEN or ~/.quantlab/lab-token.", show_default=False),
]
TlsOpt = Annotated[
    str | None,
    typer.Option("--tls-dir", help="Folder with ca.crt, node.crt, node.key for mutual TLS. "
                 "Default: $QUANTLAB_LAB_TLS (off when unset).", show_default=False),
]
NodeIpOpt = Annotated[
    str | None,
    typer.Option("--node-ip", help="This host's address as the other hosts reach it.",
                 show_default=False),
]
TempDirOpt = Annotated[
    str | None,
    typer.Option("--temp-dir", help="Ray's session folder on this host (short path).",
                 show_default=False),
]


def register(app: typer.Typer) -> None:
    """Add the ``lab`` command group to the app."""
    lab_app.command("head")(head)
    lab_app.command("join")(join)
    lab_app.command("status")(status)
    app.add_typer(lab_app, name="lab")


def cluster_address(value: str | None) -> str:
    """``--address`` or ``$QUANTLAB_CLUSTER``; a clear error when neither is given."""
    address = value or os.environ.get("QUANTLAB_CLUSTER")
    if not address:
        raise UserError("no lab address", hint="pass --address HOST:PORT or set "
                        "QUANTLAB_CLUSTER (the head printed it when it started)")
    return address


def _options(values: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--agent-option {item}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@handle_errors
def head(
    port: Annotated[int, typer.Option("--port", help="GCS port the lab hosts connect to.")] = 6379,
    node_ip: NodeIpOpt = None,
    temp_dir: TempDirOpt = None,
    num_cpus: Annotated[int, typer.Option("--num-cpus", min=0, help="CPUs the head offers to "
                                          "Ray tasks (devices live on lab hosts).")] = 1,
    token_file: TokenOpt = None,
    tls_dir: TlsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Start the lab head (token auth on, health checks tuned) and keep it running."""
    from quantlab.harness.lab.ray_processes import NodeOptions, head_command, head_env, start_ray
    from quantlab.harness.lab.security import security

    sec = security(token_file, tls_dir, create=True)
    cmd = head_command(port, NodeOptions(node_ip=node_ip, temp_dir=temp_dir, num_cpus=num_cpus))
    proc = start_ray(cmd, head_env(sec))
    where = f"{node_ip or 'THIS_HOST'}:{port}"
    err_console.print(f"lab head running at [bold]{where}[/] (token {sec.token_path}"
                      f"{', mutual TLS' if sec.tls_dir else ''}).\n"
                      f"On each lab host: copy the token file (mode 0600), then\n"
                      f"  quantlab lab join --address {where} --devices sim,android")
    _wait_forever(proc)


@handle_errors
def join(
    address: AddressOpt = None,
    devices: Annotated[str, typer.Option("--devices", help="Device kinds to offer ("
                                         f"{kinds.help_text()}, module:Class agents), or "
                                         "'none' for a controller-only host.")] = "sim",
    name: Annotated[str | None, typer.Option("--name", help="Host name shown in the lab "
                                             "(default: hostname).", show_default=False)] = None,
    agent_option: Annotated[list[str] | None, typer.Option(
        "--agent-option", help="KEY=VALUE passed to module:Class agents.")] = None,
    rescan: Annotated[float, typer.Option("--rescan", min=0.5, help="Seconds between device "
                                          "scans.")] = 10.0,
    node_ip: NodeIpOpt = None,
    temp_dir: TempDirOpt = None,
    token_file: TokenOpt = None,
    tls_dir: TlsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Join the lab with this host's devices; keeps running and picks up (un)plugged devices."""
    import socket

    from quantlab.harness.lab.host import LabHost
    from quantlab.harness.lab.ray_processes import NodeOptions
    from quantlab.harness.lab.security import security

    where = cluster_address(address)
    sec = security(token_file, tls_dir)
    specs = [] if devices.strip() == "none" else split_list(devices)
    lab_host = LabHost(where, sec, specs, host=name or socket.gethostname(),
                       options=_options(agent_option),
                       node=NodeOptions(node_ip=node_ip, temp_dir=temp_dir), rescan_s=rescan)

    def _stop(signum: int, frame: object) -> None:
        lab_host.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    lab_host.serve()


@handle_errors
def status(
    address: AddressOpt = None,
    node_ip: NodeIpOpt = None,
    token_file: TokenOpt = None,
    tls_dir: TlsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Hosts, devices, their health and what each device is doing."""
    from rich.table import Table

    from quantlab.harness.lab.ray_processes import lab_session
    from quantlab.harness.lab.security import security
    from quantlab.harness.lab.status import lab_status

    where = cluster_address(address)
    sec = security(token_file, tls_dir)
    with lab_session(where, sec, node_ip):
        data = lab_status()
    if json_out:
        print_json(data)
        return
    hosts = Table(title="Lab hosts", title_justify="left")
    for col in ("host", "address", "node", "state", "devices"):
        hosts.add_column(col, overflow="fold")
    for n in data["nodes"]:
        hosts.add_row(n["host"] or "(head/controller)", n["ip"], n["node_id"],
                      "[green]alive[/]" if n["alive"] else "[red]dead[/]",
                      ", ".join(n["devices"]) or "–")
    console.print(hosts)
    table = Table(title="Lab devices", title_justify="left")
    for col in ("device", "host", "kind", "health", "doing", "jobs done"):
        table.add_column(col, overflow="fold")
    now = time.time()
    for d in data["devices"]:
        current = d.get("current")
        doing = "–"
        if current:
            took = now - current["since"]
            doing = f"{current['label']} ({current.get('phase', '')}, {took:.0f}s)"
        health = {"idle": "[green]idle[/]", "busy": "[cyan]busy[/]"}.get(
            d["health"], f"[red]{d['health']}[/]")
        table.add_row(d["device_id"], d.get("host") or "?", d.get("kind") or "?", health, doing,
                      str(d.get("jobs_done", "–")))
    console.print(table)


def _wait_forever(proc: subprocess.Popen[bytes]) -> None:
    def _stop(signum: int, frame: object) -> None:
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = proc.wait()
    if code not in (0, -signal.SIGTERM):
        raise typer.Exit(1)
