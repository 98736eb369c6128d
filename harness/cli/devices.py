"""Command: devices — every attached device (the simulator included), state and health."""

from __future__ import annotations

from typing import Any

import typer

from quantlab.harness import kinds
from quantlab.harness.cli.common import (
    JsonOpt,
    VerboseOpt,
    console,
    err_console,
    handle_errors,
    print_json,
    warn,
)


def register(app: typer.Typer) -> None:
    """Add devices to the app."""
    app.command("devices", help="List every attached device of every kind "
                f"({kinds.help_text()}) with its state and health.")(devices)


@handle_errors
def devices(json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """List every attached device (the simulator included) with its state and health."""
    from quantlab.harness.cli.tables import new_table
    from quantlab.harness.records import to_dict
    from quantlab.session import discover

    fleet = discover()
    if json_out:
        print_json({"devices": [to_dict(d) for d in fleet.devices], "notes": list(fleet.notes)})
        return
    table = new_table("Devices")
    ids = [d.id for d in fleet.devices]
    table.add_column("id", no_wrap=True, min_width=max(map(len, ids), default=2))  # typed
    for col, width in (("kind", 7), ("name", 14), ("SoC", 8), ("OS", 8), ("state", 11)):
        table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=width)
    table.add_column("health", overflow="fold", min_width=14, max_width=22)
    for d in fleet.devices:
        state = d.state if d.state == "ready" else f"[red]{d.state}[/]"
        table.add_row(d.id, d.platform, d.name, d.soc or "–",
                      d.os_version or "–", state, health_cell(d.health))
    console.print(table)
    for d in fleet.devices:  # below the table: an Android phone has nine delegates
        if d.delegates:
            console.print(f"[dim]{d.id}:[/] {', '.join(d.delegates)}")
    for d in fleet.devices:
        if d.state != "ready" and d.state_hint:
            warn(f"{d.id} is {d.state}: {d.state_hint}")
    for note in fleet.notes:
        err_console.print(f"[dim]{note}[/]")


def health_cell(health: dict[str, Any]) -> str:
    """A device's live health in a few words: temperature, battery, throttling, free memory."""
    parts = []
    temp = health.get("temperature_c", health.get("battery_temp_c"))
    if isinstance(temp, (int, float)):
        parts.append(f"{temp:.0f} °C")
    if health.get("battery_pct") is not None:
        parts.append(f"battery {health['battery_pct']}%")
    if health.get("thermal_status_name") not in (None, "none"):
        parts.append(f"[yellow]thermal {health['thermal_status_name']}[/]")
    if health.get("throttled"):
        parts.append("[red]throttled[/]")
    if isinstance(health.get("mem_available_mb"), (int, float)):
        parts.append(f"{health['mem_available_mb'] / 1024:.1f} GB free")
    if health.get("worker_ready") is False:
        parts.append("[red]worker deps missing[/]")
    return " · ".join(parts) or "–"
