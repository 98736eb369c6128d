"""Small .tflite models for tests, built with TensorFlow in one subprocess.

``python -m tests.modelgen OUTDIR`` writes every model; tests get them through the
session fixtures in ``tests/conftest.py`` (:func:`build_models`) so TensorFlow is
imported once per test session and never in the test process itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MODEL_FILES = {
    "cnn": "cnn_float.tflite",
    "custom_op": "custom_op.tflite",
    "truncated": "truncated.tflite",
    "not_flatbuffer": "not_flatbuffer.tflite",
    "int8": "cnn_int8.tflite",
    "nan_out": "log_nan.tflite",
}


def build_cnn(out: Path) -> bytes:
    """A small float CNN (conv, pool, conv, conv, dense) on 96×96×3 input (~1 ms per inference)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((96, 96, 3), batch_size=1),
            tf.keras.layers.Conv2D(16, 3, activation="relu"),
            tf.keras.layers.MaxPooling2D(),
            tf.keras.layers.Conv2D(32, 3, activation="relu"),
            tf.keras.layers.Conv2D(32, 3, activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(10),
        ]
    )
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    out.write_bytes(data)
    return bytes(data)


def build_int8(out: Path) -> None:
    """The same kind of CNN, fully int8 quantized (int8 input and output)."""
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((32, 32, 3), batch_size=1),
            tf.keras.layers.Conv2D(8, 3, activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(4),
        ]
    )
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)] for _ in range(8)
    )
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    out.write_bytes(conv.convert())


def build_custom_op(out: Path) -> None:
    """A model whose TF op has no TFLite kernel: a custom op the runtime cannot resolve."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((1, 4, 4), tf.float32)])
    def f(x: tf.Tensor) -> tf.Tensor:
        return tf.linalg.det(x) + 1.0

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.allow_custom_ops = True
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    out.write_bytes(conv.convert())


def build_nan_out(out: Path) -> None:
    """log(x) of a (1, 4) input: NaN for negative inputs, -inf for 0 (the numerics check's
    seeded random inputs lie in [-1, 1]), as a delegate that overflows would give."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
    def f(x: tf.Tensor) -> tf.Tensor:
        return tf.math.log(x)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    out.write_bytes(conv.convert())


def build_all(outdir: Path) -> dict[str, Path]:
    """Write every test model into ``outdir``; returns name → path."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {name: outdir / file for name, file in MODEL_FILES.items()}
    cnn = build_cnn(paths["cnn"])
    paths["truncated"].write_bytes(cnn[: len(cnn) // 2])
    paths["not_flatbuffer"].write_bytes(b"this is not a flatbuffer, just text\n" * 4)
    build_custom_op(paths["custom_op"])
    build_int8(paths["int8"])
    build_nan_out(paths["nan_out"])
    return paths


def build_models(outdir: Path) -> dict[str, Path]:
    """Build the test models in a subprocess (keeps TensorFlow out of the test process)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "tests.modelgen", str(outdir)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building test models failed:\n{proc.stderr[-3000:]}")
    return {name: outdir / file for name, file in MODEL_FILES.items()}


if __name__ == "__main__":
    build_all(Path(sys.argv[1]))
