"""The results store: every run, job, raw sample, op row and evaluation, on SQLAlchemy Core.

SQLite (``results/quantlab.db``) is the embedded default; a ``postgresql://`` URL
gives a lab a shared history. Every write is one transaction, so a run killed at
any moment leaves finished jobs stored and the running one ``running`` (or
``interrupted`` when quantlab saw the signal), which ``--resume`` runs again.
Schema changes are Alembic migrations (``migrations/versions``).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from harness.errors import StoreError, UserError
from harness.records import (
    DeviceInfo,
    EnergySample,
    Job,
    OpRecord,
    Plan,
    RawResult,
    Run,
    from_dict,
    load_record,
    to_dict,
)
from harness.store import schema as t

HEAD_REVISION = "0001"
"""Newest migration; tests check it equals Alembic's head."""

DB_FILENAME = "quantlab.db"
DONE_STATES = ("ok", "failed", "skipped")


def utcnow() -> str:
    """Current time as ISO 8601 UTC with seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A sortable, readable run id such as ``20261122-231500-3fa2``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


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


def redact_url(location: str) -> str:
    """A store location fit to print: a database URL loses its password."""
    if "://" not in location or "@" not in location:
        return location
    scheme, rest = location.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"


def _url_for(location: str) -> tuple[str, Path | None]:
    if "://" in location:
        if location.startswith("postgresql://") or location.startswith("postgres://"):
            rest = location.split("://", 1)[1]
            return "postgresql+psycopg://" + rest, None
        if location.startswith(("postgresql+", "sqlite:")):
            return location, None
        raise StoreError(
            f"--results {redact_url(location)}: unsupported URL",
            hint="give a folder or a postgresql://user@host/db URL",
        )
    folder = Path(location)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"results folder {folder}: cannot create it ({exc.strerror})",
            hint="pass --results with a writable folder",
        ) from None
    if not folder.is_dir():
        raise StoreError(f"results folder {folder}: is not a folder", hint="pass --results DIR")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"results folder {folder}: is not writable",
            hint="pass --results with a writable folder, or fix its permissions",
        )
    return f"sqlite:///{folder / DB_FILENAME}", folder


class Store:
    """Read and write runs, jobs, results and evaluations."""

    def __init__(self, engine: sa.Engine, location: str, folder: Path | None) -> None:
        self.engine = engine
        self.location = redact_url(location)
        """Where the store lives, safe to print (no password)."""
        self.folder = folder
        """The results folder for a SQLite store (raw files live beside the database)."""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, location: str, *, migrate: bool = True) -> Store:
        """Open (and create or migrate) the store at a folder or a database URL."""
        url, folder = _url_for(location)
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"--results {redact_url(location)}: {exc}") from None
        if url.startswith("sqlite"):
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine, location, folder)
        try:
            store._ensure_schema(migrate)
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"results store {redact_url(location)}: "
                f"{str(exc.orig).strip().splitlines()[0]}",
                hint="check the path or URL and that the database is reachable",
            ) from None
        return store

    def current_revision(self) -> str | None:
        """The migration the database is at, or None for an empty database."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
            return str(row[0]) if row else None

    def _ensure_schema(self, migrate: bool) -> None:
        revision = self.current_revision()
        if revision == HEAD_REVISION:
            return
        if revision is not None and not _known_revision(revision):
            raise StoreError(
                f"results store {self.location} was written by a newer quantlab "
                f"(schema {revision})",
                hint="upgrade quantlab",
            )
        if not migrate:
            raise StoreError(
                f"results store {self.location} needs migrating", hint="run quantlab db migrate"
            )
        self.migrate()

    def migrate(self) -> str:
        """Apply every pending migration (Alembic); returns the new revision."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._lock, self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return HEAD_REVISION

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self._lock, self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ writing runs

    def create_run(self, run: Run, plan: Plan, devices: Iterable[DeviceInfo] = ()) -> None:
        """Store a new run with its planned jobs (``pending``) and skipped ones (``skipped``)."""
        rows = []
        seq = 0
        for job in plan.jobs:
            rows.append(_job_row(run.run_id, job, seq, "pending", None))
            seq += 1
        for skipped in plan.skipped:
            rows.append(_job_row(run.run_id, skipped.job, seq, "skipped", skipped.reason))
            seq += 1
        seen: set[str] = set()
        unique_rows = []
        for row in rows:  # the same job twice in one request is measured once
            if row["job_id"] not in seen:
                seen.add(row["job_id"])
                unique_rows.append(row)
        with self._tx() as conn:
            conn.execute(
                t.runs.insert().values(
                    run_id=run.run_id,
                    created_at=run.created_at,
                    status="running",
                    host=run.host,
                    command=run.command,
                    git_sha=run.git_sha,
                    tool_versions=dict(run.tool_versions),
                    settings=to_dict(run.settings),
                    schema_version=run.schema_version,
                )
            )
            device_rows = [
                {"run_id": run.run_id, "device_id": d.id, "platform": d.platform,
                 "info": to_dict(d)}
                for d in devices
            ]
            if device_rows:
                conn.execute(t.devices.insert(), device_rows)
            if unique_rows:
                conn.execute(t.jobs.insert(), unique_rows)

    def add_devices(self, run_id: str, devices: Iterable[DeviceInfo]) -> None:
        """Record devices met later in a run (e.g. on resume), keeping the first snapshot."""
        with self._tx() as conn:
            known = {
                r[0]
                for r in conn.execute(
                    sa.select(t.devices.c.device_id).where(t.devices.c.run_id == run_id)
                )
            }
            rows = [
                {"run_id": run_id, "device_id": d.id, "platform": d.platform, "info": to_dict(d)}
                for d in devices
                if d.id not in known
            ]
            if rows:
                conn.execute(t.devices.insert(), rows)

    def mark_running(self, run_id: str, job_id: str) -> None:
        """A job starts (one more attempt)."""
        with self._tx() as conn:
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.run_id == run_id, t.jobs.c.job_id == job_id)
                .values(status="running", started_at=utcnow(), attempts=t.jobs.c.attempts + 1)
            )

    def set_status(self, run_id: str, job_id: str, status: str, error: str | None = None) -> None:
        """Set a job's state without a result (``pending``, ``interrupted``, ``failed`` …)."""
        with self._tx() as conn:
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.run_id == run_id, t.jobs.c.job_id == job_id)
                .where(t.jobs.c.status.notin_(DONE_STATES))
                .values(status=status, error=error, finished_at=utcnow())
            )

    def mark_interrupted(self, run_id: str, job_id: str) -> None:
        """The job was running when the run was interrupted."""
        self.set_status(run_id, job_id, "interrupted", "interrupted before it finished")

    def save_result(self, run_id: str, job_id: str, raw: RawResult) -> bool:
        """Store a job's raw result and finish the job, in one transaction.

        Returns False (and stores nothing) when the job already has a result: a late
        duplicate from a retried job is discarded.
        """
        from harness.stats import summarize

        summary = summarize(raw)
        body = to_dict(raw)
        for key in ("samples_ms", "ops", "energy_samples"):
            body.pop(key, None)
        try:
            return self._insert_result(run_id, job_id, raw, summary, body)
        except sa.exc.IntegrityError:
            # Another process (a lab host sharing PostgreSQL) stored this job's result
            # between our check and our insert: the transaction rolled back, keep theirs.
            return False

    def _insert_result(self, run_id: str, job_id: str, raw: RawResult, summary: Any,
                       body: dict[str, Any]) -> bool:
        with self._tx() as conn:
            current = conn.execute(
                sa.select(t.jobs.c.status).where(
                    t.jobs.c.run_id == run_id, t.jobs.c.job_id == job_id
                )
            ).scalar_one_or_none()
            if current is None:
                raise StoreError(f"run {run_id} has no job {job_id}")
            if current in DONE_STATES:
                return False
            conn.execute(
                t.results.insert().values(
                    run_id=run_id,
                    job_id=job_id,
                    status=raw.status,
                    median_ms=summary.median if summary else None,
                    mean_ms=summary.mean if summary else None,
                    init_ms=raw.init_ms,
                    first_inference_ms=raw.first_inference_ms,
                    peak_memory_mb=raw.peak_memory_mb,
                    energy_mj=raw.energy.mj_per_inference if raw.energy else None,
                    energy_method=raw.energy.method if raw.energy else None,
                    raw=body,
                )
            )
            sample_rows = [
                {"run_id": run_id, "job_id": job_id, "repeat": r, "idx": i, "value_ms": v}
                for r, rep in enumerate(raw.samples_ms)
                for i, v in enumerate(rep)
            ]
            if sample_rows:
                conn.execute(t.samples.insert(), sample_rows)
            op_rows = [
                {
                    "run_id": run_id,
                    "job_id": job_id,
                    "idx": k,
                    "kernel": op.kernel,
                    "op_type": op.op_type,
                    "delegate": op.delegate,
                    "node_index": op.node_index,
                    "avg_ms": op.avg_ms,
                    "times_called": op.times_called,
                    "unit": op.unit,
                    "detail": {**op.detail, "index": op.index},
                }
                for k, op in enumerate(raw.ops)
            ]
            if op_rows:
                conn.execute(t.ops.insert(), op_rows)
            energy_rows = [
                {"run_id": run_id, "job_id": job_id, "idx": i, **to_dict(s)}
                for i, s in enumerate(raw.energy_samples)
            ]
            if energy_rows:
                conn.execute(t.energy_samples.insert(), energy_rows)
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.run_id == run_id, t.jobs.c.job_id == job_id)
                .values(status=raw.status, error=raw.error, finished_at=utcnow())
            )
        return True

    def finish_run(self, run_id: str, status: str) -> None:
        """Close a run: ``done`` or ``interrupted``."""
        with self._tx() as conn:
            conn.execute(
                t.runs.update()
                .where(t.runs.c.run_id == run_id)
                .values(status=status, finished_at=utcnow())
            )

    def reopen_run(self, run_id: str) -> list[Job]:
        """For ``--resume``: set unfinished jobs back to ``pending`` and return them in order."""
        run_id = self.resolve_run_id(run_id)
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(t.jobs.c.job_id, t.jobs.c.spec)
                .where(t.jobs.c.run_id == run_id, t.jobs.c.status.notin_(DONE_STATES))
                .order_by(t.jobs.c.seq)
            ).all()
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.run_id == run_id, t.jobs.c.status.notin_(DONE_STATES))
                .values(status="pending", error=None)
            )
            conn.execute(
                t.runs.update()
                .where(t.runs.c.run_id == run_id)
                .values(status="running", finished_at=None)
            )
        return [from_dict(Job, r.spec) for r in rows]

    # ------------------------------------------------------------------ reading

    def resolve_run_id(self, run_id: str) -> str:
        """Full run id from an id or a unique prefix; ``latest`` is the newest run."""
        with self.engine.connect() as conn:
            if run_id in ("latest", "last"):
                found = conn.execute(
                    sa.select(t.runs.c.run_id).order_by(t.runs.c.created_at.desc(),
                                                        t.runs.c.run_id.desc()).limit(1)
                ).scalar_one_or_none()
                if found is None:
                    raise UserError(f"no runs in {self.location}", hint="run quantlab bench first")
                return str(found)
            matches = conn.execute(
                sa.select(t.runs.c.run_id)
                .where(t.runs.c.run_id.startswith(run_id, autoescape=True))
            ).scalars().all()
        if len(matches) == 1:
            return str(matches[0])
        if not matches:
            raise UserError(
                f"run {run_id}: not found in {self.location}", hint="see quantlab runs"
            )
        raise UserError(f"run {run_id}: ambiguous ({len(matches)} runs match)",
                        hint="give more of the id")

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest runs first, with job counts by state, models and devices."""
        with self.engine.connect() as conn:
            runs = conn.execute(
                sa.select(t.runs).order_by(t.runs.c.created_at.desc(), t.runs.c.run_id.desc())
                .limit(limit)
            ).mappings().all()
            ids = [r["run_id"] for r in runs]
            counts: dict[str, dict[str, int]] = {i: {} for i in ids}
            models: dict[str, set[str]] = {i: set() for i in ids}
            devs: dict[str, set[str]] = {i: set() for i in ids}
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
                "command": r["command"],
                "jobs": counts[r["run_id"]],
                "models": sorted(models[r["run_id"]]),
                "devices": sorted(devs[r["run_id"]]),
            }
            for r in runs
        ]

    def load_run(self, run_id: str) -> RunRecord:
        """A whole run: metadata, devices, every job with its raw result."""
        run_id = self.resolve_run_id(run_id)
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id)).mappings().one()
            run = load_record(
                Run,
                {
                    "run_id": r["run_id"],
                    "created_at": r["created_at"],
                    "host": r["host"],
                    "tool_versions": r["tool_versions"],
                    "git_sha": r["git_sha"],
                    "command": r["command"],
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
                    raw = load_record(RawResult, raws[j["job_id"]])
                    reps = samples.get(j["job_id"], {})
                    raw = replace(
                        raw,
                        samples_ms=tuple(tuple(reps[k]) for k in sorted(reps)),
                        ops=tuple(ops.get(j["job_id"], ())),
                        energy_samples=tuple(energy.get(j["job_id"], ())),
                    )
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
        return RunRecord(run=run, status=r["status"], finished_at=r["finished_at"],
                         devices=devices, entries=tuple(entries))

    def table_rows(self, table: str, run_id: str) -> list[dict[str, Any]]:
        """Flat rows of one table for one run (``jobs``, ``results``, ``samples``, ``ops`` …)."""
        tab = t.metadata.tables[table]
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(tab).where(tab.c.run_id == run_id)).mappings()]

    # ------------------------------------------------------------------ evaluations

    def save_evaluation(
        self,
        variant_sha256: str,
        scheme: str | None,
        path: str,
        source_sha256: str | None,
        metric: str,
        value: float | None,
        reference_value: float | None,
        drop: float | None,
        max_drop: float,
        passed: bool,
        payload: dict[str, Any],
    ) -> None:
        """Store the accuracy of one variant (keyed by its sha256) from ``quantlab evaluate``."""
        with self._tx() as conn:
            conn.execute(
                t.evaluations.insert().values(
                    created_at=utcnow(), variant_sha256=variant_sha256, scheme=scheme, path=path,
                    source_sha256=source_sha256, metric=metric, value=value,
                    reference_value=reference_value, drop=drop, max_drop=max_drop,
                    passed=passed, payload=payload,
                )
            )

    def evaluations(self, sha256s: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The newest evaluation of each variant, by variant sha256."""
        query = sa.select(t.evaluations).order_by(t.evaluations.c.id)
        if sha256s is not None:
            query = query.where(t.evaluations.c.variant_sha256.in_(list(sha256s)))
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                out[row["variant_sha256"]] = dict(row)
        return out


def _job_row(run_id: str, job: Job, seq: int, status: str, error: str | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "job_id": job.job_id,
        "seq": seq,
        "spec": to_dict(job),
        "model_path": job.model.path,
        "model_sha256": job.model.sha256,
        "scheme": job.model.scheme,
        "device_id": job.device_id,
        "platform": job.platform,
        "delegate": job.delegate,
        "threads": job.threads,
        "status": status,
        "error": error,
        "attempts": 0,
    }


def _known_revision(revision: str) -> bool:
    versions = Path(__file__).parent / "migrations" / "versions"
    return any(p.name.startswith(f"{revision}_") for p in versions.glob("*.py"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
