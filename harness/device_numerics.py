"""The host half of a device's numerics check, for every phone platform.

A runner on the device (benchmark_model on Android, the BenchRunner app on iOS) writes
every output tensor's raw bytes one after the other to one file. Here that file is cut
into the model's outputs (``prepared["outputs"]``: name, shape, dtype, quantization,
bytes, in order), dequantized to float and compared with the float reference's outputs
on the same inputs, and with the variant's own outputs on the host's reference kernels
(:mod:`quantlab.harness.numerics`). Plain numpy: nothing here runs a model.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.numerics import compare_outputs, delegate_only, dequantize, jsonable
from quantlab.harness.records import RawOutput


def unchecked(reason: str) -> dict[str, Any]:
    """A numerics record for a check that could not be made (which is not a failure of
    the delegate: :func:`quantlab.harness.numerics.verdict` gives no verdict for it)."""
    return {"error": reason, "unchecked": True}


def split_outputs(blob: bytes, prepared: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The output file cut into the model's outputs, dequantized to float, by name.
    Raises ValueError when its size is not the sum of the output tensors' bytes."""
    outputs = list(prepared["outputs"])
    want = sum(int(o["bytes"]) for o in outputs)
    if len(blob) != want:
        sizes = ", ".join(f"{o['name']} {o['bytes']}" for o in outputs)
        raise ValueError(f"the output file has {len(blob)} bytes; the model's outputs take "
                         f"{want} ({sizes})")
    out: dict[str, np.ndarray] = {}
    at = 0
    for o in outputs:
        n = int(o["bytes"])
        arr = np.frombuffer(blob[at:at + n], dtype=np.dtype(o["dtype"])).reshape(o["shape"])
        scale, zero = o.get("quantization", (0.0, 0))
        out[o["name"]] = dequantize(arr, float(scale), int(zero))
        at += n
    return out


def compare(prepared: Mapping[str, Any], reference: Mapping[str, np.ndarray], blob: bytes,
            computed_by: str, variant: Mapping[str, np.ndarray] | None = None
            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The numerics record of one job (as the simulator's: figures per output and the worst,
    how the inputs were made, the reference, ``computed_by``; ``delegate_only`` against the
    variant's own outputs on the host when given) and the device's outputs. A size mismatch
    gives a record with ``error`` and no outputs."""
    context = {**prepared.get("context", {}), "computed_by": computed_by}
    try:
        got = split_outputs(blob, prepared)
    except ValueError as exc:
        return jsonable({"error": str(exc), **context}), {}
    result = compare_outputs(dict(reference), got)
    if variant:
        result["delegate_only"] = delegate_only(dict(variant), got)
    return jsonable({**result, **context}), got


def load_reference(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the float reference's outputs by name, the inputs as ``input:<name>``) of a prepared
    check (the .npz :func:`quantlab.agents.litert.reference.prepare` writes)."""
    with np.load(path) as npz:
        reference = {k.split(":", 1)[1]: npz[k] for k in npz.files if k.startswith("reference:")}
        inputs = {k: npz[k] for k in npz.files if k.startswith("input:")}
    return reference, inputs


def load_variant(path: str | Path) -> dict[str, np.ndarray]:
    """The variant's own outputs on the host's reference kernels (``variant:<name>``) of a
    prepared check; empty when the variant is its own float reference."""
    with np.load(path) as npz:
        return {k.split(":", 1)[1]: npz[k] for k in npz.files if k.startswith("variant:")}


def outputs_npz(inputs: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                reference: Mapping[str, np.ndarray],
                variant: Mapping[str, np.ndarray] | None = None) -> RawOutput:
    """``numerics-outputs.npz``, kept raw with the job: the inputs, the device's outputs
    (``output:<name>``), the reference (``reference:<name>``) and the variant on the host
    (``variant:<name>``)."""
    arrays: dict[str, Any] = {**inputs, **{f"output:{k}": v for k, v in got.items()},
                              **{f"reference:{k}": v for k, v in reference.items()},
                              **{f"variant:{k}": v for k, v in (variant or {}).items()}}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return RawOutput.capture("numerics-outputs.npz", "application/x-npz", buf.getvalue())
