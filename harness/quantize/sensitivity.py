"""Which layers suffer most from int8, and mixed precision that keeps those layers float.

Ranking by error: TF's QuantizationDebugger for Keras/SavedModel sources, a per-tensor
float vs quantized comparison (ai-edge-quantizer's validator) for .tflite
sources. Ranking by accuracy (:func:`rank_by_accuracy`): one layer int8 at a time, the rest
float, ranked by the task metric's drop on labelled data. Both run inside the quantize worker
process.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.quantize.fidelity import fidelity
from quantlab.harness.quantize.gate import gate_drop, main_metric, task_metrics
from quantlab.harness.quantize.tflite_runner import TfliteRunner

MAX_GREEDY_STEPS = 24


def _score(
    path: str, x: np.ndarray, y: np.ndarray | None, reference: list[np.ndarray] | None
) -> tuple[str, float, list[np.ndarray]]:
    outputs = TfliteRunner(path).predict(x)
    metrics = task_metrics(outputs[0], y)
    metric = main_metric(metrics)
    if metric in metrics:
        return metric, metrics[metric], outputs
    if reference is None:
        return metric, 1.0, outputs
    agreement = fidelity(reference[:1], outputs[:1])[0]["top1_agreement"]
    return metric, float(agreement if agreement is not None else 1.0), outputs


Scorer = Callable[[str, Any], tuple[str, float, Any]]
"""``score(tflite_path, reference)`` → (metric, value, what the next calls compare against);
``reference`` is None on the first call, which scores the float model."""


class TaskScorer:
    """A :data:`Scorer` that scores with the task plug-ins of :mod:`quantlab.harness.tasks`,
    as ``evaluate`` does: the task given or inferred from the float model's outputs and the
    labels (``labels``: COCO JSON for detection, else the data's ``y``), its primary metric
    with labels (mAP, mIoU, top-1, MSE), else its label-free fidelity against the float
    model. UserError for a task, decoder or labels that do not fit. ``task_name``: the task
    picked (set by the first call)."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, *, task: str | None = None,
                 labels: str | None = None, decoder: str | None = None) -> None:
        self.x, self.y, self.task, self.labels, self.decoder = x, y, task, labels, decoder
        self.task_name: str | None = None
        self._picked: Any = None
        self._ctx: Any = None

    def __call__(self, path: str, reference: Any) -> tuple[str, float, Any]:
        """Score the model at ``path`` (``reference``: the float model's predictions)."""
        from quantlab.harness.tasks import Context, OutputInfo, get_task, infer_task

        runner = TfliteRunner(path)
        outputs = runner.predict(self.x)
        if self._picked is None:  # the float model: pick the task and load the labels once
            infos = [OutputInfo(str(od["name"]), (1, *(int(d) for d in od["shape"][1:])))
                     for od in runner.outputs]
            self._picked = (get_task(self.task) if self.task
                            else infer_task(infos, self.y, self.labels)[0])
            self._ctx = Context(infos, runner.input_shape, decoder=self.decoder)
            self._ctx.labels = self._picked.load_labels(self.labels, self.y, len(self.x),
                                                        self._ctx)
            self.task_name = self._picked.name
        picked, ctx = self._picked, self._ctx
        pred = picked.decode(outputs, ctx)
        metrics = picked.metrics(pred, ctx)
        metric = picked.primary_metric if metrics else picked.label_free_metric
        value = metrics.get(metric)
        ref = pred if reference is None else reference
        if value is None:
            value = picked.fidelity(ref, pred, ctx).get(metric)
        return metric, 1.0 if value is None else float(value), ref


def greedy_keep_float(
    build: Callable[[list[str]], bytes],
    ranked_layers: list[str] | Callable[[], list[str]],
    float_model: bytes,
    eval_x: np.ndarray,
    eval_y: np.ndarray | None,
    max_drop: float,
    work_dir: Path,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    max_float: int | None = None,
    max_size: int | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Keep the most sensitive layers float, one more at a time, until the drop ≤ ``max_drop``.

    ``max_float`` / ``max_size`` (bytes) stop the growth early (the ladder's
    limits: a "mixed" model that keeps most of the network float is not worth
    shipping); the facts then say ``limit`` and why.

    ``build(keep_float)`` makes the int8 model with those layers left float
    (with every layer float, the float model itself is the candidate).
    ``ranked_layers`` may be a function ranking them, called only when plain int8 (no layer
    float, the first candidate) misses the gate: ranking is the search's longest part.
    Returns the chosen model bytes and the facts for the manifest (layers kept
    float, size of plain int8, size cost, metric, reference, value, drop,
    passed, steps). When no prefix passes, the one with the smallest drop is
    returned with ``passed: False``.
    """
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        ref_path = Path(tmp) / "reference.tflite"
        ref_path.write_bytes(float_model)
        metric, ref_value, ref_out = _score(str(ref_path), eval_x, eval_y, None)
        steps: list[dict[str, Any]] = []
        best: tuple[float, bytes, int] | None = None
        int8_size = None
        layers = None if callable(ranked_layers) else list(ranked_layers)

        def counts() -> Iterator[int]:  # the ranking made only after plain int8 missed
            nonlocal layers
            yield 0
            if layers is None:
                assert callable(ranked_layers)
                layers = list(ranked_layers())
            more = list(range(1, min(len(layers), MAX_GREEDY_STEPS) + 1))
            if len(layers) > MAX_GREEDY_STEPS:
                more.append(len(layers))
            yield from (k for k in more if max_float is None or k <= max_float)

        chosen_k = 0
        limit: str | None = None
        for k in counts():
            model = float_model if layers is not None and k == len(layers) \
                else build((layers or [])[:k])
            if max_size is not None and k > 0 and len(model) > max_size:
                limit = (f"keeping {k} layer(s) float makes {len(model)} B, over the size "
                         f"limit of {max_size} B")
                break
            path = Path(tmp) / f"mixed-{k}.tflite"
            path.write_bytes(model)
            _, value, _ = _score(str(path), eval_x, eval_y, ref_out)
            drop = gate_drop(metric, ref_value, value)
            if int8_size is None:
                int8_size = len(model)
            step = {"float_layers": k, "value": value, "drop": drop, "size_bytes": len(model)}
            steps.append(step)
            if on_step:
                on_step(step)
            if best is None or drop < best[0] - 1e-12:
                best = (drop, model, k)
            if drop <= max_drop:
                best = (drop, model, k)
                break
        else:
            if max_float is not None and best is not None and best[0] > max_drop:
                limit = f"at most {max_float} layer(s) may be kept float"
        assert best is not None
        drop, model, chosen_k = best
    return model, {
        "float_layers": (layers or [])[:chosen_k],
        "int8_size_bytes": int8_size,
        "size_bytes": len(model),
        "size_cost_bytes": len(model) - (int8_size or 0),
        "metric": metric,
        "reference": ref_value,
        "value": ref_value - drop if metric not in ("mse", "mae") else ref_value + drop,
        "drop": drop,
        "max_drop": max_drop,
        "passed": drop <= max_drop,
        "steps": steps,
        "limit": limit,
    }


def names_from_ranking(names: list[str], ranked_tensors: list[str], count: int) -> list[str]:
    """The ``count`` layers of ``names`` named first in a sensitivity ranking of converter
    tensors (``model/dense_1/MatMul;...``: a part equal to the name or the name plus ``_N``)."""
    picked: list[str] = []
    for tensor in ranked_tensors:
        parts = re.split(r"[/;:]", tensor)
        for name in names:
            if name in picked:
                continue
            if any(p == name or re.fullmatch(re.escape(name) + r"_\d+", p) for p in parts):
                picked.append(name)
                break
        if len(picked) >= count:
            break
    return picked


def rank_layers(
    source_kind: str, model: Any, source_path: str, calib_x: np.ndarray
) -> list[dict[str, Any]]:
    """Layers by int8 quantization error, most sensitive first (rows from the converter module)."""
    if source_kind == "tflite":
        from quantlab.harness.quantize import tflite_aeq

        return tflite_aeq.layer_errors(source_path, calib_x)
    from quantlab.harness.quantize import tflite_tf

    return tflite_tf.layer_errors(model, source_kind, calib_x)


def layer_builder(source_kind: str, model: Any, source_path: str, calib_x: np.ndarray
                  ) -> Callable[[list[str]], bytes]:
    """``build(keep_float)``: mixed-int8's int8 conversion of the source with those layers
    (names from :func:`rank_layers`) left float."""
    if source_kind == "tflite":
        from quantlab.harness.quantize import tflite_aeq

        return lambda keep: tflite_aeq.convert(
            source_path, {"recipe": "static_wi8_ai8", "mixed": True}, calib_x, keep)
    from quantlab.harness.quantize import tflite_tf

    return lambda keep: tflite_tf.convert_keeping_float(model, source_kind, calib_x, keep)


def rank_by_accuracy(
    build: Callable[[list[str]], bytes],
    layers: list[str],
    float_model: bytes,
    eval_x: np.ndarray,
    eval_y: np.ndarray | None,
    work_dir: Path,
    top: int | None = None,
    scorer: Scorer | None = None,
) -> list[dict[str, Any]]:
    """Layers by the task metric's drop with only that layer int8 (the rest float), largest
    drop first. Each row: ``layer``, ``metric``, ``reference`` (the float model's value),
    ``value``, ``drop`` and ``seconds`` (converting and scoring that layer). ``top``: only
    the first N of ``layers`` (in their order, e.g. the error ranking's) are converted and
    ranked; the rest follow in their order with ``drop`` None. ``scorer``: how each model is
    scored (default: the quick metric of mixed precision's gate; :func:`task_scorer`: the
    task plug-ins, as ``evaluate``)."""
    score = scorer or (lambda path, ref: _score(path, eval_x, eval_y, ref))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        ref_path = Path(tmp) / "reference.tflite"
        ref_path.write_bytes(float_model)
        metric, ref_value, ref_out = score(str(ref_path), None)
        for i, layer in enumerate(layers[:top]):
            t0 = time.perf_counter()
            path = Path(tmp) / f"one-{i}.tflite"
            path.write_bytes(build([other for other in layers if other != layer]))
            _, value, _ = score(str(path), ref_out)
            rows.append({"layer": layer, "metric": metric, "reference": ref_value,
                         "value": value, "drop": gate_drop(metric, ref_value, value),
                         "seconds": time.perf_counter() - t0})
    # stable: equal drops keep the error ranking's order
    rest = [{"layer": layer, "drop": None, "ranked_by": "error"}
            for layer in layers[len(rows):]]
    return [*sorted(({**r, "ranked_by": "accuracy"} for r in rows), key=lambda r: -r["drop"]),
            *rest]
