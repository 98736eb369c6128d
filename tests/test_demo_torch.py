"""`quantlab demo --source torch`: a PyTorch CNN trained on digits → LiteRT and ExecuTorch
variants → evaluated against the PyTorch model → benchmarked side by side on the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quantlab", "demo", "--out", str(tmp_path / "demo"),
         "--results", str(tmp_path / "results"), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_torch_demo_runs_litert_and_executorch_side_by_side(tmp_path: Path) -> None:
    pytest.importorskip("executorch")
    pytest.importorskip("litert_torch")
    proc = _demo(tmp_path, "--source", "torch", "--schemes", "fp32,int8,et-int8",
                 "--iterations", "20", "--repeats", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {r["scheme"]: r for r in data["variants"]}
    assert set(rows) == {"fp32", "int8", "et-int8"}
    assert {s: r["runtime"] for s, r in rows.items()} == {
        "fp32": "litert", "int8": "litert", "et-int8": "executorch"}
    for r in rows.values():
        assert r["status"] == "ok", r["error"]
        assert r["median_ms"] > 0 and r["metric"] == "top1"
        assert 0.8 < r["accuracy"] <= 1.0  # a trained model, not chance (0.1)
        assert r["gate"] is True
    assert data["reference"] == "float (PyTorch)"


@pytest.mark.parametrize(("args", "said"), [
    (["--source", "onnx"], "--source 'onnx': the demo trains a keras or a torch model"),
    (["--source", "torch", "--task", "detection"], "--source torch: the demo's PyTorch model "
                                                   "is the digits classifier")])
def test_torch_demo_refuses_what_it_cannot_do_before_training(
        tmp_path: Path, args: list[str], said: str) -> None:
    proc = _demo(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "demo" / "model").exists()
