"""The runner's numerics modes.

``numerics``: fixed inputs (``--inputs`` or seeded random ones) through the model on its
delegate and through the float reference (TFLite's reference kernels); when the model is a
variant of that float model, also through the variant itself on the reference kernels (what
the delegate changed, without the quantization error). Every array goes to the job's
``outputs_path`` (.npz); the caller compares them (the host decides, the runner executes).
``numerics-prepare``: the host half of a phone's check — the same inputs as raw tensor files
and both references' outputs on them; the model then runs on the phone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .inputs import dtype_name, load_inputs, random_input
from .measure import placement
from .runtime import Phases, WorkerError, dequantize, first_lines, interpreter

NUMERICS_SEED = 20251
"""Seed of the fixed random inputs of a numerics check (the same on every device)."""


def calibration_range(model: str) -> tuple[float, float] | None:
    """The calibration inputs' [min, max] recorded in the ``manifest.json`` beside a
    variant (``quantlab quantize``), if any: random inputs outside it would measure how a
    quantized model clips, not how a delegate computes."""
    try:
        stats = json.loads((Path(model).parent / "manifest.json").read_text())[
            "calibration"]["input_stats"]
        low, high = float(stats["min"]), float(stats["max"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (low, high) if high > low else None


def fixed_inputs(details: list[dict[str, Any]], inputs: str | None,
                 model: str) -> tuple[list[Any], str]:
    """The numerics check's inputs and how they were made: ``--inputs`` arrays, else seeded
    random ones in the calibration range of ``model`` (else in [-1, 1])."""
    import numpy as np

    if inputs:
        return load_inputs(inputs, details), "--inputs " + Path(inputs).name
    rng = np.random.default_rng(NUMERICS_SEED)
    found = calibration_range(model)
    value_range = found or (-1.0, 1.0)
    where = (f"the calibration range [{found[0]:g}, {found[1]:g}] (manifest.json)" if found
             else "[-1, 1] (no calibration range recorded beside the model)")
    return ([random_input(d, rng, value_range) for d in details],
            f"seeded random (seed {NUMERICS_SEED}) in {where}")


def run_once(interp: Any, arrays: list[Any]) -> dict[str, Any]:
    """Set the inputs, invoke once, return each output dequantized to float, by name."""
    details = interp.get_input_details()
    resized = False
    for d, arr in zip(details, arrays, strict=True):
        if tuple(arr.shape) != tuple(d["shape"]):
            interp.resize_tensor_input(d["index"], arr.shape)
            resized = True
    if resized:
        interp.allocate_tensors()
        details = interp.get_input_details()
    for d, arr in zip(details, arrays, strict=True):
        interp.set_tensor(d["index"], arr)
    interp.invoke()
    out = {}
    for d in interp.get_output_details():
        scale, zero = d.get("quantization", (0.0, 0))
        out[str(d["name"])] = dequantize(interp.get_tensor(d["index"]), scale, zero)
    return out


def _as_reference_input(arr: Any, src: dict[str, Any], dst: dict[str, Any]) -> Any:
    """An input of the measured model as the float reference model expects it."""
    import numpy as np

    want = np.dtype(dst["dtype"])
    if arr.dtype == want:
        return arr
    if want.kind == "f":
        scale, zero = src.get("quantization", (0.0, 0))
        return dequantize(arr, scale, zero).astype(want)
    scale, zero = dst.get("quantization", (0.0, 0))
    if scale:
        info = np.iinfo(want)
        return np.clip(np.round(arr / scale + zero), info.min, info.max).astype(want)
    return arr.astype(want)


def _reference_outputs(job: dict[str, Any], arrays: list[Any], src_details: list[dict[str, Any]],
                       names: list[str]) -> dict[str, Any]:
    """The float reference's outputs (TFLite reference kernels) on ``arrays``, named like
    the measured model's outputs (``names``; by position when the reference names differ)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    reference = job.get("reference_model") or job["model"]
    try:
        ref = Interpreter(model_path=reference,
                          experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        ref.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"the float reference {reference} did not load: "
                          f"{first_lines(str(exc))}") from None
    ref_details = ref.get_input_details()
    if len(ref_details) != len(src_details):
        raise WorkerError(f"the float reference {reference} has {len(ref_details)} inputs, "
                          f"the model {len(src_details)}")
    ref_arrays = [_as_reference_input(a, s, d)
                  for a, s, d in zip(arrays, src_details, ref_details, strict=True)]
    want = run_once(ref, ref_arrays)
    if list(want) != names and len(want) == len(names):  # renamed outputs: by position
        want = dict(zip(names, want.values(), strict=True))
    return want


def _variant_outputs(job: dict[str, Any], arrays: list[Any], names: list[str]
                     ) -> dict[str, Any] | None:
    """The measured model's own outputs on TFLite's reference kernels, named like ``names``:
    what a delegate should reproduce, quantization and all. None when the model is its own
    float reference, or when the reference kernels cannot run it."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    reference = job.get("reference_model")
    if not reference or reference == job["model"]:
        return None
    try:
        own = Interpreter(model_path=job["model"],
                          experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        own.allocate_tensors()
        out = run_once(own, arrays)
    except (ValueError, RuntimeError):
        return None
    return dict(zip(names, out.values(), strict=True)) if len(out) == len(names) else None


def _numerics_context(job: dict[str, Any], inputs_note: str) -> dict[str, Any]:
    """How a numerics check was set up: its inputs and its float reference."""
    reference = job.get("reference_model") or job["model"]
    return {
        "inputs": inputs_note,
        "reference": {"model": Path(reference).name, "kernels": "TFLite reference kernels",
                      "same_file": reference == job["model"]},
    }


def numerics(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """Run the fixed inputs through the model on its delegate, through the float reference
    (TFLite's reference kernels) and through the variant on the reference kernels; every
    array goes to ``outputs_path`` (``input:``, ``output:``, ``reference:``, ``variant:``
    names), and the result says how the check was set up (``numerics_context``) and where the
    delegate put the model's ops (``placement``)."""
    import numpy as np

    settings = job["settings"]
    phases.enter("numerics: loading the model")
    try:
        interp = interpreter(job["model"], job["delegate"], job["threads"])
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"LiteRT could not load the model: {first_lines(str(exc))}") from None
    src_details = interp.get_input_details()
    arrays, inputs_note = fixed_inputs(src_details, settings.get("inputs"), job["model"])
    phases.enter("numerics: running the model")
    got = run_once(interp, arrays)
    phases.enter("numerics: running the float reference")
    want = _reference_outputs(job, arrays, src_details, list(got))
    own = _variant_outputs(job, arrays, list(got))
    np.savez(job["outputs_path"],
             **{f"input:{d['name']}": a for d, a in zip(src_details, arrays, strict=True)},
             **{f"output:{k}": v for k, v in got.items()},
             **{f"reference:{k}": v for k, v in want.items()},
             **{f"variant:{k}": v for k, v in (own or {}).items()})
    return {"numerics_context": _numerics_context(job, inputs_note),
            "placement": placement(interp, job["delegate"])}


def numerics_prepare(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """The host half of a device's numerics check: the fixed inputs as raw tensor files
    (``inputs_dir``/``input<i>.bin``, the bytes a runner loads into each input), the float
    reference's outputs on them (``outputs_path``, ``reference:<name>`` arrays), and the
    model's input and output tensors (name, shape, dtype, quantization, bytes), so the
    device's raw output bytes can be split and dequantized on the host. The model itself
    runs on the device, never here."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    settings = job["settings"]
    phases.enter("numerics: reading the model's tensors")
    try:
        interp = Interpreter(model_path=job["model"])
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"LiteRT could not load the model: {first_lines(str(exc))}") from None
    src_details = interp.get_input_details()
    arrays, inputs_note = fixed_inputs(src_details, settings.get("inputs"), job["model"])
    if any(tuple(a.shape) != tuple(d["shape"]) for a, d in zip(arrays, src_details,
                                                                 strict=True)):
        for d, a in zip(src_details, arrays, strict=True):
            interp.resize_tensor_input(d["index"], a.shape)
        interp.allocate_tensors()
        src_details = interp.get_input_details()
    out_details = interp.get_output_details()
    names = [str(d["name"]) for d in out_details]
    phases.enter("numerics: running the float reference")
    want = _reference_outputs(job, arrays, src_details, names)
    own = _variant_outputs(job, arrays, names)
    folder = Path(job["inputs_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for i, (d, a) in enumerate(zip(src_details, arrays, strict=True)):
        data = np.ascontiguousarray(a, dtype=np.dtype(d["dtype"]))
        (folder / f"input{i}.bin").write_bytes(data.tobytes())
        inputs.append({"name": str(d["name"]), "shape": [int(x) for x in data.shape],
                       "dtype": dtype_name(d["dtype"]), "file": f"input{i}.bin",
                       "bytes": int(data.nbytes)})
    outputs = []
    for d in out_details:
        dtype = np.dtype(d["dtype"])
        shape = [int(x) for x in d["shape"]]
        scale, zero = d.get("quantization", (0.0, 0))
        outputs.append({"name": str(d["name"]), "shape": shape, "dtype": str(dtype),
                        "quantization": [float(scale), int(zero)],
                        "bytes": int(np.prod(shape, dtype=np.int64)) * dtype.itemsize})
    np.savez(job["outputs_path"],
             **{f"input:{d['name']}": a for d, a in zip(src_details, arrays, strict=True)},
             **{f"reference:{k}": v for k, v in want.items()},
             **{f"variant:{k}": v for k, v in (own or {}).items()})
    return {"prepared": {"inputs": inputs, "outputs": outputs,
                         "context": _numerics_context(job, inputs_note)}}
