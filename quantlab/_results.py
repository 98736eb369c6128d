"""Reading stored runs from Python: as records, as flat rows, as a pandas DataFrame."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from quantlab.harness.errors import UserError

if TYPE_CHECKING:
    from quantlab._records import Record
    from quantlab.harness.store import RunRecord, Store

DEFAULT_RESULTS = "results"

ROW_COLUMNS = ("run_id", "job_id", "model", "scheme", "model_sha256", "device", "platform",
               "delegate", "threads", "status", "statistic", "latency_ms", "ci95_low",
               "ci95_high", "p90_ms", "method", "init_ms", "peak_memory_mb",
               "energy_mj_per_inference", "energy_comparability", "warnings", "error")
"""The columns of :meth:`Results.rows` and :meth:`Results.dataframe`, in order."""


def results_location(value: str | Path | None) -> str:
    """Where the store lives: ``value``, else ``$QUANTLAB_RESULTS``, else ``./results``."""
    return str(value or os.environ.get("QUANTLAB_RESULTS") or DEFAULT_RESULTS)


@contextmanager
def opened_store(results: str | Path | None) -> Iterator[Store]:
    """The store at ``results`` (see :func:`results_location`), closed afterwards."""
    from quantlab.harness.store import Store

    store = Store.open(results_location(results))
    try:
        yield store
    finally:
        store.close()


def run_record(store: Store, run: str | Record | RunRecord) -> RunRecord:
    """A stored run from its id, prefix, ``"latest"``, or a record of it."""
    from quantlab.harness.store import RunRecord

    if isinstance(run, RunRecord):
        return run
    if not isinstance(run, str):
        run = str(run["run_id"])
    return store.load_run(run)


class Results:
    """The runs of one store (a results folder or a ``postgresql://`` URL), read-only.

    Use as a context manager, or call :meth:`close` when done.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.location: str = store.location
        """Where the store lives (no password)."""

    def __enter__(self) -> Results:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self.store.close()

    def runs(self, limit: int = 50) -> tuple[Record, ...]:
        """The newest runs first, as ``quantlab runs --json`` lists them."""
        from quantlab._records import Record

        return tuple(Record(r) for r in self.store.list_runs(limit))

    def run(self, run_id: str = "latest") -> Record:
        """One run with every result, as ``quantlab show RUN --json`` prints it."""
        from quantlab._records import Record
        from quantlab.harness.results import run_dict

        return Record(run_dict(self.store.load_run(run_id)))

    def rows(self, runs: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        """One flat row per result (columns :data:`ROW_COLUMNS`) of the given runs (ids,
        prefixes or ``"latest"``; default: every run, newest first)."""
        if runs is None:
            ids = [r["run_id"] for r in self.store.list_runs(limit=1_000_000)]
        else:
            ids = [runs] if isinstance(runs, str) else list(runs)
        out: list[dict[str, Any]] = []
        for run_id in ids:
            out.extend(flat_rows(self.run(run_id).as_dict()))
        return out

    def dataframe(self, runs: str | Iterable[str] | None = None) -> Any:
        """:meth:`rows` as a ``pandas.DataFrame`` (needs pandas, which quantlab does not
        install)."""
        try:
            import pandas as pd
        except ImportError:
            raise UserError("pandas is not installed",
                            hint="pip install pandas, or use Results.rows()") from None
        return pd.DataFrame(self.rows(runs), columns=list(ROW_COLUMNS))


def flat_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The results of one run (``show --json`` data) as flat rows, one per job."""
    rows = []
    for r in run["results"]:
        lat = r.get("latency_ms") or {}
        ci = lat.get("ci95") or (None, None)
        energy = r.get("energy") or {}
        rows.append({
            "run_id": run["run_id"],
            "job_id": r["job_id"],
            "model": Path(r["model"]["path"]).name,
            "scheme": r["model"].get("scheme"),
            "model_sha256": r["model"]["sha256"],
            "device": r["device"]["id"],
            "platform": r["device"].get("platform"),
            "delegate": r["delegate"],
            "threads": r["threads"],
            "status": r["status"],
            "statistic": lat.get("statistic"),
            "latency_ms": lat.get("value"),
            "ci95_low": ci[0],
            "ci95_high": ci[1],
            "p90_ms": lat.get("p90"),
            "method": lat.get("method"),
            "init_ms": r.get("init_ms"),
            "peak_memory_mb": r.get("peak_memory_mb"),
            "energy_mj_per_inference": energy.get("mj_per_inference"),
            "energy_comparability": energy.get("comparability"),
            "warnings": len(r.get("warnings") or []),
            "error": r.get("error"),
        })
    return rows


def open_results(path_or_url: str | Path | None = None) -> Results:
    """Open a results store for reading: a folder holding ``quantlab.db`` or a
    ``postgresql://`` URL (default ``$QUANTLAB_RESULTS`` or ``./results``). A folder that
    holds no store is a :class:`~quantlab.harness.errors.StoreError`."""
    from quantlab.harness.errors import StoreError
    from quantlab.harness.store import DB_FILENAME, Store

    location = results_location(path_or_url)
    if "://" not in location and not (Path(location) / DB_FILENAME).is_file():
        raise StoreError(f"{location}: no results store here ({DB_FILENAME} missing)",
                         hint="give the folder you passed to --results, or run a bench first")
    return Results(Store.open(location))
