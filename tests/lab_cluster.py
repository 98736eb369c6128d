"""A real lab on loopback for tests and benchmarks: a head and lab hosts as processes.

Every member runs the real CLI (``quantlab lab head`` / ``quantlab lab join``), each
in its own session and Ray temp dir, on 127.0.0.2 (Ray rewrites 127.0.0.1). Nothing
here runs ``ray stop`` (it would kill every Ray process on the machine): members are
stopped by process group, lab hosts before the head.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
LOOPBACK = "127.0.0.2"


def free_port() -> int:
    """A free TCP port on the loopback address (outside Ray's worker port range)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def make_tls(folder: Path) -> Path:
    """A throwaway CA and one certificate for every member (ca.crt, node.crt, node.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quantlab test lab CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab member")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(san, critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    (folder / "node.crt").write_bytes(cert.public_bytes(pem))
    key_file = folder / "node.key"
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return folder


@dataclass
class Member:
    """One process of the lab (head or lab host) and the output it printed."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, text: str, timeout_s: float) -> None:
        """Block until the member printed ``text`` (or fail with its output)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in ln for ln in self.lines):
                return
            if self.proc.poll() is not None and not self.ready.is_set():
                time.sleep(0.2)
                if any(text in ln for ln in self.lines):
                    return
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not print {text!r}:\n" + "\n".join(self.lines[-30:]))


class Lab:
    """A head plus lab hosts on loopback, all with one token (and optionally mutual TLS)."""

    def __init__(self, tls: bool = True, sleep_s: float = 0.3, devices_per_host: int = 2) -> None:
        from quantlab.harness.lab.security import LabSecurity, create_token

        self.dir = Path(tempfile.mkdtemp(prefix="qlab", dir="/tmp"))  # short: unix sockets
        self.token = create_token(self.dir / "token")
        self.tls_dir = make_tls(self.dir / "tls") if tls else None
        self.sec = LabSecurity(self.token, self.tls_dir)
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.sleep_s = sleep_s
        self.devices_per_host = devices_per_host
        self.members: dict[str, Member] = {}

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a member process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update({"RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": f"{TESTS}:{ROOT}",
                    "QUANTLAB_LAB_TOKEN": str(self.token), "PYTHONUNBUFFERED": "1"})
        if self.tls_dir:
            env["QUANTLAB_LAB_TLS"] = str(self.tls_dir)
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Member:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True, cwd=ROOT)
        member = Member(name, argv, proc)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                member.lines.append(line.rstrip())
            member.ready.set()

        threading.Thread(target=read, daemon=True).start()
        self.members[name] = member
        return member

    def start_head(self, wait: bool = True) -> Member:
        """``quantlab lab head`` (by default returns once it is up)."""
        argv = [sys.executable, "-m", "quantlab", "lab", "head", "--port",
                str(self.port), "--node-ip", LOOPBACK, "--temp-dir", str(self.dir / "h"),
                "--num-cpus", "1"]
        member = self._spawn("head", argv, self.env())
        if wait:
            member.wait_for("lab head running", 90)
        return member

    def join_argv(self, name: str, count: int | None = None, token: Path | None = None,
                  rescan_s: float = 1.0) -> list[str]:
        """``quantlab lab join`` of a lab host named ``name`` with sleep devices."""
        argv = [sys.executable, "-m", "quantlab", "lab", "join", "--address",
                self.address, "--devices", "lab_agents:SleepAgent", "--name", name,
                "--agent-option", f"count={count or self.devices_per_host}",
                "--agent-option", f"sleep_s={self.sleep_s}",
                "--node-ip", LOOPBACK, "--temp-dir", str(self.dir / name),
                "--rescan", str(rescan_s)]
        if token is not None:
            argv += ["--token-file", str(token)]
        if self.count_file(name).exists():
            argv += ["--agent-option", f"count_file={self.count_file(name)}"]
        return argv

    def count_file(self, name: str) -> Path:
        """Write a number there (before the host starts) to plug/unplug its devices."""
        return self.dir / f"{name}-devices"

    def start_host(self, name: str, count: int | None = None, wait: bool = True,
                   token: Path | None = None, **env: str) -> Member:
        """Start a lab host; by default wait until its devices are registered."""
        cache = str(self.dir / f"{name}-cache")
        member = self._spawn(name, self.join_argv(name, count, token),
                             self.env(QUANTLAB_LAB_CACHE=cache, **env))
        if wait:
            member.wait_for("joined", 120)
        return member

    def kill(self, name: str) -> None:
        """Crash a member like a host losing power: SIGKILL to every process it started
        (join, ray start, raylet, the device actors' workers) at once."""
        import psutil

        member = self.members.pop(name)
        try:
            procs = [psutil.Process(member.proc.pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        member.proc.wait()

    def stop(self, name: str, timeout_s: float = 20.0) -> None:
        """Stop a member politely (SIGTERM), then by force."""
        member = self.members.pop(name)
        if member.proc.poll() is None:
            member.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                member.proc.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):  # what is left (raylet, workers)
            os.killpg(member.proc.pid, signal.SIGKILL)
        member.proc.wait()

    def close(self) -> None:
        """Lab hosts first (all at once), then the head; then the temp dir."""
        hosts = [n for n in self.members if n != "head"]
        for name in hosts:
            with contextlib.suppress(ProcessLookupError):
                self.members[name].proc.send_signal(signal.SIGTERM)
        for name in hosts:
            self.stop(name)
        if "head" in self.members:
            self.stop("head")
        shutil.rmtree(self.dir, ignore_errors=True)
