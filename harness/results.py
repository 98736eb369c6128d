"""The result format users see (``bench --json``, ``show --json``, ``import --json``).

One dict per job, built on the host from the stored job and its raw result with
the statistics of :mod:`quantlab.harness.stats`. docs/result-spec.md describes every field.
"""

from __future__ import annotations

from typing import Any

from quantlab.harness.records import Job, RawResult, to_dict
from quantlab.harness.stability import score as stability_score
from quantlab.harness.stats import stability, summarize
from quantlab.harness.store import JobEntry, RunRecord


def ops_with_share(raw: RawResult) -> list[dict[str, Any]]:
    """Per-op rows with each op's share of the summed op time (``pct``)."""
    total = sum(op.avg_ms for op in raw.ops if op.unit == "ms")
    rows = []
    for op in raw.ops:
        row = {
            "index": op.index,
            "kernel": op.kernel,
            "op_type": op.op_type,
            "delegate": op.delegate,
            "node_index": op.node_index,
            "avg_ms": op.avg_ms,
            "pct": (100.0 * op.avg_ms / total) if total and op.unit == "ms" else None,
            "times_called": op.times_called,
            "unit": op.unit,
        }
        if op.detail:
            row["detail"] = op.detail
        rows.append(row)
    return rows


def result_dict(
    job: Job,
    status: str,
    error: str | None,
    raw: RawResult | None,
    attempts: int = 0,
    device: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The user-facing JSON of one job (schema in docs/result-spec.md)."""
    summary = summarize(raw) if raw else None
    warnings: list[str] = []
    not_checkable: list[str] = []
    if raw:
        checks = stability(raw, summary)
        warnings = list(raw.warnings) + checks.warnings
        not_checkable = checks.not_checkable
    op_sum = sum(op.avg_ms for op in raw.ops if op.unit == "ms") if raw and raw.ops else None
    out: dict[str, Any] = {
        "job_id": job.job_id,
        "model": {
            "path": job.model.path,
            "sha256": job.model.sha256,
            "size_bytes": job.model.size_bytes,
            "format": job.model.format,
            "scheme": job.model.scheme,
        },
        "device": device or {"id": job.device_id, "platform": job.platform},
        "delegate": job.delegate,
        "threads": job.threads,
        "status": status,
        "error": error,
        "attempts": attempts,
        "latency_ms": summary.as_dict() if summary else None,
        "samples_ms": [list(r) for r in raw.samples_ms] if raw else [],
        "launches": [to_dict(x) for x in raw.launches] if raw else [],
        "init_ms": raw.init_ms if raw else None,
        "first_inference_ms": raw.first_inference_ms if raw else None,
        "peak_memory_mb": raw.peak_memory_mb if raw else None,
        "memory_method": raw.memory_method if raw else None,
        "ops": ops_with_share(raw) if raw else [],
        "ops_sum_ms": op_sum,
        "ops_model_ms": raw.ops_model_ms if raw else None,
        "energy": to_dict(raw.energy) if raw and raw.energy else None,
        "energy_unavailable_reason": raw.energy_unavailable_reason if raw else None,
        "thermal": {"before": raw.thermal_before, "after": raw.thermal_after} if raw else None,
        "runner": raw.runner if raw else None,
        "raw_files": [to_dict(f) for f in raw.raw_files] if raw else [],
        "sustained": (raw.sustained or None) if raw else None,
        "startup": (raw.startup or None) if raw else None,
        "stability": stability_score(raw),
        "warnings": warnings,
        "stability_not_checkable": not_checkable,
        "settings": to_dict(job.settings),
    }
    return out


def entry_dict(record: RunRecord, entry: JobEntry) -> dict[str, Any]:
    """:func:`result_dict` of a stored job, with the device as it was during the run."""
    dev = record.devices.get(entry.job.device_id)
    device = (
        {"id": dev.id, "platform": dev.platform, "name": dev.name, "model": dev.model,
         "soc": dev.soc, "os_version": dev.os_version}
        if dev
        else None
    )
    return result_dict(entry.job, entry.status, entry.error, entry.raw, entry.attempts, device)


def run_dict(record: RunRecord) -> dict[str, Any]:
    """A whole stored run as JSON: ``{"run_id", "status", …, "results": [...]}``."""
    return {
        "run_id": record.run.run_id,
        "status": record.status,
        "created_at": record.run.created_at,
        "finished_at": record.finished_at,
        "host": record.run.host,
        "tool_versions": record.run.tool_versions,
        "git_sha": record.run.git_sha,
        "command": record.run.command,
        "tags": list(record.tags),
        "plan_sha256": record.plan_sha256,
        "results": [entry_dict(record, e) for e in record.entries],
    }
