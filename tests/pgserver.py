"""A real PostgreSQL server for tests: the Debian package's binaries, a temp data dir, loopback.

``initdb`` + ``pg_ctl start`` on a free port of 127.0.0.1 with trust authentication
(nothing listens beyond loopback). PostgreSQL refuses to run as root, so under root
the server runs as the ``postgres`` system user. Tests that need it are skipped with
a message when the binaries are missing, psycopg is not installed or the server does not
start; under CI=true each of these fails the test instead (.ci/run installs them), so a
CI image that cannot run PostgreSQL cannot pass by skipping.
Test modules make their fixtures from :func:`running_server` (one server per module)
and :meth:`PgServer.new_database`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import in_ci, require_tool


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl, if any."""
    env = os.environ.get("QUANTLAB_PG_BIN")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One throwaway PostgreSQL cluster; :meth:`new_database` gives each test its own DB."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="qlpg"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.run_as: str | None = None
        if os.geteuid() == 0:
            self.run_as = "postgres"
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.base = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _cmd(self, *argv: str) -> list[str]:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def start(self) -> None:
        """initdb and start the server; returns when it accepts connections."""
        subprocess.run(self._cmd("initdb", "-D", str(self.data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"),
                       check=True, capture_output=True, cwd=self.dir)
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.dir} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off")
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-t", "60",
                                 "-l", str(self.dir / "server.log"), "start"),
                       check=True, capture_output=True, cwd=self.dir)

    def new_database(self) -> str:
        """A fresh empty database; its ``postgresql://`` URL."""
        import psycopg

        name = f"ql_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"{self.base}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.base}/{name}"

    def stop(self) -> None:
        """Stop the server and remove its files."""
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w",
                                     "stop"), check=True, capture_output=True, cwd=self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """A started server for the duration of a block (skips the test when unavailable)."""
    bin_dir = find_bin_dir()
    require_tool("initdb", "PostgreSQL server binaries: apt-get install postgresql, or set "
                 "QUANTLAB_PG_BIN to the folder holding initdb and pg_ctl",
                 found=bin_dir is not None)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _skip_or_fail("psycopg is not installed: pip install -e '.[lab]'")
    server = PgServer(bin_dir)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        _skip_or_fail("could not start PostgreSQL: "
                      f"{(exc.stderr or b'').decode(errors='replace')[-300:]}")
    try:
        yield server
    finally:
        server.stop()


def _skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it under CI=true (as :func:`conftest.require_tool` does)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run here, not skip)",
                    pytrace=False)
    pytest.skip(reason)
