"""LiteRT's benchmark_litert_model on Android: parser on recorded logs, command flags,
and litert-* delegate rows through a REAL adb server and a loopback phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_android_adb import (  # noqa: F401  (pytest fixtures)
    _adb_installed,
    adb_port,
    agent,
    by_id,
    cache,
    elf_aarch64,
    model,
    phones,
)

from android_runner import provision
from android_runner.litert_command import build_litert_command
from android_runner.litert_parser import parse_any, parse_litert_output
from android_runner.result_mapping import to_raw_result
from harness.records import Job, ModelRef, Settings

FIX = Path(__file__).parent / "fixtures" / "android"


def test_recorded_results_block_imports() -> None:
    """A real log (mlcommons/mobile_app_open#1134): init, first inference, mean, min/max/std."""
    out = parse_any((FIX / "litert_gpu_results_mlperf1134.txt").read_text())
    assert out.ok and out.summary_layout == "litert"
    assert (out.init_ms, out.first_inference_ms, out.warmup_avg_ms) == (23744.73, 7441.04,
                                                                         7441.04)
    assert out.inference_avg_ms == 7430.2 and out.inference is not None
    assert (out.inference.count, out.inference.min_us, out.inference.max_us) == (
        10, 7416400.0, 7448860.0)
    assert out.peak_memory_mb == 6391.74 and "overall memory footprint" in str(out.memory_method)
    raw = to_raw_result("j", [out], "litert-gpu")
    assert raw.status == "ok" and raw.launches[0].mean_ms == 7430.2
    assert raw.launches[0].median_ms is None  # the tool printed no median here: none invented


def test_wrapped_delegation_line_and_no_results_block() -> None:
    out = parse_litert_output((FIX / "litert_cl_replacing_litert9453.txt").read_text())
    assert not out.ok and "no results block" in str(out.error)
    d = out.delegations[0]
    assert (d.kernel, d.nodes, d.total, d.partitions) == ("LITERT_CL", 366, 366, 1)


def test_median_and_op_table() -> None:
    """The synthetic fixture (see SOURCES.md): median from the count line, the op table."""
    out = parse_any((FIX / "litert_synthetic_cpu_profile.txt").read_text())
    raw = to_raw_result("j", [out], "litert-cpu")
    assert raw.launches[0].median_ms == pytest.approx(1.221)
    assert raw.first_inference_ms == 3.81 and raw.init_ms == 41.2
    assert [o.kernel for o in raw.ops] == ["TfLiteXNNPackDelegate", "MEAN",
                                           "TfLiteXNNPackDelegate"]
    assert raw.ops[1].delegate is None and raw.ops[0].detail["partition"]
    assert raw.runner["delegation"] == {"kernel": "TfLiteXNNPackDelegate", "nodes": 5,
                                        "total": 6, "partitions": 2}


def _job(ref: ModelRef, serial: str, delegate: str, **settings: Any) -> Job:
    return Job(ref, serial, "android", delegate, 2,
               Settings(warmup=1, iterations=5, repeats=1, timeout_s=60, **settings))


def test_litert_command_flags(model: ModelRef) -> None:  # noqa: F811
    cpu = build_litert_command(_job(model, "x", "litert-cpu"), "/m.tflite", profile=True)
    assert cpu.argv[0].endswith("/benchmark_litert_model")
    assert {"--use_cpu=true", "--use_gpu=false", "--num_threads=2", "--use_profiler=true",
            "--graph=/m.tflite"} <= set(cpu.argv)
    npu = build_litert_command(_job(model, "x", "litert-npu"), "/m.tflite")
    assert "--use_npu=true" in npu.argv and "ADSP_LIBRARY_PATH" in npu.env


def test_litert_rows_through_the_adb_server(phones: Any, cache: Path,  # noqa: F811
                                            model: ModelRef,  # noqa: F811
                                            tmp_path: Path) -> None:
    qcom, _ = phones
    ag = agent()
    q = by_id(ag.discover(), qcom.serial)
    assert {"litert-cpu", "litert-gpu", "litert-npu"} <= set(q.delegates)
    ok, why = ag.supports(q, _job(model, q.id, "litert-cpu"))
    assert not ok and "no benchmark_litert_model provisioned" in why
    provision.provision_binary(elf_aarch64(tmp_path / "benchmark_litert_model"), "arm64-v8a",
                               runner="benchmark_litert_model")
    ok, why = ag.supports(q, _job(model, q.id, "litert-npu"))
    assert not ok and "dispatch library" in why
    ok, why = ag.supports(q, _job(model, q.id, "litert-cpu", inputs="/x/in.npz"))
    assert not ok and "cannot load input files" in why
    raw = ag.run(q, _job(model, q.id, "litert-cpu", profile_ops=True), lambda *a: None)
    assert raw.status == "ok", raw.error
    assert "writes no outputs" in raw.numerics["error"]  # said, not silently skipped
    assert raw.runner["name"] == "benchmark_litert_model"
    assert raw.init_ms == 41.2 and raw.launches[0].median_ms == pytest.approx(1.221)
    assert raw.runner["delegation"]["nodes"] == 5 and raw.ops
    call = qcom.benchmark_calls[-1]
    assert "--use_cpu=true" in call and "--use_profiler=true" in call
    from harness.report.delegates import placement

    p = placement(raw, "litert-cpu")
    assert (p["ops_total"], p["ops_delegated"], p["partitions"]) == (6, 5, 2)
    assert p["fallback_ops"] == [{"index": 1, "op_type": "MEAN"}]
