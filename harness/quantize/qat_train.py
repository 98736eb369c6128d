"""The qat process: wrap the model for quantization-aware training, fine-tune, convert.

Started by :func:`quantlab.harness.quantize.qat.make_variant` with ``TF_USE_LEGACY_KERAS=1``::

    python -m quantlab.harness.quantize.qat_train REQUEST.json

It loads the source as tf-keras (:mod:`quantlab.harness.quantize.qat_rebuild`), wraps every
layer or the chosen ones with tfmot, fine-tunes with early stopping on a held-out
split, converts to full-integer TFLite and writes the outcome to the request's
``result`` path.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.quantize.qat import QatError
from quantlab.harness.quantize.qat_rebuild import CHECK_SAMPLES, load_tf_keras
from quantlab.harness.quantize.requests import QatRequest

DEFAULT_EPOCHS = 3
DEFAULT_LR = 1e-4
DEFAULT_BATCH = 32
DEFAULT_VAL_SPLIT = 0.1
DEFAULT_PATIENCE = 2


# --------------------------------------------------------------------------- which layers

def layers_from_ranking(model: Any, ranked_tensors: list[str], count: int) -> list[str]:
    """The ``count`` Keras layers named first in a sensitivity ranking of converter tensors."""
    from quantlab.harness.quantize.sensitivity import names_from_ranking

    return names_from_ranking([layer.name for layer in model.layers], ranked_tensors, count)


def apply_quantization(model: Any, layers: list[str] | None) -> Any:
    """The model wrapped for quantization-aware training: every layer, or only ``layers``."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    qk = tfmot.quantization.keras
    if not layers:
        try:
            return qk.quantize_model(model)
        except Exception as exc:
            raise QatError(f"tfmot cannot quantize the whole model ({_first_line(exc)}); "
                           "pass --qat-layers to quantize only some layers") from None
    known = {layer.name for layer in model.layers}
    unknown = [n for n in layers if n not in known]
    if unknown:
        raise QatError(f"--qat-layers: no layer named {', '.join(unknown)} "
                       f"(layers: {', '.join(sorted(known))})")
    wanted = set(layers)

    def annotate(layer: Any) -> Any:
        clone = layer.__class__.from_config(layer.get_config())
        return qk.quantize_annotate_layer(clone) if layer.name in wanted else clone

    try:
        annotated = tf_keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        return qk.quantize_apply(annotated)
    except Exception as exc:
        raise QatError(f"tfmot cannot quantize layers {', '.join(layers)} "
                       f"({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(exc).__name__


# --------------------------------------------------------------------------- training

def _loss_for(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[Any, list[Any], str]:
    """(loss, metrics, monitored metric name) for the labels: classes or regression targets."""
    import tf_keras

    out = np.asarray(model(x[:CHECK_SAMPLES], training=False))
    if y.ndim == 1 and y.dtype.kind in "iub" and out.ndim == 2 and out.shape[1] > 1:
        probs = bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))
        loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=not probs)
        return loss, [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")], "accuracy"
    return tf_keras.losses.MeanSquaredError(), [tf_keras.metrics.MeanAbsoluteError(name="mae")], \
        "mae"


def split_held_out(x: np.ndarray, y: np.ndarray, share: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): a seeded random ``share`` held out for early stopping."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(len(x) * share)) if share > 0 and len(x) > 1 else 0
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def fine_tune(model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
              batch_size: int, val_split: float, patience: int, seed: int,
              on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fit a quantization-wrapped model with early stopping on a held-out split; returns facts
    (epochs run, best epoch, per-epoch history, seconds per epoch and per 1,000 samples)."""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    x_tr, y_tr, x_val, y_val = split_held_out(x, y, val_split, seed)
    loss, metrics, monitored = _loss_for(model, x_tr, y_tr)
    # keywords: compile()'s third positional argument differs between tf-keras and Keras 3
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=lr), loss=loss,
                  metrics=metrics)
    history: list[dict[str, Any]] = []
    times: list[float] = []

    class Report(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            seconds = time.perf_counter() - self.t0
            times.append(seconds)
            row = {"epoch": epoch + 1, "epochs": epochs, "seconds": round(seconds, 3),
                   **{k: float(v) for k, v in (logs or {}).items()}}
            history.append(row)
            if on_epoch:
                on_epoch(row)

    has_val = len(x_val) > 0
    callbacks: list[Any] = [Report()]
    if has_val:
        callbacks.append(tf_keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=max(1, patience), restore_best_weights=True))
    with tf.device("/cpu:0"):
        model.fit(x_tr, y_tr, epochs=epochs, batch_size=batch_size, verbose=0,
                  validation_data=(x_val, y_val) if has_val else None, callbacks=callbacks,
                  shuffle=True)
    best = (min(history, key=lambda r: r.get("val_loss", float("inf")))["epoch"]
            if has_val and history else len(history))
    per_epoch = float(np.median(times)) if times else 0.0
    return {
        "epochs_run": len(history),
        "epochs": epochs,
        "best_epoch": best,
        "stopped_early": len(history) < epochs,
        "lr": lr,
        "batch_size": batch_size,
        "train_samples": len(x_tr),
        "held_out_samples": len(x_val),
        "monitored": f"val_{monitored}" if has_val else monitored,
        "history": history,
        "seconds_per_epoch": round(per_epoch, 3),
        "seconds_per_epoch_per_1000_samples": round(per_epoch * 1000 / max(1, len(x_tr)), 4),
    }


def convert_int8(model: Any, calib_x: np.ndarray, int8_io: bool) -> bytes:
    """Full-integer TFLite from the fine-tuned model (float or int8 input/output)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative() -> Any:
        for i in range(len(calib_x)):
            yield [calib_x[i : i + 1]]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


# --------------------------------------------------------------------------- process entry

def run(req: QatRequest, emit: Callable[..., None]) -> dict[str, Any]:
    """Do one qat request (in a process with TF_USE_LEGACY_KERAS=1); returns the facts."""
    from quantlab.harness.quantize import data as qdata

    data, settings = req.data, req.settings
    shape = tuple(req.input_shape)
    ds = qdata.load_data(req.train, x_key=data.x_key, y_key=data.y_key, image=data.image,
                         input_shape=shape)
    x = qdata.check_against_model(ds, shape, req.input_dtype, req.source)
    if ds.y is None:
        raise QatError(f"{req.train}: no labels ({data.y_key!r}); "
                       "quantization-aware training needs labelled training data")
    y = ds.y
    calib_x = np.load(req.calib_npy) if req.calib_npy else x[:200]
    model, how = load_tf_keras(req.source, req.source_kind, x)
    layers = list(settings.layers) if settings.layers else None
    if layers and len(layers) == 1 and layers[0].startswith("sensitive:"):
        count = int(layers[0].split(":", 1)[1])
        layers = layers_from_ranking(model, list(req.ranking), count)
        if not layers:
            raise QatError("no Keras layer matches the sensitivity ranking; name them with "
                           "--qat-layers")
    q_model = apply_quantization(model, layers)
    scheme = req.scheme
    facts = fine_tune(
        q_model, x, y,
        epochs=int(_or(settings.epochs, DEFAULT_EPOCHS)),
        lr=float(_or(settings.lr, DEFAULT_LR)),
        batch_size=int(_or(settings.batch_size, DEFAULT_BATCH)),
        val_split=float(_or(settings.val_split, DEFAULT_VAL_SPLIT)),
        patience=int(_or(settings.patience, DEFAULT_PATIENCE)),
        seed=int(data.seed),
        on_epoch=lambda row: emit("qat_epoch", scheme=scheme, **row),
    )
    t0 = time.perf_counter()
    Path(req.out).write_bytes(convert_int8(q_model, calib_x, req.int8_io))
    facts.update(
        source=how,
        layers=layers or "all",
        train_data=str(req.train),
        calibration_samples=len(calib_x),
        convert_seconds=round(time.perf_counter() - t0, 3),
        tfmot=_version("tensorflow-model-optimization"),
        tf_keras=_version("tf-keras"),
    )
    return facts


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(request_path: str) -> int:
    """Process entry: 0 with a result file either way, unless the process itself dies."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow is imported
    from quantlab.harness.quantize.events import Events, silence

    silence()
    req = QatRequest.from_dict(json.loads(Path(request_path).read_text()))
    events = Events(req.events)
    result_path = Path(req.result)
    try:
        facts = run(req, events.emit)
        result: dict[str, Any] = {"ok": True, "facts": facts}
    except QatError as exc:
        result = {"ok": False, "error": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        message = getattr(exc, "message", None) or _first_line(exc)
        result = {"ok": False, "error": str(message)}
    result_path.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
