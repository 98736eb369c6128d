"""``quantlab lab join``: this host's devices in the lab, one named Ray actor per device.

:func:`scan_devices` asks the agents what is attached; :class:`LabHost` starts this
host's Ray node offering one resource ``device:<lab id>`` per device, registers a named
detached actor per device and keeps re-scanning (a new device restarts the node with the
new resource set; a removed device's actor is unregistered).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quantlab.harness.errors import QuantlabError
from quantlab.harness.lab.ray_processes import (
    NAMESPACE,
    NodeOptions,
    actor_name,
    connect,
    node_command,
    start_ray,
)
from quantlab.harness.lab.security import LabSecurity


@dataclass(frozen=True)
class LocalDevice:
    """A device attached to this lab host, as one of its agents found it."""

    lab_id: str
    local_id: str
    agent_spec: str
    platform: str
    state: str


def lab_device_id(device_id: str, platform: str, host: str) -> str:
    """The id a device has in the lab: simulator ids only mean something per host."""
    return f"{device_id}@{host}" if platform == "sim" else device_id


def scan_devices(agent_specs: Sequence[str], options: Mapping[str, Any],
                 host: str) -> dict[str, LocalDevice]:
    """Every device the given agents see on this host, by lab id."""
    from quantlab.harness.lab.actor import load_agent_spec

    found: dict[str, LocalDevice] = {}
    for spec in agent_specs:
        opts = dict(options) if ":" in spec else {}
        try:
            agent = load_agent_spec(spec, opts)
            devices = agent.discover()
        except (ImportError, QuantlabError) as exc:
            print(f"quantlab lab: {spec}: {exc}", file=sys.stderr, flush=True)
            continue
        for d in devices:
            lab_id = lab_device_id(d.id, d.platform, host)
            found[lab_id] = LocalDevice(lab_id, d.id, spec, d.platform, d.state)
    return found


@dataclass
class LabHost:
    """``quantlab lab join``: a Ray node for this host's devices, one actor per device."""

    address: str
    sec: LabSecurity
    agent_specs: Sequence[str]
    host: str = field(default_factory=socket.gethostname)
    options: Mapping[str, Any] = field(default_factory=dict)
    node: NodeOptions = field(default_factory=NodeOptions)
    rescan_s: float = 10.0
    log: Any = None

    def __post_init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.declared: set[str] = set()
        self.registered: dict[str, LocalDevice] = {}
        self.stop = threading.Event()

    def say(self, message: str) -> None:
        """One line on stderr (or the given log callable)."""
        if self.log is not None:
            self.log(message)
        else:
            print(f"quantlab lab [{self.host}]: {message}", file=sys.stderr, flush=True)

    def start_node(self, lab_ids: set[str]) -> None:
        """Start (or restart) this host's Ray node offering ``device:<id>`` for ``lab_ids``."""
        self.stop_node()
        resources = {actor_name(i): 1.0 for i in sorted(lab_ids)}
        resources[f"host:{self.host}"] = 1.0
        cmd = node_command(self.address, resources, self.node)
        env = {**os.environ, **self.sec.env(), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        self.process = start_ray(cmd, env)
        self.declared = set(lab_ids)
        connect(self.address, self.sec, self.node.node_ip)

    def stop_node(self) -> None:
        """Stop this host's Ray node (its actors wait to be re-created when it returns)."""
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def register(self, device: LocalDevice) -> None:
        """Create (or find) the named detached actor of one device."""
        import ray

        from quantlab.harness.lab.actor import CONCURRENCY_GROUPS, DeviceActor

        opts = dict(self.options) if ":" in device.agent_spec else {}
        remote_cls = ray.remote(  # type: ignore[call-overload]
            concurrency_groups=CONCURRENCY_GROUPS)(DeviceActor)
        remote_cls.options(  # type: ignore[attr-defined]
            name=actor_name(device.lab_id), namespace=NAMESPACE, lifetime="detached",
            get_if_exists=True, max_restarts=-1, max_task_retries=0, num_cpus=0,
            resources={actor_name(device.lab_id): 1.0},
        ).remote(device.agent_spec, opts, device.local_id, device.lab_id, self.host)
        self.registered[device.lab_id] = device
        self.say(f"registered {device.lab_id} ({device.agent_spec}, {device.state})")

    def unregister(self, lab_id: str) -> None:
        """Kill the actor of a device that went away (its name is freed)."""
        import ray

        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(actor_name(lab_id), namespace=NAMESPACE), no_restart=True)
        self.registered.pop(lab_id, None)
        self.say(f"unregistered {lab_id} (no longer attached)")

    def sync(self) -> None:
        """Re-scan; register new devices (restarting the node for new resources)."""
        found = scan_devices(self.agent_specs, self.options, self.host)
        new = set(found) - self.declared
        if new or self.process is None or self.process.poll() is not None:
            if self.process is not None:
                self.say(f"restarting this host's Ray node for {', '.join(sorted(new))}"
                         if new else "Ray node exited; starting it again")
            self.start_node(set(found) | self.declared)
        for lab_id in sorted(set(self.registered) - set(found)):
            self.unregister(lab_id)
        for lab_id, device in sorted(found.items()):
            if lab_id not in self.registered:
                self.register(device)

    def serve(self) -> None:
        """Join and keep running until :attr:`stop` is set (or SIGTERM/Ctrl-C)."""
        try:
            self.sync()
            self.say(f"joined {self.address} with {len(self.registered)} device(s); "
                     f"re-scanning every {self.rescan_s:g}s")
            while not self.stop.wait(self.rescan_s):
                self.sync()
        finally:
            self.stop_node()
