"""TFLite variants from Keras (.keras/.h5) and SavedModel sources through the TF Lite converter.

Converters ``tf`` (:func:`make`: the scheme's converter settings) and ``tf-float``
(:func:`make_float`: the float model converted once for the op check). Imported only inside
the quantize worker process (TensorFlow is heavy and noisy).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quantlab.harness.errors import ModelError

if TYPE_CHECKING:
    from quantlab.harness.quantize.converters import Source
    from quantlab.harness.quantize.schemes import Scheme


def load_source(path: str, kind: str) -> Any:
    """The Keras model (keras) or the SavedModel folder path; ModelError when unreadable."""
    if kind == "savedmodel":
        if not (Path(path) / "saved_model.pb").exists():
            raise ModelError(path, "not a SavedModel folder (no saved_model.pb)")
        return path
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ModelError(
            path,
            f"cannot be loaded as a Keras model ({_first_line(exc)})",
            hint="pass a .keras/.h5 file saved by Keras, a SavedModel folder or a float .tflite",
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def new_converter(source: Any, kind: str) -> Any:
    """A fresh TFLiteConverter for the source (a Keras model's: exporting it to a SavedModel
    once per process, :func:`~quantlab.harness.quantize.tf_export.reuse_export`)."""
    import tensorflow as tf

    from quantlab.harness.quantize.tf_export import reuse_export

    if kind == "savedmodel":
        return tf.lite.TFLiteConverter.from_saved_model(source)
    return reuse_export(tf.lite.TFLiteConverter.from_keras_model(source), source)


def representative(calib_x: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A representative_dataset callable yielding one sample at a time."""

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(calib_x)):
            yield [calib_x[i : i + 1]]

    return gen


def configure(converter: Any, settings: dict[str, Any], calib_x: np.ndarray | None) -> Any:
    """Apply a scheme's TF settings (see schemes.SCHEMES ``tf=``) to a converter."""
    import tensorflow as tf

    if settings.get("optimize") or settings.get("fp16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if settings.get("fp16"):
        converter.target_spec.supported_types = [tf.float16]
    needs_data = settings.get("int8_ops") or settings.get("int16x8") or settings.get("mixed")
    if needs_data:
        if calib_x is None:
            raise ValueError("this scheme needs calibration data (--calib)")
        converter.representative_dataset = representative(calib_x)
    if settings.get("int8_ops"):
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if settings.get("int16x8"):
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    if settings.get("int8_io"):  # int8, or uint8 with io_dtype (uint8-io) at the model's edges
        io = tf.uint8 if settings.get("io_dtype") == "uint8" else tf.int8
        converter.inference_input_type = io
        converter.inference_output_type = tf.float32 if settings.get("float_outputs") else io
    if settings.get("custom_ops"):  # known custom ops only (the op check refused the others)
        converter.allow_custom_ops = True
    if settings.get("per_tensor"):  # one weight scale per tensor instead of per output channel
        converter._experimental_disable_per_channel = True
    return converter


def convert(source: Any, kind: str, settings: dict[str, Any], calib_x: np.ndarray | None) -> bytes:
    """Convert the source with a scheme's settings; returns the .tflite bytes."""
    return bytes(configure(new_converter(source, kind), settings, calib_x).convert())


def source_ops(source: Any, kind: str) -> tuple[dict[str, Any], bytes]:
    """Convert a Keras/SavedModel source in float with custom and Flex ops allowed, to see every
    op it needs; returns (ops, the .tflite bytes)."""
    import tensorflow as tf

    from quantlab.harness.quantize.opcheck import model_ops

    converter = new_converter(source, kind)
    converter.allow_custom_ops = True
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    model = bytes(converter.convert())
    return model_ops(model), model


def make(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Converter ``tf``: the source through the TF Lite converter with the recipe's settings
    (see :func:`configure`), custom ops allowed where the op check found known ones, and the
    int8 options (per-tensor weights)."""
    from quantlab.harness.quantize.converters import prepare

    prepared = prepare(source, scheme, "tf")
    settings = tf_settings(source, scheme, settings, prepared.check_notes)
    return prepared.written(convert(source.model, source.kind, settings, source.calib_x))


def tf_settings(source: Source, scheme: Scheme, settings: dict[str, Any],
                check_notes: list[str]) -> dict[str, Any]:
    """The recipe's ``settings`` as converter ``tf`` applies them (``tf-calibrated`` too):
    custom ops allowed where the op check found known ones, float outputs where int8 I/O
    left one float32, and the int8 options (per-tensor weights)."""
    from quantlab.harness.quantize.options import converter_settings

    settings = dict(settings)
    if source.ops["custom"]:
        settings["custom_ops"] = True
        if settings.get("int8_io") and any("left float32" in n for n in check_notes):
            settings["float_outputs"] = True
    settings.update(converter_settings(scheme, source.req.options))
    return settings


def make_float(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Converter ``tf-float``: the float model the TF Lite converter made when the worker
    loaded the source (fp32); the manifest records the converter as ``tf``."""
    from quantlab.harness.quantize.converters import prepare

    return prepare(source, scheme, "tf").written(source.fp32)


def channel_relative_error(
    float_t: np.ndarray, quant_t: np.ndarray, scale: float, zero_point: int
) -> float:
    """Mean over output channels of RMS(dequantized − float) / RMS(float) (dead channels skipped).

    Per channel, so that one outlier channel that stretches a per-tensor scale
    and crushes every other channel shows up as a large error.
    """
    f = np.asarray(float_t, np.float64)
    q = (np.asarray(quant_t, np.int64) - zero_point) * scale
    f2 = f.reshape(-1, f.shape[-1]) if f.ndim > 1 else f.reshape(-1, 1)
    q2 = q.reshape(f2.shape)
    signal = np.sqrt(np.mean(f2**2, axis=0))
    noise = np.sqrt(np.mean((q2 - f2) ** 2, axis=0))
    live = signal > 1e-12
    return float(np.mean(noise[live] / signal[live])) if np.any(live) else 0.0


def layer_errors(
    source: Any,
    kind: str,
    calib_x: np.ndarray,
    debug_x: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per-layer int8 quantization error from TF's QuantizationDebugger, most sensitive first.

    Quantization ranges come from ``calib_x``; errors are measured on
    ``debug_x`` (default: ``calib_x``). Each row: ``layer`` (tensor name,
    usable as a denylisted node), ``op``, ``rel_error`` (per-channel relative
    RMS error, the ranking key), ``rmse_scale`` (RMSE in units of the
    tensor's scale: ~0.29 is ideal rounding), ``mse``, ``max_abs_error``.
    """
    import tensorflow as tf

    settings = {"optimize": True, "mixed": True, **(extra or {})}  # extra: e.g. per_tensor
    converter = configure(new_converter(source, kind), settings, calib_x)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=representative(debug_x if debug_x is not None else calib_x),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            layer_direct_compare_metrics={"rel_error": channel_relative_error}
        ),
    )
    debugger.run()
    return statistics_rows(debugger)


def statistics_rows(debugger: Any) -> list[dict[str, Any]]:
    """A QuantizationDebugger's layer statistics (after ``run()``) as rows, most sensitive
    first (see :func:`layer_errors`)."""
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        mse = float(r["mean_squared_error"])
        scale = float(r["scale"]) or 1.0
        rows.append(
            {
                "layer": r["tensor_name"],
                "op": r["op_name"],
                "rel_error": float(r["rel_error"]),
                "rmse_scale": float(np.sqrt(mse) / scale),
                "mse": mse,
                "max_abs_error": float(r["max_abs_error"]),
            }
        )
    rows.sort(key=lambda r: r["rel_error"], reverse=True)
    return rows


def convert_keeping_float(
    source: Any,
    kind: str,
    calib_x: np.ndarray,
    float_layers: list[str],
    extra: dict[str, Any] | None = None,
) -> bytes:
    """Int8 conversion with the named layers (debugger tensor names) kept in float."""
    import tensorflow as tf

    settings = {"optimize": True, "mixed": True, **(extra or {})}  # extra: e.g. per_tensor
    converter = configure(new_converter(source, kind), settings, calib_x)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=representative(calib_x),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(float_layers)
        ),
    )
    return bytes(debugger.get_nondebug_quantized_model())
