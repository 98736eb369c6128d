"""Numerics per delegate on Android: fixed inputs go to the phone, outputs come back.

A REAL adb server between quantlab and two loopback phones. The loopback
``benchmark_model`` stand-in computes the outputs with host LiteRT from the input files
quantlab pushed (``tests/fakes/adbd.py``; ``gpu`` rounds through float16 to stand in for
half precision, ``numerics_faults`` makes a delegate compute zeros), so what is tested here
is quantlab's side: the input files and flags, the pull, the split of the raw output
bytes, dequantization and the comparison on the host.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import quantize_fixtures as qf
from test_android_adb import (  # noqa: F401  (pytest fixtures)
    _adb_installed,
    adb_port,
    agent,
    by_id,
    cache,
    phones,
)

from quantlab.android_runner.numerics import LITERT_REASON, OLD_TOOL_REASON, input_flags
from quantlab.harness.device_numerics import split_outputs
from quantlab.harness.numerics import verdict
from quantlab.harness.records import Job, ModelRef, Settings

ROOT = Path(__file__).resolve().parent.parent
digits = qf.digits
keras_variants = qf.keras_variants


def _ref(path: Path) -> ModelRef:
    return ModelRef(str(path), hashlib.sha256(path.read_bytes()).hexdigest(),
                    path.stat().st_size, "tflite")


@pytest.fixture()
def variants(tflite_models: dict[str, Path], tmp_path: Path) -> dict[str, ModelRef]:
    """A variants folder with the float CNN as ``fp32`` (the reference), and an int8 CNN
    (int8 input and output) alone in another folder."""
    folder, alone = tmp_path / "variants", tmp_path / "alone"
    folder.mkdir()
    alone.mkdir()
    shutil.copy(tflite_models["cnn"], folder / "fp32.tflite")
    shutil.copy(tflite_models["int8"], alone / "int8.tflite")
    (folder / "manifest.json").write_text(json.dumps({"variants": [
        {"scheme": "fp32", "status": "ok", "file": "fp32.tflite"}]}))
    return {"fp32": _ref(folder / "fp32.tflite"), "int8": _ref(alone / "int8.tflite")}


def _job(ref: ModelRef, serial: str, delegate: str, **settings: Any) -> Job:
    return Job(ref, serial, "android", delegate, 1,
               Settings(warmup=1, iterations=3, repeats=1, timeout_s=120, **settings))


def test_flags_and_output_split() -> None:
    prepared = {"inputs": [{"name": "serving_default_x:0", "shape": [1, 4], "dtype": "int8",
                            "file": "input0.bin", "bytes": 4}],
                "outputs": [{"name": "a", "shape": [1, 2], "dtype": "int8",
                             "quantization": [0.5, -1], "bytes": 2},
                            {"name": "b", "shape": [2], "dtype": "float32",
                             "quantization": [0.0, 0], "bytes": 8}]}
    assert input_flags(prepared, "/d") == [
        "--input_layer=serving_default_x:0", "--input_layer_shape=1,4",
        "--input_layer_value_files=serving_default_x::0:/d/input0.bin"]
    blob = np.array([1, 3], np.int8).tobytes() + np.array([0.25, -2], np.float32).tobytes()
    out = split_outputs(blob, prepared)
    assert out["a"].tolist() == [[1.0, 2.0]] and out["b"].tolist() == [0.25, -2.0]
    with pytest.raises(ValueError, match="9 bytes; the model's outputs take 10"):
        split_outputs(blob[:-1], prepared)


def test_delegate_outputs_come_back_through_adb(phones: Any, cache: Path,  # noqa: F811
                                                variants: dict[str, ModelRef]) -> None:
    qcom, exynos = phones
    exynos.profile["numerics_faults"] = {"xnnpack": "zeros"}
    ag = agent()
    found = ag.discover()
    q, e = by_id(found, qcom.serial), by_id(found, exynos.serial)
    raws = {}
    for dev, delegate in ((q, "xnnpack"), (q, "gpu"), (e, "xnnpack")):
        job = _job(variants["fp32"], dev.id, delegate, numerics=True)
        assert ag.supports(dev, job) == (True, "")
        raws[(dev.id, delegate)] = ag.run(dev, job, lambda *a: None)
    good, gpu, broken = (raws[(q.id, "xnnpack")], raws[(q.id, "gpu")],
                         raws[(e.id, "xnnpack")])
    for raw in (good, gpu, broken):
        assert raw.status == "ok", raw.error
        assert raw.numerics["computed_by"] == "device (benchmark_model --output_filepath)"
        assert raw.numerics["inputs"].startswith("seeded random")
    assert good.numerics["cosine"] > 0.9999 and good.numerics["top1_agreement"] == 1.0
    # fp16 rounding: still the same answer, but not bit-identical
    assert gpu.numerics["cosine"] > 0.999 and 0 < gpu.numerics["max_abs"] < 0.05
    assert broken.numerics["cosine"] == 0.0 and verdict(broken.numerics)[0] is False
    assert verdict(good.numerics)[0] is True
    # the launch loaded the pushed input file and wrote the output file
    call = next(c for c in reversed(qcom.benchmark_calls) if any(
        a.startswith("--output_filepath=") for a in c))
    files = next(a for a in call if a.startswith("--input_layer_value_files="))
    assert "::0:" in files or ":" in files.split("=", 1)[1]
    assert "--num_runs=1" in call and "--use_gpu=true" in call
    names = {o.name for o in good.raw_outputs}
    assert {"numerics-outputs.bin", "numerics-outputs.npz", "numerics-launch.stdout"} <= names


def test_int8_io_model_is_dequantized_before_comparing(phones: Any, cache: Path,  # noqa: F811
                                                       variants: dict[str, ModelRef]) -> None:
    qcom, _ = phones
    ag = agent()
    q = by_id(ag.discover(), qcom.serial)
    raw = ag.run(q, _job(variants["int8"], q.id, "cpu", numerics=True), lambda *a: None)
    assert raw.status == "ok", raw.error
    # no fp32 variant beside it: the reference is the file itself on reference kernels
    assert raw.numerics["reference"]["same_file"] is True
    assert raw.numerics["cosine"] > 0.99


def test_a_variant_is_judged_against_itself_on_the_host(
        phones: Any, cache: Path, keras_variants: Path) -> None:  # noqa: F811
    """The digits int8 variant beside its fp32: the record compares the phone's outputs with
    the float model (quantization included) and, in ``delegate_only``, with the int8 file
    itself on the host's reference kernels, which the gate judges; a delegate computing zeros
    fails it."""
    qcom, exynos = phones
    exynos.profile["numerics_faults"] = {"cpu": "zeros"}
    ag = agent()
    found = ag.discover()
    good, broken = (ag.run(by_id(found, p.serial), _job(_ref(keras_variants / "int8.tflite"),
                                                        p.serial, "cpu", numerics=True),
                           lambda *a: None) for p in (qcom, exynos))
    for raw in (good, broken):
        assert raw.status == "ok", raw.error
        assert raw.numerics["reference"]["model"] == "fp32.tflite"
    own = good.numerics["delegate_only"]
    assert own["cosine"] > 0.9999 and own["against"].startswith("this variant")
    assert good.numerics["cosine"] < own["cosine"]  # the float model: int8's error included
    ok, why = verdict(good.numerics)
    assert ok is True, why
    assert "vs this variant on the host" in why and "vs the float model" in why
    assert broken.numerics["delegate_only"]["cosine"] == 0.0
    assert verdict(broken.numerics)[0] is False
    kept = next(o for o in good.raw_outputs if o.name == "numerics-outputs.npz")
    with np.load(io.BytesIO(kept.data())) as npz:
        assert any(k.startswith("variant:") for k in npz.files)


def test_old_tool_and_litert_say_why_there_are_no_numerics(phones: Any, cache: Path,  # noqa: F811
                                                           variants: dict[str, ModelRef]
                                                           ) -> None:
    qcom, _ = phones
    qcom.profile["ignores_output_filepath"] = True
    ag = agent()
    q = by_id(ag.discover(), qcom.serial)
    raw = ag.run(q, _job(variants["fp32"], q.id, "xnnpack", numerics=True), lambda *a: None)
    assert raw.status == "ok" and raw.numerics == {"error": OLD_TOOL_REASON, "unchecked": True}
    assert verdict(raw.numerics)[0] is None  # no verdict on the delegate, and why
    assert "benchmark_litert_model" in LITERT_REASON


def test_inputs_feed_the_timed_launches_or_fail_the_job(phones: Any, cache: Path,  # noqa: F811
                                                        variants: dict[str, ModelRef],
                                                        tmp_path: Path) -> None:
    qcom, _ = phones
    ag = agent()
    q = by_id(ag.discover(), qcom.serial)
    good = tmp_path / "in.npz"
    np.savez(good, np.full((1, 96, 96, 3), 0.5, np.float32))
    raw = ag.run(q, _job(variants["fp32"], q.id, "xnnpack", inputs=str(good), numerics=True),
                 lambda *a: None)
    assert raw.status == "ok", raw.error
    timed = qcom.benchmark_calls[-2]  # the measured launch, before the numerics launch
    assert any(a.startswith("--input_layer_value_files=") for a in timed)
    assert not any(a.startswith("--output_filepath=") for a in timed)
    assert any(a.startswith("--input_layer_value_files=") for a in raw.runner["argv"])
    assert raw.numerics["inputs"] == "--inputs in.npz"
    bad = tmp_path / "bad.npz"
    np.savez(bad, np.zeros((1, 5), np.float32))
    raw = ag.run(q, _job(variants["fp32"], q.id, "xnnpack", inputs=str(bad)), lambda *a: None)
    assert raw.status == "failed" and "--inputs" in str(raw.error)


def test_bench_numerics_and_delegates_table_from_a_phone(phones: Any, cache: Path,  # noqa: F811
                                                         variants: dict[str, ModelRef],
                                                         tmp_path: Path) -> None:
    qcom, _ = phones
    results = tmp_path / "results"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def ql(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "quantlab", *args], env=env,
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    bench = ql("bench", variants["fp32"].path, "--device", qcom.serial, "--delegate",
               "cpu,xnnpack,gpu", "--numerics", "--repeats", "1", "--iterations", "3",
               "--warmup", "1", "--results", str(results), "--json")
    assert bench.returncode == 0, bench.stderr
    rows = ql("delegates", "--results", str(results), "--json")
    assert rows.returncode == 0, rows.stderr
    by = {r["delegate"]: r for r in json.loads(rows.stdout)["rows"]}
    assert set(by) == {"cpu", "xnnpack", "gpu"}
    for r in by.values():
        assert r["numerics"]["cosine"] > 0.999, r
        assert r["numerics_note"].startswith("device"), r
    assert by["gpu"]["numerics"]["max_abs"] > by["xnnpack"]["numerics"]["max_abs"]
