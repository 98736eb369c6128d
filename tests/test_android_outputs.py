"""Accuracy on Android phones through the real adb server and the loopback phones (issue 22):
the set is pushed once, one device-side loop runs one benchmark_model launch per sample, the
outputs come back in one pull, so adb transfers per (variant, delegate) do not grow with the
number of samples; the stand-in computes with host LiteRT and says so, and a stand-in
delegate that loses a class fails its gate with exit 1. ``outputs.sh`` itself runs under
/bin/sh with a stub tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import quantize_fixtures as qf
from fakes.adbd import FakeAndroidDevice, load_profile
from test_android_adb import ROOT, adb_port, agent, cache, connected_phone  # noqa: F401  (fixtures)

from quantlab.android_runner import outputs as loop
from quantlab.harness.device_eval import evaluate_on_devices
from quantlab.harness.plan import discover

digits = qf.digits
variants = qf.digits_fp32_int8  # fp32 and int8 of the digits model (session-wide)
detector = qf.detector_fp32_int8  # the shapes detector, fp32 and int8 (session-wide)


@pytest.fixture()
def phone(adb_port: int, tmp_path: Path) -> Iterator[FakeAndroidDevice]:  # noqa: F811
    """The Pixel 5 loopback phone whose ``nnapi`` stand-in loses class 0. Its launches take
    no stand-in run time (the profile's 0.05 s sleep): these tests count launches and score
    outputs, and time none, over some 1200 launches."""
    profile = load_profile("pixel5_snapdragon")
    profile["numerics_faults"] = {"nnapi": "zero-class-0"}
    profile["benchmark_seconds"] = 0.0
    with connected_phone(adb_port, profile, tmp_path / "pixel") as dev:
        yield dev


def _evaluate(phone: FakeAndroidDevice, variants: Path, data: Path, samples: int
              ) -> dict[str, Any]:
    fleet = discover(agents=[agent()])
    device = fleet.get(phone.serial)
    return evaluate_on_devices(fleet, [device], variants, data, delegates=["xnnpack", "gpu"],
                               samples=samples)


def test_transfers_per_variant_and_delegate_do_not_grow_with_samples(
        phone: FakeAndroidDevice, cache: Path, variants: Path,  # noqa: F811
        digits: tuple[Path, Path]) -> None:
    calls = len(phone.benchmark_calls)
    small = _evaluate(phone, variants, digits[1], 10)
    assert len(phone.benchmark_calls) - calls == 10 * 4  # one launch per sample, 4 rows
    big = _evaluate(phone, variants, digits[1], 100)
    assert len(phone.benchmark_calls) - calls == 110 * 4
    for a, b in zip(small["rows"], big["rows"], strict=True):
        assert (a["scheme"], a["delegate"]) == (b["scheme"], b["delegate"])
        assert a["error"] is None and b["error"] is None, (a["error"], b["error"])
        assert a["run"]["transfers"] == b["run"]["transfers"] == {"push": 1, "pull": 1}
        assert (a["run"]["launches"], b["run"]["launches"]) == (10, 100)
        assert a["run"]["runner"] == loop.RUNNER
        # the stand-in says what computed the outputs
        assert "computed on the host with LiteRT" in b["run"]["runner_detail"]
    rows = {(r["scheme"], r["delegate"]): r for r in big["rows"]}
    for (scheme, delegate), row in rows.items():
        assert row["samples"] == 100 and 0.5 < row["value"] <= 1.0
        # xnnpack: the host's own kernels; gpu: rounded through float16 — neither moves
        # top-1 by more than a sample or two of 100
        assert abs(row["vs_host"]["drop"]) <= 0.02, (scheme, delegate, row["vs_host"])
    assert rows[("fp32", "xnnpack")]["gate"]["passed"]
    # only the set goes over adb per (variant, delegate): one push per model input, one pull
    set_pushes = [p for p in phone.pushed if "/outputs/" in p]
    assert len(set_pushes) == 2 * 4


def test_gpu_launches_after_the_first_start_from_the_delegate_cache(
        phone: FakeAndroidDevice, cache: Path, variants: Path,  # noqa: F811
        digits: tuple[Path, Path]) -> None:
    """gpu/nnapi: every launch of the loop names one --delegate_serialize_dir and the model's
    token, so only the first compiles (the stand-in's start log); xnnpack/cpu pass neither."""
    phone.starts.clear()
    calls = len(phone.benchmark_calls)
    report = _evaluate(phone, variants, digits[1], 5)
    argv = phone.benchmark_calls[calls:]
    assert len(argv) == len(phone.starts) == 2 * 2 * 5  # fp32, int8 × xnnpack, gpu × 5
    for d in ("xnnpack", "gpu"):
        launches = [a for a, (delegate, _) in zip(argv, phone.starts, strict=True)
                    if delegate == d]
        dirs = {a.split("=", 1)[1] for x in launches for a in x
                if a.startswith("--delegate_serialize_dir=")}
        tokens = {a for x in launches for a in x if a.startswith("--delegate_serialize_token=")}
        if d == "xnnpack":
            assert not dirs and not tokens
        else:
            assert all(any(a.startswith("--delegate_serialize_dir=") for a in x)
                       for x in launches)
            assert len(dirs) == 2 and len(tokens) == 2  # one cache per (variant, delegate)
    # per (variant, gpu): the first launch compiles, the four after it start warm
    assert [w for d, w in phone.starts if d == "gpu"] == [False, True, True, True, True] * 2
    assert not any(w for d, w in phone.starts if d == "xnnpack")
    for row in report["rows"]:
        assert row["error"] is None, row["error"]
        used = row["run"]["delegate_cache"]
        if row["delegate"] == "gpu":
            assert used["used"] and used["flag"] == "--delegate_serialize_dir"
            assert used["files"], used
        else:
            assert not used["used"] and "keeps no delegate cache" in used["why"]


def test_a_delegate_that_loses_a_class_fails_with_exit_1(
        phone: FakeAndroidDevice, cache: Path, adb_port: int, variants: Path,  # noqa: F811
        digits: tuple[Path, Path], tmp_path: Path) -> None:
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(adb_port), "QUANTLAB_CACHE": str(cache),
           "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "quantlab", "evaluate", str(variants), "--data",
                        str(digits[1]), "--device", phone.serial, "--delegate", "xnnpack,nnapi",
                        "--samples", "120", "--results", str(tmp_path / "store"), "--json"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                       check=False)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    rows = {(x["scheme"], x["delegate"]): x for x in report["rows"]}
    y = np.load(digits[1])["y"]
    share = float(np.mean(y == 0))  # about a tenth of the digits are zeros
    for scheme in ("fp32", "int8"):
        lost = rows[(scheme, "nnapi")]
        assert lost["vs_host"]["drop"] > share / 2 and not lost["gate"]["passed"]
        assert rows[(scheme, "xnnpack")]["vs_host"]["drop"] == pytest.approx(0, abs=0.02)
    assert "gate failed on the device" in r.stderr and "nnapi" in r.stderr
    assert {f"{s} on {phone.serial} · nnapi" for s in ("fp32", "int8")} == set(report["failed"])


def test_the_loop_script_under_sh_cuts_each_sample_and_appends_each_output(
        tmp_path: Path) -> None:
    """outputs.sh itself, under /bin/sh with QL_ROOT as the phone's root and a stub tool that
    writes its two input files, concatenated, as its outputs."""
    folder = "/data/local/tmp/quantlab/outputs/job"
    root = tmp_path / "root"
    (root / folder.lstrip("/")).mkdir(parents=True)
    a = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    b = np.arange(5 * 2, dtype=np.int8).reshape(5, 2)
    (root / folder.lstrip("/") / "input0.bin").write_bytes(a.tobytes())
    (root / folder.lstrip("/") / "input1.bin").write_bytes(b.tobytes())
    tool = root / "data/local/tmp/quantlab/benchmark_model"
    tool.write_text('#!/bin/sh\n[ "$1" = "--flag" ] || exit 9\n'
                    f'cat "$QL_ROOT{folder}/sample0.bin" "$QL_ROOT{folder}/sample1.bin" '
                    f'> "$QL_ROOT{folder}/out.bin"\necho "stub ran"\n')
    tool.chmod(0o755)
    run = subprocess.run(["/bin/sh", str(loop.SCRIPT), folder, "5", "12,2",
                          "/data/local/tmp/quantlab/benchmark_model", "--flag"],
                         env={"PATH": os.environ["PATH"], "QL_ROOT": str(root)},
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert loop.loop_report(run.stdout) == (True, "stub ran")
    blob = (root / folder.lstrip("/") / "outputs.bin").read_bytes()
    got = loop.split_outputs(blob, [
        {"name": "a", "shape": [1, 3], "dtype": "float32", "quantization": [0.0, 0], "bytes": 12},
        {"name": "b", "shape": [1, 2], "dtype": "int8", "quantization": [0.5, 1], "bytes": 2}], 5)
    assert np.array_equal(got["output:a"], a)
    assert np.allclose(got["output:b"], (b.astype(np.float32) - 1) * 0.5)
    # a launch that fails stops the loop with its exit code and its own words
    tool.write_text('#!/bin/sh\necho "ERROR: the delegate refused"\nexit 7\n')
    run = subprocess.run(["/bin/sh", str(loop.SCRIPT), folder, "5", "12,2",
                          "/data/local/tmp/quantlab/benchmark_model"],
                         env={"PATH": os.environ["PATH"], "QL_ROOT": str(root)},
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 7
    assert loop.loop_report(run.stdout) == (False, "ERROR: the delegate refused")


def test_detection_map_per_delegate_from_the_phone(
        phone: FakeAndroidDevice, cache: Path, detector: dict[str, Path]) -> None:  # noqa: F811
    """The detection demo's variants on the phone: mAP per delegate from the outputs that
    came back; gpu rounds through float16 (a small change), nnapi loses class 0 (a drop far
    beyond the gate, which fails)."""
    fleet = discover(agents=[agent()])
    report = evaluate_on_devices(fleet, [fleet.get(phone.serial)], detector["variants"],
                                 detector["eval"], delegates=["xnnpack", "gpu", "nnapi"],
                                 samples=40, task="detection", labels=str(detector["labels"]))
    assert report["metric"] == "map" and report["samples"] == 40
    rows = {(r["scheme"], r["delegate"]): r for r in report["rows"]}
    assert len(rows) == 6
    for (scheme, delegate), r in rows.items():
        assert r["error"] is None, r["error"]
        assert r["run"]["transfers"] == {"push": 1, "pull": 1} and r["run"]["launches"] == 40
        if delegate == "nnapi":
            assert r["vs_host"]["drop"] > 0.15 and not r["gate"]["passed"], (scheme, r["gate"])
        else:
            assert abs(r["vs_host"]["drop"]) < 0.05, (scheme, delegate, r["vs_host"])
    assert rows[("fp32", "xnnpack")]["gate"]["passed"]
