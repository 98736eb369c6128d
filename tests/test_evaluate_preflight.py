"""Evaluation never loads a variant in the controller that crashes LiteRT: each file is
identified and run once in a worker process first (harness/quantize/preflight.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _rewritten(model: Path, out: Path, change: Callable[[Any], None]) -> Path:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model.read_bytes()), 0)
    change(tree)
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


def _absent_weights(tree: Any) -> None:
    """The first convolution's weights marked absent (-1, as an optional input would be):
    identification cannot tell (-1 is legal there for other ops), and LiteRT's kernel
    dereferences it while preparing: SIGSEGV on this machine (found by the fault campaign)."""
    conv = tree.subgraphs[0].operators[0]
    conv.inputs = [conv.inputs[0], -1, conv.inputs[2]]


def _absent_input(tree: Any) -> None:
    """The first convolution's input marked absent: LiteRT refuses it cleanly."""
    conv = tree.subgraphs[0].operators[0]
    conv.inputs = [-1, *list(conv.inputs)[1:]]


def _folder(tmp_path: Path, fp32: bytes, int8: bytes) -> tuple[Path, Path]:
    folder = tmp_path / "variants"
    folder.mkdir()
    (folder / "fp32.tflite").write_bytes(fp32)
    (folder / "int8.tflite").write_bytes(int8)
    (folder / "manifest.json").write_text(json.dumps({"variants": [
        {"scheme": "fp32", "file": "fp32.tflite", "status": "ok"},
        {"scheme": "int8", "file": "int8.tflite", "status": "ok"}]}))
    rng = np.random.default_rng(0)
    data = tmp_path / "eval.npz"
    np.savez(data, x=rng.uniform(0, 1, (8, 96, 96, 3)).astype(np.float32),
             y=rng.integers(0, 10, 8))
    return folder, data


def _evaluate(folder: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "quantlab", "evaluate", str(folder),
                           "--data", str(data), "--no-store", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_variant_that_crashes_litert_fails_alone(cnn_tflite: Path, tmp_path: Path) -> None:
    crash = _rewritten(cnn_tflite, tmp_path / "crash.tflite", _absent_weights)
    folder, data = _folder(tmp_path, cnn_tflite.read_bytes(), crash.read_bytes())
    r = _evaluate(folder, data)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])  # was -11: the CLI died
    rows = {v["scheme"]: v for v in json.loads(r.stdout)["variants"]}
    error = rows["int8"]["error"]
    assert str(folder / "int8.tflite") in error and "LiteRT" in error and "\n" not in error
    assert not rows["int8"]["gate"]["passed"] and rows["fp32"]["gate"]["passed"]


def test_a_reference_that_crashes_litert_is_refused(cnn_tflite: Path, tmp_path: Path) -> None:
    crash = _rewritten(cnn_tflite, tmp_path / "crash.tflite", _absent_weights)
    folder, data = _folder(tmp_path, crash.read_bytes(), cnn_tflite.read_bytes())
    r = _evaluate(folder, data)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    line = r.stderr.strip()
    assert "\n" not in line and str(folder / "fp32.tflite") in line and "LiteRT" in line


def test_a_variant_the_manifest_lists_but_the_folder_lacks_is_refused(
        cnn_tflite: Path, tmp_path: Path) -> None:
    """A manifest with no sha256 for a file that is gone: one line naming the file (it was
    a FileNotFoundError traceback while evaluate built that variant's error row)."""
    folder, data = _folder(tmp_path, cnn_tflite.read_bytes(), cnn_tflite.read_bytes())
    (folder / "int8.tflite").unlink()
    r = _evaluate(folder, data)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "lists int8.tflite, which is not in" in line and str(folder) in line


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "spawned worker"])
def test_preflight_goes_on_past_a_crash(cnn_tflite: Path, tmp_path: Path, fork: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of checking (a fork on Linux, a spawned worker elsewhere) say why for each
    bad file and carry on with the rest."""
    import quantlab.harness.quantize.preflight as pf

    monkeypatch.setattr(pf, "USE_FORK", fork)
    crash = _rewritten(cnn_tflite, tmp_path / "crash.tflite", _absent_weights)
    refused = _rewritten(cnn_tflite, tmp_path / "refused.tflite", _absent_input)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(cnn_tflite.read_bytes()[:1000])
    files = [str(p) for p in (crash, cnn_tflite, refused, truncated, crash, tmp_path / "no")]
    reasons = pf.preflight(files)
    assert set(reasons) == {str(crash), str(refused), str(truncated), str(tmp_path / "no")}
    assert reasons[str(crash)].startswith("LiteRT ")  # crashed with SIGSEGV … here
    assert reasons[str(refused)].startswith("LiteRT cannot run it (")
    assert "truncated or corrupt" in reasons[str(truncated)]
    assert "no such file" in reasons[str(tmp_path / "no")].lower()
    assert all("\n" not in why for why in reasons.values())
