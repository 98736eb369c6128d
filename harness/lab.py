"""A lab of many hosts on Ray: the head, lab hosts that join it, security, and status.

* :func:`head_command` starts the Ray head with token authentication and health
  checks tuned so a crashed lab host is noticed in about four seconds.
* :class:`LabHost` is ``quantlab lab join``: it starts a Ray node offering one custom
  resource ``device:<lab id>`` per attached device, registers one named detached
  actor per device (:class:`agents.device_actor.DeviceActor`, ``max_restarts=-1``),
  and keeps re-scanning: a new device restarts this host's Ray node with the new
  resource set (jobs in flight here are retried by the controller), a removed
  device's actor is unregistered.
* :func:`lab_status` reports hosts, devices, their health and what each is doing.

Ray's facts behind this are in ``docs/lab.md``: resources can only be declared by
``ray start``; a token holder can run code on every host; Ray listens on all
interfaces; 127.0.0.1 is rewritten by Ray (use another loopback address in tests).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import QuantlabError, UserError

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


# ---------------------------------------------------------------------------- security


@dataclass(frozen=True)
class LabSecurity:
    """The token file every member of the lab shares, and optional mutual TLS."""

    token_path: Path
    tls_dir: Path | None = None  # holds ca.crt, node.crt, node.key

    def env(self) -> dict[str, str]:
        """Environment that makes Ray (head, nodes, drivers) use the token (and TLS)."""
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
               "RAY_USAGE_STATS_ENABLED": "0"}
        if self.tls_dir is not None:
            files = tls_files(self.tls_dir)
            env.update({"RAY_USE_TLS": "1", "RAY_TLS_CA_CERT": str(files["ca"]),
                        "RAY_TLS_SERVER_CERT": str(files["cert"]),
                        "RAY_TLS_SERVER_KEY": str(files["key"])})
        return env

    def apply(self) -> None:
        """Put :meth:`env` into this process's environment (before ``ray.init``)."""
        os.environ.update(self.env())


def default_token_path() -> Path:
    """``$QUANTLAB_LAB_TOKEN`` or ``~/.quantlab/lab-token``."""
    env = os.environ.get("QUANTLAB_LAB_TOKEN")
    return Path(env).expanduser() if env else Path.home() / ".quantlab" / "lab-token"


def create_token(path: Path) -> Path:
    """Write a new random token to ``path`` readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return path


def check_token(path: Path) -> Path:
    """Refuse a missing, empty or group/world-readable token file, naming the fix."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"lab token {path}: no such file",
                        hint="copy the token file from the head (created by quantlab lab head) "
                        "or pass --token-file") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"lab token {path}: readable by other users "
                        f"(mode {stat.S_IMODE(st.st_mode):o})",
                        hint=f"chmod 600 {path}: whoever holds it can run code on every lab host")
    if st.st_size == 0:
        raise UserError(f"lab token {path}: empty file", hint="copy the head's token file again")
    return path


def tls_files(folder: Path) -> dict[str, Path]:
    """The CA certificate, this host's certificate and key in a TLS folder."""
    files = {"ca": folder / "ca.crt", "cert": folder / "node.crt", "key": folder / "node.key"}
    for name, path in files.items():
        if not path.is_file():
            raise UserError(f"TLS folder {folder}: {path.name} missing",
                            hint=f"put ca.crt, node.crt and node.key there ({name})")
    return files


def security(token_file: str | None, tls_dir: str | None, *, create: bool = False) -> LabSecurity:
    """Resolve the token (created 0600 when ``create`` and missing) and TLS options."""
    path = Path(token_file).expanduser() if token_file else default_token_path()
    if create and not path.exists():
        create_token(path)
    tls = tls_dir or os.environ.get("QUANTLAB_LAB_TLS")
    sec = LabSecurity(check_token(path.resolve()), Path(tls).resolve() if tls else None)
    if sec.tls_dir is not None:
        tls_files(sec.tls_dir)
    return sec


# ---------------------------------------------------------------------------- ray processes


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
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")

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


# ---------------------------------------------------------------------------- devices


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


def actor_name(lab_id: str) -> str:
    """Ray name of the actor of a device."""
    return f"{ACTOR_PREFIX}{lab_id}"


def scan_devices(agent_specs: Sequence[str], options: Mapping[str, Any],
                 host: str) -> dict[str, LocalDevice]:
    """Every device the given agents see on this host, by lab id."""
    from agents.device_actor import load_agent_spec

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


# ---------------------------------------------------------------------------- lab host


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

        from agents.device_actor import CONCURRENCY_GROUPS, DeviceActor

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


# ---------------------------------------------------------------------------- status


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


@contextlib.contextmanager
def lab_session(address: str, sec: LabSecurity, node_ip: str | None = None) -> Iterator[None]:
    """Connect for the duration of a block, then disconnect."""
    import ray

    connect(address, sec, node_ip)
    try:
        yield
    finally:
        ray.shutdown()
