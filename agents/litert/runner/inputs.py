"""A job's input arrays: random ones matching each input's dtype, shape and quantization, or
the arrays of the user's ``--inputs`` .npz, checked against the model's inputs."""

from __future__ import annotations

from typing import Any

from .runtime import WorkerError


def dtype_name(dtype: Any) -> str:
    """A dtype's numpy name (``float32``, ``int8``)."""
    import numpy as np

    return str(np.dtype(dtype))


def random_input(detail: dict[str, Any], rng: Any,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> Any:
    """Random data for one input: its dtype, shape (dynamic dims → 1) and quantization;
    float values (or the floats a quantized input stands for) uniform in ``value_range``."""
    import numpy as np

    low, high = value_range
    shape = [max(int(d), 1) for d in detail.get("shape_signature", detail["shape"])]
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind == "f":
        return rng.uniform(low, high, shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    info = np.iinfo(dtype)
    if scale and dtype in (np.int8, np.uint8, np.int16):
        # values that the quantization maps to floats in value_range
        q = np.round(rng.uniform(low, high, shape) / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)
    lo, hi = max(info.min, 0), min(info.max, 255)
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def load_inputs(path: str, details: list[dict[str, Any]]) -> list[Any]:
    """Arrays of an .npz per input: by name, else positional ``arr_N``, else the only array."""
    import numpy as np

    try:
        npz = np.load(path)
    except Exception as exc:
        raise WorkerError(f"--inputs {path}: cannot read .npz ({exc})") from None
    keys = list(npz.keys())
    arrays = []
    for i, d in enumerate(details):
        name = d["name"]
        if name in keys:
            key = name
        elif f"arr_{i}" in keys:
            key = f"arr_{i}"
        elif len(keys) == 1 and len(details) == 1:
            key = keys[0]
        else:
            raise WorkerError(
                f"--inputs {path}: no array for model input {name!r} (keys: {', '.join(keys)})"
            )
        arr = npz[key]
        want = tuple(int(x) for x in d["shape"])
        sig = tuple(int(x) for x in d.get("shape_signature", d["shape"]))
        shape_ok = len(arr.shape) == len(sig) and all(
            s in (-1, a) for s, a in zip(sig, arr.shape, strict=True)
        )
        if not shape_ok:
            raise WorkerError(
                f"--inputs {path}: array {key!r} has shape {tuple(arr.shape)}, "
                f"model input {name!r} "
                f"expects {want}"
            )
        if arr.dtype != np.dtype(d["dtype"]):
            raise WorkerError(
                f"--inputs {path}: array {key!r} has dtype {arr.dtype}, "
                f"model input {name!r} expects "
                f"{dtype_name(d['dtype'])}"
            )
        arrays.append(arr)
    return arrays
