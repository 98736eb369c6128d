"""The lab page's data: the devices the store has met, merged with the lab as it is now.

Without ``--cluster`` the page shows what the store knows: each device's newest snapshot
(battery, thermal state when that run began) and the jobs the store says are running.
With ``--cluster`` it also asks the lab (:func:`cluster_source`): which hosts are up, what
each device actor is doing and each device's live health, refreshed by the page.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from quantlab.harness.serve.context import LiveSource

CACHE_S = 2.0
"""Answers of the lab are kept this long: many open pages cost the lab one question."""


def cluster_source(address: str, token_file: str | None, tls_dir: str | None,
                   node_ip: str | None, timeout_s: float = 3.0) -> LiveSource:
    """Connect to the lab as a Ray driver now (a UserError when it cannot be reached) and
    return a function that gives the lab's state: ``lab status``'s hosts and devices, each
    device with its live ``health`` (battery, thermal state) from its actor."""
    from quantlab.harness.lab.ray_processes import connect
    from quantlab.harness.lab.security import security

    connect(address, security(token_file, tls_dir), node_ip)
    lock = threading.Lock()
    cached: dict[str, Any] = {}

    def live() -> dict[str, Any]:
        with lock:
            if cached and time.monotonic() - cached["at"] < CACHE_S:
                return dict(cached["data"])
            data = _ask(timeout_s)
            cached.update(at=time.monotonic(), data=data)
            return dict(data)

    return live


def _ask(timeout_s: float) -> dict[str, Any]:
    import ray

    from quantlab.harness.lab.ray_processes import ACTOR_PREFIX, NAMESPACE
    from quantlab.harness.lab.status import lab_status

    data = lab_status(timeout_s)
    pending: dict[str, Any] = {}
    for d in data["devices"]:
        if d.get("health") == "unreachable":
            continue
        try:
            actor = ray.get_actor(ACTOR_PREFIX + d["device_id"], namespace=NAMESPACE)
        except ValueError:
            continue
        pending[d["device_id"]] = actor.health.remote()
    deadline = time.monotonic() + timeout_s
    for d in data["devices"]:
        ref = pending.get(d["device_id"])
        if ref is None:
            continue
        try:
            d["live_health"] = ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
        except Exception as exc:  # a device busy measuring may not answer in time
            d["live_health_error"] = type(exc).__name__
    data["asked_at"] = time.time()
    return data


def lab_view(store_side: dict[str, Any], live: LiveSource | None) -> dict[str, Any]:
    """The lab as the page shows it: one row per device (the store's and the lab's,
    merged), the lab's hosts, the jobs running now, and why the lab did not answer."""
    cluster: dict[str, Any] | None = None
    error = None
    if live is not None:
        try:
            cluster = live()
        except Exception as exc:  # the lab went away: the store's side still shows
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    in_lab = {d["device_id"]: d for d in (cluster or {}).get("devices", [])}
    running = {r["device_id"]: r for r in store_side["running"]}
    rows = []
    for d in store_side["devices"]:
        rows.append(_row(d, in_lab.pop(d["device_id"], None), running.get(d["device_id"]),
                         cluster is not None))
    for device_id, lab_dev in sorted(in_lab.items()):  # in the lab, never in a stored run
        rows.append(_row({"device_id": device_id, "platform": lab_dev.get("kind"), "runs": 0,
                          "last_seen": None, "last_run": None, "info": None,
                          "snapshot_at": None}, lab_dev, running.get(device_id), True))
    return {"devices": rows, "running": store_side["running"],
            "hosts": (cluster or {}).get("nodes"), "cluster": cluster is not None or
            live is not None, "cluster_error": error}


def _row(stored: dict[str, Any], lab_dev: dict[str, Any] | None, job: dict[str, Any] | None,
         asked: bool) -> dict[str, Any]:
    info = stored.get("info") or {}
    health = dict(info.get("health") or {})
    source = "snapshot" if health else None
    if lab_dev is not None and lab_dev.get("live_health"):
        health, source = dict(lab_dev["live_health"]), "live"
    if lab_dev is not None:
        state = lab_dev.get("health", "unknown")  # idle | busy | unreachable
    else:
        state = "not in the lab" if asked else "last seen"
    doing = None
    if lab_dev is not None and lab_dev.get("current"):
        cur = lab_dev["current"]
        doing = {"label": cur.get("label"), "phase": cur.get("phase"),
                 "since_s": time.time() - float(cur.get("since") or time.time()),
                 "source": "lab"}
    elif job is not None:
        doing = {"label": job["label"], "run_id": job["run_id"], "started_at": job["started_at"],
                 "source": "store"}
    return {"device_id": stored["device_id"], "platform": stored.get("platform"),
            "name": info.get("name"), "model": info.get("model"), "soc": info.get("soc"),
            "os_version": info.get("os_version"), "runs": stored.get("runs", 0),
            "last_seen": stored.get("last_seen"), "last_run": stored.get("last_run"),
            "state": state, "host": (lab_dev or {}).get("host") or info.get("host"),
            "battery_pct": health.get("battery_pct"),
            "thermal": health.get("thermal_status_name") or health.get("thermal_status"),
            "temperature_c": health.get("battery_temp_c", health.get("temperature_c")),
            "health_source": source, "snapshot_at": stored.get("snapshot_at"),
            "doing": doing, "jobs_done": (lab_dev or {}).get("jobs_done")}
