"""quantlab.harness.models: identifying model files and rejecting bad ones with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from quantlab.harness.errors import ModelError, UserError
from quantlab.harness.models import model_ref


def test_tflite_ref(cnn_tflite: Path) -> None:
    ref = model_ref(cnn_tflite)
    assert ref.format == "tflite"
    assert ref.size_bytes == cnn_tflite.stat().st_size
    assert len(ref.sha256) == 64
    assert model_ref(str(cnn_tflite)).sha256 == ref.sha256


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file") as info:
        model_ref(tmp_path / "nope.tflite")
    assert "nope.tflite" in str(info.value)
    assert isinstance(info.value, UserError)


def test_not_a_flatbuffer(tflite_models: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        model_ref(tflite_models["not_flatbuffer"])


def test_truncated(tflite_models: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="truncated or corrupt"):
        model_ref(tflite_models["truncated"])


@pytest.mark.parametrize("keep", [12, 100, 1000, 5000])
def test_truncated_at_many_lengths(cnn_tflite: Path, tmp_path: Path, keep: int) -> None:
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(cnn_tflite.read_bytes()[:keep])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        model_ref(cut)


def test_mlpackage_dir_hash(tmp_path: Path) -> None:
    pkg = tmp_path / "m.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    (pkg / "Data" / "w.bin").write_bytes(b"abc")
    ref = model_ref(pkg)
    assert (ref.format, ref.size_bytes) == ("mlpackage", 5)
    (pkg / "Data" / "w.bin").write_bytes(b"abd")
    assert model_ref(pkg).sha256 != ref.sha256


def test_mlmodel(tmp_path: Path) -> None:
    f = tmp_path / "m.mlmodel"
    f.write_bytes(b"\x00" * 10)
    assert model_ref(f).format == "mlmodel"


def test_import_is_light() -> None:
    code = (
        "import sys, harness.models; "
        "print(any(m in sys.modules for m in ('tensorflow', 'ai_edge_litert')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
