"""Variants from Keras and float .tflite sources: every scheme, manifest facts, sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf
from test_tasks import blazeface_model

from quantlab.harness.quantize.manifest import Manifest
from quantlab.harness.quantize.requests import QuantizeRequest
from quantlab.harness.quantize.schemes import SCHEMES
from quantlab.harness.quantize.variants import quantize

bad_calib = qf.bad_calib
digits = qf.digits
keras_variants = qf.keras_variants
quantlab = qf.quantlab
wide_model = qf.wide_model


def test_every_scheme_from_keras(keras_variants: Path, digits: tuple[Path, Path]) -> None:
    m = Manifest.load(keras_variants)
    by = {v.scheme: v for v in m.variants}
    # qat: when named; ExecuTorch's schemes: from PyTorch sources only
    assert set(by) == {n for n, s in SCHEMES.items()
                       if not s.needs_training and s.recipe_for("keras") is not None}
    for name, v in by.items():
        assert v.status == "ok", (name, v.error)
        target = keras_variants / v.file
        assert target.exists() and v.size_bytes and v.size_bytes > 0
        assert len(v.sha256) == 64
    assert by["coreml-w8"].size_bytes < by["coreml-fp16"].size_bytes
    assert by["coreml-w4"].size_bytes < by["coreml-w8"].size_bytes
    assert by["int8"].ops["float_ops"] == 0 and by["fp32"].ops["float_ops"] > 0
    assert m.calibration["samples"] == 200 and m.calibration["seed"] == 0
    assert m.source["kind"] == "keras" and len(m.source["sha256"]) == 64
    assert "tensorflow-cpu" in m.tools or "tensorflow" in m.tools
    assert not list(keras_variants.parent.glob(".variants.tmp-*"))
    raw = json.loads((keras_variants / "manifest.json").read_text())
    assert raw["variants"][0]["scheme"] == "fp32"


def test_every_applicable_scheme_from_tflite(
    keras_variants: Path, digits: tuple[Path, Path], tmp_path: Path
) -> None:
    src = keras_variants / "fp32.tflite"
    m = quantize(QuantizeRequest.create(src, ["all"], digits[1], tmp_path / "v"))
    by = {v.scheme: v for v in m.variants}
    for name in ("fp32", "fp16", "dynamic-int8", "int8", "int16x8", "mixed-int8"):
        assert by[name].status == "ok", (name, by[name].error)
        assert by[name].converter == "aeq"
    assert by["int8-io"].status == "failed" and "tflite" in by["int8-io"].error
    assert by["coreml-fp16"].status == "failed"
    assert "Keras, SavedModel or PyTorch" in (by["coreml-fp16"].error or "")
    assert by["int8"].size_bytes < by["fp16"].size_bytes < by["fp32"].size_bytes


def test_fp32_to_int8_size_ratio_is_about_four(
    wide_model: tuple[Path, Path], tmp_path: Path
) -> None:
    m = quantize(QuantizeRequest.create(wide_model[0], ["fp32", "int8"], wide_model[1],
                                        tmp_path / "v"))
    by = {v.scheme: v for v in m.variants}
    ratio = by["fp32"].size_bytes / by["int8"].size_bytes
    assert 3.6 <= ratio <= 4.1, ratio


def test_cli_quantize_json(keras_variants: Path, tmp_path: Path) -> None:
    out = tmp_path / "v"
    r = quantlab(
        "quantize",
        str(keras_variants / "fp32.tflite"),
        "--schemes",
        "fp32,dynamic-int8",
        "--out",
        str(out),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["out"] == str(out)
    assert [v["scheme"] for v in data["variants"]] == ["fp32", "dynamic-int8"]
    v = data["variants"][1]
    assert v["status"] == "ok" and v["error"] is None and Path(v["path"]).exists()
    assert v["size_bytes"] == Path(v["path"]).stat().st_size


def test_failed_scheme_is_recorded_and_others_produced(
    keras_variants: Path, digits: tuple[Path, Path], tmp_path: Path
) -> None:
    src = keras_variants / "fp32.tflite"
    m = quantize(QuantizeRequest.create(src, ["fp32", "int8", "coreml-w8"], None, tmp_path / "v"))
    by = {v.scheme: v for v in m.variants}
    assert by["fp32"].status == "ok"
    assert by["int8"].status == "failed" and "calibration" in by["int8"].error
    assert by["coreml-w8"].status == "failed"
    assert "Keras, SavedModel or PyTorch" in (by["coreml-w8"].error or "")
    assert (tmp_path / "v" / "fp32.tflite").exists()
    assert not (tmp_path / "v" / "int8.tflite").exists()


def test_small_calibration_warns(
    keras_variants: Path, digits: tuple[Path, Path], tmp_path: Path
) -> None:
    m = quantize(QuantizeRequest.create(
        keras_variants / "fp32.tflite", ["int8"], digits[1], tmp_path / "v", calib_samples=20)
    )
    assert any("only 20 samples" in w for w in m.warnings)
    assert m.calibration["samples"] == 20
    assert m.variants[0].status == "ok"


@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_sampling_is_reproducible(seed: int) -> None:
    import numpy as np

    from quantlab.harness.quantize.data import Dataset

    ds = Dataset(np.arange(1000, dtype=np.float32)[:, None], None, "mem")
    a, b = ds.take(50, seed), ds.take(50, seed)
    assert np.array_equal(a.x, b.x) and len(a) == 50
    assert not np.array_equal(a.x, ds.take(50, seed + 7).x)


def test_large_models_run_one_sample_at_a_time_small_ones_in_batches(
        keras_variants: Path, digits: tuple[Path, Path]) -> None:
    """TfliteRunner batches only what batching makes faster: BlazeFace (10 MB of tensors per
    image) runs image by image, the digits CNN in batches; its outputs are the same either
    way."""
    from quantlab.harness.quantize.tflite_runner import TfliteRunner

    face = TfliteRunner(str(blazeface_model()))
    assert not face.batched and face.batch == 1
    x = np.random.default_rng(0).uniform(-1, 1, (3, 128, 128, 3)).astype(np.float32)
    assert [o.shape for o in face.predict(x)] == [(3, 896, 16), (3, 896, 1)]
    small = str(keras_variants / "fp32.tflite")
    runner = TfliteRunner(small)
    assert runner.batched and runner.batch == 64
    xd = np.load(digits[1])["x"][:70]
    assert np.array_equal(runner.predict(xd)[0], TfliteRunner(small, batch=1).predict(xd)[0])
