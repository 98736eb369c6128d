"""What the lab is doing: its hosts (Ray nodes) and devices, each device's health and job.

Needs this process connected as a driver (:func:`quantlab.harness.lab.ray_processes.connect`).
"""

from __future__ import annotations

import time
from typing import Any

from quantlab.harness.lab.ray_processes import ACTOR_PREFIX, NAMESPACE


def device_actor_names() -> list[str]:
    """Names of the device actors registered in the lab (connected driver needed)."""
    import ray

    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(n["name"] for n in names
                  if n["namespace"] == NAMESPACE and n["name"].startswith(ACTOR_PREFIX))


def lab_status(timeout_s: float = 3.0) -> dict[str, Any]:
    """Hosts (Ray nodes) and devices with what each is doing (connected driver needed)."""
    import ray

    nodes = []
    for n in ray.nodes():
        devs = sorted(k[len(ACTOR_PREFIX):] for k in n.get("Resources", {})
                      if k.startswith(ACTOR_PREFIX))
        hosts = [k[5:] for k in n.get("Resources", {}) if k.startswith("host:")]
        nodes.append({"node_id": n["NodeID"][:12], "ip": n["NodeManagerAddress"],
                      "host": hosts[0] if hosts else None, "alive": bool(n["Alive"]),
                      "devices": devs})
    names = device_actor_names()
    pending: dict[str, Any] = {}
    for name in names:
        try:
            pending[name] = ray.get_actor(name, namespace=NAMESPACE).status.remote()
        except ValueError:
            continue
    devices = []
    deadline = time.monotonic() + timeout_s
    for name, ref in pending.items():
        entry: dict[str, Any] = {"device_id": name[len(ACTOR_PREFIX):]}
        try:
            entry.update(ray.get(ref, timeout=max(0.1, deadline - time.monotonic())))
            entry["health"] = "busy" if entry.get("current") else "idle"
        except Exception as exc:  # unreachable actor: its host is down or restarting
            entry["health"] = "unreachable"
            entry["error"] = type(exc).__name__
        devices.append(entry)
    return {"nodes": sorted(nodes, key=lambda n: (not n["alive"], n["host"] or "")),
            "devices": devices}
