"""A worker exports a Keras model to a SavedModel once, not once per conversion (#27), and the
conversions that reuse the export are the bytes a fresh ``TFLiteConverter`` makes.

Measured on MobileNetV2 the export was most of each conversion's time; the float model, fp16,
dynamic-int8 and the int8 family's calibration each exported the same model again.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _model() -> object:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, activation="softmax"),
    ])


def test_one_export_serves_every_conversion_of_a_model(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    import keras

    from quantlab.harness.quantize import tf_calibrated, tflite_tf

    writes: list[str] = []
    archive = type(keras.export.ExportArchive())  # the backend's class (TF: TFExportArchive)
    own = archive.write_out

    def counted(self: object, filepath: str, *args: object, **kwargs: object) -> object:
        writes.append(str(filepath))
        return own(self, filepath, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(archive, "write_out", counted)
    model, other = _model(), _model()
    x = np.random.default_rng(0).uniform(0, 1, (8, 12, 12, 3)).astype(np.float32)
    tflite_tf.source_ops(model, "keras")
    tflite_tf.convert(model, "keras", {"fp16": True}, x)
    tflite_tf.convert(model, "keras", {"optimize": True}, x)
    tf_calibrated.calibrate(model, "keras", x)
    assert len(writes) == 1, writes
    tflite_tf.convert(other, "keras", {}, x)  # another model: its own export
    assert len(writes) == 2 and writes[1] != writes[0]


def test_conversions_from_the_kept_export_are_the_fresh_converters_bytes() -> None:
    import tensorflow as tf

    from quantlab.harness.quantize import tflite_tf

    model = _model()
    x = np.random.default_rng(1).uniform(0, 1, (16, 12, 12, 3)).astype(np.float32)
    tflite_tf.convert(model, "keras", {}, x)  # the export is made here, reused below
    for settings in ({}, {"fp16": True}, {"optimize": True},
                     {"optimize": True, "int8_ops": True},
                     {"optimize": True, "int8_ops": True, "int8_io": True}):
        fresh = tflite_tf.configure(tf.lite.TFLiteConverter.from_keras_model(model), settings, x)
        assert tflite_tf.convert(model, "keras", settings, x) == bytes(fresh.convert()), settings
