"""Calibrate once, quantize many times: the TF Lite converter's int8 family from one calibration.

The TF Lite converter makes a full-integer model in three steps: it converts the source to a
float .tflite, calibrates it (runs the representative data through it, recording each
tensor's range), and quantizes the calibrated model. Only the last step differs between
int8, int8-io, uint8-io, int16x8 and mixed-int8 (input/output types, activation width, nodes
kept float), so :func:`calibrate` runs the first two once (the converter's calibrate-only mode)
and :func:`quantize` finishes any of those schemes from the calibrated model with the
converter's own code: the quantize step the converter would call with the arguments it
would pass (``mlir_quantize``, or the calibrator's quantizer for 16-bit activations), then
its own post-processing (buffer deduplication, conversion metadata). The variant is the
same bytes as a one-pass ``convert()`` (``tests/test_quantize_calibration.py`` compares
them). mixed-int8 quantizes the calibrated model with layers denylisted, as TF's
QuantizationDebugger does (:func:`keep_float`), and its ranking runs the debugger on a
model instrumented from the same calibration (:func:`layer_errors`).

TensorFlow's converter internals are private API: this module is the one place that
touches them, inside the quantize worker process only. Converter ``tf-calibrated``
(:func:`make`) makes int8, int8-io, uint8-io and int16x8 this way from the calibration the
int8 family shares (:mod:`~quantlab.harness.quantize.calibrations`); the manifest records it
as ``tf``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from quantlab.harness.quantize.tflite_tf import (
    channel_relative_error,
    configure,
    new_converter,
    representative,
)

if TYPE_CHECKING:
    from quantlab.harness.quantize.calibrations import Calibration
    from quantlab.harness.quantize.converters import Source
    from quantlab.harness.quantize.schemes import Scheme

CALIBRATION_SETTINGS: dict[str, Any] = {"optimize": True, "mixed": True}
"""The converter settings a calibration is made with: integer quantization that may leave
ops float (mixed-int8's settings). The calibrated model does not depend on the int8
family's other settings (int8-only ops, int8 I/O, 16-bit activations, per-tensor weights),
which act in the quantize step alone."""


def make(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Converter ``tf-calibrated``: what converter ``tf`` makes with these settings (custom
    ops and float outputs as the op check found, the int8 options), quantized from the shared
    calibration; the manifest's ``calibration`` says which and whether it was reused."""
    from quantlab.harness.quantize.converters import prepare
    from quantlab.harness.quantize.tflite_tf import tf_settings

    prepared = prepare(source, scheme, "tf")
    settings = tf_settings(source, scheme, settings, prepared.check_notes)
    calibration = shared(source, scheme.name, settings)
    prepared.fields["calibration"] = calibration.record()
    prepared.timing["calibration"] = calibration.spent
    return prepared.written(quantize(source.model, source.kind, settings, calibration.calibrated))


def shared(source: Source, scheme: str, settings: dict[str, Any]) -> Calibration:
    """The calibration of ``source`` for a scheme with these converter ``settings`` (only
    those that change the calibrated model count: per-tensor weights, custom ops), from
    memory or the cache, or made now (:func:`calibrate`)."""
    from quantlab.harness.quantize import calibrations

    options = {k: True for k in ("per_tensor", "custom_ops") if settings.get(k)}
    assert source.calib_x is not None
    calib_x = source.calib_x
    return calibrations.obtain(
        source, scheme, options, lambda: calibrate(source.model, source.kind, calib_x, options))


def calibrate(source: Any, kind: str, calib_x: np.ndarray, extra: dict[str, Any] | None = None
              ) -> tuple[bytes, bytes]:
    """Convert and calibrate once: returns (the calibrated model as the quantize step gets it,
    the same model as the converter's calibrate-only ``convert()`` returns it, which is what
    TF's QuantizationDebugger quantizes). ``extra``: settings that change the float model
    (``custom_ops``)."""
    converter = configure(new_converter(source, kind), {**CALIBRATION_SETTINGS, **(extra or {})},
                          calib_x)
    converter._experimental_calibrate_only = True
    captured: list[bytes] = []
    own_quantize = converter._quantize

    def capture(*args: Any, **kwargs: Any) -> Any:
        calibrated = own_quantize(*args, **kwargs)
        captured.append(bytes(calibrated))
        return calibrated

    converter._quantize = capture
    finished = bytes(converter.convert())
    if not captured:
        raise ValueError("the converter did not calibrate (no integer quantization)")
    return captured[0], finished


def quantize(source: Any, kind: str, settings: dict[str, Any], calibrated: bytes) -> bytes:
    """The variant ``convert()`` would make with a scheme's converter ``settings`` (int8,
    int8-io, uint8-io, int16x8; see :func:`~quantlab.harness.quantize.tflite_tf.configure`), from a
    model :func:`calibrate` made, without converting or calibrating again."""
    from tensorflow.lite.python import lite, util
    from tensorflow.lite.python.convert import build_conversion_flags
    from tensorflow.lite.tools import flatbuffer_utils

    converter = configure(new_converter(source, kind), settings, np.zeros((0,), np.float32))
    quant_mode = lite.QuantizationMode(
        converter.optimizations, converter.target_spec, converter.representative_dataset, None,
        converter._experimental_disable_per_channel,
        converter.experimental_new_dynamic_range_quantizer,
        converter._experimental_low_bit_qat,
        converter._experimental_full_integer_quantization_bias_type,
        converter._experimental_variable_quantization,
        converter._experimental_strict_qdq,
    )
    if not quant_mode.is_post_training_integer_quantization():
        raise ValueError("these settings do not quantize to integers: convert instead")
    converter._validate_inference_input_output_types(quant_mode)
    flags = {"enable_tflite_resource_variables": converter.experimental_enable_resource_variables}
    flags.update(converter._get_base_converter_args())
    flags.update(quant_mode.converter_flags())
    debug_options = build_conversion_flags(**flags).debug_options
    converter._quantize = functools.partial(_from_calibration, converter, calibrated)
    converter._save_conversion_params_metric()  # the metadata's options, as convert() sets them
    model = converter._optimize_tflite_model(
        calibrated, quant_mode, debug_options, quant_io=converter.experimental_new_quantizer)
    # what convert()'s wrapper adds: the conversion metadata with the model's hash
    if converter.exclude_conversion_metadata or converter._experimental_use_buffer_offset:
        return bytes(model)
    model_object = flatbuffer_utils.convert_bytearray_to_object(model)
    if lite._check_model_use_buffer_offset(model_object):
        return bytes(model)
    converter._metadata.options.modelOptimizationModes.extend(
        util.get_sparsity_modes(model_object))
    converter._metadata.environment.modelHash = util.get_model_hash(model_object)
    model_object = util.populate_conversion_metadata(model_object, converter._metadata)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_object))


def _from_calibration(converter: Any, calibrated: bytes, _result: Any, input_type: Any,
                      output_type: Any, activations_type: Any, bias_type: Any,
                      allow_float: bool, enable_variable_quantization: bool,
                      debug_options: Any) -> bytes:
    """The converter's ``_quantize`` with the calibration already made: the same quantizer
    with the same arguments (MLIR's for 8-bit activations, the calibrator's for 16-bit)."""
    from tensorflow.lite.python.convert import mlir_quantize
    from tensorflow.lite.python.optimize import calibrator
    from tensorflow.python.framework import dtypes

    if converter.experimental_new_quantizer and activations_type != dtypes.int16:
        return bytes(mlir_quantize(
            calibrated, converter._experimental_disable_per_channel,
            input_data_type=input_type, output_data_type=output_type,
            enable_variable_quantization=enable_variable_quantization,
            disable_per_channel_for_dense_layers=(
                converter._experimental_disable_per_channel_quantization_for_dense_layers),
            debug_options_str=debug_options.SerializeToString()))
    quantizer = calibrator.Calibrator(calibrated)
    return bytes(quantizer._calibrator.QuantizeModel(
        np.dtype(input_type.as_numpy_dtype()).num, np.dtype(output_type.as_numpy_dtype()).num,
        allow_float, np.dtype(activations_type.as_numpy_dtype()).num,
        np.dtype(bias_type.as_numpy_dtype()).num,
        converter._experimental_disable_per_channel,
        converter._experimental_disable_per_channel_quantization_for_dense_layers))


def keep_float(debug_calibrated: bytes, float_layers: list[str], per_tensor: bool = False
               ) -> bytes:
    """Int8 with the named layers (debugger tensor names) left float, from the debugger's
    calibrated model (:func:`calibrate`'s second model): what
    ``QuantizationDebugger.get_nondebug_quantized_model`` returns."""
    from tensorflow.lite.python.convert import mlir_quantize

    return bytes(mlir_quantize(debug_calibrated, disable_per_channel=per_tensor,
                               fully_quantize=False, enable_numeric_verify=False,
                               denylisted_ops=None, denylisted_nodes=list(float_layers)))


def layer_errors(debug_calibrated: bytes, debug_x: np.ndarray, per_tensor: bool = False
                 ) -> list[dict[str, Any]]:
    """Per-layer int8 error from TF's QuantizationDebugger, as
    :func:`quantlab.harness.quantize.tflite_tf.layer_errors` measures it (the same rows, most
    sensitive first), on the debugger's calibrated model from :func:`calibrate` instead of a
    new conversion and calibration; errors are measured on ``debug_x``."""
    import tensorflow as tf

    from quantlab.harness.quantize.tflite_tf import statistics_rows

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=_Calibrated(debug_calibrated, per_tensor),
        debug_dataset=representative(debug_x),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            layer_direct_compare_metrics={"rel_error": channel_relative_error}),
    )
    debugger.run()
    return statistics_rows(debugger)


class _Calibrated:
    """What QuantizationDebugger asks of its converter, answered from a calibration already
    made: its options are checked, then ``convert()`` gives the calibrated model."""

    def __init__(self, calibrated: bytes, per_tensor: bool) -> None:
        import tensorflow as tf

        self._calibrated = calibrated
        self.optimizations = [tf.lite.Optimize.DEFAULT]
        self.representative_dataset = representative(np.zeros((0,), np.float32))
        self._experimental_disable_per_channel = per_tensor
        self.experimental_mlir_quantizer = True
        self._experimental_calibrate_only = True

    def convert(self) -> bytes:
        """The calibrated model (the debugger quantizes it)."""
        return self._calibrated
