"""Read models for browsing a store a page at a time (``quantlab serve``).

Each query returns a page: runs by filter (:func:`runs_page`), the devices the store has
met (:func:`known_devices`, from the small ``devices`` table), the jobs running now
(:func:`running_jobs`), the series of the newest runs that ``history`` would draw
(:func:`series_keys`) and a tag's finished runs before a moment (:func:`earlier_runs`, the
baseline a nightly run was compared with).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from quantlab.harness.errors import UserError
from quantlab.harness.records import Job, from_dict
from quantlab.harness.store import schema as t
from quantlab.harness.store.read_models import describe_runs, model_clause, runs_query, tag_clause

MAX_PAGE = 500
"""The most rows one page may ask for."""


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list: each field None for "any"."""

    model: str | None = None  # file name, path, sha256, scheme or "scheme (file name)"
    device: str | None = None
    delegate: str | None = None
    tag: str | None = None  # T matches the tag T and every T=…
    status: str | None = None  # running | done | interrupted | incomplete
    since: str | None = None  # created at or after: a date (YYYY-MM-DD) or ISO 8601 time
    until: str | None = None  # created up to: a date (the whole day) or ISO 8601 time

    def bounds(self) -> tuple[str | None, str | None]:
        """(lowest created_at, created_at below which), as the store writes created_at."""
        return (_moment(self.since, "since", end_of_day=False),
                _moment(self.until, "until", end_of_day=True))


def _moment(value: str | None, name: str, end_of_day: bool) -> str | None:
    """A date or time as the store's ``created_at`` text (UTC, ISO 8601); a date given as
    ``until`` means the end of that day."""
    if not value:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            when = dt.datetime.combine(day + dt.timedelta(days=1) if end_of_day else day,
                                       dt.time(), dt.UTC)
            return when.isoformat(timespec="milliseconds")
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{name} {value!r}: not a date or time",
                        hint="give YYYY-MM-DD or an ISO 8601 time such as 2026-05-01T12:00"
                        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
    if end_of_day:  # a time given as until is included
        moment += dt.timedelta(milliseconds=1)
    return moment.isoformat(timespec="milliseconds")


def check_page(limit: int, offset: int) -> None:
    """Refuse a page size or start that no query should run with."""
    if not 1 <= limit <= MAX_PAGE:
        raise UserError(f"limit {limit}: out of range", hint=f"ask for 1 to {MAX_PAGE} rows")
    if offset < 0:
        raise UserError(f"offset {offset}: negative", hint="start at 0")


def _filtered(f: RunFilter) -> sa.Select[Any]:
    query = runs_query(tag=f.tag, model=f.model, device=f.device, delegate=f.delegate,
                       status=[f.status] if f.status else None)
    low, high = f.bounds()
    if low:
        query = query.where(t.runs.c.created_at >= low)
    if high:
        query = query.where(t.runs.c.created_at < high)
    return query


def runs_page(conn: sa.Connection, f: RunFilter, limit: int = 50, offset: int = 0
              ) -> tuple[list[dict[str, Any]], int]:
    """One page of the runs ``f`` selects, newest first (rows as :func:`list_runs` gives
    them), and how many runs it selects in all."""
    check_page(limit, offset)
    query = _filtered(f)
    total = conn.execute(sa.select(sa.func.count()).select_from(
        query.order_by(None).subquery())).scalar_one()
    ids = [r.run_id for r in conn.execute(query.limit(limit).offset(offset))]
    if not ids:
        return [], int(total)
    found = {r["run_id"]: r for r in conn.execute(
        sa.select(t.runs).where(t.runs.c.run_id.in_(ids))).mappings()}
    return describe_runs(conn, [found[i] for i in ids]), int(total)


def count_runs(conn: sa.Connection) -> int:
    """How many runs the store holds."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(t.runs)).scalar_one())


def known_devices(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every device a stored run recorded: how many runs recorded it, when it was first and
    last seen, its newest run, and the snapshot that run keeps of it (``info``: a
    :class:`~quantlab.harness.records.DeviceInfo` dict). Reads the ``devices`` table (one
    small row per run and device), not the jobs."""
    d, r = t.devices, t.runs
    seen = conn.execute(
        sa.select(d.c.device_id, sa.func.count().label("runs"),
                  sa.func.min(r.c.created_at).label("first_seen"),
                  sa.func.max(r.c.created_at).label("last_seen"))
        .join(r, r.c.run_id == d.c.run_id).group_by(d.c.device_id)).mappings().all()
    newest = {row.run_id: row.created_at for row in conn.execute(
        sa.select(r.c.run_id, r.c.created_at)
        .where(r.c.created_at.in_({agg["last_seen"] for agg in seen})))} if seen else {}
    snapshots: dict[tuple[str, str], Any] = {}
    if newest:
        for row in conn.execute(sa.select(d.c.device_id, d.c.run_id, d.c.platform, d.c.info)
                                .where(d.c.run_id.in_(list(newest))).order_by(d.c.run_id)):
            snapshots[(row.device_id, newest[row.run_id])] = row
    out: dict[str, dict[str, Any]] = {}
    for agg in seen:
        snap = snapshots[(agg["device_id"], agg["last_seen"])]
        out[agg["device_id"]] = {"device_id": agg["device_id"], "platform": snap.platform,
                                 "runs": int(agg["runs"]), "first_seen": agg["first_seen"],
                                 "last_seen": agg["last_seen"], "last_run": snap.run_id,
                                 "info": snap.info, "snapshot_at": agg["last_seen"]}
    return sorted(out.values(), key=lambda e: e["device_id"])


def running_jobs(conn: sa.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The jobs the store says are being measured now (job ``running`` in a run that is
    ``running``), oldest first, with their run's last heartbeat."""
    j, r = t.jobs, t.runs
    rows = conn.execute(
        sa.select(j.c.run_id, j.c.job_id, j.c.device_id, j.c.spec, j.c.started_at,
                  j.c.attempts, r.c.heartbeat_at)
        .join(r, r.c.run_id == j.c.run_id)
        # the running runs first (few), then their jobs by primary key: not a scan of jobs
        .where(j.c.run_id.in_(sa.select(r.c.run_id).where(r.c.status == "running")),
               j.c.status == "running")
        .order_by(j.c.started_at).limit(limit)).mappings()
    return [{"run_id": row["run_id"], "job_id": row["job_id"], "device_id": row["device_id"],
             "label": from_dict(Job, row["spec"]).label(), "started_at": row["started_at"],
             "attempts": row["attempts"],
             "heartbeat_at": None if row["heartbeat_at"] is None
             else str(row["heartbeat_at"])} for row in rows]


def series_name(scheme: str | None, path: str) -> str:
    """A model as ``history`` names it: ``scheme (file name)``, or the file name."""
    name = Path(path).name
    return f"{scheme} ({name})" if scheme else name


def series_keys(conn: sa.Connection, f: RunFilter, limit: int = 50, offset: int = 0,
                last: int = 30) -> tuple[list[dict[str, Any]], int]:
    """One page of the series (model as ``history`` names it × device × delegate × threads)
    of the jobs that ``f`` selects in the ``last`` newest runs it selects, sorted as
    ``history`` sorts them, each with how many of those runs it is in and its newest run;
    and how many series there are in all."""
    check_page(limit, offset)
    check_page(last, 0)
    j, r = t.jobs, t.runs
    job_filters = []
    if f.model:
        job_filters.append(model_clause(f.model))
    if f.device:
        job_filters.append(j.c.device_id == f.device)
    if f.delegate:
        job_filters.append(j.c.delegate == f.delegate)
    recent = _filtered(f).limit(last).subquery()
    query = (sa.select(j.c.scheme, j.c.model_path, j.c.device_id, j.c.delegate, j.c.threads,
                       sa.func.count(sa.distinct(j.c.run_id)).label("runs"),
                       sa.func.max(r.c.created_at).label("last_seen"))
             .join(r, r.c.run_id == j.c.run_id)
             .where(j.c.run_id.in_(sa.select(recent.c.run_id)), *job_filters)
             .group_by(j.c.scheme, j.c.model_path, j.c.device_id, j.c.delegate, j.c.threads))
    merged: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in conn.execute(query):
        key = (series_name(row.scheme, row.model_path), row.device_id, row.delegate,
               int(row.threads))
        entry = merged.setdefault(key, {"model": key[0], "device": key[1], "delegate": key[2],
                                        "threads": key[3], "runs": 0, "last_seen": ""})
        entry["runs"] += int(row.runs)  # summed over the paths that share one name
        entry["last_seen"] = max(entry["last_seen"], row.last_seen)
    keys = sorted(merged)
    return [merged[k] for k in keys[offset:offset + limit]], len(keys)


def earlier_runs(conn: sa.Connection, tag: str, before: str, limit: int) -> list[str]:
    """Up to ``limit`` finished runs carrying ``tag`` made before ``before`` (a
    ``created_at``), newest first: what ``bench --baseline TAG`` compared a run with."""
    return [str(row.run_id) for row in conn.execute(
        sa.select(t.runs.c.run_id)
        .where(t.runs.c.status == "done", t.runs.c.created_at < before,
               t.runs.c.run_id.in_(sa.select(t.run_tags.c.run_id).where(tag_clause(tag))))
        .order_by(t.runs.c.created_at.desc(), t.runs.c.run_id.desc()).limit(limit))]
