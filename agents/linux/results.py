"""What a gateway reports → records: its probe facts as device health, the helper's
event stream as a :class:`~quantlab.harness.records.RawResult`.

The measurements themselves come from the LiteRT runner run on the gateway, so they become
a result through the same :func:`quantlab.agents.litert.results.measured_result` as on the
simulator; this module adds what only a gateway has (hwmon power sensors, the
board's thermal state, the helper's exit status and event log).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from quantlab.agents.linux.hosts import Gateway
from quantlab.agents.linux.session import PythonMissing
from quantlab.agents.litert.results import (
    measured_result,
    pooled_rapl_energy,
    rapl_unavailable_reason,
    startup_record,
    sustained_windows,
)
from quantlab.harness.errors import DeviceDisconnected, JobFailed
from quantlab.harness.records import Energy, EnergySample, Job, OpRecord, RawOutput, RawResult


def missing_deps(facts: dict[str, Any]) -> list[str]:
    """What the worker still lacks on a gateway (from its probe facts)."""
    deps = facts.get("deps") or {}
    out = [dist for dist, ver in deps.items() if ver is None]
    if not facts.get("python_ok", True):
        out.insert(0, f"python>=3.10 (has {facts.get('python')})")
    return out


def health_from(facts: dict[str, Any]) -> dict[str, Any]:
    """The health shown by ``quantlab devices`` for a reachable gateway."""
    thermal = facts.get("thermal") or {}
    return {
        "reachable": True, "auth": "ok",
        "arch": facts.get("arch"), "os": facts.get("os"), "kernel": facts.get("kernel"),
        "cpu_model": facts.get("cpu_model"), "governor": thermal.get("governor"),
        "temperature_c": thermal.get("temperature_c"),
        "temperatures_c": thermal.get("temperatures_c"),
        "throttled": thermal.get("throttled_now") or [],
        "mem_available_mb": _round(facts.get("mem_available_mb")),
        "mem_total_mb": _round(facts.get("mem_total_mb")),
        "disk_free_mb": _round(facts.get("disk_free_mb")),
        "python": facts.get("python"), "python_path": facts.get("python_path"),
        "worker_deps": facts.get("deps"), "worker_ready": not missing_deps(facts),
        "missing": missing_deps(facts),
        "power_sensors": facts.get("power_channels") or [],
        "rapl_readable": facts.get("rapl_readable"),
    }


def _round(value: Any) -> Any:
    return round(value) if isinstance(value, float) else value


def _hot(snapshot: dict[str, Any], hot_c: float) -> bool:
    temp = snapshot.get("temperature_c")
    return temp is not None and temp >= hot_c


def hwmon_energy(samples: list[dict[str, Any]], latency_ms: float | None
                 ) -> tuple[Energy | None, str | None, tuple[EnergySample, ...]]:
    """mJ per inference from hwmon readings: load power minus the idle baseline, times the
    median latency. Power inputs (µW) are averaged; energy counters (µJ) give a rate."""
    kept = tuple(EnergySample(s["phase"], s["t_s"], s["channel"], s["value"], s["unit"])
                 for s in samples)
    if not latency_ms:
        return None, "no inference latency to divide by", kept

    def phase_mw(phase: str) -> tuple[float | None, int]:
        total, count, channels = 0.0, 0, sorted({s.channel for s in kept if s.phase == phase})
        for ch in channels:
            rows = [s for s in kept if s.phase == phase and s.channel == ch]
            if rows[0].unit == "uW":
                total += statistics.fmean(r.value for r in rows) / 1000.0
            else:
                if len(rows) < 2 or rows[-1].t_s <= rows[0].t_s:
                    return None, 0
                total += (rows[-1].value - rows[0].value) / (rows[-1].t_s - rows[0].t_s) / 1000
            count += len(rows)
        return (total if channels else None), count

    base, n_b = phase_mw("baseline")
    load, n_l = phase_mw("load")
    if base is None or load is None:
        return None, ("the measuring phase was too short for the gateway's power sensor "
                      "(use --min-time 2 or more)"), kept
    if load <= base:
        return None, (f"hwmon-power: power while measuring ({load:.0f} mW) was not above the "
                      f"idle baseline ({base:.0f} mW); the sensor is too coarse for this "
                      "model"), kept
    channels = sorted({s.channel for s in kept})
    energy = Energy(method="hwmon-power", mj_per_inference=(load - base) * latency_ms / 1000.0,
                    baseline_mw=base, samples=n_b + n_l,
                    label="board power from hwmon sensors, idle baseline subtracted",
                    detail={"load_mw": load, "latency_ms": latency_ms, "channels": channels})
    return energy, None, kept


def gateway_result(gw: Gateway, job: Job, events: list[dict[str, Any]], status: Any,
                   stderr: str, python: str, code_dir: str,
                   timing: dict[str, float]) -> RawResult:
    """The RawResult of a job from the gateway helper's events and exit ``status``;
    a dropped connection or a helper that died raises (retried or failed)."""
    exit_status, exit_signal = status
    done = any(e.get("event") == "done" for e in events)
    runs = [e["result"] for e in events
            if e.get("event") == "result" and e.get("mode") == "measure"]
    facts = next((e for e in events if e.get("event") == "facts"), {})
    runner: dict[str, Any] = {
        "name": "litert", "via": "ssh", "gateway": gw.name, "address": gw.address,
        "arch": facts.get("arch"), "version": facts.get("litert"),
        "python": facts.get("python"), "python_path": python,
        "delegate": job.delegate, "threads": job.threads,
        "worker": code_dir.rsplit("/", 1)[-1],
        "pids": [r["pid"] for r in runs if r.get("pid")], **timing,
    }
    if not done:
        if exit_status == 127:
            raise PythonMissing(gw, python, 127, stderr)
        if exit_signal or exit_status is None:
            what = f"signal {exit_signal[0]}" if exit_signal else "no exit status"
            raise DeviceDisconnected(gw.device_id, f"connection dropped while measuring "
                                     f"({what})",
                                     hint="the job is retried when the gateway is back")
        last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()),
                    "no output")
        if "No space left on device" in stderr:
            raise JobFailed(f"{gw.device_id}: disk full on the gateway: {last}")
        raise JobFailed(f"{gw.device_id}: the gateway helper exited with code "
                        f"{exit_status}: {last}")
    raw_outputs = _raw_outputs(events)
    failed = next((r for r in runs if r.get("error")), None)
    if failed is not None:
        kind = failed.get("kind")
        if kind == "dropped":
            raise DeviceDisconnected(gw.device_id, "connection dropped while measuring")
        error = f"{failed['error']}"
        if kind == "missing_dependency":
            error += f" — run quantlab gateway provision {gw.name} --install"
        return RawResult.failure(job.job_id, error, runner=runner,
                                 raw_outputs=raw_outputs)
    if not runs:
        raise JobFailed(f"{gw.device_id}: the gateway returned no measurement")
    warnings: list[str] = []
    ops: tuple[OpRecord, ...] = ()
    ops_model_ms = None
    prof = next((e["result"] for e in events
                 if e.get("event") == "result" and e.get("mode") == "profile"), None)
    if job.settings.profile_ops:
        if prof is None or prof.get("error"):
            why = prof["error"] if prof else "the profile step did not run"
            warnings.append(f"per-op profile unavailable: {why}")
        else:
            ops = tuple(OpRecord(**row) for row in prof["ops"])
            ops_model_ms = prof["ops_model_ms"]
            if prof.get("pid"):
                runner["profile_pid"] = prof["pid"]
    thermal = {e.get("when"): e.get("snapshot") or {} for e in events
               if e.get("event") == "thermal"}
    before, after = thermal.get("before", {}), thermal.get("after", {})
    warnings.extend(_thermal_warnings(gw, before, after))
    samples = [s for r in runs for s in r["samples_ms"]]
    median = statistics.median(samples) if samples else None
    energy, reason, energy_samples = _energy(job, runs, events, median)
    return measured_result(
        job, runs,
        ops=ops, ops_model_ms=ops_model_ms,
        energy=energy, energy_samples=energy_samples, energy_unavailable_reason=reason,
        thermal_before=before, thermal_after=after,
        runner=runner, warnings=tuple(warnings), raw_outputs=raw_outputs,
        sustained=sustained_windows(job, runs[0]) if job.settings.sustained_s > 0 else {},
        startup=startup_record(job, runs))


def _raw_outputs(events: list[dict[str, Any]]) -> tuple[RawOutput, ...]:
    """Each worker's output and result JSON, and the helper's whole event stream."""
    out = []
    for e in events:
        if e.get("event") != "result":
            continue
        name = f"measure-{e['repeat'] + 1}" if e.get("mode") == "measure" else "profile"
        raw = e.get("raw") or {}
        if raw.get("log"):
            out.append(RawOutput.capture(f"{name}.log", "text/plain", raw["log"]))
        if raw.get("json"):
            out.append(RawOutput.capture(f"{name}.json", "application/json", raw["json"]))
    stream = "".join(json.dumps({k: v for k, v in e.items() if k != "raw"}) + "\n"
                     for e in events)
    out.append(RawOutput.capture("gateway-events.jsonl", "application/x-ndjson", stream))
    return tuple(out)


def _thermal_warnings(gw: Gateway, before: dict[str, Any], after: dict[str, Any]
                      ) -> list[str]:
    out = []
    if _hot(before, gw.hot_c):
        out.append(f"gateway hot: {before['temperature_c']:.0f} °C before the job "
                   f"(hot at {gw.hot_c:.0f} °C) after {before.get('waited_s', 0):.0f}s "
                   f"of cool-down; measured anyway")
    elif _hot(after, gw.hot_c):
        out.append(f"thermal throttling likely: the gateway reached "
                   f"{after['temperature_c']:.0f} °C during the job "
                   f"(hot at {gw.hot_c:.0f} °C)")
    throttled = sorted(set(before.get("throttled_now") or [])
                       | set(after.get("throttled_now") or []))
    if throttled:
        out.append(f"gateway throttled ({', '.join(throttled)}): latency may be inflated")
    return out


def _energy(job: Job, runs: list[dict[str, Any]], events: list[dict[str, Any]],
            median_ms: float | None
            ) -> tuple[Energy | None, str | None, tuple[EnergySample, ...]]:
    hw = next((e for e in events if e.get("event") == "energy"), None)
    if hw is not None and hw.get("samples"):
        energy, reason, kept = hwmon_energy(hw["samples"], median_ms)
        if energy is not None or not all(r.get("energy") for r in runs):
            return energy, reason, kept
    energy = pooled_rapl_energy(runs)
    if energy is not None:
        return energy, None, ()
    rapl = rapl_unavailable_reason(runs)
    if job.settings.energy:
        return None, (f"no hwmon power sensor (INA2xx, INA3221, PMIC) on the gateway; "
                      f"{rapl or 'RAPL not measured'}"), ()
    return None, None, ()  # not asked for: the worker read no RAPL counter
