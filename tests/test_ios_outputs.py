"""Accuracy on an iPhone (issue 22) through the fake iPhone and the runner app's batch job:
one BenchRunner job per (variant, compute unit) carries the whole set, the app runs one
prediction per sample and writes every output, and a Core ML variant gets a top-1 per compute
unit; the fake computes Core ML outputs with host LiteRT on the float .tflite and says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf
from fakes import pmd3
from fakes.iphone import COREML_TFLITE_ENV, FakeIphoneBackend
from fakes.pmd3 import Phone
from test_ios_numerics import write_mlpackage

from quantlab.agents.ios.agent import IosAgent
from quantlab.agents.ios.outputs import RUNNER
from quantlab.agents.ios.pmd3 import Pmd3Backend
from quantlab.harness.device_eval import evaluate_on_devices
from quantlab.harness.models import file_sha256
from quantlab.harness.plan import discover
from quantlab.ios_runner import codec

digits = qf.digits
digits_fp32_int8 = qf.digits_fp32_int8
UNITS = ["coreml-cpu", "coreml-gpu", "coreml-ane", "coreml-all"]


@pytest.fixture(scope="module")
def variants(digits_fp32_int8: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 and int8 of the digits model (a copy of the session's), and a Core ML variant
    beside them (a description only: the fake runs the float .tflite in its place)."""
    out = tmp_path_factory.mktemp("ios-dev") / "v"
    shutil.copytree(digits_fp32_int8, out)
    pkg = write_mlpackage(out / "coreml-fp16.mlpackage", [("input", (1, 8, 8, 1))],
                          [("Identity", (1, 10))])
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["variants"].append({"scheme": "coreml-fp16", "format": "mlpackage", "status": "ok",
                                 "file": pkg.name, "sha256": file_sha256(pkg)})
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_batch_job_contract_validates() -> None:
    from quantlab.harness.records import Job, ModelRef, Settings

    job = Job(ModelRef("/v/m.tflite", "ab" * 32, 10, "tflite"), "udid", "ios", "tflite-cpu",
              1, Settings())
    data = codec.build_job(job, input_files=[{"name": "x", "file": "jobs/j/input0.bin",
                                              "shape": [1, 4], "dtype": "float32"}],
                           outputs_file="jobs/j/outputs.bin", outputs_samples=500)
    assert data["outputs"] == {"file": "jobs/j/outputs.bin", "samples": 500}


def test_a_coreml_variant_gets_top1_per_compute_unit(variants: Path, digits: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    phone = FakeIphoneBackend(tmp_path / "phone", coreml_tflite=variants / "fp32.tflite")
    try:
        fleet = discover(agents=[IosAgent(backend=phone, cooldown_wait_s=0.0)])
        report = evaluate_on_devices(fleet, list(fleet.devices), variants, digits[1],
                                     delegates=UNITS, samples=60)
    finally:
        phone.kill_all()
    rows = {(r["scheme"], r["delegate"]): r for r in report["rows"]}
    assert set(rows) == {("coreml-fp16", u) for u in UNITS}
    # the .tflite variants cannot run on Core ML compute units: skipped with the reason
    assert {s["scheme"] for s in report["skipped"]} == {"fp32", "int8"}
    y = np.load(digits[1])["y"]
    assert report["samples"] == 60 and len(y) > 60
    for unit in UNITS:
        r = rows[("coreml-fp16", unit)]
        assert r["error"] is None, r["error"]
        assert r["runtime"] == "coreml" and r["metric"] == "top1"
        assert r["run"]["runner"] == RUNNER and r["run"]["launches"] == 1
        assert r["run"]["transfers"] == {"push": 1, "pull": 1}
        assert "host LiteRT on fp32.tflite" in r["run"]["runner_detail"]
        # the stand-in is the float model itself: the same top-1 as fp32 on the host
        assert abs(r["gate"]["drop"]) <= 1 / 60 and r["gate"]["passed"]
        assert r["value"] == pytest.approx(report["reference"]["value"], abs=1 / 60)
        # no Core ML on this Linux host: no host figure for the variant, and why
        assert r["vs_host"]["drop"] is None and "macOS" in r["vs_host"]["error"]


def test_a_tflite_variant_on_the_iphone_runs_the_same_batch(
        variants: Path, digits: tuple[Path, Path], tmp_path: Path) -> None:
    phone = FakeIphoneBackend(tmp_path / "phone")
    try:
        fleet = discover(agents=[IosAgent(backend=phone, cooldown_wait_s=0.0)])
        report = evaluate_on_devices(fleet, list(fleet.devices), variants, digits[1],
                                     delegates=["tflite-cpu"], samples=40)
    finally:
        phone.kill_all()
    rows = {r["scheme"]: r for r in report["rows"]}
    assert set(rows) == {"fp32", "int8"}
    for r in rows.values():
        assert r["error"] is None, r["error"]
        assert r["runtime"] == "litert" and abs(r["vs_host"]["drop"]) <= 1 / 40


def test_the_batch_through_the_real_pmd3_backend(variants: Path, digits: tuple[Path, Path],
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The same job through pymobiledevice3's own calls (faked below the real backend): the
    set goes over AFC once, beside the model, and the outputs come back in one read."""
    phone = Phone(tmp_path / "pmd3phone")
    pmd3.install(monkeypatch, phone)
    monkeypatch.setenv(COREML_TFLITE_ENV, str(variants / "fp32.tflite"))
    try:
        fleet = discover(agents=[IosAgent(backend=Pmd3Backend(), cooldown_wait_s=0.0)])
        report = evaluate_on_devices(fleet, list(fleet.devices), variants, digits[1],
                                     delegates=["coreml-ane"], samples=30)
    finally:
        phone.kill_all()
    (row,) = report["rows"]
    assert row["error"] is None, row["error"]
    assert row["scheme"] == "coreml-fp16" and abs(row["gate"]["drop"]) <= 1 / 30
    inputs = [p for p in phone.afc_writes if p.endswith("/input0.bin")]
    assert len(inputs) == 1  # the whole set, once
    assert all(n == 0 for n in phone.open.values()), phone.open
