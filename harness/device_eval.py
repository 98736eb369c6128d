"""Accuracy where the model runs: task metrics from each device's own outputs, per delegate.

``quantlab evaluate VARIANTS --data D --device DEV[,…] --delegate D[,…] [--samples N]``: the
evaluation samples (a fixed, recorded subset with ``--samples``) go through every variant on
every (device, delegate) by the devices' outputs capability (:mod:`quantlab.agents.outputs`:
inputs sent once, one device-side loop, every output back once); the outputs are scored by the
same task plug-in the host uses, against the float model on the host and against the same
variant on the host (:mod:`quantlab.harness.quantize.device_scoring`), and each (variant,
device, delegate) is gated on its own accuracy. A device that goes away is waited for and the
call made again, under the session's :class:`~quantlab.harness.retry.RetryPolicy`.

A run-level service like :mod:`quantlab.harness.delegate_gate`: it drives agents and tasks and
writes nothing; :func:`quantlab.harness.evaluations.save_device_rows` keeps the rows.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from quantlab.agents.outputs import OutputsFacts, outputs_support, read_outputs
from quantlab.harness.errors import DeviceFault, DeviceUnusable, QuantlabError, UserError
from quantlab.harness.plan import Fleet, expand_models
from quantlab.harness.records import DeviceInfo, Job, ModelRef, Settings
from quantlab.harness.retry import RetryPolicy, quiet

Notify = Callable[[str], None]


def delegates_for(agent: Any, device: DeviceInfo, model: ModelRef, wanted: Sequence[str],
                  threads: int, settings: Settings) -> list[tuple[str, str | None]]:
    """The (delegate, why not) pairs to try on ``device`` for ``model``: the ``wanted`` ones,
    or, with none given, the first delegate the device supports for the model."""
    if wanted:
        out = []
        for name in wanted:
            job = Job(model, device.id, device.platform, name, threads, settings)
            ok, why = outputs_support(agent, device, job)
            out.append((name, None if ok else why))
        return out
    reasons = []
    for name in device.delegates or getattr(agent, "delegates", ()):
        job = Job(model, device.id, device.platform, name, threads, settings)
        ok, why = outputs_support(agent, device, job)
        if ok:
            return [(name, None)]
        reasons.append(f"{name}: {why}")
    return [("-", "; ".join(reasons) or "the device offers no delegate")]


def call_outputs(agent: Any, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                 policy: RetryPolicy, note: Notify) -> OutputsFacts:
    """One outputs call to its outcome: a device that went away is waited for and the call
    made again (``policy``); a device that cannot run it, or any quantlab error, fails it
    with its own words."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return agent.outputs(device, job, inputs, out, lambda phase, fraction: None)
        except DeviceFault as exc:
            if attempt >= policy.attempts:
                return OutputsFacts.failure(job, 0, "-", f"{exc.one_line()} (gave up after "
                                            f"{attempt} attempts)")
            note(f"{exc.one_line()}; waiting up to {policy.wait_s:.0f}s for it to come back")
            if not agent.wait_until_back(device, policy.wait_s):
                return OutputsFacts.failure(job, 0, "-", f"{exc.one_line()}; the device did "
                                            f"not come back within {policy.wait_s:.0f}s")
            note(f"{device.id} is back; running {job.label()} again")
        except (DeviceUnusable, QuantlabError) as exc:
            return OutputsFacts.failure(job, 0, "-", exc.one_line())


def evaluate_on_devices(
    fleet: Fleet, devices: Sequence[DeviceInfo], variants_dir: str | Path, data: str | Path, *,
    delegates: Sequence[str] = (), samples: int | None = None, seed: int = 0,
    threads: int = 1, timeout_s: float = 600.0, max_mse: float | None = None,
    gate_confidence: bool = False, recalibrate: bool = False, retry: RetryPolicy | None = None,
    note: Notify = quiet, progress: Callable[[str], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Every variant of ``variants_dir`` on every (device, delegate): ``{"rows": [...]}`` with
    the task, the gated metric, the float model's value on the host, the sample set, the
    combinations left out (``skipped``, with the reason) and the rows that ``failed`` their
    gate. ``recalibrate``: each row also carries the confidence recalibration fitted on that
    device's outputs (``calibration.recalibration``, as ``evaluate --recalibrate`` on the
    host). ``options``: :func:`quantlab.harness.quantize.evaluate.prepare`'s (``max_drop``,
    ``task``, ``labels``, ``decoder``, ``x_key``, ``y_key``, ``image``)."""
    import numpy as np

    from quantlab.harness.quantize import device_scoring as scoring
    from quantlab.harness.quantize.evaluate import prepare, recalibration_of

    policy = retry or RetryPolicy()
    tell = progress or (lambda _text: None)
    tell("running the float model on the host")
    p = prepare(variants_dir, data, samples=samples, seed=seed, **options)
    if recalibrate:  # no labels, or a task without one: refused before any device runs
        recalibration_of(p.task, p.ref_pred, p.ref_pred, p.ctx)
    models = expand_models([str(variants_dir)])
    settings = Settings(timeout_s=timeout_s)
    hosts: dict[str, scoring.HostSide] = {}
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="quantlab-device-eval-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, x=p.x)  # written once: every (variant, device, delegate) reads it
        for model in models:
            for device in devices:
                agent = fleet.agent_for(device.id)
                for delegate, why in delegates_for(agent, device, model, delegates, threads,
                                                   settings):
                    head = _head(model, device, delegate)
                    if why is not None:
                        skipped.append({**head, "reason": why})
                        continue
                    if model.sha256 not in hosts:
                        tell(f"{model.scheme or Path(model.path).name} on the host")
                        hosts[model.sha256] = scoring.host_side(p, model.path, model.format)
                    tell(f"{model.scheme or Path(model.path).name} on {device.id} · {delegate}")
                    job = Job(model, device.id, device.platform, delegate, threads, settings)
                    out = Path(tmp) / f"{job.job_id}.npz"
                    facts = call_outputs(agent, device, job, inputs, out, policy, note)
                    rows.append(_row(p, head, model, facts, out, hosts[model.sha256], max_mse,
                                     gate_confidence, recalibrate))
    return {"task": {"name": p.task.name, "why": p.why, "decoder": p.ctx.decoder,
                     "notes": list(p.ctx.notes)},
            "metric": p.metric, "data": str(data),
            "reference": {"scheme": p.ref_entry["scheme"] or "fp32",
                          "path": p.ref_entry["path"], "where": "host",
                          "value": p.ref_value, "accuracy": p.ref_metrics},
            "sample_set": p.sample_set, "samples": len(p.x), "rows": rows,
            "skipped": skipped, "gate_confidence": gate_confidence,
            "failed": [f"{r['scheme'] or Path(r['path']).name} on {r['device']} · "
                       f"{r['delegate']}" for r in rows if not r["gate"]["passed"]]}


def _head(model: ModelRef, device: DeviceInfo, delegate: str) -> dict[str, Any]:
    return {"scheme": model.scheme, "path": model.path, "sha256": model.sha256,
            "format": model.format, "device": device.id, "device_name": device.name,
            "platform": device.platform, "delegate": delegate}


def _row(p: Any, head: dict[str, Any], model: ModelRef, facts: OutputsFacts, out: Path,
         host: Any, max_mse: float | None, confidence: bool, recalibrate: bool = False
         ) -> dict[str, Any]:
    """One (variant, device, delegate) row: its scores, or the reason there are none (a
    row without outputs fails its gate, as a variant the runtime refuses does on the host)."""
    from quantlab.harness.quantize import device_scoring as scoring

    base = {**head, "runtime": facts.runtime, "runtime_version": facts.runtime_version,
            "samples": len(p.x), "sample_set": (p.sample_set or {}).get("indices_sha256"),
            "run": facts.to_dict(), "host_reason": host.error}
    error = facts.error
    if error is None:
        try:
            outputs = scoring.align_outputs(p, read_outputs(out))
        except (OSError, ValueError, KeyError) as exc:
            error = f"the outputs that came back cannot be scored: {exc}"
    if error is not None:
        gate = {"passed": False, "drop": None, "drop_pt": None, "metric": p.metric,
                "value": None, "max_drop": p.allowed(model.scheme), "why": error}
        return {**base, "error": error, "metric": p.metric, "value": None, "metrics": {},
                "gate": gate, "vs_host": {"value": host.value, "drop": None, "error": host.error}}
    started = time.perf_counter()
    scored = scoring.score(p, model.scheme, outputs, host, max_mse=max_mse,
                           confidence=confidence, recalibrate=recalibrate)
    return {**base, "error": None, **scored,
            "scoring_seconds": round(time.perf_counter() - started, 4)}


def parse_delegates(text: str | None) -> list[str]:
    """``--delegate xnnpack,cpu`` as a list; UserError for an empty item."""
    if not text:
        return []
    items = [d.strip() for d in text.split(",")]
    if any(not d for d in items):
        raise UserError(f"--delegate {text!r}: an empty delegate name",
                        hint="e.g. --delegate xnnpack,cpu")
    return items
