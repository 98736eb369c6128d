"""Bad input: clear one-line errors, exit 2, no half-written variants folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf

from quantlab.harness.errors import DataError, ModelError
from quantlab.harness.quantize.data import load_data
from quantlab.harness.quantize.requests import QuantizeRequest
from quantlab.harness.quantize.variants import quantize

digits = qf.digits
keras_variants = qf.keras_variants
quantlab = qf.quantlab


def _no_leftovers(parent: Path) -> None:
    assert not (parent / "v").exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(".v.")]


def test_wrong_shape_data_names_both_shapes(keras_variants: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((10, 28, 28, 1), np.float32), y=np.zeros(10, np.int64))
    r = quantlab(
        "quantize",
        str(keras_variants / "fp32.tflite"),
        "--schemes",
        "int8",
        "--calib",
        str(bad),
        "--out",
        str(tmp_path / "v"),
    )
    assert r.returncode == 2, r.stderr
    assert (
        "(10, 28, 28, 1)" in r.stderr and "(N, 8, 8, 1)" in r.stderr and "fp32.tflite" in r.stderr
    )
    assert "Traceback" not in r.stderr
    _no_leftovers(tmp_path)


def test_non_numeric_labels(digits: tuple[Path, Path], tmp_path: Path) -> None:
    bad = tmp_path / "labels.npz"
    np.savez(bad, x=np.zeros((4, 8, 8, 1), np.float32), y=np.array(["cat", "dog", "cat", "dog"]))
    with pytest.raises(DataError, match="not numbers"):
        load_data(bad)
    r = quantlab(
        "quantize",
        str(digits[0]),
        "--schemes",
        "int8",
        "--calib",
        str(bad),
        "--out",
        str(tmp_path / "v"),
    )
    assert r.returncode == 2 and "labels" in r.stderr
    _no_leftovers(tmp_path)


def test_empty_image_folder(digits: tuple[Path, Path], tmp_path: Path) -> None:
    empty = tmp_path / "images"
    (empty / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_data(empty, input_shape=(-1, 8, 8, 1))
    r = quantlab("evaluate", str(tmp_path), "--data", str(empty), "--no-store")
    assert r.returncode == 2


def test_corrupt_models(tmp_path: Path) -> None:
    bad_tflite = tmp_path / "broken.tflite"
    bad_tflite.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="TFL3"):
        quantize(QuantizeRequest.create(bad_tflite, ["fp32"], None, tmp_path / "v"))
    bad_keras = tmp_path / "broken.keras"
    bad_keras.write_bytes(b"not a zip at all")
    r = quantlab("quantize", str(bad_keras), "--schemes", "fp32", "--out", str(tmp_path / "v"))
    assert r.returncode == 2, r.stderr
    assert "broken.keras" in r.stderr and "Traceback" not in r.stderr
    _no_leftovers(tmp_path)
    r = quantlab("quantize", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "v"))
    assert r.returncode == 2 and "missing.keras" in r.stderr


def test_image_folder_loads_with_options(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    from quantlab.harness.quantize.data import ImageOptions

    ds = load_data(
        tmp_path,
        image=ImageOptions(image_size=(8, 8), channel_order="gray", mean=(0.5,), std=(0.5,)),
    )
    assert ds.x.shape == (6, 8, 8, 1) and list(ds.y) == [0, 0, 0, 1, 1, 1]
    assert ds.x.min() == pytest.approx(-1.0)


def test_existing_out_refused(digits: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "v"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = quantlab("quantize", str(digits[0]), "--schemes", "fp32", "--out", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr
    assert (out / "keep.txt").read_text() == "mine"
