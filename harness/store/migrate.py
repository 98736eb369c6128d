"""Schema migrations: which revision a database is at, and upgrading it safely.

The migrations themselves are Alembic scripts (``migrations/versions``); this module
reads the revision, refuses one newer than the code, and runs the upgrade under a lock
(a lock file beside a SQLite database, an advisory lock on PostgreSQL) so that several
processes opening one new store take turns. Alembic is imported only to upgrade.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from quantlab.harness.errors import StoreError

HEAD_REVISION = "0005"
"""Newest migration; tests check it equals Alembic's head."""

SCHEMA_LOCK_KEY = 0x7175616E746C6162  # "quantlab"
"""PostgreSQL advisory lock held while one process creates or migrates the schema."""

MIGRATIONS = Path(__file__).parent / "migrations"


def revision(conn: sa.Connection) -> str | None:
    """The migration the database is at, or None for an empty database."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
    return str(row[0]) if row else None



def revision_at(location: str) -> str | None:
    """The revision of the results database at ``location`` (None when empty), touching
    nothing: unlike opening the store, it neither creates nor upgrades the schema."""
    from quantlab.harness.store.location import redact_url, url_for

    engine = sa.create_engine(url_for(location)[0])
    try:
        with engine.connect() as conn:
            return revision(conn)
    except sa.exc.OperationalError as exc:
        raise StoreError(f"results store {redact_url(location)}: "
                         f"{str(exc.orig).strip().splitlines()[0]}",
                         hint="check the URL and that the database is reachable") from None
    finally:
        engine.dispose()


def lost_schema_race(exc: sa.exc.DBAPIError) -> bool:
    """Whether a migration failed because another process created the same objects."""
    text = str(exc.orig).lower()
    return "already exists" in text or "duplicate key" in text



@contextmanager
def sqlite_file_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` (SQLite files only; a no-op else).

    SQLite runs DDL outside transactions, so a lock around check-and-migrate is what
    keeps two processes from creating the same tables. A separate file, because
    closing any descriptor of the database file would drop SQLite's own POSIX locks.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; migrate() still re-checks after a lost race
        yield
        return
    with open(f"{database}.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)



def refuse_newer(revision: str | None, location: str) -> None:
    """A StoreError when the database is at a revision this quantlab does not know."""
    if revision is not None and not known_revision(revision):
        raise StoreError(f"results store {location} was written by a newer quantlab "
                         f"(schema {revision})", hint="upgrade quantlab")


def migrate_locked(engine: sa.Engine, lock: threading.Lock, location: str) -> str:
    """Upgrade the database to :data:`HEAD_REVISION` under the schema lock; returns it.

    Processes take turns (``lock`` in this one, a lock file beside a SQLite database, an
    advisory lock on PostgreSQL) and each re-reads the revision once it holds the lock.
    """
    for attempt in range(3):
        try:
            with lock, sqlite_file_lock(engine), engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": SCHEMA_LOCK_KEY})
                current = revision(conn)  # again, now that no one else is migrating
                if current == HEAD_REVISION:
                    return HEAD_REVISION
                refuse_newer(current, location)
                upgrade(conn)
            return HEAD_REVISION
        except (sa.exc.OperationalError, sa.exc.ProgrammingError,
                sa.exc.IntegrityError) as exc:
            # a process without this lock (an older quantlab) created the schema
            # between our check and our upgrade: look again before failing
            if attempt == 2 or not lost_schema_race(exc):
                raise
            with engine.connect() as conn:
                if revision(conn) == HEAD_REVISION:
                    return HEAD_REVISION
    return HEAD_REVISION  # pragma: no cover  (the loop returns or raises)


def known_revision(revision: str) -> bool:
    """Whether this quantlab has a migration script for ``revision``."""
    versions = MIGRATIONS / "versions"
    return any(p.name.startswith(f"{revision}_") for p in versions.glob("*.py"))


def upgrade(conn: sa.Connection) -> None:
    """Apply every pending migration on ``conn`` (inside the caller's transaction and lock)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
