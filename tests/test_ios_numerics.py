"""Numerics per delegate on an iPhone: fixed input files go to BenchRunner, outputs come back.

The fake app (``tests/fakes/iphone.py``) computes TFLite outputs with host LiteRT from the
input files quantlab pushed, and writes them raw like the app; it cannot run Core ML, so a
Core ML job gets outputs only from a stand-in .tflite it is given. What is tested here is
quantlab's side: the job JSON, the pushed files, the pull, the split of the raw bytes,
dequantization, the Core ML reference matching and the comparison on the host.
"""

from __future__ import annotations

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
from fakes import pmd3
from fakes.iphone import COREML_REASON, FAKE_UDID, FakeIphoneBackend
from fakes.pmd3 import Phone

from quantlab.agents.base import no_progress
from quantlab.agents.ios import numerics as ios_numerics
from quantlab.agents.ios.agent import IosAgent
from quantlab.agents.ios.pmd3 import Pmd3Backend
from quantlab.harness.models import model_ref
from quantlab.harness.numerics import verdict
from quantlab.harness.records import Job, RawResult, Settings
from quantlab.ios_runner import codec
from quantlab.ios_runner.coreml_spec import CoreMLSpecError, read_io

HERE = Path(__file__).parent
ROOT = HERE.parent


# --------------------------------------------------------------------------- Core ML specs


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _msg(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _feature(name: str, shape: tuple[int, ...] | None, dtype: int = 65568) -> bytes:
    """A FeatureDescription: a multi-array (shape, FLOAT32 by default), or an image."""
    if shape is None:
        kind = _msg(4, _key(1, 0) + _varint(96))  # imageType {width: 96}
    else:
        packed = b"".join(_varint(d) for d in shape)
        kind = _msg(5, _msg(1, packed) + _key(2, 0) + _varint(dtype))
    return _msg(1, name.encode()) + _msg(3, kind)


def write_mlpackage(path: Path, inputs: list[tuple[str, Any]],
                    outputs: list[tuple[str, Any]]) -> Path:
    """An .mlpackage whose spec holds only a description (CoreML.Specification.Model) and a
    specificationVersion: enough for quantlab and the fake app, which never run it."""
    desc = b"".join(_msg(1, _feature(n, s)) for n, s in inputs)
    desc += b"".join(_msg(10, _feature(n, s)) for n, s in outputs)
    spec = _key(1, 0) + _varint(8) + _msg(2, desc)
    data = path / "Data" / "com.apple.CoreML"
    data.mkdir(parents=True)
    (data / "model.mlmodel").write_bytes(spec)
    (path / "Manifest.json").write_text(json.dumps({
        "fileFormatVersion": "1.0.0", "rootModelIdentifier": "root",
        "itemInfoEntries": {"root": {"path": "com.apple.CoreML/model.mlmodel"}}}))
    return path


def test_coreml_spec_reader(tmp_path: Path) -> None:
    pkg = write_mlpackage(tmp_path / "m.mlpackage", [("image", (1, 96, 96, 3)), ("mask", None)],
                          [("logits", (1, 10))])
    io = read_io(pkg)
    assert [(f.name, f.kind, f.shape, f.dtype) for f in io.inputs] == [
        ("image", "multiArray", (1, 96, 96, 3), "float32"), ("mask", "image", (), None)]
    assert [(f.name, f.shape) for f in io.outputs] == [("logits", (1, 10))]
    (tmp_path / "junk.mlmodel").write_bytes(b"\x08\x08" * 8)  # a version, no description
    with pytest.raises(CoreMLSpecError, match="no model description"):
        read_io(tmp_path / "junk.mlmodel")
    (tmp_path / "nomanifest.mlpackage").mkdir()
    with pytest.raises(CoreMLSpecError, match=r"Manifest\.json"):
        read_io(tmp_path / "nomanifest.mlpackage")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture()
def variants(tflite_models: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A variants folder with the float CNN as ``fp32`` (the reference) and Core ML models
    beside it (one matching the CNN's tensors, one NCHW), an int8 CNN alone, and a Core ML
    model alone (no reference)."""
    folder, alone = tmp_path / "variants", tmp_path / "alone"
    folder.mkdir()
    alone.mkdir()
    shutil.copy(tflite_models["cnn"], folder / "fp32.tflite")
    shutil.copy(tflite_models["int8"], alone / "int8.tflite")
    (folder / "manifest.json").write_text(json.dumps({"variants": [
        {"scheme": "fp32", "status": "ok", "file": "fp32.tflite"}]}))
    return {
        "fp32": folder / "fp32.tflite",
        "int8": alone / "int8.tflite",
        "coreml": write_mlpackage(folder / "fp16.mlpackage", [("image", (1, 96, 96, 3))],
                                  [("logits", (1, 10))]),
        "coreml_nchw": write_mlpackage(folder / "nchw.mlpackage", [("image", (1, 3, 96, 96))],
                                       [("logits", (1, 10))]),
        "coreml_alone": write_mlpackage(alone / "alone.mlpackage", [("image", (1, 96, 96, 3))],
                                        [("logits", (1, 10))]),
    }


def _job(path: Path, delegate: str, device: str = FAKE_UDID, **settings: Any) -> Job:
    return Job(model=model_ref(path), device_id=device, platform="ios", delegate=delegate,
               threads=1, settings=Settings(warmup=1, iterations=3, repeats=1, timeout_s=120,
                                            **settings))


def _run(tmp_path: Path, job: Job, **phone_kw: Any) -> tuple[RawResult, FakeIphoneBackend]:
    phone = FakeIphoneBackend(tmp_path / "phone", **phone_kw)
    agent = IosAgent(backend=phone, cooldown_wait_s=0.0)
    [dev] = agent.discover()
    assert agent.supports(dev, job) == (True, "")
    try:
        return agent.run(dev, job, no_progress), phone
    finally:
        phone.kill_all()


# --------------------------------------------------------------------------- TFLite


def test_build_job_names_the_files_and_the_outputs(variants: dict[str, Path]) -> None:
    job = _job(variants["fp32"], "tflite-cpu")
    files = [{"name": "x:0", "file": codec.job_file(job, "input0.bin"), "shape": [1, 96, 96, 3],
              "dtype": "float32", "local": "/tmp/input0.bin"}]
    data = codec.build_job(job, input_files=files, outputs_file=codec.job_file(job, "out.bin"))
    assert data["inputs"] == {"kind": "files", "files": [
        {"name": "x:0", "file": f"jobs/{job.job_id}/input0.bin", "shape": [1, 96, 96, 3],
         "dtype": "float32"}]}
    assert data["outputs"] == {"file": f"jobs/{job.job_id}/out.bin"}
    assert codec.build_job(job)["inputs"] == {"kind": "random", "seed": 0}
    assert "outputs" not in codec.build_job(job)
    bad = {**data, "inputs": {"kind": "files"}}
    with pytest.raises(codec.ContractError, match="inputs"):
        codec.validate("job", bad)


def test_tflite_outputs_come_back_and_are_compared(tmp_path: Path,
                                                   variants: dict[str, Path]) -> None:
    raw, phone = _run(tmp_path, _job(variants["fp32"], "tflite-metal", numerics=True))
    assert raw.status == "ok", raw.error
    n = raw.numerics
    assert n["computed_by"] == "device (BenchRunner app)"
    assert n["cosine"] > 0.99 and n["top1_agreement"] == 1.0 and verdict(n)[0] is True
    assert n["inputs"].startswith("seeded random") and n["reference"]["model"] == "fp32.tflite"
    names = {o.name for o in raw.raw_outputs}
    assert {"result.json", "numerics-outputs.bin", "numerics-outputs.npz"} <= names
    result = _result(raw)
    [tensor] = result["outputs"]["tensors"]
    assert tensor["shape"] == [1, 10] and tensor["dtype"] == "float32" and tensor["bytes"] == 40
    assert len(phone.launches) == 1  # one app launch: the timed runs and the outputs


def test_int8_io_model_is_dequantized_before_comparing(tmp_path: Path,
                                                       variants: dict[str, Path]) -> None:
    raw, _ = _run(tmp_path, _job(variants["int8"], "tflite-cpu", numerics=True))
    assert raw.status == "ok", raw.error
    result = _result(raw)
    assert result["outputs"]["tensors"][0]["dtype"] == "int8"  # raw int8 bytes came back
    assert raw.numerics["reference"]["same_file"] is True  # no fp32 beside: itself, ref kernels
    assert raw.numerics["cosine"] > 0.99


digits = qf.digits
keras_variants = qf.keras_variants


def test_a_tflite_variant_is_judged_against_itself_on_the_host(
        tmp_path: Path, keras_variants: Path) -> None:
    """The digits int8 variant beside its fp32: compared with the float model and, for the
    gate, with the int8 file itself on the host's reference kernels."""
    raw, _ = _run(tmp_path, _job(keras_variants / "int8.tflite", "tflite-cpu", numerics=True))
    assert raw.status == "ok", raw.error
    n = raw.numerics
    assert n["reference"]["model"] == "fp32.tflite" and n["reference"]["same_file"] is False
    # both figures are high (0.999 and 0.9997 here), but which is higher depends on how the
    # digits CNN trained on this CPU: the gate must judge delegate_only, whichever it is
    own = n["delegate_only"]
    assert own["against"].startswith("this variant") and own["cosine"] > 0.995, own
    ok, why = verdict(n)
    assert ok is True and why.startswith(f"cosine {own['cosine']:.4f}"), why
    assert "vs this variant on the host" in why and f"{n['cosine']:.4f}" in why, why


def test_a_broken_output_file_is_an_error(tmp_path: Path, variants: dict[str, Path]) -> None:
    raw, _ = _run(tmp_path, _job(variants["fp32"], "tflite-cpu", numerics=True),
                  mode="short-outputs")
    assert raw.status == "ok", raw.error  # the timings stand
    assert "39 bytes; the model's outputs take 40" in raw.numerics["error"]
    assert not raw.numerics.get("unchecked") and verdict(raw.numerics)[0] is False


def test_inputs_feed_the_job_or_fail_it(tmp_path: Path, variants: dict[str, Path]) -> None:
    good = tmp_path / "in.npz"
    np.savez(good, np.full((1, 96, 96, 3), 0.5, np.float32))
    raw, phone = _run(tmp_path, _job(variants["fp32"], "tflite-cpu", inputs=str(good),
                                     numerics=True))
    assert raw.status == "ok", raw.error
    assert raw.numerics["inputs"] == "--inputs in.npz" and raw.numerics["cosine"] > 0.99
    with _npz(raw) as npz:
        [key] = [k for k in npz.files if k.startswith("input:")]
        assert np.all(npz[key] == 0.5)
    # --inputs alone: the timed runs use the file, nothing is compared
    raw, _ = _run(tmp_path / "b", _job(variants["fp32"], "tflite-cpu", inputs=str(good)))
    assert raw.status == "ok", raw.error
    assert raw.numerics == {}
    bad = tmp_path / "bad.npz"
    np.savez(bad, np.zeros((1, 5), np.float32))
    raw, phone = _run(tmp_path / "c", _job(variants["fp32"], "tflite-cpu", inputs=str(bad)))
    assert raw.status == "failed" and raw.error is not None
    assert "--inputs" in raw.error and "bad.npz" in raw.error and "(1, 96, 96, 3)" in raw.error
    assert "\n" not in raw.error and phone.launches == []  # nothing went to the phone


def _result(raw: RawResult) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        next(o for o in raw.raw_outputs if o.name == "result.json").data())
    return data


def _npz(raw: RawResult) -> Any:
    import io

    out = next(o for o in raw.raw_outputs if o.name == "numerics-outputs.npz")
    return np.load(io.BytesIO(out.data()))


def test_an_app_without_outputs_is_unchecked() -> None:
    import asyncio

    fixed = ios_numerics.IosFixedInputs(check=True, prepared={"inputs": [], "outputs": []})
    session: Any = None  # never reached: the result names no outputs file
    record = asyncio.run(ios_numerics.collect(session, fixed, {"status": "ok"}, []))
    assert record == {"error": ios_numerics.OLD_APP, "unchecked": True}
    failed = asyncio.run(ios_numerics.collect(session, fixed, {"status": "failed"}, []))
    assert failed == {}


def test_numerics_through_the_real_pmd3_backend(tmp_path: Path, variants: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    phone = Phone(tmp_path / "pmd3phone")
    pmd3.install(monkeypatch, phone)
    try:
        agent = IosAgent(backend=Pmd3Backend(), cooldown_wait_s=0.0)
        [dev] = agent.discover()
        job = _job(variants["fp32"], "tflite-cpu", device=phone.udid, numerics=True)
        raw = agent.run(dev, job, no_progress)
    finally:
        phone.kill_all()
    assert raw.status == "ok", raw.error
    assert raw.numerics["cosine"] > 0.99 and raw.numerics["computed_by"].startswith("device")
    jobdir = f"/Documents/jobs/{job.job_id}"
    assert {f"{jobdir}/model.tflite", f"{jobdir}/input0.bin", f"{jobdir}/job.json"} <= set(
        phone.afc_writes)  # the input file went over AFC, beside the model
    assert "AfcService.get_file_contents" in phone.calls
    assert all(n == 0 for n in phone.open.values()), phone.open


# --------------------------------------------------------------------------- Core ML


def test_coreml_without_a_reference_is_unchecked(tmp_path: Path,
                                                 variants: dict[str, Path]) -> None:
    raw, _ = _run(tmp_path, _job(variants["coreml_alone"], "coreml-ane", numerics=True))
    assert raw.status == "ok", raw.error
    assert raw.numerics == {"error": ios_numerics.NO_REFERENCE, "unchecked": True}
    assert verdict(raw.numerics)[0] is None


def test_coreml_with_a_mismatched_reference_is_unchecked(tmp_path: Path,
                                                         variants: dict[str, Path]) -> None:
    raw, _ = _run(tmp_path, _job(variants["coreml_nchw"], "coreml-gpu", numerics=True))
    assert raw.status == "ok", raw.error
    assert raw.numerics["unchecked"] is True
    assert raw.numerics["error"] == ("input 0: the Core ML model's 'image' has shape "
                                     "[1, 3, 96, 96], the float reference's [1, 96, 96, 3]")


def test_coreml_outputs_the_fake_cannot_compute_are_unchecked(
        tmp_path: Path, variants: dict[str, Path]) -> None:
    raw, _ = _run(tmp_path, _job(variants["coreml"], "coreml-ane", numerics=True))
    assert raw.status == "ok", raw.error
    assert raw.numerics == {"error": f"BenchRunner wrote no outputs: {COREML_REASON}",
                            "unchecked": True}


def test_coreml_outputs_compared_by_position(tmp_path: Path, variants: dict[str, Path]) -> None:
    """With a stand-in .tflite the fake writes float32 outputs under the Core ML names; the
    host renames the reference's outputs by position and compares."""
    raw, _ = _run(tmp_path, _job(variants["coreml"], "coreml-ane", numerics=True),
                  coreml_tflite=variants["fp32"])
    assert raw.status == "ok", raw.error
    n = raw.numerics
    assert n["cosine"] > 0.9999 and list(n["outputs"]) == ["logits"]
    assert n["reference"]["same_file"] is False and n["reference"]["model"] == "fp32.tflite"
    assert n["reference"]["matched"] == "inputs and outputs by position"


def test_coreml_inputs_feed_the_job_or_fail_it(tmp_path: Path,
                                               variants: dict[str, Path]) -> None:
    good = tmp_path / "in.npz"
    np.savez(good, image=np.zeros((1, 96, 96, 3), np.float32))
    raw, _ = _run(tmp_path, _job(variants["coreml_alone"], "coreml-cpu", inputs=str(good)))
    assert raw.status == "ok", raw.error  # the fake checked the file by the Core ML name
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=np.zeros((1, 3, 96, 96), np.float32))
    raw, phone = _run(tmp_path / "b", _job(variants["coreml_alone"], "coreml-cpu",
                                           inputs=str(bad)))
    assert raw.status == "failed" and raw.error is not None and "\n" not in raw.error
    assert "(1, 3, 96, 96)" in raw.error and phone.launches == []


# --------------------------------------------------------------------------- the CLI


def test_bench_numerics_and_delegates_table_from_the_fake_iphone(
        tmp_path: Path, variants: dict[str, Path]) -> None:
    results = tmp_path / "results"
    env = {**os.environ, "QUANTLAB_IOS_BACKEND": "fakes.iphone:make_backend",
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH"))
                                         if p),
           "QUANTLAB_FAKE_IPHONE_DIR": str(tmp_path / "phone"), "TF_CPP_MIN_LOG_LEVEL": "3",
           "QUANTLAB_COOLDOWN_S": "0"}

    def ql(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "quantlab", *args], env=env,
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    bench = ql("bench", str(variants["fp32"]), "--device", FAKE_UDID, "--delegate",
               "tflite-cpu,tflite-metal", "--numerics", "--repeats", "1", "--iterations", "3",
               "--warmup", "1", "--results", str(results), "--json")
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    rows = ql("delegates", "--results", str(results), "--json")
    assert rows.returncode == 0, rows.stderr
    by = {r["delegate"]: r for r in json.loads(rows.stdout)["rows"]}
    assert set(by) == {"tflite-cpu", "tflite-metal"}
    for r in by.values():
        assert r["numerics"]["cosine"] > 0.99, r
        assert r["numerics_note"] == "device (BenchRunner app)", r
