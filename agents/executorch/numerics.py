"""The ExecuTorch runner's ``numerics`` mode: fixed inputs through the ``.pte`` and through its
float reference, every array saved for the host to compare (the host decides, the runner
executes), as the LiteRT runner's ``numerics`` mode does for a ``.tflite``.

The float reference (chosen on the host by :func:`quantlab.agents.executorch.host.
float_reference` and named in the job's ``reference_source``) is the PyTorch model the
variant was made from (a ``.pt2`` through ``torch.export.load``, or a ``module:factory``
entry point), run eagerly in float32; where that source is gone, the variants folder's
``et-fp32`` program. The inputs are ``--inputs`` arrays, else seeded random ones (the LiteRT
runner's seed) in the calibration range ``manifest.json`` records beside the program.
Self-contained (standard library, numpy, torch, executorch): gateways receive this folder alone.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 6: "float32",
          7: "float64", 11: "bool"}
"""ExecuTorch ScalarType codes → numpy dtypes of the inputs the runner makes."""

NUMERICS_SEED = 20251
"""The LiteRT runner's seed of a numerics check's random inputs (the same on every runtime)."""


class NumericsError(Exception):
    """The check could not be set up (its inputs or its reference); the reason, one line."""


def _calibration_range(model: str) -> tuple[float, float] | None:
    """The LiteRT runner's ``calibration_range``, repeated: this folder travels to a gateway
    without the LiteRT runner package."""
    try:
        stats = json.loads((Path(model).parent / "manifest.json").read_text())[
            "calibration"]["input_stats"]
        low, high = float(stats["min"]), float(stats["max"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (low, high) if high > low else None


def _array_key(keys: list[str], i: int, count: int) -> str | None:
    """The .npz array that feeds input ``i`` of ``count``: ``arr_<i>``, or the only array of a
    one-input program; None when there is none."""
    if f"arr_{i}" in keys:
        return f"arr_{i}"
    return keys[0] if len(keys) == 1 and count == 1 else None


def fixed_inputs(shapes: list[tuple[int, ...]], dtypes: list[str], inputs: str | None,
                 model: str) -> tuple[list[Any], str]:
    """The check's input arrays and how they were made: an ``--inputs`` .npz (``arr_<i>`` or
    the only array, batch 1 taken from its first sample), else seeded random ones."""
    import numpy as np

    if inputs:
        with np.load(inputs) as npz:
            keys = list(npz.files)
            arrays = []
            for i, shape in enumerate(shapes):
                key = _array_key(keys, i, len(shapes))
                if key is None:
                    raise NumericsError(f"--inputs {Path(inputs).name}: no array for the "
                                        f"program's input {i} (keys: {', '.join(keys)})")
                arr = np.asarray(npz[key])
                if tuple(arr.shape[1:]) != tuple(shape[1:]):
                    raise NumericsError(f"--inputs {Path(inputs).name}: array {key!r} has "
                                        f"shape {tuple(arr.shape)}, the program takes "
                                        f"{tuple(shape)}")
                arrays.append(np.ascontiguousarray(arr[:1], dtype=dtypes[i]))
        return arrays, "--inputs " + Path(inputs).name
    rng = np.random.default_rng(NUMERICS_SEED)
    found = _calibration_range(model)
    low, high = found or (-1.0, 1.0)
    where = (f"the calibration range [{low:g}, {high:g}] (manifest.json)" if found
             else "[-1, 1] (no calibration range recorded beside the model)")
    return ([rng.uniform(low, high, shape).astype(dtype) if dtype.startswith("float")
             else rng.integers(0, 2, size=shape).astype(dtype)
             for shape, dtype in zip(shapes, dtypes, strict=True)],
            f"seeded random (seed {NUMERICS_SEED}) in {where}")


def _reference(source: dict[str, Any]) -> Any:
    """A callable ``(list of tensors) -> outputs`` of the float reference."""
    import torch

    kind, path = source["kind"], str(source["path"])
    try:
        if kind == "pte":
            from executorch.runtime import Runtime

            method = Runtime.get().load_program(path).load_method("forward")
            return lambda args: list(method.execute(args))
        if kind == "torch-export":
            model = torch.export.load(path).module()
        else:
            module_name, _, factory = path.partition(":")
            model = getattr(importlib.import_module(module_name), factory)().eval()
    except Exception as exc:
        raise NumericsError(f"the float reference {Path(path).name} did not load: "
                            f"{_first(exc)}") from None

    def run(args: list[Any]) -> list[Any]:
        with torch.no_grad():
            out = model(*args)
        return list(out) if isinstance(out, tuple | list) else [out]

    return run


def _program_io(method: Any) -> tuple[list[tuple[int, ...]], list[str], list[dict[str, Any]]]:
    """The program's input shapes and dtypes, and its output tensors (shape, dtype, bytes)."""
    import numpy as np

    meta = method.metadata
    shapes, dtypes, outputs = [], [], []
    for i in range(meta.num_inputs()):
        tensor = meta.input_tensor_meta(i)
        shapes.append(tuple(int(d) for d in tensor.sizes()))
        dtypes.append(DTYPES.get(int(tensor.dtype()), "float32"))
    for i in range(meta.num_outputs()):
        tensor = meta.output_tensor_meta(i)
        shape = [int(d) for d in tensor.sizes()]
        dtype = DTYPES.get(int(tensor.dtype()), "float32")
        outputs.append({"name": f"output_{i}", "shape": shape, "dtype": dtype,
                        "bytes": int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize})
    return shapes, dtypes, outputs


def _context(source: dict[str, Any], note: str) -> dict[str, Any]:
    kernels = ("ExecuTorch (the et-fp32 program)" if source["kind"] == "pte"
               else "PyTorch eager, float32 (the variant's source)")
    return {"inputs": note,
            "reference": {"model": Path(str(source["path"])).name, "kernels": kernels,
                          "same_file": False}}


def _reference_outputs(source: dict[str, Any], arrays: list[Any], count: int) -> list[Any]:
    import numpy as np
    import torch

    want = [o.detach().numpy() if hasattr(o, "detach") else np.asarray(o)
            for o in _reference(source)([torch.from_numpy(a.copy()) for a in arrays])]
    if len(want) != count:
        raise NumericsError(f"the float reference {Path(source['path']).name} has "
                            f"{len(want)} outputs, the program {count}")
    return [np.asarray(o, np.float32) for o in want]


def prepare(job: dict[str, Any], method: Any) -> dict[str, Any]:
    """The host half of a device's check (mode ``numerics-prepare``): the fixed inputs as raw
    tensor files (``inputs_dir``/``input<i>.bin``, what executor_runner's ``--inputs`` loads),
    ``input:`` and ``reference:`` arrays in ``outputs_path``, and under ``prepared`` the
    program's input files and output tensors (for reading its ``--output_file`` files back)
    and how the check was set up (no ``reference_source``: the input files alone, for a job's
    ``--inputs``). The program itself runs on the device."""
    import numpy as np

    shapes, dtypes, outputs = _program_io(method)
    arrays, note = fixed_inputs(shapes, dtypes, job["settings"].get("inputs"), job["model"])
    source = job.get("reference_source")
    want = _reference_outputs(source, arrays, len(outputs)) if source else []
    folder = Path(job["inputs_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for i, a in enumerate(arrays):
        (folder / f"input{i}.bin").write_bytes(np.ascontiguousarray(a).tobytes())
        inputs.append({"name": f"input_{i}", "file": f"input{i}.bin", "shape": list(a.shape),
                       "dtype": str(a.dtype), "bytes": int(a.nbytes)})
    saved: dict[str, Any] = {f"input:input_{i}": a for i, a in enumerate(arrays)}
    saved.update({f"reference:output_{i}": o for i, o in enumerate(want)})
    np.savez(job["outputs_path"], **saved)
    return {"prepared": {"inputs": inputs, "outputs": outputs,
                         "context": _context(source, note) if source else {"inputs": note}}}


def outputs(job: dict[str, Any], method: Any) -> dict[str, Any]:
    """Mode ``outputs`` (:mod:`quantlab.agents.outputs`' contract): every sample of the
    ``outputs_inputs`` .npz (``arr_<i>`` or the only array, samples on the first axis) through
    the program one at a time; ``output:output_<i>`` arrays, float32, to ``outputs_path``."""
    import time

    import numpy as np
    import torch

    shapes, dtypes, outs = _program_io(method)
    path = job["outputs_inputs"]
    with np.load(path) as npz:
        keys = list(npz.files)
        arrays = []
        for i, shape in enumerate(shapes):
            key = _array_key(keys, i, len(shapes))
            if key is None or tuple(npz[key].shape[1:]) != tuple(shape[1:]):
                raise NumericsError(f"{Path(path).name}: no array of shape (N, "
                                    f"{', '.join(map(str, shape[1:]))}) for the program's "
                                    f"input {i} (keys: {', '.join(keys)})")
            arrays.append(np.asarray(npz[key], dtype=dtypes[i]))
    n = len(arrays[0]) if arrays else 0
    kept: list[list[Any]] = [[] for _ in outs]
    ran = time.perf_counter()
    for k in range(n):
        got = method.execute([torch.from_numpy(np.ascontiguousarray(a[k:k + 1]))
                              for a in arrays])
        for i, o in enumerate(got):
            kept[i].append(np.asarray(o.numpy() if hasattr(o, "numpy") else o, np.float32))
    loop_s = time.perf_counter() - ran
    saved: dict[str, Any] = {
        f"output:{o['name']}": np.concatenate(k) if k else np.zeros((0,), np.float32)
        for o, k in zip(outs, kept, strict=True)}
    np.savez(job["outputs_path"], **saved)
    return {"samples": n, "batch": 1, "loop_s": loop_s, "placement": {}}


def numerics(job: dict[str, Any], method: Any) -> dict[str, Any]:
    """Run the fixed inputs through ``method`` (the loaded program's ``forward``) and through
    the float reference; ``input:``, ``output:`` and ``reference:`` arrays go to the job's
    ``outputs_path``; the result says how the check was set up (``numerics_context``)."""
    import numpy as np
    import torch

    shapes, dtypes, _ = _program_io(method)
    arrays, note = fixed_inputs(shapes, dtypes, job["settings"].get("inputs"), job["model"])
    got = [o.numpy() if hasattr(o, "numpy") else np.asarray(o)
           for o in method.execute([torch.from_numpy(a) for a in arrays])]
    want = _reference_outputs(job["reference_source"], arrays, len(got))
    saved: dict[str, Any] = {f"input:input_{i}": a for i, a in enumerate(arrays)}
    saved.update({f"output:output_{i}": np.asarray(o, np.float32) for i, o in enumerate(got)})
    saved.update({f"reference:output_{i}": o for i, o in enumerate(want)})
    np.savez(job["outputs_path"], **saved)
    return {"numerics_context": _context(job["reference_source"], note)}


def _first(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
