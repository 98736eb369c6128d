"""Edge-case inputs run one at a time: crashes, NaN/Inf, saturation and divergence from fp32.

The cases: synthetic inputs at and inside the input range, one far outside it,
and (for image inputs) odd image sizes, fed at their own size when the model's
H/W are free, else resized.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from quantlab.harness.errors import ModelError
from quantlab.harness.quantize.tflite_runner import TfliteRunner, quiet_native_stderr

SATURATED_SHARE = (
    0.5  # an integer output with this share of values at its limits is flagged saturated
)
FLOAT_SATURATION = 1e30  # a float output this large is flagged saturated
OUT_OF_RANGE = 10.0  # the out-of-range edge case lies this many input spans beyond the data
DIVERGED_REL_ERR = 0.5  # an edge case whose output differs from fp32 by more is flagged


def edge_inputs(
    shape: tuple[int, ...], low: float, high: float, seed: int = 0
) -> dict[str, np.ndarray]:
    """Synthetic inputs at and inside the input range [low, high], and one far outside it."""
    rng = np.random.default_rng(seed)
    extremes = np.where(rng.random(shape) < 0.5, low, high)
    span = (high - low) or 1.0
    return {
        "all-black": np.full(shape, low, np.float32),
        "all-white": np.full(shape, high, np.float32),
        "uniform-noise": rng.uniform(low, high, shape).astype(np.float32),
        "extremes": extremes.astype(np.float32),
        "mid-grey": np.full(shape, (low + high) / 2, np.float32),
        "out-of-range": np.where(extremes > low, high + OUT_OF_RANGE * span,
                                 low - OUT_OF_RANGE * span).astype(np.float32),
    }


def odd_sizes(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Odd image sizes (H, W) for an NHWC image input: a tall sliver and a wide strip."""
    if len(shape) != 4 or shape[3] not in (1, 3, 4):
        return []
    h, w = max(shape[1], 2), max(shape[2], 2)
    return [(3 * h + 1, max(1, w // 3) | 1), (max(1, h // 4) | 1, 2 * w + 3)]


def resize_images(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of float NHWC images to (H, W), channel by channel (Pillow 'F' mode)."""
    from PIL import Image

    out = np.empty((x.shape[0], hw[0], hw[1], x.shape[3]), np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[3]):
            img = Image.fromarray(np.ascontiguousarray(x[i, :, :, c], np.float32), mode="F")
            out[i, :, :, c] = np.asarray(img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR))
    return out


def _odd_case(runner: TfliteRunner, hw: tuple[int, int], low: float, high: float,
              seed: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """An odd-size image: fed at its own size when the model's H/W are free, else resized."""
    c = runner.input_shape[3]
    img = np.random.default_rng(seed).uniform(low, high, (1, *hw, c)).astype(np.float32)
    sig = [int(d) for d in runner.input.get("shape_signature", runner.input["shape"])]
    info: dict[str, Any] = {"case": f"odd-size {hw[0]}x{hw[1]}", "size": list(hw)}
    if len(sig) == 4 and (sig[1] < 0 or sig[2] < 0):
        try:
            runner.interp.resize_tensor_input(runner.input["index"], [1, *hw, c])
            with quiet_native_stderr():
                runner.interp.allocate_tensors()
            runner.input = runner.interp.get_input_details()[0]
            runner.outputs = runner.interp.get_output_details()
            info["path"] = "fed at its own size (the model's input size is free)"
            return info, img
        except Exception as exc:
            info["path"] = "refused"
            info["refused"] = f"the model cannot take a {hw[0]}x{hw[1]} input: " \
                f"{str(exc).strip().splitlines()[0][:160]}"
            return info, None
    info["path"] = f"resized (bilinear) to the model input {runner.input_shape[1]}x" \
        f"{runner.input_shape[2]}"
    return info, resize_images(img, (runner.input_shape[1], runner.input_shape[2]))


def _edge_runs(path: str, low: float, high: float) -> Iterator[tuple[dict[str, Any],
                                                                    list[np.ndarray] | str,
                                                                    list[np.ndarray]]]:
    """(case info, outputs or the runtime error, raw outputs) for every edge case."""
    runner = TfliteRunner(path, batch=1)
    cases: list[tuple[dict[str, Any], np.ndarray | None]] = [
        ({"case": name}, x) for name, x in edge_inputs(runner.input_shape, low, high).items()]
    base = TfliteRunner(path, batch=1)
    for k, hw in enumerate(odd_sizes(runner.input_shape)):
        cases.append(_odd_case(TfliteRunner(path, batch=1), hw, low, high, k))
    for info, x in cases:
        if x is None:
            yield info, "", []
            continue
        r = runner if x.shape == tuple(runner.input_shape) else base
        if tuple(x.shape) != tuple(r.input_shape):
            r = TfliteRunner(path, batch=1)
            r.interp.resize_tensor_input(r.input["index"], list(x.shape))
            with quiet_native_stderr():
                r.interp.allocate_tensors()
            r.input, r.outputs = r.interp.get_input_details()[0], r.interp.get_output_details()
        try:
            r.interp.set_tensor(r.input["index"], r._to_input(x))
            r.interp.invoke()
            raws = _trim_padding(r, [r.interp.get_tensor(od["index"]) for od in r.outputs])
            yield info, [r._from_output(i, raw) for i, raw in enumerate(raws)], raws
        except Exception as exc:  # a runtime failure on this input is the finding
            yield info, str(exc).strip()[:200] or type(exc).__name__, []


def _trim_padding(runner: TfliteRunner, raws: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of TFLite_Detection_PostProcess cut to the detection count: the rows past it
    are padding the kernel leaves unwritten (any value, NaN included)."""
    if runner.batch != 1 or runner.batched or len(raws) != 4:
        return raws
    counts = [a for a in raws if a.size == 1]
    rows = {a.shape[1] for a in raws if a.ndim >= 2 and a.size > 1}
    if len(counts) != 1 or len(rows) != 1 or not np.isfinite(counts[0]).all():
        return raws
    k = int(np.clip(float(counts[0].ravel()[0]), 0, rows.pop()))
    return [a if a.size == 1 else a[:, :k] for a in raws]


def edge_outputs(path: str, low: float, high: float) -> dict[str, list[np.ndarray]]:
    """The float reference's outputs on every edge case (for divergence checks)."""
    try:
        return {info["case"]: out for info, out, _ in _edge_runs(path, low, high)
                if isinstance(out, list)}
    except ModelError:
        return {}


def edge_cases(path: str, low: float, high: float,
               reference: dict[str, list[np.ndarray]] | None = None) -> list[dict[str, Any]]:
    """Run the edge-case inputs one at a time: crash, NaN/Inf, saturation per case, and (given
    the float model's outputs on the same inputs) divergence from them."""
    results: list[dict[str, Any]] = []
    try:
        runs = list(_edge_runs(path, low, high))
    except ModelError as exc:
        return [{"case": "load", "ok": False, "error": exc.one_line()}]
    for info, outs, raws in runs:
        entry: dict[str, Any] = {
            **info,
            "ok": True,
            "nan_or_inf": False,
            "saturated": False,
            "error": None,
        }
        if isinstance(outs, str):
            if info.get("refused"):
                entry["error"] = info["refused"]  # a clear refusal, not a crash
            else:
                entry.update(ok=False, error=outs)
            results.append(entry)
            continue
        for raw, y in zip(raws, outs, strict=True):
            if not np.all(np.isfinite(y)):
                entry["nan_or_inf"] = True
                entry["ok"] = False
            if np.dtype(raw.dtype).kind in "iu":
                info_i = np.iinfo(raw.dtype)
                at_limit = np.mean((raw == info_i.min) | (raw == info_i.max))
                entry["saturated"] |= bool(at_limit >= SATURATED_SHARE)
            else:
                entry["saturated"] |= bool(np.any(np.abs(y[np.isfinite(y)]) >= FLOAT_SATURATION))
        ref = (reference or {}).get(info["case"])
        if ref is not None and entry["ok"]:
            r = np.concatenate([a.astype(np.float64).ravel() for a in ref])
            o = np.concatenate([a.astype(np.float64).ravel() for a in outs])
            if r.shape != o.shape:
                entry["diverged"] = True
                entry["warning"] = (f"{o.size} output values where fp32 gives {r.size} "
                                    "(a different number of detections)")
            else:
                rel = float(np.linalg.norm(o - r) / max(float(np.linalg.norm(r)), 1e-12))
                entry["rel_err_vs_fp32"] = round(rel, 6)
                entry["diverged"] = rel > DIVERGED_REL_ERR
                if entry["diverged"]:
                    entry["warning"] = (f"output differs from fp32 by {100 * rel:.0f}% "
                                        "(relative L2) on this input")
        results.append(entry)
    return results
