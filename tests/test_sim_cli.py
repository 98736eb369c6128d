"""`quantlab bench` on the host simulator, end to end through the CLI (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QUANTLAB = [sys.executable, "-m", "quantlab"]
ROOT = Path(__file__).resolve().parent.parent


def _quantlab(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [*QUANTLAB, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def test_bench_json_ok_and_failed(tflite_models: dict[str, Path], tmp_path: Path) -> None:
    proc = _quantlab(
        "bench", str(tflite_models["cnn"]), str(tflite_models["custom_op"]),
        "--device", "sim", "--delegate", "xnnpack,cpu", "--repeats", "1",
        "--iterations", "30", "--profile-ops", "--json", "--results", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # 1: some job failed (the custom-op model)
    results = json.loads(proc.stdout)["results"]
    assert len(results) == 4
    by = {(Path(r["model"]["path"]).name, r["delegate"]): r for r in results}
    for delegate, kernels in (("xnnpack", 7), ("cpu", 6)):
        ok = by[("cnn_float.tflite", delegate)]
        assert ok["status"] == "ok", ok["error"]
        assert len(ok["ops"]) == kernels
        assert 0.85 <= sum(op["avg_ms"] for op in ok["ops"]) / ok["ops_model_ms"] <= 1.05
        assert ok["latency_ms"]["count"] == 30
        failed = by[("custom_op.tflite", delegate)]
        assert failed["status"] == "failed"
        assert "unresolved custom op: MatrixDeterminant" in failed["error"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "no such file"),
        ("not_flatbuffer", "not a TFLite flatbuffer"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_bad_model_exit_2(
    tflite_models: dict[str, Path], tmp_path: Path, name: str, message: str
) -> None:
    path = tflite_models.get(name, tmp_path / "missing.tflite")
    proc = _quantlab("bench", str(path), "--device", "sim", "--results", str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0]


def test_energy_on_usb_is_a_setting(tflite_models: dict[str, Path]) -> None:
    # --energy-on-usb implies --energy and is kept in the job's settings (so --resume keeps it);
    # without it a job's id is what it was before the option existed
    plain = _quantlab("plan", str(tflite_models["cnn"]), "--device", "sim", "--energy", "--json")
    usb = _quantlab("plan", str(tflite_models["cnn"]), "--device", "sim", "--energy-on-usb",
                    "--json")
    assert plain.returncode == 0 and usb.returncode == 0, plain.stderr + usb.stderr
    [p] = json.loads(plain.stdout)["jobs"]
    [u] = json.loads(usb.stdout)["jobs"]
    assert p["settings"]["energy_on_usb"] is False and p["settings"]["energy"] is True
    assert u["settings"]["energy_on_usb"] is True and u["settings"]["energy"] is True
    assert p["job_id"] != u["job_id"]
