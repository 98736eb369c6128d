"""The results store: every run, job, raw sample, op row and evaluation, on SQLAlchemy Core.

SQLite (``results/quantlab.db``) is the embedded default; a ``postgresql://`` URL
gives a lab a shared history. Every write is one transaction, so a run killed at
any moment leaves finished jobs stored and the running one ``running`` (or
``interrupted`` when quantlab saw the signal), which ``--resume`` runs again.
Schema changes are Alembic migrations (``migrations/versions``).

This module is the store's public surface: :class:`Store` (opening, writing, reading)
and the read models it returns. Beside it: ``schema.py`` (the tables), ``location.py``
(folder or URL), ``migrate.py`` (revisions and locked upgrades), ``record_rows.py``
(records → rows, tag checks), ``read_models.py`` (:class:`RunRecord`, :class:`JobEntry`,
:class:`JobRef` and the queries that fill them) and ``raw.py`` (raw runner output by sha256).
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from quantlab.harness.errors import StoreError, UserError
from quantlab.harness.records import DeviceInfo, Job, Plan, RawResult, Run, from_dict, to_dict
from quantlab.harness.redact import redact_text
from quantlab.harness.store import migrate as mig
from quantlab.harness.store import owner, read_models
from quantlab.harness.store import record_rows as rows
from quantlab.harness.store import schema as t
from quantlab.harness.store.location import (
    DB_FILENAME,
    db_message,
    redact_url,
    sqlite_pragmas,
    url_for,
)
from quantlab.harness.store.migrate import HEAD_REVISION
from quantlab.harness.store.raw import (
    DEFAULT_GRACE_S,
    RAW_DIRNAME,
    FolderBlobs,
    GcReport,
    RawBlobs,
    TableBlobs,
    put_outputs,
)
from quantlab.harness.store.read_models import JobEntry, JobRef, RunRecord
from quantlab.harness.store.record_rows import check_tags

__all__ = [
    "DB_FILENAME",
    "HEAD_REVISION",
    "JobEntry",
    "JobRef",
    "RunRecord",
    "Store",
    "check_tags",
    "new_run_id",
    "redact_url",
    "utcnow",
]

DONE_STATES = ("ok", "failed", "skipped")
UNFINISHED_STATES = ("pending", "running", "interrupted")


def utcnow() -> str:
    """Current time as ISO 8601 UTC with milliseconds: two runs made within one second (a
    fast nightly plan run twice) still sort in the order they were made, where runs are
    ordered by ``created_at`` (``latest``, a baseline tag, ``history``)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """A sortable, readable run id such as ``20261122-231500-3fa2``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class Store:
    """Read and write runs, jobs, results and evaluations."""

    def __init__(self, engine: sa.Engine, location: str, folder: Path | None) -> None:
        self.engine = engine
        self.location = redact_url(location)
        """Where the store lives, safe to print (no password)."""
        self.folder = folder
        """The results folder for a SQLite store (raw files live beside the database)."""
        self.raw: RawBlobs = (FolderBlobs(folder / RAW_DIRNAME) if folder is not None
                              else TableBlobs(f"table raw_blobs of {self.location}"))
        """Where raw runner output lives: ``<folder>/raw/`` or the ``raw_blobs`` table."""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, location: str, *, migrate: bool | None = None) -> Store:
        """Open the store at a folder or a database URL, creating its schema when empty.

        ``migrate``: None upgrades an older SQLite store but refuses an older PostgreSQL
        one (other lab hosts share it: upgrading is ``quantlab db migrate``'s to do);
        True upgrades either; False refuses to change the schema at all.
        """
        from quantlab.harness.store.location import strict_json

        url, folder = url_for(location)
        kwargs: dict[str, Any] = {"json_serializer": strict_json}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError, ValueError) as exc:  # e.g. a bad port
            raise StoreError(f"--results {redact_url(location)}: {redact_text(str(exc))}") from None
        if url.startswith("sqlite"):
            sa.event.listen(engine, "connect", sqlite_pragmas)
        store = cls(engine, location, folder)
        try:
            store._ensure_schema(migrate)
        except sa.exc.OperationalError as exc:
            raise StoreError(f"results store {redact_url(location)}: {db_message(exc)}",
                             hint="check the path or URL and that the database is reachable",
                             ) from None
        return store

    def current_revision(self) -> str | None:
        """The migration the database is at, or None for an empty database."""
        with self.engine.connect() as conn:
            return mig.revision(conn)

    def _ensure_schema(self, migrate: bool | None) -> None:
        revision = self.current_revision()
        if revision == HEAD_REVISION:
            return
        self._refuse_newer(revision)
        shared = self.engine.dialect.name != "sqlite" and revision is not None
        if migrate is False or (migrate is None and shared):
            raise StoreError(
                f"results store {self.location} is at schema {revision or '(empty)'}, this "
                f"quantlab needs {HEAD_REVISION}", hint=f"run quantlab db migrate --results "
                f"{self.location} once every quantlab sharing it is this version or newer")
        self.migrate()

    def _refuse_newer(self, revision: str | None) -> None:
        mig.refuse_newer(revision, self.location)

    def migrate(self) -> str:
        """Apply every pending migration (Alembic); returns the new revision.

        Safe when several processes open one new store at once: they take turns (a
        lock file beside a SQLite database, a transaction-scoped advisory lock on
        PostgreSQL) and each re-reads the revision once it holds the lock, so only the
        first one migrates.
        """
        return mig.migrate_locked(self.engine, self._lock, self.location)

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        try:
            with self._lock, self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:  # disk full, database gone, locked too long
            raise StoreError(f"results store {self.location}: {db_message(exc)}") from None

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ writing runs

    def create_run(self, run: Run, plan: Plan, devices: Iterable[DeviceInfo] = (), *,
                   tags: Iterable[str] = (), plan_text: str | None = None) -> None:
        """Store a new run with its planned jobs (``pending``) and skipped ones (``skipped``),
        its ``tags`` and the text of the plan file it came from (hashed with sha256)."""
        tag_list = check_tags(tags)
        jobs = rows.job_rows(run.run_id, plan)
        with self._tx() as conn:
            conn.execute(t.runs.insert().values(**rows.run_row(run, plan_text), **owner.claim()))
            if tag_list:
                conn.execute(t.run_tags.insert(),
                             [{"run_id": run.run_id, "tag": tag} for tag in tag_list])
            device_rows = [rows.device_row(run.run_id, d) for d in devices]
            if device_rows:
                conn.execute(t.devices.insert(), device_rows)
            if jobs:
                conn.execute(t.jobs.insert(), jobs)

    def add_devices(self, run_id: str, devices: Iterable[DeviceInfo]) -> None:
        """Record devices met later in a run (e.g. on resume), keeping the first snapshot."""
        with self._tx() as conn:
            known = {
                r[0]
                for r in conn.execute(
                    sa.select(t.devices.c.device_id).where(t.devices.c.run_id == run_id)
                )
            }
            new = [rows.device_row(run_id, d) for d in devices if d.id not in known]
            if new:
                conn.execute(t.devices.insert(), new)

    def update_device(self, run_id: str, device: DeviceInfo) -> None:
        """Replace a run's snapshot of a device (one offline at the start, described once
        it came back)."""
        row = {"platform": device.platform, "info": to_dict(device)}
        with self._tx() as conn:
            updated = conn.execute(
                t.devices.update()
                .where(t.devices.c.run_id == run_id, t.devices.c.device_id == device.id)
                .values(**row)
            )
            if updated.rowcount == 0:
                conn.execute(t.devices.insert().values(run_id=run_id, device_id=device.id,
                                                       **row))

    def mark_running(self, run_id: str, job_id: str) -> bool:
        """A job starts (one more attempt); False, changing nothing, when it has already
        finished (another process stored it): then it must not be measured again. A
        StoreError when another process has taken the run over (``--resume --force``)."""
        ours = sa.exists().where(t.runs.c.run_id == run_id, owner.mine_or_unowned())
        with self._tx() as conn:
            if conn.execute(
                t.jobs.update()
                .where(t.jobs.c.run_id == run_id, t.jobs.c.job_id == job_id, ours)
                .where(t.jobs.c.status.notin_(DONE_STATES))
                .values(status="running", started_at=utcnow(), attempts=t.jobs.c.attempts + 1)
            ).rowcount:
                return True
            if conn.execute(sa.select(ours)).scalar():
                return False
        raise StoreError(f"run {run_id} was taken over by another quantlab (bench --resume "
                         "--force)", hint="this process measures nothing more of it")

    def set_status(self, run_id: str, job_id: str, status: str, error: str | None = None) -> None:
        """Set a job's state without a result (``pending``, ``interrupted``, ``failed`` …)."""
        with self._tx() as conn:
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.run_id == run_id, t.jobs.c.job_id == job_id)
                .where(t.jobs.c.status.notin_(DONE_STATES), sa.exists().where(
                    t.runs.c.run_id == run_id, owner.mine_or_unowned()))
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
        from quantlab.harness.stats import STATS_VERSION, summarize

        summary = summarize(raw)
        body = to_dict(raw)
        for key in ("samples_ms", "ops", "energy_samples", "raw_outputs", "raw_files"):
            body.pop(key, None)
        if summary is not None:  # derived, kept so that readers need not bootstrap again
            body["summary"] = {"stats_version": STATS_VERSION, **summary.as_dict()}
        try:
            return self._insert_result(run_id, job_id, raw, summary, body)
        except sa.exc.StatementError as exc:  # DBAPIError, or a value JSON refuses (NaN)
            # A duplicate only when another process (a lab host sharing PostgreSQL) stored
            # this job's result between our check and our insert: keep theirs. Any other
            # broken constraint or refused value is an error, never a silent discard.
            if isinstance(exc, sa.exc.IntegrityError) and self._has_result(run_id, job_id):
                return False
            raise StoreError(f"run {run_id} job {job_id}: result not stored "
                             f"({db_message(exc)})") from None

    def _has_result(self, run_id: str, job_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.results.c.job_id).where(
                t.results.c.run_id == run_id, t.results.c.job_id == job_id)).first() is not None

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
            conn.execute(t.results.insert().values(
                **rows.result_row(run_id, job_id, raw, summary, body)))
            for table, batch in ((t.samples, rows.sample_rows(run_id, job_id, raw)),
                                 (t.ops, rows.op_rows(run_id, job_id, raw)),
                                 (t.energy_samples, rows.energy_rows(run_id, job_id, raw))):
                if batch:
                    conn.execute(table.insert(), batch)
            raw_rows = [
                {"run_id": run_id, "job_id": job_id, "idx": i, **to_dict(f)}
                for i, f in enumerate(put_outputs(self.raw, conn, raw))
            ]
            if raw_rows:
                conn.execute(t.raw_files.insert(), raw_rows)
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.run_id == run_id, t.jobs.c.job_id == job_id)
                .values(status=raw.status, error=raw.error, finished_at=utcnow())
            )
        return True

    def read_raw(self, sha256: str) -> bytes:
        """The bytes of one stored raw file (a StoreError when they are gone)."""
        data = self.raw.get(self.engine, sha256)
        if data is None:
            raise StoreError(f"raw file {sha256}: not in {self.raw.where}",
                             hint="it was removed outside quantlab; the result's figures "
                             "can no longer be traced to it")
        return data

    def gc_raw(self, dry_run: bool = False, grace_s: float = DEFAULT_GRACE_S) -> GcReport:
        """Remove raw files no stored result references (``quantlab gc``)."""
        with self.engine.connect() as conn:
            referenced = set(conn.execute(sa.select(t.raw_files.c.sha256).distinct())
                             .scalars().all())
        return self.raw.sweep(self.engine, referenced, grace_s, dry_run)

    def finish_run(self, run_id: str, status: str) -> str | None:
        """Close a run ``done`` or ``interrupted``; returns the status stored: a run asked
        to be ``done`` with jobs still pending, running or interrupted is ``incomplete``
        (``--resume`` finishes it). None, changing nothing, when another process has
        taken the run over."""
        with self._tx() as conn:
            if status == "done" and conn.execute(sa.select(sa.func.count()).where(
                    t.jobs.c.run_id == run_id, t.jobs.c.status.in_(UNFINISHED_STATES))).scalar():
                status = "incomplete"
            return status if conn.execute(
                t.runs.update().where(t.runs.c.run_id == run_id, owner.mine_or_unowned())
                .values(status=status, finished_at=utcnow())).rowcount else None

    def heartbeat(self, run_id: str) -> bool:
        """Stamp the run as being measured by this process (every ``owner.HEARTBEAT_S``);
        False when it is no longer this process's (taken over with ``--resume --force``)."""
        with self._tx() as conn:
            return bool(conn.execute(
                t.runs.update().where(t.runs.c.run_id == run_id, owner.mine())
                .values(heartbeat_at=sa.func.current_timestamp())).rowcount)

    def reopen_run(self, run_id: str, force: bool = False) -> list[Job]:
        """For ``--resume``: take the run over (refused while another process may still be
        measuring it, see :mod:`quantlab.harness.store.owner`; ``force`` for an owner known to be
        gone), set its unfinished jobs back to ``pending`` and return them in order."""
        run_id = self.resolve_run_id(run_id)
        with self._tx() as conn:
            run = conn.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id)).mappings().one()
            owner.check_resumable(run, owner.db_now(conn), force)
            if not conn.execute(t.runs.update().where(t.runs.c.run_id == run_id,
                                                      *owner.unchanged(run))
                                .values(status="running", finished_at=None,
                                        **owner.claim())).rowcount:
                raise UserError(f"run {run_id}: another quantlab resumed it just now",
                                hint="see quantlab runs")
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
        return [from_dict(Job, r.spec) for r in rows]

    # ------------------------------------------------------------------ reading

    def resolve_run_id(self, run_id: str) -> str:
        """Full run id from an id or a unique prefix; ``latest`` is the newest run."""
        with self.engine.connect() as conn:
            matches = read_models.run_ids_named(conn, run_id)
        if len(matches) == 1:
            return matches[0]
        if not matches and run_id in ("latest", "last"):
            raise UserError(f"no runs in {self.location}", hint="run quantlab bench first")
        if not matches:
            raise UserError(
                f"run {run_id}: not found in {self.location}", hint="see quantlab runs"
            )
        raise UserError(f"run {run_id}: ambiguous ({len(matches)} runs match)",
                        hint="give more of the id")

    def list_runs(self, limit: int = 50, tag: str | None = None) -> list[dict[str, Any]]:
        """Newest runs first (only those tagged ``tag``, ``T`` or ``T=…``), with job counts
        by state, models and devices."""
        with self.engine.connect() as conn:
            return read_models.list_runs(conn, limit, tag)

    def load_run(self, run_id: str) -> RunRecord:
        """A whole run: metadata, devices, every job with its raw result."""
        run_id = self.resolve_run_id(run_id)
        with self.engine.connect() as conn:
            return read_models.load_run(conn, run_id)

    # ------------------------------------------------------------------ tags and plans

    def add_tags(self, run_id: str, tags: Iterable[str]) -> None:
        """Give a stored run more tags (those it has already are kept once)."""
        run_id = self.resolve_run_id(run_id)
        wanted = check_tags(tags)
        with self._tx() as conn:
            have = set(read_models.run_tags(conn, [run_id]).get(run_id, []))
            rows = [{"run_id": run_id, "tag": tag} for tag in wanted if tag not in have]
            if rows:
                conn.execute(t.run_tags.insert(), rows)

    def run_plan_text(self, run_id: str) -> str | None:
        """The plan file a run was made from, byte for byte as text (None without one)."""
        run_id = self.resolve_run_id(run_id)
        with self.engine.connect() as conn:
            return read_models.plan_text(conn, run_id)

    def find_runs(self, *, tag: str | None = None, model: str | None = None,
                  device: str | None = None, delegate: str | None = None,
                  status: Iterable[str] | None = None, limit: int | None = None,
                  exclude: Iterable[str] = ()) -> list[str]:
        """Run ids, newest first, that carry ``tag`` (``T`` or ``T=…``) and have a job on
        ``model`` (file name or path), ``device`` and ``delegate``, in one of ``status``."""
        query = read_models.runs_query(tag=tag, model=model, device=device, delegate=delegate,
                                       status=status, limit=limit, exclude=exclude)
        with self.engine.connect() as conn:
            return [str(r.run_id) for r in conn.execute(query)]

    def find_jobs(self, job_prefix: str, run_id: str | None = None) -> list[JobRef]:
        """The stored jobs whose id starts with ``job_prefix``, by run id; only those of run
        ``run_id`` (an id, a prefix of one, or ``latest``) when given."""
        run = self.resolve_run_id(run_id) if run_id else None
        with self.engine.connect() as conn:
            return read_models.find_jobs(conn, job_prefix, run)

    def resolve_run_or_tag(self, value: str, exclude: Iterable[str] = ()) -> str:
        """A baseline by tag (the newest finished run carrying it, other than ``exclude``)
        or by run id / prefix / ``latest``."""
        found = self.find_runs(tag=value, status=("done",), limit=1, exclude=exclude)
        if found:
            return found[0]
        try:
            return self.resolve_run_id(value)
        except UserError:
            raise UserError(f"baseline {value}: no finished run has this tag and no run has "
                            "this id", hint="see quantlab runs (tags are listed there)") from None

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
        where: dict[str, str | None] | None = None,
    ) -> None:
        """Store the accuracy of one variant (keyed by its sha256) from ``quantlab evaluate``;
        ``where``: measured on a device (``device``, ``delegate``, ``runtime``,
        ``runtime_version``, ``sample_set``), else on the host."""
        with self._tx() as conn:
            conn.execute(
                t.evaluations.insert().values(
                    created_at=utcnow(), variant_sha256=variant_sha256, scheme=scheme, path=path,
                    source_sha256=source_sha256, metric=metric, value=value,
                    reference_value=reference_value, drop=drop, max_drop=max_drop,
                    passed=passed, payload=payload, **(where or {}),
                )
            )

    def evaluations(self, sha256s: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The newest host evaluation of each variant, by variant sha256."""
        with self.engine.connect() as conn:
            return read_models.newest_evaluations(conn, sha256s)

    def device_evaluations(self, sha256s: Iterable[str] | None = None
                           ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The newest evaluation measured on a device, by (variant sha256, device, delegate)."""
        with self.engine.connect() as conn:
            return read_models.newest_device_evaluations(conn, sha256s)

