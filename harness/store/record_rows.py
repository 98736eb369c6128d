"""Records → table rows: what the store writes for a run, its jobs, devices and results.

The write side's mirror of :mod:`quantlab.harness.store.read_models`;
:class:`quantlab.harness.store.Store`
executes these rows in one transaction each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.records import DeviceInfo, Job, Plan, RawResult, Run, to_dict
from quantlab.harness.redact import redact_text
from quantlab.harness.store.raw import sha256_of


def run_row(run: Run, plan_text: str | None) -> dict[str, Any]:
    """The ``runs`` row of a new run (``running``), with the plan file's text and sha256."""
    return {
        "run_id": run.run_id,
        "created_at": run.created_at,
        "status": "running",
        "host": run.host,
        "command": redact_text(run.command or "") or run.command,
        "git_sha": run.git_sha,
        "tool_versions": dict(run.tool_versions),
        "settings": to_dict(run.settings),
        "schema_version": run.schema_version,
        "plan_text": plan_text,
        "plan_sha256": sha256_of(plan_text.encode("utf-8")) if plan_text is not None else None,
    }


def job_rows(run_id: str, plan: Plan) -> list[dict[str, Any]]:
    """The ``jobs`` rows of a plan: planned jobs ``pending``, left-out ones ``skipped`` with
    their reason, in plan order; the same job twice in one request is stored (and measured)
    once."""
    rows = []
    seq = 0
    for job in plan.jobs:
        rows.append(job_row(run_id, job, seq, "pending", None))
        seq += 1
    for skipped in plan.skipped:
        rows.append(job_row(run_id, skipped.job, seq, "skipped", skipped.reason))
        seq += 1
    seen: set[str] = set()
    unique_rows = []
    for row in rows:
        if row["job_id"] not in seen:
            seen.add(row["job_id"])
            unique_rows.append(row)
    return unique_rows


def job_row(run_id: str, job: Job, seq: int, status: str, error: str | None) -> dict[str, Any]:
    """One ``jobs`` row: the job's spec plus the columns that queries filter on."""
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


def device_row(run_id: str, device: DeviceInfo) -> dict[str, Any]:
    """The ``devices`` row of a run's snapshot of a device."""
    return {"run_id": run_id, "device_id": device.id, "platform": device.platform,
            "info": to_dict(device)}


def result_row(run_id: str, job_id: str, raw: RawResult, summary: Any,
               body: dict[str, Any]) -> dict[str, Any]:
    """The ``results`` row: the headline figures as columns, the rest of ``raw`` as JSON."""
    return {
        "run_id": run_id,
        "job_id": job_id,
        "status": raw.status,
        "median_ms": summary.median if summary else None,
        "mean_ms": summary.mean if summary else None,
        "init_ms": raw.init_ms,
        "first_inference_ms": raw.first_inference_ms,
        "peak_memory_mb": raw.peak_memory_mb,
        "energy_mj": raw.energy.mj_per_inference if raw.energy else None,
        "energy_method": raw.energy.method if raw.energy else None,
        "raw": body,
    }


def sample_rows(run_id: str, job_id: str, raw: RawResult) -> list[dict[str, Any]]:
    """One ``samples`` row per latency sample, by repeat and position."""
    return [
        {"run_id": run_id, "job_id": job_id, "repeat": r, "idx": i, "value_ms": v}
        for r, rep in enumerate(raw.samples_ms)
        for i, v in enumerate(rep)
    ]


def op_rows(run_id: str, job_id: str, raw: RawResult) -> list[dict[str, Any]]:
    """One ``ops`` row per per-op record, in profile order."""
    return [
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


def energy_rows(run_id: str, job_id: str, raw: RawResult) -> list[dict[str, Any]]:
    """One ``energy_samples`` row per energy sample."""
    return [
        {"run_id": run_id, "job_id": job_id, "idx": i, **to_dict(s)}
        for i, s in enumerate(raw.energy_samples)
    ]


MAX_TAG_LENGTH = 255


def check_tags(tags: Iterable[str]) -> list[str]:
    """Tags as given (``nightly``, ``git=3fa2c1``), each once; a UserError for a bad one."""
    out: list[str] = []
    for tag in tags:
        text = tag.strip()
        if not text or len(text) > MAX_TAG_LENGTH or any(c.isspace() or c == "," for c in text) \
                or text.startswith("="):
            raise UserError(f"--tag {tag!r}: not a tag",
                            hint="a word or key=value without spaces or commas, e.g. nightly "
                            "or git=3fa2c1")
        if text not in out:
            out.append(text)
    return out
