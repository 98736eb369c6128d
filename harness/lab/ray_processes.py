"""The lab's Ray processes: ``ray start`` for the head and for lab hosts, and this process
as a Ray driver (namespace ``quantlab``).

Ray's facts behind this are in ``docs/lab.md``: resources can only be declared by
``ray start``; Ray listens on all interfaces; 127.0.0.1 is rewritten by Ray.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.lab.security import LabSecurity

NAMESPACE = "quantlab"
"""Ray namespace of the device actors."""

ACTOR_PREFIX = "device:"
"""A device actor is named ``device:<lab id>`` and needs resource ``device:<lab id>``."""

HEALTH_CHECK_ENV = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
"""Set on the head: a crashed host is noticed in ~4 s instead of ~15 s."""

DEFAULT_PORT = 6379


def actor_name(lab_id: str) -> str:
    """Ray name of the actor of a device."""
    return f"{ACTOR_PREFIX}{lab_id}"


def ray_executable() -> str:
    """The ``ray`` command of this Python environment."""
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


@dataclass(frozen=True)
class NodeOptions:
    """Where and how a Ray node (head or lab host) listens."""

    node_ip: str | None = None
    temp_dir: str | None = None
    num_cpus: int = 1
    node_manager_port: int | None = None
    object_manager_port: int | None = None
    min_worker_port: int | None = None
    max_worker_port: int | None = None

    def args(self) -> list[str]:
        """``ray start`` arguments for these options."""
        out = ["--num-cpus", str(self.num_cpus), "--disable-usage-stats"]
        for flag, value in (("--node-ip-address", self.node_ip), ("--temp-dir", self.temp_dir),
                            ("--node-manager-port", self.node_manager_port),
                            ("--object-manager-port", self.object_manager_port),
                            ("--min-worker-port", self.min_worker_port),
                            ("--max-worker-port", self.max_worker_port)):
            if value is not None:
                out += [flag, str(value)]
        return out


def head_command(port: int, options: NodeOptions) -> list[str]:
    """``ray start --head --block`` for a lab head (no dashboard)."""
    return [ray_executable(), "start", "--head", "--block", "--port", str(port),
            "--include-dashboard=false", *options.args()]


def node_command(address: str, resources: Mapping[str, float], options: NodeOptions) -> list[str]:
    """``ray start --address HEAD --block`` for a lab host offering ``resources``."""
    import json

    return [ray_executable(), "start", "--block", "--address", address,
            "--resources", json.dumps(dict(resources), sort_keys=True), *options.args()]


def head_env(sec: LabSecurity) -> dict[str, str]:
    """Environment of the head process: security plus tuned health checks."""
    return {**os.environ, **sec.env(), **HEALTH_CHECK_ENV,
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


def start_ray(cmd: list[str], env: Mapping[str, str],
              timeout_s: float = 90.0) -> subprocess.Popen[bytes]:
    """Start ``ray start --block`` and return once it says the runtime started.

    Its output keeps draining to ``$QUANTLAB_LAB_LOG`` (or nowhere) afterwards.
    """
    proc = subprocess.Popen(cmd, env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    ready = threading.Event()
    started: list[bool] = []

    def drain() -> None:
        assert proc.stdout is not None
        log_path = os.environ.get("QUANTLAB_LAB_LOG")
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115
        try:
            for raw in proc.stdout:
                if log:
                    log.write(raw)
                    log.flush()
                if not ready.is_set():
                    lines.append(raw.decode(errors="replace").rstrip())
                    if "Ray runtime started" in lines[-1]:
                        started.append(True)
                        ready.set()
        finally:
            if log:
                log.close()
            ready.set()

    threading.Thread(target=drain, name="ray-start-output", daemon=True).start()
    if not ready.wait(timeout_s) or not started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        errors = [ln for ln in lines if "Error" in ln or "error" in ln] or lines[-1:]
        reason = errors[-1].strip().split(". ")[0] if errors else "no output"
        raise UserError(f"ray start exited ({proc.returncode}): {reason}",
                        hint="check the head address, the token file and TLS files")
    return proc


def connect(address: str, sec: LabSecurity, node_ip: str | None = None) -> None:
    """Connect this process to the lab as a Ray driver (namespace ``quantlab``).

    The process must run on a host that is a node of the cluster (the head, or a
    host that ran ``quantlab lab join``). ``node_ip`` (or ``$QUANTLAB_LAB_NODE_IP``)
    is this host's address in the lab when Ray would guess it wrong.
    """
    already_imported = "ray" in sys.modules
    sec.apply()
    import logging

    import ray

    if already_imported:  # ray read its config at import: make it see the token settings
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        # and ray keeps the first token it read: a second lab in this process has its own
        AuthenticationTokenLoader.instance().reset_cache()

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {}
    node_ip = node_ip or os.environ.get("QUANTLAB_LAB_NODE_IP")
    if node_ip:
        kwargs["_node_ip_address"] = node_ip
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=True, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"lab {address}: cannot connect ({first})",
                        hint="check the address, the token file (--token-file) and that this "
                        "host is a node of the lab (quantlab lab join)") from None
    _keep_stdout_clean()


def _keep_stdout_clean() -> None:
    """Ray prints cluster events ("node marked dead" + a log dump) on the driver's stdout;
    quantlab keeps stdout for results (``--json``): show their first line on stderr."""
    import ray._private.worker as ray_worker

    original = ray_worker.print_to_stdstream
    if getattr(original, "__quantlab__", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        lines = [ln for ln in data.get("lines", []) if ln.strip()][:1]
        original({**data, "lines": lines, "is_err": True}, ignore_prefix)

    to_stderr.__quantlab__ = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


@contextlib.contextmanager
def lab_session(address: str, sec: LabSecurity, node_ip: str | None = None) -> Iterator[None]:
    """Connect for the duration of a block, then disconnect."""
    import ray

    connect(address, sec, node_ip)
    try:
        yield
    finally:
        ray.shutdown()
