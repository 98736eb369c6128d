"""A small real model and data set for demos and tests: a CNN on sklearn's 8×8 digits.

The data ships inside scikit-learn (no download). Training takes a few seconds
on two cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DIGITS_SEED = 0


def digits_arrays(seed: int = DIGITS_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's 1,797 digits, float32 (N, 8, 8, 1) in [0, 1], split 70/30.

    Returns x_train, y_train, x_test, y_test.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(len(x) * 0.7)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def build_digits_model(
    out_dir: str | os.PathLike[str],
    *,
    epochs: int = 12,
    width: int = 32,
    dense_units: int = 64,
    seed: int = DIGITS_SEED,
    name: str = "digits",
) -> tuple[Path, Path]:
    """Train a small CNN on sklearn digits; write ``<name>.keras`` and ``<name>.npz``.

    Returns ``(keras_path, data_npz_path)``. The npz holds the held-out split as
    ``x`` (float32, N×8×8×1, values in [0, 1]) and ``y`` (int64 labels): the evaluation
    data. Calibrate on :func:`write_training_split` instead: an accuracy gate measured on
    the samples int8's ranges were fitted to is optimistic. Typical test accuracy: ~0.97.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = digits_arrays(seed)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(dense_units, activation="relu", name="dense1"),
            keras.layers.Dense(10, activation="softmax", name="logits"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if epochs > 0:
        model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    keras_path = out / f"{name}.keras"
    model.save(keras_path)
    data_path = out / f"{name}.npz"
    np.savez(data_path, x=x_test, y=y_test)
    return keras_path, data_path


def write_training_split(out_dir: str | os.PathLike[str], *, seed: int = DIGITS_SEED,
                         name: str = "digits-train") -> Path:
    """Write the training split (``x``, ``y``) as ``<name>.npz`` in ``out_dir``: calibration
    (and fine-tuning) data that shares no sample with :func:`build_digits_model`'s held-out
    evaluation split."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, _, _ = digits_arrays(seed)
    path = out / f"{name}.npz"
    np.savez(path, x=x_train, y=y_train)
    return path
