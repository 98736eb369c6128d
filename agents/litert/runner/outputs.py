"""The runner's outputs modes: a set of inputs through the model, every output kept.

``outputs``: every sample of the job's ``outputs_inputs`` .npz through the model on its
delegate, in batches where the model allows (:mod:`.batching`, else one sample at a time),
and every output written to ``outputs_path`` (``output:<name>``, samples first, dequantized to
float32). ``outputs-prepare``: the host half of a phone's outputs call: the samples as one raw
file per model input (``inputs_dir``/``input<i>.bin``: every sample's tensor bytes, one after
the other, in the input's own type) and the model's input and output tensors, so the device's
raw output bytes can be split and dequantized on the host. The contract is
:mod:`quantlab.agents.outputs`'s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .batching import BATCH, fit_batch
from .inputs import dtype_name
from .runtime import Phases, WorkerError, first_lines, interpreter


def sample_arrays(path: str, details: list[dict[str, Any]]) -> list[Any]:
    """The sample arrays of an outputs call for the model's inputs (by name, else ``arr_<i>``,
    else the only array), each converted to its input's type: float values quantized with the
    input's scale and zero point for a quantized input."""
    import numpy as np

    try:
        npz = mapped(path) or np.load(path)
    except Exception as exc:
        raise WorkerError(f"{path}: cannot read the inputs .npz ({exc})") from None
    keys = list(npz.keys())
    arrays = []
    for i, d in enumerate(details):
        key = (d["name"] if d["name"] in keys else f"arr_{i}" if f"arr_{i}" in keys
               else keys[0] if len(keys) == 1 and len(details) == 1 else None)
        if key is None:
            raise WorkerError(f"{path}: no array for model input {d['name']!r} "
                              f"(keys: {', '.join(keys)})")
        arr = npz[key]
        want = [int(x) for x in d["shape"][1:]]
        if list(arr.shape[1:]) != want and -1 not in d.get("shape_signature", [0])[1:]:
            raise WorkerError(f"{path}: array {key!r} holds samples of shape "
                              f"{list(arr.shape[1:])}, model input {d['name']!r} takes {want}")
        arrays.append(to_input(arr, d))
    if len({len(a) for a in arrays}) > 1:
        raise WorkerError(f"{path}: the arrays hold different numbers of samples")
    return arrays


def mapped(path: str) -> dict[str, Any] | None:
    """The arrays of an uncompressed .npz (``np.savez``'s, as the harness writes a set) as
    read-only memory maps by key: each array's bytes lie in the file as they are, so they are
    read as the loop reaches them instead of copied and checksummed up front as ``np.load``
    does (0.2-0.35 s of a loaded 2-core machine for 1,000 BlazeFace images, 196 MB). None
    where a member is compressed, not an array file or not mappable: ``np.load`` reads it."""
    import struct
    import zipfile

    import numpy as np
    from numpy.lib import format as npy

    arrays = {}
    try:
        with zipfile.ZipFile(path) as z, open(path, "rb") as f:
            for info in z.infolist():
                if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(
                        ".npy"):
                    return None
                f.seek(info.header_offset)
                local = f.read(30)  # the member's own header, then its name and extra field
                if local[:4] != b"PK\x03\x04":
                    return None
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                f.seek(info.header_offset + 30 + name_len + extra_len)
                version = npy.read_magic(f)
                read_header = {(1, 0): npy.read_array_header_1_0,
                               (2, 0): npy.read_array_header_2_0}.get(version)
                if read_header is None:
                    return None
                shape, fortran, dtype = read_header(f)
                if dtype.hasobject or not np.prod(shape):
                    return None
                arrays[info.filename[:-4]] = np.memmap(
                    path, dtype=dtype, mode="r", offset=f.tell(), shape=shape,
                    order="F" if fortran else "C")
    except (OSError, ValueError, zipfile.BadZipFile, struct.error):
        return None
    return arrays or None


def to_input(arr: Any, detail: dict[str, Any]) -> Any:
    """Samples as an input takes them: quantized when the input is and they are floats."""
    import numpy as np

    dtype = np.dtype(detail["dtype"])
    if arr.dtype == dtype:
        return arr
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and arr.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(arr / scale + zero), info.min, info.max).astype(dtype)
    return arr.astype(dtype)


def from_output(arr: Any, detail: dict[str, Any]) -> Any:
    """An output's values as float32 (dequantized when it is quantized)."""
    import numpy as np

    scale, zero = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return ((arr.astype(np.float32) - zero) * scale).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def outputs(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """Every sample through the model on the job's delegate; outputs to ``outputs_path``."""
    import numpy as np

    from .measure import placement

    phases.enter("outputs: loading the model")
    started = time.perf_counter()

    def load() -> Any:
        try:
            interp = interpreter(job["model"], job["delegate"], job["threads"])
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise WorkerError(f"LiteRT could not load the model: "
                              f"{first_lines(str(exc))}") from None
        return interp

    interp = load()
    where = placement(interp, job["delegate"])
    arrays = sample_arrays(job["outputs_inputs"], interp.get_input_details())
    n = len(arrays[0]) if arrays else 0
    try:
        interp, batch = fit_batch(interp, min(int(job.get("batch") or BATCH), max(n, 1)), load)
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"LiteRT could not prepare the model: "
                          f"{first_lines(str(exc))}") from None
    phases.enter(f"outputs: running {n} samples")
    details, outs = interp.get_input_details(), interp.get_output_details()
    kept: list[list[Any]] = [[] for _ in outs]
    ran = time.perf_counter()
    try:
        for start in range(0, n, batch):
            real = min(batch, n - start)
            for d, arr in zip(details, arrays, strict=True):
                part = arr[start:start + real]
                if real < batch:  # the last batch: padded with its last sample
                    part = np.concatenate([part, np.repeat(part[-1:], batch - real, axis=0)])
                interp.set_tensor(d["index"], part)
            interp.invoke()
            for i, o in enumerate(outs):
                kept[i].append(interp.get_tensor(o["index"])[:real].copy())
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"LiteRT failed on sample {start}: {first_lines(str(exc))}") from None
    loop_s = time.perf_counter() - ran
    np.savez(job["outputs_path"], **{
        f"output:{o['name']}": from_output(np.concatenate(k) if k else np.zeros((0,)), o)
        for o, k in zip(outs, kept, strict=True)})
    return {"samples": n, "batch": batch, "loop_s": loop_s,
            "seconds": time.perf_counter() - started, "placement": where}


def outputs_prepare(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """The samples as raw input files and the model's tensors (see the module docstring)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    phases.enter("outputs: reading the model's tensors")
    try:
        interp = Interpreter(model_path=job["model"])
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"LiteRT could not load the model: {first_lines(str(exc))}") from None
    details = interp.get_input_details()
    arrays = sample_arrays(job["outputs_inputs"], details)
    folder = Path(job["inputs_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for i, (d, arr) in enumerate(zip(details, arrays, strict=True)):
        data = np.ascontiguousarray(arr)
        (folder / f"input{i}.bin").write_bytes(data.tobytes())
        shape = [1, *(int(x) for x in data.shape[1:])]
        inputs.append({"name": str(d["name"]), "shape": shape, "dtype": dtype_name(d["dtype"]),
                       "file": f"input{i}.bin", "samples": len(data),
                       "bytes": int(data[:1].nbytes)})
    outputs = []
    for d in interp.get_output_details():
        dtype = np.dtype(d["dtype"])
        shape = [int(x) for x in d["shape"]]
        scale, zero = d.get("quantization", (0.0, 0))
        outputs.append({"name": str(d["name"]), "shape": shape, "dtype": str(dtype),
                        "quantization": [float(scale), int(zero)],
                        "bytes": int(np.prod(shape, dtype=np.int64)) * dtype.itemsize})
    return {"prepared": {"inputs": inputs, "outputs": outputs,
                         "samples": len(arrays[0]) if arrays else 0}}
