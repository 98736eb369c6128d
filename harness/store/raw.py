"""Raw runner output beside the store, by content (sha256), and its garbage collection.

A results folder (the SQLite store) keeps each raw output as a file
``<folder>/raw/<sha256[:2]>/<sha256>``, written atomically (temporary file in the same
folder, fsync, rename): a reader never sees half a file. A store without a folder (a
PostgreSQL URL shared by a lab, a ``sqlite://`` URL) keeps the bytes in the
``raw_blobs`` table instead, in the same transaction as the result that references
them, so every controller sharing that database can read them and a reference never
outlives its bytes. Which results keep which file is the ``raw_files`` table in both
cases; :meth:`RawBlobs.sweep` removes what it does not list (``quantlab gc``).

A file written moments ago may belong to a result whose transaction has not committed
yet, so a sweep leaves unreferenced content younger than ``grace_s`` alone; storing
content that is already there refreshes its time for the same reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from quantlab.harness.errors import StoreError
from quantlab.harness.records import RawFile, RawResult
from quantlab.harness.store import schema as t

RAW_DIRNAME = "raw"
DEFAULT_GRACE_S = 3600.0
"""``quantlab gc`` keeps unreferenced raw content younger than this (a run may be writing it)."""

_SHA = re.compile(r"[0-9a-f]{64}")


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data`` (the name raw content is stored under)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class GcReport:
    """What ``quantlab gc`` removed (or, with ``dry_run``, would remove) and what it kept."""

    location: str
    dry_run: bool
    grace_s: float
    removed: int = 0
    freed_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0
    young: int = 0  # unreferenced, but younger than grace_s: kept
    young_bytes: int = 0
    missing: tuple[str, ...] = ()  # referenced by a result but not found (damaged store)
    removed_sha256: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``quantlab gc --json``)."""
        return {"location": self.location, "dry_run": self.dry_run, "grace_s": self.grace_s,
                "removed": self.removed, "freed_bytes": self.freed_bytes, "kept": self.kept,
                "kept_bytes": self.kept_bytes, "young": self.young,
                "young_bytes": self.young_bytes, "missing": list(self.missing),
                "removed_sha256": list(self.removed_sha256)}


class RawBlobs(Protocol):
    """Where raw content lives: a folder of files or a database table."""

    where: str
    """Human description of the place (for docs, ``gc`` and errors)."""

    def put(self, conn: sa.Connection, sha256: str, data: bytes) -> None:
        """Store ``data`` under ``sha256`` (inside the result's transaction ``conn``)."""

    def get(self, engine: sa.Engine, sha256: str) -> bytes | None:
        """The stored bytes, or None when absent."""

    def sweep(self, engine: sa.Engine, referenced: set[str], grace_s: float,
              dry_run: bool) -> GcReport:
        """Remove content that ``referenced`` does not name and that is older than grace."""


def put_outputs(blobs: RawBlobs, conn: sa.Connection, raw: RawResult) -> list[RawFile]:
    """Store the raw outputs of a result by content (inside the result's transaction);
    the references to keep with it, in order."""
    files = list(raw.raw_files)
    for out in raw.raw_outputs:
        data = out.data()
        sha = sha256_of(data)
        blobs.put(conn, sha, data)
        files.append(RawFile(name=out.name, sha256=sha, size_bytes=len(data),
                             media_type=out.media_type, truncated=out.truncated,
                             original_size_bytes=out.size_bytes, cap_bytes=out.cap_bytes))
    return files


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


class FolderBlobs:
    """Raw content as files ``<root>/<sha256[:2]>/<sha256>`` (a SQLite results folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def path(self, sha256: str) -> Path:
        """Where the content with this sha256 lies."""
        if not _SHA.fullmatch(sha256):
            raise StoreError(f"raw file {sha256!r}: not a sha256")
        return self.root / sha256[:2] / sha256

    def put(self, conn: sa.Connection, sha256: str, data: bytes) -> None:
        """Write the file atomically (temp + fsync + rename); refresh it if already there."""
        dest = self.path(sha256)
        try:
            if dest.is_file() and dest.stat().st_size == len(data):
                os.utime(dest)  # a sweep running now must see it as young
                return
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / f".{sha256}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"raw output {dest}: cannot write it ({exc.strerror or exc})",
                             hint="check free space and permissions of the results folder"
                             ) from None

    def get(self, engine: sa.Engine, sha256: str) -> bytes | None:
        """The file's bytes, checked against its name; None when it is not there."""
        try:
            data = self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None
        if sha256_of(data) != sha256:
            raise StoreError(f"raw file {self.path(sha256)}: content does not match its sha256",
                             hint="the file was changed on disk; the figures cannot be traced "
                             "to it any more")
        return data

    def _entries(self) -> Iterable[tuple[Path, str | None]]:
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir() or not re.fullmatch(r"[0-9a-f]{2}", sub.name):
                continue
            for f in sorted(sub.iterdir()):
                if _SHA.fullmatch(f.name) and f.name.startswith(sub.name):
                    yield f, f.name
                elif f.name.startswith(".") and f.name.endswith(".tmp"):
                    yield f, None  # left by a writer that was killed

    def sweep(self, engine: sa.Engine, referenced: set[str], grace_s: float,
              dry_run: bool) -> GcReport:
        """Remove unreferenced files (and stale temp files) older than ``grace_s``."""
        cutoff = time.time() - grace_s
        removed: list[str] = []
        freed = kept = kept_bytes = young = young_bytes = 0
        present: set[str] = set()
        for f, sha in self._entries():
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            if sha is not None:
                present.add(sha)
            if sha is not None and sha in referenced:
                kept, kept_bytes = kept + 1, kept_bytes + st.st_size
                continue
            if st.st_mtime > cutoff:
                young, young_bytes = young + 1, young_bytes + st.st_size
                continue
            if not dry_run:
                try:
                    f.unlink()
                except FileNotFoundError:
                    continue
            removed.append(sha or f.name)
            freed += st.st_size
        # the 256 fan-out folders stay: removing an empty one would race with a writer
        return GcReport(self.where, dry_run, grace_s, len(removed), freed, kept, kept_bytes,
                        young, young_bytes, tuple(sorted(referenced - present)),
                        tuple(removed))


class TableBlobs:
    """Raw content in the ``raw_blobs`` table (PostgreSQL, or a SQLite database by URL)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def put(self, conn: sa.Connection, sha256: str, data: bytes) -> None:
        """Insert the bytes, or refresh ``stored_at`` of the row already there."""
        now = _iso(time.time())
        values = {"sha256": sha256, "size_bytes": len(data), "stored_at": now, "data": data}
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(pg_insert(t.raw_blobs).values(**values).on_conflict_do_update(
                index_elements=["sha256"], set_={"stored_at": now}))
        elif conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            conn.execute(sqlite_insert(t.raw_blobs).values(**values).on_conflict_do_update(
                index_elements=["sha256"], set_={"stored_at": now}))
        else:  # pragma: no cover - quantlab supports SQLite and PostgreSQL
            exists = conn.execute(sa.select(t.raw_blobs.c.sha256).where(
                t.raw_blobs.c.sha256 == sha256)).first()
            if exists:
                conn.execute(t.raw_blobs.update().where(t.raw_blobs.c.sha256 == sha256)
                             .values(stored_at=now))
            else:
                conn.execute(t.raw_blobs.insert().values(**values))

    def get(self, engine: sa.Engine, sha256: str) -> bytes | None:
        """The stored bytes, or None."""
        with engine.connect() as conn:
            data = conn.execute(sa.select(t.raw_blobs.c.data).where(
                t.raw_blobs.c.sha256 == sha256)).scalar_one_or_none()
        return bytes(data) if data is not None else None

    def sweep(self, engine: sa.Engine, referenced: set[str], grace_s: float,
              dry_run: bool) -> GcReport:
        """Delete unreferenced rows older than ``grace_s`` in one transaction.

        The delete re-checks the reference table itself, so a result committed after
        ``referenced`` was read keeps its content.
        """
        cutoff = _iso(time.time() - grace_s)
        b, f = t.raw_blobs, t.raw_files
        unreferenced = ~b.c.sha256.in_(sa.select(f.c.sha256))
        with engine.begin() as conn:
            rows = conn.execute(sa.select(b.c.sha256, b.c.size_bytes, b.c.stored_at)).all()
            old = [r for r in rows if r.sha256 not in referenced and r.stored_at < cutoff]
            if old and not dry_run:
                gone = conn.execute(
                    b.delete().where(unreferenced, b.c.stored_at < cutoff,
                                     b.c.sha256.in_([r.sha256 for r in old]))
                    .returning(b.c.sha256)).scalars().all()
                old = [r for r in old if r.sha256 in set(gone)]
        present = {r.sha256 for r in rows}
        ref = [r for r in rows if r.sha256 in referenced]
        young = [r for r in rows if r.sha256 not in referenced and r.stored_at >= cutoff]
        return GcReport(self.where, dry_run, grace_s, len(old),
                        sum(r.size_bytes for r in old), len(ref),
                        sum(r.size_bytes for r in ref), len(young),
                        sum(r.size_bytes for r in young),
                        tuple(sorted(referenced - present)),
                        tuple(sorted(r.sha256 for r in old)))
