"""The job/result contract between quantlab and the BenchRunner iOS app.

:func:`build_job` turns a quantlab :class:`~quantlab.harness.records.Job` into the JSON the
app reads from ``Documents/jobs/<id>/job.json``; :func:`parse_result` turns the
app's ``Documents/results/<id>.json`` into a :class:`~quantlab.harness.records.RawResult`.
Both are validated against the JSON Schemas in ``ios_runner/schema/``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.records import Energy, Job, OpRecord, RawResult

SCHEMA_DIR = Path(__file__).parent / "schema"
JOB_SCHEMA = "iosbench.job/1"
RESULT_SCHEMA = "iosbench.result/1"
ENERGY_LABEL = "process CPU energy estimate (task_info power info); excludes Neural Engine/GPU work"

COREML_UNITS = {
    "coreml-cpu": "cpuOnly",
    "coreml-gpu": "cpuAndGPU",
    "coreml-ane": "cpuAndNeuralEngine",
    "coreml-all": "all",
}
"""quantlab delegate → ``MLComputeUnits`` case name."""

TFLITE_DELEGATES = {"tflite-cpu": "cpu", "tflite-metal": "metal", "tflite-coreml": "coreml"}
"""quantlab delegate → TFLite delegate name in the job."""

OFF_CPU_WORK = {
    "coreml-gpu": "the GPU",
    "coreml-ane": "the Neural Engine",
    "coreml-all": "the Neural Engine or the GPU (Core ML chooses)",
    "tflite-metal": "the GPU (Metal delegate)",
    "tflite-coreml": "the Neural Engine or the GPU (through Core ML)",
}
"""Delegates whose work runs partly off the CPU, and where: the app's energy figure (the
process's CPU energy) leaves that work out, so such a job gets no figure."""


def off_cpu_energy_reason(delegate: str, cpu_mj: float) -> str | None:
    """Why a job on ``delegate`` gets no energy figure from the process CPU estimate
    (``cpu_mj`` per inference, kept in the runner metadata), or None for a CPU-only job."""
    where = OFF_CPU_WORK.get(delegate)
    if where is None:
        return None
    return (f"{delegate}: the iPhone's figure is the app's CPU energy estimate and this job "
            f"runs partly on {where}, which it does not count; no figure, so it is never "
            f"ranked against CPU-only jobs (the CPU share, {cpu_mj:.3g} mJ/inference, is "
            "kept as runner.cpu_task_energy_mj_per_inference)")


class ContractError(UserError):
    """A job or result that does not follow the iosbench schema."""


@cache
def _schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return data


def validate(kind: str, data: dict[str, Any]) -> None:
    """Validate ``data`` against the ``job`` or ``result`` schema; ContractError on a problem."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema(kind))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ContractError(
            f"iOS {kind} JSON does not follow {kind}.schema.json at {where}: {err.message}",
            hint="the BenchRunner app and quantlab disagree; rebuild the app from this checkout",
        )


def model_remote_name(job: Job) -> str:
    """File name of the model inside the job folder on the phone."""
    return f"model.{job.model.format}"


def job_file(job: Job, name: str) -> str:
    """A file of the job folder on the phone, as the job JSON names it (relative to Documents/)."""
    return f"jobs/{job.job_id}/{name}"


def build_job(
    job: Job,
    *,
    compute_plan: bool = True,
    cooldown_wait_s: float = 300.0,
    input_files: list[dict[str, Any]] | None = None,
    outputs_file: str | None = None,
    outputs_samples: int | None = None,
) -> dict[str, Any]:
    """The job JSON for ``job`` (validated); ContractError for a delegate the app lacks.

    ``input_files``: fixed inputs, one raw tensor file per model input (``name``, ``file``
    relative to Documents/, ``shape``, ``dtype``) used for every run instead of random data;
    ``outputs_file``: where the app writes the output tensors of its last timed run;
    ``outputs_samples``: a batch job (``evaluate --device``): each input file holds that many
    samples and the app writes every sample's outputs to ``outputs_file``."""
    jid = job.job_id
    data: dict[str, Any] = {
        "schema": JOB_SCHEMA,
        "job_id": jid,
        "model": {
            "path": job_file(job, model_remote_name(job)),
            "format": job.model.format,
            "sha256": job.model.sha256,
        },
        "inputs": {"kind": "files", "files": [
            {k: f[k] for k in ("name", "file", "shape", "dtype")} for f in input_files]}
        if input_files else {"kind": "random", "seed": 0},
        "run": {
            "warmup": job.settings.warmup,
            "iterations": job.settings.iterations,
            "cold_load_repeats": max(1, job.settings.repeats),
            "timeout_s": job.settings.timeout_s,
        },
        "preconditions": {
            "max_thermal_start": "nominal",
            "forbid_low_power": True,
            "cooldown_wait_s": cooldown_wait_s,
        },
    }
    if outputs_file:
        data["outputs"] = {"file": outputs_file}
        if outputs_samples is not None:
            data["outputs"]["samples"] = outputs_samples
    if job.delegate in COREML_UNITS:
        data["engine"] = "coreml"
        data["coreml"] = {
            "compute_units": COREML_UNITS[job.delegate],
            "compile_on_device": job.model.format == "mlpackage",
            "compute_plan": compute_plan,
            "mode": "sync",
        }
    elif job.delegate in TFLITE_DELEGATES:
        data["engine"] = "tflite"
        data["tflite"] = {
            "delegate": TFLITE_DELEGATES[job.delegate],
            "num_threads": max(1, job.threads),
            "metal": {"precision_loss": False, "wait_type": "passive"},
            "coreml": {"enabled_devices": "neuralEngine", "min_nodes_per_partition": 2},
            "op_profile": job.settings.profile_ops,
        }
    else:
        raise ContractError(
            f"delegate {job.delegate!r} is not an iOS delegate", hint="see `quantlab devices`"
        )
    validate("job", data)
    return data


def _ops(result: dict[str, Any]) -> tuple[tuple[OpRecord, ...], list[str]]:
    warnings: list[str] = []
    plan = result.get("compute_plan")
    if plan:
        ops = tuple(
            OpRecord(
                index=i,
                kernel=op["op"],
                avg_ms=0.0,
                op_type=op["op"],
                delegate=op["preferred"],
                node_index=op["index"],
                unit="ms",
                detail={
                    "anticipated": True,
                    "function": op["function"],
                    "preferred": op["preferred"],
                    "supported": list(op["supported"]),
                    "cost_weight": op.get("cost_weight"),
                },
            )
            for i, op in enumerate(plan["ops"])
        )
        warnings.append(
            "per-op placement is MLComputePlan's anticipated plan (preferred/supported device, "
            "estimated cost), not measured per-op time"
        )
        return ops, warnings
    profile = result.get("tflite_op_profile") or []
    ops = tuple(
        OpRecord(
            index=i,
            kernel=p["op_name"],
            avg_ms=p["avg_us"] / 1000.0,
            op_type=p["op_name"],
            delegate="delegate" if "Delegate" in p["op_name"] else None,
            node_index=p["index"],
            times_called=1,
            detail={"subgraph": p["subgraph"], "count": p["count"]},
        )
        for i, p in enumerate(profile)
    )
    return ops, warnings


def parse_result(data: dict[str, Any], job: Job) -> RawResult:
    """Map the app's result JSON to a RawResult (validated; the job ids must agree)."""
    validate("result", data)
    if data["job_id"] != job.job_id:
        raise ContractError(
            f"iOS result is for job {data['job_id']}, expected {job.job_id}",
            hint="a stale result was left on the phone; quantlab clears it before each job",
        )
    timing = data["timing_ms"]
    env = data["environment"]
    states = [t["state"] for t in env["thermal_timeline"]]
    thermal_before = {"thermal_state": states[0]} if states else {}
    thermal_after = {"thermal_state": states[-1]} if states else {}
    runner = {
        "name": "BenchRunner (iOS)",
        **data["runner"],
        "device": data["device"],
        "compile_ms": timing.get("compile"),
        "load_cold_ms": list(timing["load_cold"]),
        "load_warm_ms": list(timing["load_warm"]),
        "warmup_ms": list(timing["warmup"]),
        "thermal_timeline": env["thermal_timeline"],
        "low_power": env["low_power"],
        "battery_state": env.get("battery_state"),
    }
    if data["status"] == "failed":
        return RawResult(
            job_id=job.job_id,
            status="failed",
            error=data.get("error") or "the iOS runner reported a failure without a message",
            thermal_before=thermal_before,
            thermal_after=thermal_after,
            runner=runner,
        )
    ops, warnings = _ops(data)
    if any(s != "nominal" for s in states):
        warnings.append(f"thermal state changed during the run: {' → '.join(states)}")
    memory = data.get("memory") or {}
    peak = memory.get("phys_footprint_peak")
    energy = None
    no_energy = "the app reported no task energy (task_info power info unavailable)"
    e = data.get("energy")
    if e:
        cpu_mj = e["task_energy_nj_delta"] / 1e6 / e["predictions"]
        off_cpu = off_cpu_energy_reason(job.delegate, cpu_mj)
        if off_cpu:
            runner["cpu_task_energy_mj_per_inference"] = cpu_mj
            no_energy = off_cpu
        else:
            energy = Energy(
                method="ios-task-energy",
                mj_per_inference=cpu_mj,
                samples=e["predictions"],
                label=f"{ENERGY_LABEL} (app: {e['label']})",
                detail={"task_energy_nj_delta": e["task_energy_nj_delta"]},
            )
    init = timing["load_cold"][0] if timing["load_cold"] else None
    return RawResult(
        job_id=job.job_id,
        status="ok",
        samples_ms=(tuple(float(x) for x in timing["latency"]),),
        init_ms=init,
        first_inference_ms=timing.get("first_prediction"),
        peak_memory_mb=peak / (1024 * 1024) if peak is not None else None,
        memory_method="phys_footprint (task_vm_info) peak" if peak is not None else None,
        ops=ops,
        energy=energy,
        energy_unavailable_reason=None if energy else no_energy,
        thermal_before=thermal_before,
        thermal_after=thermal_after,
        runner=runner,
        warnings=tuple(warnings),
    )
