"""Where a store lives: a results folder (SQLite beside its raw files) or a database URL.

:func:`url_for` turns what the user gave (``--results``, ``QUANTLAB_RESULTS``) into the
SQLAlchemy URL, checking a folder can be written; :func:`redact_url` makes a location fit
to print.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from quantlab.harness.errors import StoreError
from quantlab.harness.redact import redact_text

DB_FILENAME = "quantlab.db"


def redact_url(location: str) -> str:
    """A store location fit to print: a database URL loses its password."""
    return redact_text(location)


def db_message(exc: Any) -> str:
    """A database error's own message (``exc.orig`` of a SQLAlchemy error): one line, no
    password."""
    orig = getattr(exc, "orig", exc)
    return redact_text((str(orig).strip().splitlines() or [type(orig).__name__])[0])


def url_for(location: str) -> tuple[str, Path | None]:
    """The SQLAlchemy URL of a store location, and its results folder (None for a URL)."""
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


WAL_WAIT_S = 30.0  # as long as the connections' busy timeout


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Set WAL journaling, normal sync and foreign keys on each new SQLite connection.

    Switching a new database to WAL needs its lock at once: SQLite answers "database is
    locked" without waiting out the busy timeout, so processes opening one new store at the
    same instant take turns here (1 in 5 rounds of 6 processes failed without this).
    """
    import sqlite3
    import time

    cur = dbapi_connection.cursor()
    deadline, pause = time.monotonic() + WAL_WAIT_S, 0.002
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.1)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def strict_json(value: Any) -> str:
    """The store's JSON text: a NaN or ±Infinity is refused (``ValueError``), never written
    as a bare token that PostgreSQL's ``json`` type rejects and readers choke on. Producers
    write non-finite figures as strings (:func:`quantlab.harness.numerics.jsonable`)."""
    import json

    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError(f"{_nonfinite_at(value) or 'a value'} is NaN or infinite: strict "
                         "JSON has no such number") from None


def _nonfinite_at(value: Any, path: str = "") -> str | None:
    """Where the first NaN/±Infinity sits in nested dicts and lists (``runner.numerics.cosine``)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return path or "the value"
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, inner in items:
        found = _nonfinite_at(inner, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None
