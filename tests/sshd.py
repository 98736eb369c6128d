"""A real OpenSSH server for tests: Debian's ``/usr/sbin/sshd`` on a loopback address.

Throwaway host and user keys in a temp folder, ``ListenAddress 127.0.0.x:PORT`` on a free
unprivileged port, public-key login only, ``StrictModes no`` (the keys live under a
world-writable /tmp), ``PidFile none``, ``UsePAM no``, internal SFTP. It logs in the
user running the tests; the gateway's Python is this test run's interpreter. Under root
sshd needs its privilege-separation folder ``/run/sshd`` (which Debian's service unit
makes), so it is made when missing. :meth:`SshServer.stop` ends the listener and every
session process it started, so no sshd outlives the fixture.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

SSHD = Path(os.environ.get("QUANTLAB_SSHD", "/usr/sbin/sshd"))


def _keypair(path: Path) -> str:
    """Write an ed25519 private key at ``path`` (OpenSSH format); return the public line."""
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    public = key.export_public_key().decode().strip()
    path.with_suffix(".pub").write_text(public + "\n")
    return public


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class SshServer:
    """One sshd on 127.0.0.x with its keys, known_hosts line and a hosts-file helper."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="qlsshd"))
        self.address = f"127.0.0.{random.randint(2, 250)}"
        self.port = _free_port(self.address)
        self.user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
        self.identity = self.dir / "user_ed25519"
        self.host_key = self.dir / "host_ed25519"
        host_public = _keypair(self.host_key)
        (self.dir / "authorized_keys").write_text(_keypair(self.identity) + "\n")
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(f"[{self.address}]:{self.port} {host_public}\n")
        wrong = self.dir / "wrong_host_ed25519"
        self.wrong_known_hosts = self.dir / "wrong_known_hosts"
        self.wrong_known_hosts.write_text(f"[{self.address}]:{self.port} {_keypair(wrong)}\n")
        self.config = self.dir / "sshd_config"
        self.config.write_text("\n".join([
            f"ListenAddress {self.address}:{self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "PidFile none",
            "Subsystem sftp internal-sftp",
            "MaxStartups 100",
            "MaxSessions 50",
            "LogLevel VERBOSE",
            "",
        ]))
        self.log = self.dir / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SshServer:
        """Start sshd in the foreground (``-D``) and wait until it accepts connections."""
        if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self.proc = subprocess.Popen([str(SSHD), "-D", "-f", str(self.config), "-E",
                                      str(self.log)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {err.strip()} "
                                   f"{self.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    (self.address, self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on {self.address}:{self.port}")

    def log_text(self) -> str:
        """sshd's log so far (for assertion messages)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def sessions(self) -> list[psutil.Process]:
        """The per-connection sshd processes (children of the listener)."""
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.Error:
            return []

    def descendants(self) -> list[psutil.Process]:
        """Every process started through this server (sessions and what they run)."""
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def hosts_entry(self, name: str, *, known_hosts: Path | None = None,
                    python: str | None = None, port: int | None = None,
                    workdir: Path | None = None, extra: str = "") -> str:
        """A ``[[gateway]]`` table for this server."""
        lines = ["[[gateway]]", f'name = "{name}"',
                 f'address = "{self.user}@{self.address}:{port or self.port}"',
                 f'identity = "{self.identity}"',
                 f'known_hosts = "{known_hosts or self.known_hosts}"',
                 f'workdir = "{workdir or self.dir / "gateway"}"']
        if python:
            lines.append(f'python = "{python}"')
        return "\n".join(lines) + ("\n" + extra if extra else "") + "\n\n"

    def stop(self) -> None:
        """End the listener and every session it started; remove the keys and caches."""
        if self.proc is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        procs = self.descendants()
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
