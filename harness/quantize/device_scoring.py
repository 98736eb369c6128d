"""Task metrics from outputs that came back from a device, scored like the host's.

The device's outputs (:mod:`quantlab.agents.outputs`) go through the same task plug-in as the
host's (:mod:`quantlab.harness.tasks`: decoders, NMS, metrics, intervals) against the same
reference, prepared once by :func:`quantlab.harness.quantize.evaluate.prepare` on the same
samples. Each (variant, device, delegate) gets two drops: against the float model **on the
host** (what quantizing *and* the device cost; the gate judges it, with its paired interval)
and against the same variant **on the host** (what the device alone changed). Plain numpy and
the host's LiteRT (ExecuTorch for a PyTorch source's ``.pte``): nothing here talks to a
device.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.errors import ModelError
from quantlab.harness.numerics import finite_or_none
from quantlab.harness.quantize.evaluate import (
    Prepared,
    _calibration,
    _interval,
    nonfinite_count,
)
from quantlab.harness.quantize.fidelity import fidelity
from quantlab.harness.quantize.gate import gate_drop, judge
from quantlab.harness.quantize.pte_runner import PteRunner
from quantlab.harness.quantize.tflite_runner import TfliteRunner

COREML_HOST_REASON = ("coremltools predicts only on macOS (this host is {system}): the Core ML "
                      "variant's accuracy comes from the device alone, with no host figure to "
                      "compare it with")


@dataclass(frozen=True)
class HostSide:
    """A variant on the host on the evaluated samples: its outputs, predictions and the gated
    metric's value, or why there are none."""

    outputs: list[np.ndarray] | None
    pred: Any
    value: float | None
    error: str | None = None
    runtime: str = "litert"


def value_of(p: Prepared, pred: Any) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """The gated metric's value of ``pred`` (metrics first, else the label-free fidelity to
    the float model), with the metrics and the fidelity."""
    metrics = p.task.metrics(pred, p.ctx)
    fid = p.task.fidelity(p.ref_pred, pred, p.ctx)
    value = metrics.get(p.metric, fid.get(p.metric))
    return (p.ref_value if value is None else float(value)), metrics, fid


def host_side(p: Prepared, path: str, model_format: str) -> HostSide:
    """The variant at ``path`` on the host: LiteRT for a .tflite (the fp32 reference's own
    outputs for it), ExecuTorch for a .pte (as host ``evaluate`` runs it), coremltools on
    macOS for Core ML; else the reason there is none."""
    if path == p.ref_entry["path"]:
        return HostSide(p.ref_out, p.ref_pred, p.ref_value)
    try:
        if model_format in ("mlpackage", "mlmodel"):
            outputs = coreml_predict(path, p.x, [o.shape for o in p.ctx.outputs])
            runtime = "coreml"
        else:
            if path in p.unsafe:
                raise ModelError(path, p.unsafe[path])
            pte = model_format == "pte"  # a PyTorch source's program: ExecuTorch, as evaluate
            runner = PteRunner(path) if pte else TfliteRunner(path, batch=p.batch)
            outputs = runner.predict(p.x)
            runtime = "executorch" if pte else "litert"
    except ModelError as exc:
        return HostSide(None, None, None, exc.one_line())
    except CoremlUnavailable as exc:
        return HostSide(None, None, None, str(exc), runtime="coreml")
    pred = p.task.decode(outputs, p.ctx)
    return HostSide(outputs, pred, value_of(p, pred)[0], runtime=runtime)


class CoremlUnavailable(Exception):
    """Core ML cannot predict on this host; the message says why."""


def coreml_predict(path: str, x: np.ndarray, shapes: list[tuple[int, ...]]
                   ) -> list[np.ndarray]:
    """A Core ML model's outputs on ``x`` (one sample at a time, batch 1) through
    coremltools, which predicts only on macOS; each output reshaped to the float model's
    ``shapes`` by position. :class:`CoremlUnavailable` elsewhere or when coremltools fails."""
    if sys.platform != "darwin":
        raise CoremlUnavailable(COREML_HOST_REASON.format(system=sys.platform))
    try:
        import coremltools as ct

        model = ct.models.MLModel(str(path))
        spec = model.get_spec().description
        name = spec.input[0].name
        order = [o.name for o in spec.output]
        rows = [model.predict({name: x[i:i + 1]}) for i in range(len(x))]
    except Exception as exc:  # coremltools' own errors vary by version
        raise CoremlUnavailable(f"coremltools could not run {Path(path).name}: {exc}") from None
    return [np.stack([np.asarray(r[k], np.float32).reshape(shape[1:]) for r in rows])
            for k, shape in zip(order, shapes, strict=False)]


def align_outputs(p: Prepared, got: dict[str, np.ndarray]) -> list[np.ndarray]:
    """A device's outputs in the float model's order and shapes: by name where the names
    agree, else by position (a Core ML model names its outputs its own way); ValueError
    with the reason when the counts or sizes differ."""
    names = [o.name for o in p.ctx.outputs]
    arrays = [got[n] for n in names] if sorted(names) == sorted(got) else list(got.values())
    if len(arrays) != len(names):
        raise ValueError(f"the device gave {len(arrays)} outputs, the float model has "
                         f"{len(names)}")
    out = []
    for arr, info, ref in zip(arrays, p.ctx.outputs, p.ref_out, strict=True):
        want = (len(p.x), *ref.shape[1:])
        if arr.size != int(np.prod(want)):
            raise ValueError(f"output {info.name!r}: the device gave shape {list(arr.shape)}, "
                             f"the float model's is {list(want)}")
        out.append(np.asarray(arr, np.float32).reshape(want))
    return out


def score(p: Prepared, scheme: str | None, outputs: list[np.ndarray], host: HostSide, *,
          max_mse: float | None = None, confidence: bool = False,
          recalibrate: bool = False) -> dict[str, Any]:
    """One (variant, device, delegate)'s figures from its outputs: the task's metrics, the
    gate against the float model on the host (drop, paired interval, verdict), the drop
    against the same variant on the host with its interval, per-output fidelity against
    both, and confidence-calibration drift (``recalibrate``: with the recalibration fitted
    on these outputs, as the host fits it on its own)."""
    pred = p.task.decode(outputs, p.ctx)
    value, metrics, fid = value_of(p, pred)
    metrics.setdefault(p.metric, value)
    comparable = p.comparable(outputs)
    bad, count = nonfinite_count(comparable)
    per_output = fidelity(p.comparable(p.ref_out), comparable, {})
    interval = _interval(p.task, p.ref_pred, pred, p.ctx, p.metric) if not bad else None
    gate = judge(p.metric, p.ref_value, value, p.allowed(scheme), p.lower,
                 nonfinite=(bad, count), max_mse=max_mse, mse=per_output[0]["mse"],
                 interval=interval, confidence=confidence)
    vs_host: dict[str, Any] = {"value": host.value, "error": host.error,
                               "runtime": host.runtime}
    if host.pred is not None and host.value is not None and host.outputs is not None:
        drop = gate_drop(p.metric, host.value, value, p.lower)
        vs_host.update(
            drop=drop, drop_pt=None if p.metric in p.lower else round(100 * drop, 4),
            interval=_interval(p.task, host.pred, pred, p.ctx, p.metric)
            if host.pred is not pred and not bad else None,
            outputs=fidelity(p.comparable(host.outputs), comparable, {}))
    else:
        vs_host.update(drop=None, drop_pt=None, interval=None, outputs=[])
    return finite_or_none({
        "metric": p.metric, "value": value, "metrics": metrics,
        "fidelity": {**fid, "outputs": per_output},
        "gate": gate.to_dict(), "vs_host": vs_host,
        "calibration": _calibration(p.task, p.ref_pred, pred, p.ctx, recalibrate)})
