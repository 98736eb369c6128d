"""Who runs a run, and whether ``bench --resume`` may take it over.

A run is owned by the process that made it or last resumed it: host name, pid and the
process's start time (a pid the system has since given to another process comes with
another start time). While the run's jobs are measured the owner beats: the dispatcher
stamps ``runs.heartbeat_at`` every :data:`HEARTBEAT_S` seconds with the database's own
clock, so lab hosts need not agree on the time. ``--resume`` takes a run over only when
nothing is measuring it any more:

* a run its owner closed (``done``, ``interrupted``, ``incomplete``): always;
* ``running`` with its owner on this host: when that pid is gone or belongs to another
  process now (a SIGKILLed or crashed bench, a reboot), with no ``--force`` needed. A
  live owner is refused; one that is alive but has not beaten for :data:`STALE_AFTER_S`
  (stopped, hung, or not measuring) can be taken over with ``--force``;
* ``running`` with its owner on another host: quantlab cannot see that host's processes,
  so it refuses, naming the owner and its last heartbeat. Once the owner has missed
  several beats (:data:`STALE_AFTER_S`: the host crashed or lost the database)
  ``--force`` takes the run over; while it still beats, ``--force`` is refused too;
* ``running`` with no owner recorded (stored before owners were): ``--force``.

Taking over is a compare-and-set on the owner columns, so of two resumes at once only
one wins; an owner whose run was taken over learns it at its next beat and stops.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from quantlab.harness.errors import UserError
from quantlab.harness.store import schema as t

HEARTBEAT_S = 15.0
"""How often a run's owner stamps its heartbeat while jobs are measured."""

STALE_AFTER_S = 4 * HEARTBEAT_S
"""A heartbeat older than this (four missed beats) is evidence that its owner is gone."""

SAME_PROCESS_S = 2.0
"""Start times this close are one process (the boot time behind them can move by 1 s)."""


@dataclass(frozen=True)
class Owner:
    """A process that owns a run."""

    host: str
    pid: int
    started_at: str  # ISO 8601 UTC: when the process started

    def describe(self) -> str:
        """``pid 4242 on lab1, started 2026-11-22 23:15:00 UTC``."""
        return f"pid {self.pid} on {self.host}, started {_short(self.started_at)}"


_ME: dict[int, Owner] = {}


def me() -> Owner:
    """This process as an owner (worked out once per process)."""
    pid = os.getpid()
    if pid not in _ME:
        import psutil

        _ME.clear()
        _ME[pid] = Owner(socket.gethostname(), pid, _iso(psutil.Process(pid).create_time()))
    return _ME[pid]


def claim() -> dict[str, Any]:
    """The ``runs`` columns that make this process a run's owner, beating now."""
    owner = me()
    return {"owner_host": owner.host, "owner_pid": owner.pid,
            "owner_started_at": owner.started_at, "heartbeat_at": sa.func.current_timestamp()}


def mine() -> sa.ColumnElement[bool]:
    """Where-clause: the run is owned by this process."""
    owner = me()
    return sa.and_(t.runs.c.owner_host == owner.host, t.runs.c.owner_pid == owner.pid,
                   t.runs.c.owner_started_at == owner.started_at)


def mine_or_unowned() -> sa.ColumnElement[bool]:
    """Where-clause: owned by this process, or by no one recorded (an older run)."""
    return sa.or_(t.runs.c.owner_pid.is_(None), mine())


def unchanged(row: Mapping[Any, Any]) -> list[sa.ColumnElement[bool]]:
    """Where-clauses: the run still has the status and owner read in ``row``."""
    return [t.runs.c[name].is_not_distinct_from(row[name])
            for name in ("status", "owner_host", "owner_pid", "owner_started_at")]


def db_now(conn: sa.Connection) -> dt.datetime:
    """The database's clock (the one heartbeats are stamped with), as aware UTC."""
    now = _aware(conn.execute(sa.select(sa.func.current_timestamp())).scalar_one())
    assert now is not None
    return now


def check_resumable(row: Mapping[Any, Any], now: dt.datetime, force: bool) -> None:
    """Raise a one-line :class:`UserError` when the run in ``row`` may still be measured by
    its owner (see the module's rules); return when ``--resume`` may take it over."""
    if row["status"] != "running":
        return  # its owner closed it
    run_id = row["run_id"]
    if row["owner_pid"] is None:
        if force:
            return
        raise UserError(f"run {run_id} is marked running but records no owner (stored by an "
                        "older quantlab)", hint="if no quantlab is measuring it any more, "
                        "resume it with --force")
    owner = Owner(row["owner_host"], int(row["owner_pid"]), row["owner_started_at"])
    beat = _aware(row["heartbeat_at"])
    age = None if beat is None else max((now - beat).total_seconds(), 0.0)
    stale = age is None or age > STALE_AFTER_S
    last = "it never beat" if age is None else f"last heartbeat {_ago(age)} ago"
    alive = process_alive(owner)
    if alive is False:
        return  # the owner died (SIGKILL, crash, reboot): nothing measures this run
    if not stale:
        where = "" if alive else " (another host: quantlab cannot see its processes)"
        stop = f"stop it (kill {owner.pid} on {owner.host})" if alive else \
            f"stop it on {owner.host}"
        raise UserError(f"run {run_id} is still running: {owner.describe()}{where}, {last}",
                        hint=f"wait for it to finish, or {stop} and resume again")
    if force:
        return
    if alive:
        raise UserError(f"run {run_id} belongs to a live process that stopped beating: "
                        f"{owner.describe()}, {last}",
                        hint=f"stop it (kill {owner.pid}) and resume again, or take the run "
                        "over with --force")
    raise UserError(f"run {run_id} belongs to {owner.describe()}, another host, and {last}",
                    hint=f"quantlab cannot see {owner.host}'s processes: if that bench is "
                    "gone (crash, reboot), take the run over with --force")


def process_alive(owner: Owner) -> bool | None:
    """Whether the owner process still runs: None when it is on another host."""
    if owner.host != me().host:
        return None
    if owner.pid == me().pid and owner.started_at == me().started_at:
        return True
    import psutil

    try:
        proc = psutil.Process(owner.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # not ours to inspect: it exists, so it may be the owner
        return True
    then = dt.datetime.fromisoformat(owner.started_at).timestamp()
    return abs(started - then) <= SAME_PROCESS_S  # else the pid was reused


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds")


def _aware(value: Any) -> dt.datetime | None:
    """A stored time as aware UTC (SQLite hands back naive UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _short(iso: str) -> str:
    try:
        return f"{dt.datetime.fromisoformat(iso).astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
    except ValueError:
        return iso


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
