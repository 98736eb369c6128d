"""The store's read models and the queries that fill them.

:class:`RunRecord` (a stored run with every :class:`JobEntry`) is what reports, compare,
history and the result JSON read; :func:`load_run` builds it from the tables in one
connection. :class:`JobRef` names a stored job by its run (:func:`find_jobs`: the jobs a
job id or a prefix of one names). :class:`quantlab.harness.store.Store` opens the
connection and resolves run ids; nothing outside the store runs SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from quantlab.harness.records import (
    DeviceInfo,
    EnergySample,
    Job,
    OpRecord,
    RawFile,
    RawResult,
    Run,
    from_dict,
    load_record,
)
from quantlab.harness.redact import redact_text
from quantlab.harness.store import schema as t


@dataclass(frozen=True)
class JobEntry:
    """One job of a stored run with its state and (when finished) its raw result."""

    job: Job
    seq: int
    status: str
    error: str | None
    attempts: int
    raw: RawResult | None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A stored run: its metadata, devices and every job."""

    run: Run
    status: str
    finished_at: str | None
    devices: dict[str, DeviceInfo]
    entries: tuple[JobEntry, ...]
    tags: tuple[str, ...] = ()
    plan_sha256: str | None = None
    """sha256 of the plan file the run was made from (``bench --plan``); its text:
    :meth:`quantlab.harness.store.Store.run_plan_text`."""


@dataclass(frozen=True)
class JobRef:
    """One stored job, by its run."""

    run_id: str
    job_id: str


def list_runs(conn: sa.Connection, limit: int = 50, tag: str | None = None
              ) -> list[dict[str, Any]]:
    """Newest runs first (only those tagged ``tag``: ``T`` or ``T=…``), with job counts by
    state, models and devices."""
    query = sa.select(t.runs)
    if tag:
        query = query.where(t.runs.c.run_id.in_(
            sa.select(t.run_tags.c.run_id).where(tag_clause(tag))))
    runs = conn.execute(
        query.order_by(t.runs.c.created_at.desc(), t.runs.c.run_id.desc()).limit(limit)
    ).mappings().all()
    return describe_runs(conn, runs)


def describe_runs(conn: sa.Connection, runs: Sequence[sa.RowMapping]) -> list[dict[str, Any]]:
    """``runs`` rows (in their order) with job counts by state, models, devices and tags:
    the rows of :func:`list_runs` (and of a page of runs, ``listing.runs_page``)."""
    ids = [r["run_id"] for r in runs]
    counts: dict[str, dict[str, int]] = {i: {} for i in ids}
    models: dict[str, set[str]] = {i: set() for i in ids}
    devs: dict[str, set[str]] = {i: set() for i in ids}
    tags = run_tags(conn, ids)
    if ids:
        for row in conn.execute(
            sa.select(t.jobs.c.run_id, t.jobs.c.status, t.jobs.c.model_path,
                      t.jobs.c.device_id).where(t.jobs.c.run_id.in_(ids))
        ):
            c = counts[row.run_id]
            c[row.status] = c.get(row.status, 0) + 1
            models[row.run_id].add(Path(row.model_path).name)
            devs[row.run_id].add(row.device_id)
    return [
        {
            "run_id": r["run_id"],
            "created_at": r["created_at"],
            "finished_at": r["finished_at"],
            "status": r["status"],
            "host": r["host"],
            "command": redact_text(r["command"] or "") or r["command"],
            "jobs": counts[r["run_id"]],
            "models": sorted(models[r["run_id"]]),
            "devices": sorted(devs[r["run_id"]]),
            "tags": tags.get(r["run_id"], []),
            "plan_sha256": r["plan_sha256"],
        }
        for r in runs
    ]


def load_run(conn: sa.Connection, run_id: str) -> RunRecord:
    """A whole run (``run_id`` exactly): metadata, devices, every job with its raw result.

    A result's latency summary kept by the store is handed to :mod:`quantlab.harness.stats` while
    its ``STATS_VERSION`` matches, so readers need not bootstrap again."""
    from quantlab.harness.stats import STATS_VERSION, LatencySummary, remember

    r = conn.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id)).mappings().one()
    run = load_record(
        Run,
        {
            "run_id": r["run_id"],
            "created_at": r["created_at"],
            "host": r["host"],
            "tool_versions": r["tool_versions"],
            "git_sha": r["git_sha"],
            "command": redact_text(r["command"] or "") or r["command"],
            "settings": r["settings"],
            "schema_version": r["schema_version"],
        },
    )
    devices = {
        d.device_id: from_dict(DeviceInfo, d.info)
        for d in conn.execute(sa.select(t.devices).where(t.devices.c.run_id == run_id))
    }
    samples: dict[str, dict[int, list[float]]] = {}
    for s in conn.execute(
        sa.select(t.samples.c.job_id, t.samples.c.repeat, t.samples.c.value_ms)
        .where(t.samples.c.run_id == run_id)
        .order_by(t.samples.c.job_id, t.samples.c.repeat, t.samples.c.idx)
    ):
        samples.setdefault(s.job_id, {}).setdefault(s.repeat, []).append(s.value_ms)
    ops: dict[str, list[OpRecord]] = {}
    for o in conn.execute(
        sa.select(t.ops).where(t.ops.c.run_id == run_id).order_by(t.ops.c.job_id,
                                                                  t.ops.c.idx)
    ).mappings():
        detail = dict(o["detail"])
        index = int(detail.pop("index", o["idx"]))
        ops.setdefault(o["job_id"], []).append(
            OpRecord(index=index, kernel=o["kernel"], avg_ms=o["avg_ms"],
                     op_type=o["op_type"], delegate=o["delegate"],
                     node_index=o["node_index"], times_called=o["times_called"],
                     unit=o["unit"], detail=detail)
        )
    energy: dict[str, list[EnergySample]] = {}
    for e in conn.execute(
        sa.select(t.energy_samples).where(t.energy_samples.c.run_id == run_id)
        .order_by(t.energy_samples.c.job_id, t.energy_samples.c.idx)
    ).mappings():
        energy.setdefault(e["job_id"], []).append(
            EnergySample(phase=e["phase"], t_s=e["t_s"], channel=e["channel"],
                         value=e["value"], unit=e["unit"])
        )
    raw_refs: dict[str, list[RawFile]] = {}
    for f in conn.execute(
        sa.select(t.raw_files).where(t.raw_files.c.run_id == run_id)
        .order_by(t.raw_files.c.job_id, t.raw_files.c.idx)
    ).mappings():
        raw_refs.setdefault(f["job_id"], []).append(
            RawFile(name=f["name"], sha256=f["sha256"], size_bytes=f["size_bytes"],
                    media_type=f["media_type"], truncated=bool(f["truncated"]),
                    original_size_bytes=f["original_size_bytes"],
                    cap_bytes=f["cap_bytes"])
        )
    raws = {
        row.job_id: row.raw
        for row in conn.execute(
            sa.select(t.results.c.job_id, t.results.c.raw).where(
                t.results.c.run_id == run_id
            )
        )
    }
    entries = []
    for j in conn.execute(
        sa.select(t.jobs).where(t.jobs.c.run_id == run_id).order_by(t.jobs.c.seq)
    ).mappings():
        raw = None
        if j["job_id"] in raws:
            stored = dict(raws[j["job_id"]])
            kept = stored.pop("summary", None)
            raw = load_record(RawResult, stored)
            reps = samples.get(j["job_id"], {})
            raw = replace(
                raw,
                samples_ms=tuple(tuple(reps[k]) for k in sorted(reps)),
                ops=tuple(ops.get(j["job_id"], ())),
                energy_samples=tuple(energy.get(j["job_id"], ())),
                raw_files=tuple(raw_refs.get(j["job_id"], ())),
            )
            if kept and kept.get("stats_version") == STATS_VERSION:
                remember(raw, LatencySummary.from_dict(kept))
        entries.append(
            JobEntry(
                job=from_dict(Job, j["spec"]),
                seq=j["seq"],
                status=j["status"],
                error=j["error"],
                attempts=j["attempts"],
                raw=raw,
                started_at=j["started_at"],
                finished_at=j["finished_at"],
            )
        )
    tags = run_tags(conn, [run_id]).get(run_id, [])
    return RunRecord(run=run, status=r["status"], finished_at=r["finished_at"],
                     devices=devices, entries=tuple(entries), tags=tuple(tags),
                     plan_sha256=r["plan_sha256"])


def run_tags(conn: sa.Connection, run_ids: list[str]) -> dict[str, list[str]]:
    """The tags of each run, by run id (sorted)."""
    out: dict[str, list[str]] = {}
    if run_ids:
        for row in conn.execute(sa.select(t.run_tags.c.run_id, t.run_tags.c.tag)
                                .where(t.run_tags.c.run_id.in_(run_ids))
                                .order_by(t.run_tags.c.tag)):
            out.setdefault(row.run_id, []).append(row.tag)
    return out


def tag_clause(tag: str) -> sa.ColumnElement[bool]:
    """Rows of run_tags that ``tag`` selects: the tag itself, or ``tag=…`` for a key."""
    return sa.or_(t.run_tags.c.tag == tag,
                  t.run_tags.c.tag.startswith(f"{tag}=", autoescape=True))


DISPLAY_NAME = re.compile(r"(?P<scheme>[^()]+) \((?P<name>[^()/]+)\)")
"""A model as ``history`` shows it: ``scheme (file name)``, e.g. ``int8 (model.tflite)``."""


def _path_is(name: str) -> sa.ColumnElement[bool]:
    return sa.or_(t.jobs.c.model_path == name,
                  t.jobs.c.model_path.endswith("/" + name, autoescape=True))


def model_clause(model: str) -> sa.ColumnElement[bool]:
    """Jobs on ``model``: a file name, path, sha256, scheme, or ``scheme (file name)``."""
    found = [_path_is(model), t.jobs.c.model_sha256 == model, t.jobs.c.scheme == model]
    m = DISPLAY_NAME.fullmatch(model)
    if m:
        found.append(sa.and_(t.jobs.c.scheme == m["scheme"], _path_is(m["name"])))
    return sa.or_(*found)


def runs_query(*, tag: str | None = None, model: str | None = None,
               device: str | None = None, delegate: str | None = None,
               status: Iterable[str] | None = None, limit: int | None = None,
               exclude: Iterable[str] = ()) -> sa.Select[Any]:
    """The query behind :meth:`quantlab.harness.store.Store.find_runs`: run ids, newest first."""
    query = sa.select(t.runs.c.run_id, t.runs.c.created_at)
    if tag:
        query = query.where(t.runs.c.run_id.in_(
            sa.select(t.run_tags.c.run_id).where(tag_clause(tag))))
    if status is not None:
        query = query.where(t.runs.c.status.in_(list(status)))
    excluded = list(exclude)
    if excluded:
        query = query.where(t.runs.c.run_id.notin_(excluded))
    job_filters = []
    if model:
        job_filters.append(model_clause(model))
    if device:
        job_filters.append(t.jobs.c.device_id == device)
    if delegate:
        job_filters.append(t.jobs.c.delegate == delegate)
    if job_filters:
        query = query.where(t.runs.c.run_id.in_(
            sa.select(t.jobs.c.run_id).where(*job_filters)))
    query = query.order_by(t.runs.c.created_at.desc(), t.runs.c.run_id.desc())
    if limit is not None:
        query = query.limit(limit)
    return query


def run_ids_named(conn: sa.Connection, ref: str) -> list[str]:
    """The runs ``ref`` names: for ``latest`` (or ``last``) the newest run, else every run
    whose id starts with ``ref``."""
    query = sa.select(t.runs.c.run_id)
    if ref in ("latest", "last"):
        query = query.order_by(t.runs.c.created_at.desc(), t.runs.c.run_id.desc()).limit(1)
    else:
        query = query.where(t.runs.c.run_id.startswith(ref, autoescape=True))
    return [str(r) for r in conn.execute(query).scalars()]


def find_jobs(conn: sa.Connection, job_prefix: str, run_id: str | None = None
              ) -> list[JobRef]:
    """Every stored job whose id starts with ``job_prefix`` (in run ``run_id`` only, when
    given), by run id."""
    query = sa.select(t.jobs.c.run_id, t.jobs.c.job_id).where(
        t.jobs.c.job_id.like(job_prefix.replace("%", "") + "%"))
    if run_id is not None:
        query = query.where(t.jobs.c.run_id == run_id)
    return [JobRef(str(r.run_id), str(r.job_id))
            for r in conn.execute(query.order_by(t.jobs.c.run_id, t.jobs.c.job_id))]


def plan_text(conn: sa.Connection, run_id: str) -> str | None:
    """The plan file run ``run_id`` was made from, as text (None without one)."""
    text = conn.execute(sa.select(t.runs.c.plan_text)
                        .where(t.runs.c.run_id == run_id)).scalar_one_or_none()
    return None if text is None else str(text)


def newest_evaluations(conn: sa.Connection, sha256s: Iterable[str] | None = None
                       ) -> dict[str, dict[str, Any]]:
    """The newest stored host evaluation of each variant (of ``sha256s``, or all), by sha256."""
    query = sa.select(t.evaluations).where(t.evaluations.c.device.is_(None)) \
        .order_by(t.evaluations.c.id)
    if sha256s is not None:
        query = query.where(t.evaluations.c.variant_sha256.in_(list(sha256s)))
    return {row["variant_sha256"]: dict(row) for row in conn.execute(query).mappings()}


def newest_device_evaluations(conn: sa.Connection, sha256s: Iterable[str] | None = None
                              ) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The newest evaluation measured on a device of each (variant sha256, device, delegate)."""
    query = sa.select(t.evaluations).where(t.evaluations.c.device.is_not(None)) \
        .order_by(t.evaluations.c.id)
    if sha256s is not None:
        query = query.where(t.evaluations.c.variant_sha256.in_(list(sha256s)))
    return {(row["variant_sha256"], row["device"], row["delegate"]): dict(row)
            for row in conn.execute(query).mappings()}
