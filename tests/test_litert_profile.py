"""agents.litert_profile and agents.op_types: the LiteRT C API per-op profiler."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents import litert_profile
from agents.litert_profile import (
    EVENT_OPERATOR,
    ProfiledOp,
    ProfileUnavailable,
    find_library,
    profile_model,
)
from agents.op_types import label_ops


@pytest.mark.parametrize("builtin", [False, True])
def test_profile_coverage(cnn_tflite: Path, builtin: bool) -> None:
    prof = profile_model(str(cnn_tflite), threads=1, builtin_kernels=builtin, warmup=5, runs=30)
    assert prof.runs >= 30
    assert prof.ops
    coverage = sum(op.avg_ms for op in prof.ops) / prof.invoke_ms
    # On an idle machine the ops cover 0.95-0.99 of the invoke time; on this 0.3 ms model a
    # loaded machine (a busy loop on one core) pushed it to 0.849 once. The product's rule
    # (an "(unattributed)" row below 0.85) is tested on fixed numbers in test_delegates;
    # here only what holds under load: the ops account for most of the time, never more.
    assert 0.6 <= coverage <= 1.05, coverage
    if builtin:
        assert [op.kernel for op in prof.ops] == [
            "CONV_2D",
            "MAX_POOL_2D",
            "CONV_2D",
            "CONV_2D",
            "MEAN",
            "FULLY_CONNECTED",
        ]
        assert [op.node_index for op in prof.ops] == list(range(6))
    else:
        assert prof.ops[0].kernel.startswith("Convolution")


def test_version_mismatch(monkeypatch: pytest.MonkeyPatch, cnn_tflite: Path) -> None:
    monkeypatch.setattr(litert_profile, "VERIFIED_VERSIONS", ("0.0.1",))
    with pytest.raises(ProfileUnavailable, match=r"verified only with ai-edge-litert 0\.0\.1"):
        profile_model(str(cnn_tflite))


def test_find_library_by_platform(tmp_path: Path) -> None:
    (tmp_path / "libLiteRt.dylib").write_bytes(b"")  # the name in the macOS wheel
    assert find_library(str(tmp_path), "darwin") == str(tmp_path / "libLiteRt.dylib")
    with pytest.raises(ProfileUnavailable, match=r"libLiteRt\.so not found in "):
        find_library(str(tmp_path), "linux")
    with pytest.raises(ProfileUnavailable, match=r"no LiteRT C library known for platform 'win32'"):
        find_library(str(tmp_path), "win32")
    assert find_library(str(tmp_path / "libLiteRt.dylib"), "linux") == str(
        tmp_path / "libLiteRt.dylib"
    )  # QUANTLAB_LITERT_LIB may name the file itself


def test_library_that_will_not_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    cnn_tflite: Path) -> None:
    lib = tmp_path / "libLiteRt.broken"
    lib.write_bytes(b"not a shared library")
    monkeypatch.setenv(litert_profile.LIBRARY_ENV, str(lib))
    with pytest.raises(ProfileUnavailable, match=r"cannot load the LiteRT C library .*broken"):
        profile_model(str(cnn_tflite))


def test_label_xnnpack_by_order() -> None:
    ops = tuple(
        ProfiledOp(i, k, 8, None, 0.1)
        for i, k in enumerate(
            [
                "Convolution (NHWC, F32) IGEMM",
                "Max Pooling (NHWC, F32)",
                "Static Reshape (NC)",
                "Fully Connected (NC, F32) GEMM",
            ]
        )
    )
    rows = label_ops(ops, ["CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "DELEGATE"])
    assert [r["op_type"] for r in rows] == ["CONV_2D", "MAX_POOL_2D", None, "FULLY_CONNECTED"]
    assert [r["node_index"] for r in rows] == [0, 1, None, 2]
    assert {r["delegate"] for r in rows} == {"XNNPACK"}


def test_label_builtin_by_node_index() -> None:
    ops = (
        ProfiledOp(0, "MEAN", EVENT_OPERATOR, 1, 0.2),
        ProfiledOp(1, "ADD", EVENT_OPERATOR, 0, 0.1),
    )
    rows = label_ops(ops, ["ADD", "MEAN"])
    assert [(r["op_type"], r["delegate"]) for r in rows] == [("MEAN", None), ("ADD", None)]
