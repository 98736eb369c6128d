"""Several processes open one new, empty store at the same instant: all succeed, one migrates.

Before the schema lock, 6 processes × 5 rounds failed 6 of 30 times on SQLite ("table
runs already exists") and 13 of 30 on PostgreSQL (a duplicate-key error from the
catalog) on this machine. On SQLite the switch to WAL also raced: it answers "database is
locked" without waiting out the busy timeout, in 1 of 5 rounds of this test and 3 of 48
processes of 8 rounds, until the switch was retried.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import PgServer, running_server

from quantlab.harness.store import HEAD_REVISION, Store

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 6

OPEN_AT = """
import sys, time
from quantlab.harness.store import Store
start = float(sys.argv[2])
while time.time() < start:  # everyone leaves the line together
    pass
Store.open(sys.argv[1]).close()
"""


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for this module."""
    with running_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def new_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty results store on each back end."""
    if request.param == "sqlite":
        return str(tmp_path / "results")
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()


def test_processes_opening_a_new_store_at_once_all_succeed(new_location: str) -> None:
    start = time.time() + 3.0  # after every interpreter has started and imported
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, new_location, str(start)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(PROCESSES)]
    outcomes = [(p.wait(120), p.communicate()[0]) for p in procs]
    failed = [out.strip().splitlines()[-1] for code, out in outcomes if code != 0]
    assert failed == []
    store = Store.open(new_location, migrate=False)
    assert store.current_revision() == HEAD_REVISION
    store.close()

