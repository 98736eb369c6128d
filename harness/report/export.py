"""Flat tables of one run for people who analyse in pandas: results, samples, ops.

One file per table, written atomically (a temp file beside the target, then a
rename). ``results`` has one row per job (figures from :mod:`quantlab.harness.results`,
flattened), ``samples`` one row per latency sample, ``ops`` one row per op row,
exactly as stored.
"""

from __future__ import annotations

import csv
import functools
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantlab.harness.atomic import replace_atomically
from quantlab.harness.errors import UserError
from quantlab.harness.export_formats import EXPORT_FORMATS
from quantlab.harness.results import run_dict
from quantlab.harness.store import Store

FORMATS = tuple(EXPORT_FORMATS)
TABLES = ("results", "samples", "ops")
ENERGY_COLUMNS = ("method", "comparability", "mj_per_inference", "baseline_mw", "samples",
                  "label")
"""``energy.*`` columns every results row has: a figure is never exported without its
comparability class and label."""


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list | tuple):
        out[prefix] = json.dumps(value, default=str)
    else:
        out[prefix] = value


def result_rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    """One flat row per job of the run (no samples or ops: those have their own tables)."""
    data = run_dict(store.load_run(run_id))
    rows = []
    for r in data["results"]:
        r = {k: v for k, v in r.items() if k not in ("samples_ms", "ops")}
        if r.get("energy") is None:  # the same energy columns (class, label …) in every row
            r["energy"] = dict.fromkeys(ENERGY_COLUMNS)
        row: dict[str, Any] = {"run_id": data["run_id"]}
        _flat("", r, row)
        rows.append(row)
    return rows


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return value


def tables(store: Store, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """The three flat tables of a run."""
    run_id = store.resolve_run_id(run_id)
    out = {"results": result_rows(store, run_id)}
    for name in ("samples", "ops"):
        out[name] = [{k: _cell(v) for k, v in row.items() if k != "id"}
                     for row in store.table_rows(name, run_id)]
    return out


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def write_csv(rows: list[dict[str, Any]], tmp: Path) -> None:
    """One table as CSV (a header of every key seen, in order)."""
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=_columns(rows))
        w.writeheader()
        w.writerows(rows)


def write_json(rows: list[dict[str, Any]], tmp: Path) -> None:
    """One table as a JSON list of objects."""
    tmp.write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")


def write_parquet(rows: list[dict[str, Any]], tmp: Path) -> None:
    """One table as Parquet (pyarrow); a column of mixed types is written as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _columns(rows)
    data = {c: [r.get(c) for r in rows] for c in cols}
    arrays = {}
    for c, values in data.items():
        try:
            arrays[c] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[c] = pa.array([None if v is None else str(v) for v in values])
    pq.write_table(pa.table(arrays) if arrays else pa.table({}), tmp)


def _write_rows(writer: Callable[[list[dict[str, Any]], Path], None],
                rows: list[dict[str, Any]], tmp: Path) -> None:
    writer(rows, tmp)


def writer(fmt: str) -> Callable[[list[dict[str, Any]], Path], None]:
    """The writer registered for ``fmt`` (:data:`quantlab.harness.export_formats.EXPORT_FORMATS`);
    UserError naming the formats otherwise."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt!r}: unknown format",
                        hint=f"use one of {', '.join(FORMATS)}")
    module, _, name = EXPORT_FORMATS[fmt].partition(":")
    found: Callable[[list[dict[str, Any]], Path], None] = getattr(
        importlib.import_module(module), name)
    return found


def export_run(store: Store, run_id: str, fmt: str, out_dir: Path) -> dict[str, Path]:
    """Write results/samples/ops of a run as ``<table>.<fmt>`` into ``out_dir``."""
    write = writer(fmt)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create the output folder ({exc.strerror})",
                        hint="choose a writable --out folder") from None
    written = {}
    for name, rows in tables(store, run_id).items():
        path = out_dir / f"{name}.{fmt}"
        replace_atomically(path, functools.partial(_write_rows, write, rows))
        written[name] = path
    return written
