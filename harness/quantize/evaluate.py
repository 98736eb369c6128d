"""Accuracy, fidelity and the gate for TFLite variants, run on the host through LiteRT.

Inputs are fed in batches (the interpreter's batch dimension is resized once)
so evaluation keeps up with a bare per-sample LiteRT loop; models whose batch
cannot be resized are run one sample at a time.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ModelError

DEFAULT_MAX_DROP = 0.03
DEFAULT_BATCH = 64
LOWER_IS_BETTER = {"mse", "mae"}
SATURATED_SHARE = (
    0.5  # an integer output with this share of values at its limits is flagged saturated
)
FLOAT_SATURATION = 1e30  # a float output this large is flagged saturated


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence native stderr (LiteRT's 'Created … XNNPACK delegate' line) for a moment."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@dataclass
class TfliteRunner:
    """A LiteRT interpreter for one .tflite, taking float inputs and giving float outputs.

    Quantized (int8/int16) inputs and outputs are (de)quantized with the
    model's own scale and zero point.
    """

    path: str
    batch: int = DEFAULT_BATCH
    num_threads: int | None = None

    def __post_init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            with quiet_native_stderr():
                self.interp = Interpreter(model_path=self.path, num_threads=self.num_threads)
        except Exception as exc:
            raise ModelError(
                self.path,
                f"LiteRT cannot load it ({str(exc).strip()[:200]})",
                hint="is it a valid .tflite file?",
            ) from None
        details = self.interp.get_input_details()
        if len(details) != 1:
            raise ModelError(
                self.path, f"has {len(details)} inputs; evaluation supports single-input models"
            )
        self.input = details[0]
        self.batched = False
        if self.batch > 1:
            try:
                self.interp.resize_tensor_input(
                    self.input["index"], [self.batch, *self.input["shape"][1:]]
                )
                with quiet_native_stderr():
                    self.interp.allocate_tensors()
                self.batched = True
            except Exception:
                with quiet_native_stderr():
                    self.interp = Interpreter(model_path=self.path, num_threads=self.num_threads)
        if not self.batched:
            with quiet_native_stderr():
                self.interp.allocate_tensors()
        self.input = self.interp.get_input_details()[0]
        self.outputs = self.interp.get_output_details()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model's input shape with batch 1."""
        return (1, *(int(d) for d in self.input["shape"][1:]))

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input["dtype"])

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input_dtype
        if dtype.kind == "f":
            return x.astype(dtype, copy=False)
        scale, zero = self.input["quantization"]
        if x.dtype.kind != "f" or not scale:
            return x.astype(dtype, copy=False)
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def _from_output(self, i: int, y: np.ndarray) -> np.ndarray:
        scale, zero = self.outputs[i]["quantization"]
        if np.dtype(self.outputs[i]["dtype"]).kind in "iu" and scale:
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32, copy=False)

    def predict(
        self, x: np.ndarray, progress: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """Run all samples; one float array per model output, first axis = samples."""
        n = len(x)
        step = self.batch if self.batched else 1
        chunks: list[list[np.ndarray]] = [[] for _ in self.outputs]
        idx = self.input["index"]
        for start in range(0, n, step):
            part = self._to_input(x[start : start + step])
            real = len(part)
            if real < step:
                part = np.concatenate([part, np.repeat(part[-1:], step - real, axis=0)])
            self.interp.set_tensor(idx, part)
            self.interp.invoke()
            for i, od in enumerate(self.outputs):
                chunks[i].append(self._from_output(i, self.interp.get_tensor(od["index"])[:real]))
            if progress:
                progress(real)
        return [np.concatenate(c) if c else np.zeros((0,)) for c in chunks]


def task_metrics(pred: np.ndarray, y: np.ndarray | None) -> dict[str, float]:
    """top-1/top-5 for class labels (pred = scores N×C), MSE/MAE for float targets."""
    if y is None:
        return {}
    if y.ndim == 1 and y.dtype.kind in "iub" and pred.ndim == 2 and pred.shape[1] > 1:
        top1 = float(np.mean(np.argmax(pred, axis=1) == y))
        k = min(5, pred.shape[1])
        topk = np.argpartition(-pred, k - 1, axis=1)[:, :k]
        top5 = float(np.mean(np.any(topk == y[:, None], axis=1)))
        return {"top1": top1, "top5": top5}
    target = y.reshape(pred.shape) if y.size == pred.size else y
    diff = pred.astype(np.float64) - target.astype(np.float64)
    return {"mse": float(np.mean(diff**2)), "mae": float(np.mean(np.abs(diff)))}


def main_metric(metrics: dict[str, float]) -> str:
    """The gate's metric: top1 (classifier), mse (regression), top1_agreement (no labels)."""
    for name in ("top1", "mse"):
        if name in metrics:
            return name
    return "top1_agreement"


def gate_drop(metric: str, reference: float, value: float) -> float:
    """How much worse ``value`` is than ``reference`` (positive = worse)."""
    return value - reference if metric in LOWER_IS_BETTER else reference - value


def fidelity(
    reference: list[np.ndarray], outputs: list[np.ndarray]
) -> list[dict[str, float | None]]:
    """Per output vs the float reference: SQNR (dB), cosine, MSE, max abs error, top-1 agreement."""
    rows: list[dict[str, float | None]] = []
    for ref, out in zip(reference, outputs, strict=True):
        r = ref.astype(np.float64).reshape(len(ref), -1)
        o = out.astype(np.float64).reshape(len(out), -1)
        err = o - r
        noise = float(np.mean(err**2))
        signal = float(np.mean(r**2))
        sqnr = (
            math.inf
            if noise == 0
            else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
        )
        num = np.sum(r * o, axis=1)
        den = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
        cos = np.where(
            den > 0, num / np.where(den > 0, den, 1), np.where(np.all(r == o, axis=1), 1.0, 0.0)
        )
        agree = float(np.mean(np.argmax(r, 1) == np.argmax(o, 1))) if r.shape[1] > 1 else None
        rows.append(
            {
                "sqnr_db": None if math.isinf(sqnr) else round(sqnr, 3),
                "cosine": float(np.mean(cos)),
                "mse": noise,
                "max_abs_err": float(np.max(np.abs(err))) if err.size else 0.0,
                "top1_agreement": agree,
            }
        )
    return rows


def edge_inputs(
    shape: tuple[int, ...], low: float, high: float, seed: int = 0
) -> dict[str, np.ndarray]:
    """Synthetic inputs at and inside the input range [low, high]."""
    rng = np.random.default_rng(seed)
    extremes = np.where(rng.random(shape) < 0.5, low, high)
    return {
        "all-black": np.full(shape, low, np.float32),
        "all-white": np.full(shape, high, np.float32),
        "uniform-noise": rng.uniform(low, high, shape).astype(np.float32),
        "extremes": extremes.astype(np.float32),
        "mid-grey": np.full(shape, (low + high) / 2, np.float32),
    }


def edge_cases(path: str, low: float, high: float) -> list[dict[str, Any]]:
    """Run the edge-case inputs one at a time: crash, NaN/Inf and saturation per case."""
    results: list[dict[str, Any]] = []
    try:
        runner = TfliteRunner(path, batch=1)
    except ModelError as exc:
        return [{"case": "load", "ok": False, "error": exc.one_line()}]
    for name, x in edge_inputs(runner.input_shape, low, high).items():
        entry: dict[str, Any] = {
            "case": name,
            "ok": True,
            "nan_or_inf": False,
            "saturated": False,
            "error": None,
        }
        try:
            runner.interp.set_tensor(runner.input["index"], runner._to_input(x))
            runner.interp.invoke()
            for i, od in enumerate(runner.outputs):
                raw = runner.interp.get_tensor(od["index"])
                y = runner._from_output(i, raw)
                if not np.all(np.isfinite(y)):
                    entry["nan_or_inf"] = True
                    entry["ok"] = False
                if np.dtype(raw.dtype).kind in "iu":
                    info = np.iinfo(raw.dtype)
                    at_limit = np.mean((raw == info.min) | (raw == info.max))
                    entry["saturated"] |= bool(at_limit >= SATURATED_SHARE)
                else:
                    entry["saturated"] |= bool(
                        np.any(np.abs(y[np.isfinite(y)]) >= FLOAT_SATURATION)
                    )
        except Exception as exc:  # a runtime failure on this input is the finding
            entry.update(ok=False, error=str(exc).strip()[:200])
        results.append(entry)
    return results


def input_range(x: np.ndarray) -> tuple[float, float]:
    """The limits of the input range seen in the data."""
    return float(np.min(x)), float(np.max(x))


def skipped_variants(folder: Path) -> list[dict[str, str]]:
    """Variants of the folder that host evaluation cannot run (Core ML), with the reason."""
    import json

    manifest = folder / "manifest.json"
    if not manifest.exists():
        return []
    return [
        {
            "scheme": v["scheme"],
            "reason": "Core ML prediction needs macOS; benchmark it on an iPhone",
        }
        for v in json.loads(manifest.read_text()).get("variants", [])
        if v.get("status") == "ok" and v.get("format") == "coreml"
    ]


def variant_files(folder: Path) -> list[dict[str, Any]]:
    """The TFLite variants of a variants folder (from manifest.json, else every *.tflite)."""
    import json

    manifest = folder / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        return [
            {
                "scheme": v["scheme"],
                "path": str(folder / v["file"]),
                "sha256": v.get("sha256"),
                "source_sha256": data.get("source", {}).get("sha256"),
            }
            for v in data.get("variants", [])
            if v.get("status") == "ok" and str(v.get("file", "")).endswith(".tflite")
        ]
    return [
        {"scheme": None, "path": str(p), "sha256": None, "source_sha256": None}
        for p in sorted(folder.glob("*.tflite"))
    ]


def evaluate(
    variants_dir: str | Path,
    data_path: str | Path,
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    x_key: str = "x",
    y_key: str = "y",
    image: Any = None,
    batch: int = DEFAULT_BATCH,
    edge: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every TFLite variant of a variants folder against its fp32 variant on the data.

    Returns ``{"reference", "metric", "max_drop", "samples", "variants": [{"scheme",
    "path", "sha256", "source_sha256", "accuracy", "fidelity", "gate": {"passed",
    "drop"}, "edge_cases"}], "failed": [scheme or path of variants failing the gate]}``.
    ``progress(label, done, total)`` is called as samples are processed.
    """
    from harness.errors import UserError
    from harness.models import file_sha256
    from harness.quantize import data as qdata

    folder = Path(variants_dir)
    if not folder.is_dir():
        raise UserError(
            f"{variants_dir}: not a variants folder", hint="make one with `quantlab quantize`"
        )
    variants = variant_files(folder)
    if not variants:
        raise UserError(f"{variants_dir}: holds no TFLite variants")
    ref_entry = next((v for v in variants if v["scheme"] == "fp32"), None)
    if ref_entry is None:
        raise UserError(
            f"{variants_dir}: no fp32 variant to compare against",
            hint="include fp32 in --schemes when quantizing",
        )
    ref_runner = TfliteRunner(ref_entry["path"], batch=batch)
    shape = (
        tuple(int(d) for d in ref_runner.input["shape_signature"])
        if len(ref_runner.input.get("shape_signature", []))
        else ref_runner.input_shape
    )
    shape = (-1, *shape[1:])
    ds = qdata.load_data(data_path, x_key=x_key, y_key=y_key, image=image, input_shape=shape)
    x = qdata.check_against_model(ds, shape, "float32", ref_entry["path"])
    y = ds.y
    total = len(x) * len(variants)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(label, done, total)

    label = "fp32"
    ref_out = ref_runner.predict(x, tick)
    ref_metrics = task_metrics(ref_out[0], y)
    metric = main_metric(ref_metrics)
    ref_value = ref_metrics.get(metric, 1.0)
    low, high = input_range(x)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for v in variants:
        label = v["scheme"] or Path(v["path"]).name
        if v is ref_entry:
            outputs = ref_out
        else:
            outputs = TfliteRunner(v["path"], batch=batch).predict(x, tick)
        metrics = task_metrics(outputs[0], y)
        fid = fidelity(ref_out, outputs)
        if metric == "top1_agreement":
            value = fid[0]["top1_agreement"]
            value = 1.0 if value is None else value
            metrics[metric] = value
        else:
            value = metrics[metric]
        drop = gate_drop(metric, ref_value, value)
        passed = drop <= max_drop + 1e-12
        if not passed:
            failed.append(label)
        rows.append(
            {
                "scheme": v["scheme"],
                "path": v["path"],
                "sha256": v["sha256"] or file_sha256(Path(v["path"])),
                "source_sha256": v["source_sha256"],
                "accuracy": metrics,
                "fidelity": fid,
                "gate": {
                    "passed": passed,
                    "drop": drop,
                    "metric": metric,
                    "value": value,
                    "max_drop": max_drop,
                },
                "edge_cases": edge_cases(v["path"], low, high) if edge else [],
            }
        )
    return {
        "reference": {
            "scheme": "fp32",
            "path": ref_entry["path"],
            "accuracy": ref_metrics,
            "value": ref_value,
        },
        "skipped": skipped_variants(folder),
        "metric": metric,
        "max_drop": max_drop,
        "samples": len(x),
        "data": str(data_path),
        "variants": rows,
        "failed": failed,
    }


def save_to_store(report: dict[str, Any], location: str) -> int:
    """Save each variant's evaluation in the store (keyed by variant sha256); returns how many."""
    from harness.store import Store

    store = Store.open(location)
    try:
        for v in report["variants"]:
            store.save_evaluation(
                variant_sha256=v["sha256"],
                scheme=v["scheme"],
                path=v["path"],
                source_sha256=v["source_sha256"],
                metric=report["metric"],
                value=v["gate"]["value"],
                reference_value=report["reference"]["value"],
                drop=v["gate"]["drop"],
                max_drop=report["max_drop"],
                passed=v["gate"]["passed"],
                payload=v,
            )
    finally:
        store.close()
    return len(report["variants"])
