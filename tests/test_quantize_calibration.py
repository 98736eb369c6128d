"""One calibration shared by the int8 family: the same variants as one-pass conversions, and
a content-keyed cache that a second quantize reuses and a changed calibration file does not.

Equality is byte for byte: the TF Lite converter is deterministic for a given model and data
(each test also converts twice one-pass to show it), so a variant quantized from the shared
calibration must be the very bytes ``TFLiteConverter.convert()`` makes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from quantlab.harness.quantize.requests import QuantizeRequest
from quantlab.harness.quantize.variants import quantize

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _small_model() -> object:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, activation="softmax"),
    ])


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A small untrained Keras model, its calibration data and other calibration data."""
    folder = tmp_path_factory.mktemp("small")
    model = _small_model()
    model.save(folder / "small.keras")  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    for name in ("calib", "other"):
        x = rng.uniform(0, 1, (40, 12, 12, 3)).astype(np.float32)
        np.savez(folder / f"{name}.npz", x=x, y=rng.integers(0, 4, 40))
    return folder / "small.keras", folder / "calib.npz", folder / "other.npz"


def test_int8_family_from_one_calibration_is_the_one_pass_bytes() -> None:
    from quantlab.harness.quantize import tf_calibrated, tflite_tf

    model = _small_model()
    x = np.random.default_rng(1).uniform(0, 1, (30, 12, 12, 3)).astype(np.float32)
    calibrated, debug = tf_calibrated.calibrate(model, "keras", x)
    for settings in ({"optimize": True, "int8_ops": True},
                     {"optimize": True, "int8_ops": True, "int8_io": True},
                     {"optimize": True, "int8_ops": True, "int8_io": True, "io_dtype": "uint8"},
                     {"optimize": True, "int16x8": True}):
        one_pass = tflite_tf.convert(model, "keras", settings, x)
        assert one_pass == tflite_tf.convert(model, "keras", settings, x)  # deterministic
        assert tf_calibrated.quantize(model, "keras", settings, calibrated) == one_pass, settings
    # mixed-int8: the same ranking, and the same bytes with a layer kept float
    ranking = tflite_tf.layer_errors(model, "keras", x, x)
    assert tf_calibrated.layer_errors(debug, x) == ranking
    keep = [ranking[0]["layer"], ranking[1]["layer"]]
    one_pass = tflite_tf.convert_keeping_float(model, "keras", x, keep)
    assert tf_calibrated.keep_float(debug, keep) == one_pass
    assert tf_calibrated.keep_float(debug, []) != one_pass  # keeping float changes the bytes


def _run(small: tuple[Path, Path, Path], calib: Path, out: Path) -> dict[str, dict]:
    quantize(QuantizeRequest.create(small[0], ["int8", "int8-io", "uint8-io", "mixed-int8"],
                                    calib, out, jobs=1))
    manifest = json.loads((out / "manifest.json").read_text())
    return {v["scheme"]: v for v in manifest["variants"]}


def test_second_quantize_reuses_the_cached_calibration_a_changed_file_does_not(
        small: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "cache"))
    first = _run(small, small[1], tmp_path / "a")
    assert all(v["status"] == "ok" for v in first.values()), first
    made = first["mixed-int8"]["calibration"]  # the first scheme one worker makes
    assert made["reused"] is False and made["seconds"] > 0
    ids = {v["calibration"]["id"] for v in first.values()}
    assert ids == {made["id"]}  # one calibration for the three
    assert first["int8"]["calibration"]["reused"] == "mixed-int8"
    assert first["int8-io"]["calibration"]["reused"] == "mixed-int8"
    assert first["uint8-io"]["calibration"]["reused"] == "mixed-int8"  # not calibrated again
    assert len(list((tmp_path / "cache" / "calibrations").glob("*/meta.json"))) == 1

    again = _run(small, small[1], tmp_path / "b")
    assert {v["calibration"]["reused"] for v in again.values()} == {"cache"}
    assert {v["calibration"]["id"] for v in again.values()} == ids
    for scheme in ("int8", "int8-io", "uint8-io", "mixed-int8"):  # as without the cache
        assert again[scheme]["sha256"] == first[scheme]["sha256"], scheme

    other = tmp_path / "calib.npz"  # the same file name, changed content
    other.write_bytes(small[2].read_bytes())
    changed = _run(small, other, tmp_path / "c")
    assert changed["mixed-int8"]["calibration"]["reused"] is False
    assert changed["int8"]["calibration"]["reused"] == "mixed-int8"
    assert changed["int8"]["calibration"]["id"] not in ids
    assert changed["int8"]["sha256"] != first["int8"]["sha256"]


def test_default_jobs_follow_the_cores_and_the_available_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from quantlab.harness.quantize import lanes

    monkeypatch.setattr(lanes.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.setattr(lanes.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    monkeypatch.setattr(lanes, "available_memory", lambda: 64 * 2**30)
    assert lanes.default_jobs(10 * 2**20, 7) == 4  # the cores
    assert lanes.default_jobs(10 * 2**20, 3) == 3  # the schemes
    monkeypatch.setattr(lanes.os, "getloadavg", lambda: (2.2, 1.0, 1.0))
    assert lanes.default_jobs(10 * 2**20, 7) == 2  # the idle cores
    monkeypatch.setattr(lanes.os, "getloadavg", lambda: (5.5, 5.0, 5.0))
    assert lanes.default_jobs(10 * 2**20, 7) == 1
    monkeypatch.setattr(lanes.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    per_worker = lanes.WORKER_BYTES + lanes.MODEL_FACTOR * 10 * 2**20
    monkeypatch.setattr(lanes, "available_memory", lambda: 2 * per_worker + 1)
    assert lanes.default_jobs(10 * 2**20, 7) == 2  # the memory
    monkeypatch.setattr(lanes, "available_memory", lambda: per_worker // 2)
    assert lanes.default_jobs(10 * 2**20, 7) == 1  # always one


def test_slow_schemes_are_claimed_first() -> None:
    from quantlab.harness.quantize.lanes import work_order
    from quantlab.harness.quantize.schemes import resolve_schemes

    order = work_order(resolve_schemes(["fp32", "int8", "int8-io", "fp16", "mixed-int8"]))
    assert order == ["mixed-int8", "fp32", "fp16", "int8", "int8-io"]


def test_schemes_in_two_workers_share_the_calibration_and_split_their_seconds(
        small: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "cache"))
    seen: list[tuple[str, str, int]] = []
    out = tmp_path / "v"
    quantize(QuantizeRequest.create(small[0], ["fp32", "fp16", "int8", "int8-io", "int16x8"],
                                    small[1], out, jobs=2),
             progress=lambda name, ev: seen.append((name, ev.get("scheme", ""), ev.get("pid", 0))))
    by = {v["scheme"]: v for v in json.loads((out / "manifest.json").read_text())["variants"]}
    assert all(v["status"] == "ok" for v in by.values()), by
    assert [s for name, s, _ in seen if name == "start"].count("int8") == 1  # each made once
    family = [by[s]["calibration"] for s in ("int8", "int8-io", "int16x8")]
    assert len({c["id"] for c in family}) == 1
    assert [c["reused"] for c in family].count(False) == 1  # made once, by one of them
    for v in by.values():
        split = v["seconds_split"]
        assert set(split) == {"calibration", "conversion", "checks"}
        assert sum(split.values()) == pytest.approx(v["seconds"], abs=0.01)
    maker = next(by[s] for s in ("int8", "int8-io", "int16x8")
                 if by[s]["calibration"]["reused"] is False)
    assert maker["seconds_split"]["calibration"] > 0
    assert by["fp16"]["seconds_split"]["calibration"] == 0
