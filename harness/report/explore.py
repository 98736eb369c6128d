"""Model Explorer overlays: per-op node data for Google's Model Explorer
(``ai-edge-model-explorer``), in the format its ``node_data_builder.GraphNodeData`` writes
(``{"name", "results": {node id: {"value", "bgColor"?}}, "gradient" | "thresholds", …}``),
keyed by the node ids its TFLite flatbuffer adapter gives a model's ops: the op's index in the
primary subgraph, as text.

Overlays (each a file, see :func:`write_overlays`): per-op latency of a job (ms, and share of
the op total; gradient), its change against a second job (ms; faster green, slower red),
placement (the delegate or CPU, as text, with the counts in the name) and, from a
``quantlab culprit --json`` result, each op's SQNR against the reference kernels (thresholds,
the ops over the bound in red). Nothing here imports Model Explorer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from quantlab.harness.atomic import write_text_atomically
from quantlab.harness.errors import UserError
from quantlab.harness.records import RawResult
from quantlab.harness.report.diff import StoredJob, node_placement
from quantlab.harness.store import RunRecord

GRADIENT = [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 0.5, "bgColor": "#fdae61"},
            {"stop": 1, "bgColor": "#d73027"}]
SQNR_THRESHOLDS = [{"value": 20, "bgColor": "#d73027"}, {"value": 40, "bgColor": "#fdae61"},
                   {"value": 1e9, "bgColor": "#a6d96a"}]
SQNR_CAP = 200.0
"""An exact op (SQNR infinite) is shown at this many dB: node data values are finite numbers."""
FAILED = "#b2182b"


def op_ms(raw: RawResult) -> dict[int, float]:
    """Milliseconds per model op (profile rows with a model op index, in ms)."""
    out: dict[int, float] = {}
    for o in raw.ops:
        if o.node_index is not None and o.unit == "ms" and not o.detail.get("unattributed"):
            out[o.node_index] = out.get(o.node_index, 0.0) + o.avg_ms
    return out


def _data(name: str, results: dict[int, dict[str, Any]], **style: Any) -> dict[str, Any]:
    return {"name": name, "results": {str(k): v for k, v in sorted(results.items())}, **style}


def latency_overlays(job: StoredJob) -> dict[str, dict[str, Any]]:
    """``latency_ms`` and ``latency_share`` of one job (empty without a per-op profile)."""
    raw = job.entry.raw
    ms = op_ms(raw) if raw is not None else {}
    if not ms:
        return {}
    total = sum(ms.values()) or 1.0
    return {
        "latency_ms": _data(f"latency ms · {job.label}",
                            {k: {"value": round(v, 6)} for k, v in ms.items()},
                            gradient=GRADIENT),
        "latency_share": _data(f"latency % of ops · {job.label}",
                               {k: {"value": round(100 * v / total, 3)} for k, v in ms.items()},
                               gradient=GRADIENT),
    }


def change_overlay(a: StoredJob, b: StoredJob) -> dict[str, Any] | None:
    """Per-op latency of ``b`` minus ``a`` (ms) over the ops both profiles time."""
    ma = op_ms(a.entry.raw) if a.entry.raw is not None else {}
    mb = op_ms(b.entry.raw) if b.entry.raw is not None else {}
    both = sorted(set(ma) & set(mb))
    if not both:
        return None
    return _data(f"latency change ms · {b.label} − {a.label}",
                 {k: {"value": round(mb[k] - ma[k], 6)} for k in both},
                 thresholds=[{"value": -1e-9, "bgColor": "#a6d96a"},
                             {"value": 1e-9, "bgColor": "#ffffff"},
                             {"value": 1e12, "bgColor": "#f46d43"}])


def placement_overlay(job: StoredJob) -> dict[str, Any] | None:
    """Where each op ran, as text (the delegate or ``CPU``), with the counts in the name."""
    raw = job.entry.raw
    if raw is None:
        return None
    where, _why = node_placement(raw)
    if not where:
        return None
    counts: dict[str, int] = {}
    for _ty, place in where.values():
        counts[place] = counts.get(place, 0) + 1
    text = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    return _data(f"placement ({text}) · {job.label}",
                 {k: {"value": place, "bgColor": "#d9d9d9" if place == "CPU" else "#9ecae1"}
                  for k, (_ty, place) in where.items()},
                 showExpandedSummaryOnGroupNode=True,
                 showLabelCountColumnsInChildrenStatsTable=True)


def culprit_overlay(result: dict[str, Any]) -> dict[str, Any]:
    """Each probed op's SQNR (dB) from a ``quantlab culprit --json`` result; an op over the
    bound (NaN/Inf, or cosine below it) is dark red whatever its SQNR."""
    rows: dict[int, dict[str, Any]] = {}
    for row in result.get("ops") or []:
        raw = row.get("sqnr_db")
        value = float(raw) if raw is not None else -SQNR_CAP
        value = SQNR_CAP if value == math.inf else max(-SQNR_CAP, min(SQNR_CAP, value))
        rows[int(row["index"])] = {"value": round(value, 3),
                                   **({"bgColor": FAILED} if row.get("failed") else {})}
    return _data(f"SQNR dB vs reference kernels · {result.get('delegate')} "
                 f"(bound cosine {result.get('min_cosine')})", rows, thresholds=SQNR_THRESHOLDS)


def read_culprit(path: Path) -> dict[str, Any]:
    """A ``quantlab culprit --json`` result, or a UserError naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--culprit {path}: not a culprit result ({exc})",
                        hint="write one with quantlab culprit MODEL --json > FILE") from None
    if not isinstance(data, dict) or "ops" not in data:
        raise UserError(f"--culprit {path}: not a culprit result (no 'ops')",
                        hint="write one with quantlab culprit MODEL --json > FILE")
    return data


def write_overlays(out: Path, job: StoredJob, vs: StoredJob | None = None,
                   culprit: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write every overlay the inputs allow into ``out`` (``<name>.json``, each whole or not
    at all); returns name → file."""
    found: dict[str, dict[str, Any]] = dict(latency_overlays(job))
    if vs is not None and (change := change_overlay(job, vs)) is not None:
        found["latency_change"] = change
    if (where := placement_overlay(job)) is not None:
        found["placement"] = where
    if culprit is not None:
        found["culprit_sqnr"] = culprit_overlay(culprit)
    if not found:
        raise UserError(f"job {job.entry.job.job_id}: nothing to overlay (no per-op profile, "
                        "no placement, no --culprit)",
                        hint="bench with --profile-ops, or give --culprit FILE")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, data in found.items():
        files[name] = out / f"{name}.json"
        write_text_atomically(files[name], json.dumps(data, indent=1, allow_nan=False))
    return files


def write_run_overlays(out: Path, records: list[RunRecord]) -> dict[str, Path]:
    """Each finished job's overlays (latency, placement) in ``out/<job id>/`` for the HTML
    report's links (``quantlab report --overlays``); job id → its folder. Jobs with nothing to
    overlay (no profile, no placement) are left out."""
    folders: dict[str, Path] = {}
    for record in records:
        for entry in record.entries:
            if entry.status != "ok" or entry.raw is None:
                continue
            try:
                write_overlays(out / entry.job.job_id, StoredJob(record, entry))
            except UserError:
                continue
            folders[entry.job.job_id] = out / entry.job.job_id
    return folders
