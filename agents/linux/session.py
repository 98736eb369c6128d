"""One SSH connection to one gateway: connect with verified host keys, SFTP, probe, and the
content-addressed caches on the gateway (the measuring code and models, pushed once and
checksum-verified there). The measuring code is the LiteRT runner package, shipped whole
(every file of its folder, hashed as one), and the gateway-side helper beside it.

SSH runs commands through the remote user's shell, so every command line is a list of
words joined with :func:`shlex.join`: nothing is expanded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import shlex
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from quantlab.agents.linux.hosts import Gateway, HostsFileError
from quantlab.agents.linux.remote import RUNNER_PACKAGE
from quantlab.agents.litert import runner as litert_runner
from quantlab.harness.errors import DeviceDisconnected, DeviceUnusable, JobFailed

DEFAULT_PYTHON = "python3"
DISK_MARGIN_BYTES = 16 * 2**20
"""Free space kept on the gateway beyond the file being pushed."""

HELPER = "remote.py"
"""The gateway-side helper (:mod:`quantlab.agents.linux.remote`), shipped beside the runner."""

T = TypeVar("T")


class HostKeyRefused(DeviceUnusable):
    """The gateway's host key is not in known_hosts (or differs): refused, never accepted."""


class AuthRefused(DeviceUnusable):
    """The gateway refused every key offered."""


class GatewayUnreachable(DeviceDisconnected):
    """No SSH connection could be made (host down, no route, nothing listening)."""


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code (a fresh event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: list[Any] = []

    def target() -> None:  # called from inside a running loop (a Ray async actor)
        try:
            box.append((True, asyncio.run(factory())))
        except BaseException as exc:
            box.append((False, exc))

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def worker_bundle() -> tuple[str, dict[str, bytes]]:
    """The code pushed to gateways: its content hash and ``relative path → bytes``. That is
    every file of the LiteRT runner package's folder (under :data:`RUNNER_PACKAGE`, which
    the helper runs with ``python -m``) and the helper; the hash covers each path and its
    bytes, so any change to the package is a new version on every gateway."""
    package = Path(litert_runner.__file__).resolve().parent
    files = {
        f"{RUNNER_PACKAGE}/{f.relative_to(package).as_posix()}": f.read_bytes()
        for f in sorted(package.rglob("*"))
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"}
    files[HELPER] = (Path(__file__).resolve().parent / HELPER).read_bytes()
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16], files


def ssh_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the SSH connection failed or dropped."""
    import asyncssh

    return (asyncssh.Error, OSError, EOFError, ConnectionError, asyncio.IncompleteReadError)


def summarize_error(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------- one connection


class Session:
    """One SSH connection to one gateway, with its SFTP client and resolved paths."""

    def __init__(self, gw: Gateway, conn: Any, sftp: Any, workdir: str) -> None:
        self.gw = gw
        self.conn = conn
        self.sftp = sftp
        self.workdir = workdir
        self.python = gw.python or DEFAULT_PYTHON
        self.pushes = 0  # files ensure_file actually sent (content-addressed: once per host)

    @classmethod
    async def open(cls, gw: Gateway) -> Session:
        """Connect (host key verified against known_hosts), start SFTP, resolve paths."""
        import asyncssh

        known = Path(gw.known_hosts).expanduser()
        where = f"{gw.host}:{gw.port or 22}"
        if not known.is_file():
            raise HostKeyRefused(gw.device_id, f"host key of {where} refused: known_hosts "
                                 f"file {known} does not exist",
                                 hint=_host_key_hint(gw, known))
        options: dict[str, Any] = {"known_hosts": str(known),
                                   "connect_timeout": gw.connect_timeout_s,
                                   "keepalive_interval": 15, "keepalive_count_max": 4}
        if gw.user:
            options["username"] = gw.user
        if gw.port:
            options["port"] = gw.port
        if gw.identity:
            key = Path(gw.identity).expanduser()
            if not key.is_file():
                raise HostsFileError(f"gateway {gw.name}: identity {gw.identity}: no such file")
            options["client_keys"] = [str(key)]
        try:
            conn = await asyncssh.connect(gw.host, **options)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyRefused(gw.device_id, f"host key of {where} refused: not in "
                                 f"{known}, or differs from the key recorded there "
                                 f"({summarize_error(exc)})",
                                 hint=_host_key_hint(gw, known)) from None
        except asyncssh.PermissionDenied:
            who = f"{gw.user}@" if gw.user else ""
            raise AuthRefused(gw.device_id, f"{who}{where} refused the key "
                              f"({gw.identity or 'ssh-agent / default keys'})",
                              hint="add its public key to ~/.ssh/authorized_keys on the "
                              "gateway (ssh-copy-id)") from None
        except asyncssh.KeyImportError as exc:
            raise HostsFileError(f"gateway {gw.name}: identity {gw.identity}: "
                                 f"{summarize_error(exc)}") from None
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise GatewayUnreachable(gw.device_id, f"{where} unreachable "
                                     f"({summarize_error(exc)})",
                                     hint="is it powered, on the network, running sshd?"
                                     ) from None
        try:
            sftp = await conn.start_sftp_client()
            await sftp.makedirs(gw.workdir, exist_ok=True)
            workdir = await sftp.realpath(gw.workdir)
            session = cls(gw, conn, sftp, workdir)
            if not gw.python and await sftp.exists(session.venv_python):
                session.python = session.venv_python
        except asyncssh.SFTPError as exc:
            conn.close()
            raise JobFailed(f"{gw.device_id}: cannot use work folder {gw.workdir} "
                            f"({summarize_error(exc)})",
                            hint="set workdir in the hosts file to a writable folder") from None
        except BaseException:
            conn.close()
            raise
        return session

    @property
    def venv_python(self) -> str:
        """The interpreter of the venv ``quantlab gateway provision --install`` makes."""
        return f"{self.workdir}/venv/bin/python"

    async def close(self) -> None:
        """Close SFTP and the connection."""
        with contextlib.suppress(Exception):
            self.sftp.exit()
        self.conn.close()
        with contextlib.suppress(Exception):
            await self.conn.wait_closed()

    async def run(self, argv: list[str], stdin: str | None = None,
                  timeout: float = 120.0) -> Any:
        """Run ``argv`` (each word quoted: no shell expansion of anything)."""
        return await asyncio.wait_for(
            self.conn.run(shlex.join(argv), input=stdin, check=False), timeout)

    async def probe(self, python: str | None = None) -> dict[str, Any]:
        """The gateway's facts (:func:`quantlab.agents.linux.remote.probe`), run by piping the
        script to ``python -``: nothing is written on the gateway."""
        source = (Path(__file__).resolve().parent / HELPER).read_text()
        python = python or self.python
        res = await self.run([python, "-", "probe", self.workdir], stdin=source)
        if res.exit_status != 0:
            raise PythonMissing(self.gw, python, res.exit_status, str(res.stderr or ""))
        try:
            facts: dict[str, Any] = json.loads(str(res.stdout).strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise PythonMissing(self.gw, python, res.exit_status, str(res.stdout)) from None
        facts["python_path"] = python
        return facts

    # ---------------------------------------------------------------- content-addressed files

    async def free_bytes(self) -> int | None:
        """Free bytes in the work folder (statvfs@openssh.com), None when unknown."""
        try:
            st = await self.sftp.statvfs(self.workdir)
        except Exception:
            return None
        return int(st.bavail * st.frsize)

    async def ensure_code(self) -> str:
        """The measuring code's folder on the gateway (:func:`worker_bundle`), pushed once per
        code version into a temporary folder that is renamed when complete."""
        sha, files = worker_bundle()
        final = f"{self.workdir}/worker/{sha}"
        if await self.sftp.exists(f"{final}/.complete"):
            return final
        tmp = f"{self.workdir}/worker/.tmp-{sha}-{secrets.token_hex(4)}"
        for folder in sorted({str(PurePosixPath(tmp, name).parent) for name in files}):
            await self.sftp.makedirs(folder, exist_ok=True)
        for name, data in files.items():
            async with self.sftp.open(f"{tmp}/{name}", "wb") as f:
                await f.write(data)
        async with self.sftp.open(f"{tmp}/.complete", "wb") as f:
            await f.write(sha.encode())
        try:
            await self.sftp.posix_rename(tmp, final)
        except Exception:  # another controller got there first
            await self.sftp.rmtree(tmp, ignore_errors=True)
        return final

    async def ensure_file(self, local: Path, sha256: str, kind: str, code_dir: str) -> str:
        """``local`` in the gateway's cache as ``<kind>/<sha256><suffix>``: pushed when absent,
        checksum-verified on the gateway before it enters the cache."""
        import asyncssh

        remote = f"{self.workdir}/{kind}/{sha256}{local.suffix}"
        size = local.stat().st_size
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            if (await self.sftp.stat(remote)).size == size:
                return remote
        free = await self.free_bytes()
        if free is not None and free < size + DISK_MARGIN_BYTES:
            raise JobFailed(f"{self.gw.device_id}: disk full: {free / 2**20:.0f} MB free in "
                            f"{self.workdir}, {local.name} needs {size / 2**20:.1f} MB",
                            hint="free space on the gateway or set workdir to a bigger disk")
        part = f"{remote}.{secrets.token_hex(4)}.part"
        self.pushes += 1
        await self.sftp.makedirs(f"{self.workdir}/{kind}", exist_ok=True)
        try:
            await self.sftp.put(str(local), part)
        except asyncssh.SFTPError as exc:
            with contextlib.suppress(Exception):
                await self.sftp.remove(part)
            free = await self.free_bytes()
            if free is not None and free < size + DISK_MARGIN_BYTES:
                raise JobFailed(f"{self.gw.device_id}: disk full while pushing {local.name} "
                                f"({free / 2**20:.0f} MB free in {self.workdir})") from None
            raise JobFailed(f"{self.gw.device_id}: pushing {local.name} failed: "
                            f"{summarize_error(exc)}") from None
        res = await self.run([self.python, f"{code_dir}/{HELPER}", "sha256", part])
        got = str(res.stdout or "").strip()
        if res.exit_status != 0 or got != sha256:
            with contextlib.suppress(Exception):
                await self.sftp.remove(part)
            if res.exit_status != 0:
                raise PythonMissing(self.gw, self.python, res.exit_status, str(res.stderr))
            raise JobFailed(f"{self.gw.device_id}: {local.name}: checksum mismatch after "
                            f"upload (expected {sha256[:12]}…, the gateway has "
                            f"{got[:12] or 'nothing'}…)",
                            hint="the file changed since planning, or the link corrupts data")
        await self.sftp.posix_rename(part, remote)
        return remote


def _host_key_hint(gw: Gateway, known: Path) -> str:
    port = f"-p {gw.port} " if gw.port else ""
    return (f"quantlab never accepts a host key on its own: compare the fingerprint with "
            f"`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the gateway, then "
            f"`ssh-keyscan {port}{gw.host} >> {known}`")


class PythonMissing(JobFailed):
    """The gateway's Python is missing or cannot run the probe."""

    def __init__(self, gw: Gateway, python: str, status: int | None, output: str) -> None:
        last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "")
        if status == 127:
            what = f"python {python} not found on {gw.device_id}"
        else:
            what = f"python {python} on {gw.device_id} failed (exit {status}): {last}"
        super().__init__(what, hint="install python3 (3.10+) there or set python in the "
                         f"hosts file; see quantlab gateway provision {gw.name}")
        self.status = status
