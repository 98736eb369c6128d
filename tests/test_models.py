"""quantlab.harness.models: identifying model files and rejecting bad ones with a clear message."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _rewritten(model: Path, out: Path, change: Callable[[Any], None]) -> Path:
    """``model`` with ``change`` applied to its object tree (the schema's own packer)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model.read_bytes()), 0)
    change(tree)
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


def _set(attr: str, index: int, value: Any, op: int | None = 0,
         tensor: int | None = None) -> Callable[[Any], None]:
    def change(tree: Any) -> None:
        graph = tree.subgraphs[0]
        owner = graph if op is None and tensor is None else (
            graph.tensors[tensor] if tensor is not None else graph.operators[op])
        values = list(getattr(owner, attr))
        values[index] = value
        setattr(owner, attr, values)
    return change


def _set_scalar(value: Any, **where: Any) -> Callable[[Any], None]:
    def change(tree: Any) -> None:
        graph = tree.subgraphs[0]
        if "tensor" in where:
            setattr(graph.tensors[where["tensor"]], where["attr"], value)
        else:
            setattr(graph.operators[where["op"]], where["attr"], value)
    return change


# Each corruption LiteRT would trust: it read outside its arrays (a crash or garbage), or its
# Python API failed with a traceback (names). Found by benchmarks/fault_campaigns.py mutants.
CORRUPTIONS = {
    "operator code out of range": (_set_scalar(99, op=0, attr="opcodeIndex"),
                                   "operator 0: operator code 99 of"),
    "buffer out of range": (_set_scalar(10_000, tensor=1, attr="buffer"),
                            "tensor 1: buffer 10000 of"),
    "op input out of range": (_set("inputs", 0, 500), "operator 0: input tensor 500 of 14"),
    "op output marked optional": (_set("outputs", 0, -1),
                                  "operator 0: output tensor -1 of 14"),
    "graph input out of range": (_set("inputs", 0, -1, op=None),
                                 "subgraph 0: input tensor -1 of 14"),
    "negative dimension": (_set("shape", 1, -2, op=None, tensor=0),
                           "tensor 0: negative dimension in its shape"),
    "name not UTF-8": (_set_scalar(b"conv\xb2\xef", tensor=0, attr="name"),
                       "tensor 0: its name is not UTF-8"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_indices_refused_up_front(cnn_tflite: Path, tmp_path: Path, name: str) -> None:
    change, message = CORRUPTIONS[name]
    bad = _rewritten(cnn_tflite, tmp_path / "bad.tflite", change)
    with pytest.raises(ModelError, match="truncated or corrupt") as info:
        model_ref(bad)
    assert message in info.value.one_line() and "\n" not in info.value.one_line()
    assert str(bad) in info.value.one_line()


def test_optional_inputs_are_not_corruption(cnn_tflite: Path) -> None:
    """-1 marks an absent optional input (the converter leaves the dense layer's bias out
    this way): a valid model, identified as one."""
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(bytearray(cnn_tflite.read_bytes()), 0)
    assert any(-1 in list(op.inputs) for op in tree.subgraphs[0].operators)
    assert model_ref(cnn_tflite).format == "tflite"
