"""benchmarks/device_eval.py prints its figures and nothing else: the loopback phone's
stand-in ``benchmark_model`` runs host LiteRT inside the benchmark's process, and LiteRT's
"INFO: Created TensorFlow Lite XNNPACK delegate for CPU." line (native stderr, once per
process) used to land among the phone rows (issue 22)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("adb") is None, reason="the phone rows need adb")
def test_the_benchmark_prints_only_its_rows() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_eval.py"),
                        "--samples", "2", "--rounds", "1", "--phone-samples", "2"],
                       capture_output=True, text=True, timeout=300,
                       env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "N =     2: transfers" in r.stdout and "ratio" in r.stdout
    assert r.stderr == "" and "INFO" not in r.stdout, r.stderr
