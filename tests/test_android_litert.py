"""LiteRT's benchmark_litert_model on Android: parser on recorded logs, command flags,
and litert-* delegate rows through a REAL adb server and a loopback phone."""

from __future__ import annotations

import json
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
from test_android_cli import cli

from quantlab.android_runner import provision
from quantlab.android_runner.litert_command import build_litert_command
from quantlab.android_runner.litert_parser import parse_any, parse_litert_output
from quantlab.android_runner.result_mapping import to_raw_result
from quantlab.harness.records import Job, ModelRef, Settings

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


def _import(tmp_path: Path, fixture: str, *args: str) -> dict[str, Any]:
    """``quantlab import`` of a recorded log, end to end: the stored result as --json."""
    out = cli(["import", str(FIX / fixture), "--device-name", "recorded", *args, "--json"],
              tmp_path)
    assert out.returncode == 0, out.stderr
    (r,) = json.loads(out.stdout)["results"]
    assert r["runner"]["name"] == "benchmark_litert_model"
    return dict(r)


@pytest.mark.parametrize(("fixture", "figures"), [
    # Arm's LiteRT + KleidiAI SME2 learning path (see SOURCES.md): the same fc_fp32.tflite,
    # --use_cpu=true --use_profiler=true --num_threads=1, with and without KleidiAI
    ("litert_cpu_profile_kleidiai_armlp.txt",
     {"init": 4.48, "first": 1.03, "warmup_avg": 0.47, "block_avg": 0.46, "mean": 0.464545,
      "median": 0.462, "count": 2112, "overall_mb": 11.51,
      "fc": ("Fully Connected (NC, PF32) GEMM", 0.382, 0.538), "reshape": 0.003,
      "registration": 0.014, "sync": 0.012, "allocate": "0.291 ms"}),
    ("litert_cpu_profile_xnnpack_armlp.txt",
     {"init": 4.49, "first": 1.93, "warmup_avg": 1.39, "block_avg": 1.38, "mean": 1.37964,
      "median": 1.373, "count": 1000, "overall_mb": 11.25,
      "fc": ("Fully Connected (NC, F32) GEMM", 1.269, 1.564), "reshape": 0.004,
      "registration": 0.018, "sync": 0.016, "allocate": "0.195 ms"}),
])
def test_recorded_op_table_imports(tmp_path: Path, fixture: str,
                                   figures: dict[str, Any]) -> None:
    """A real benchmark_litert_model log with its op table, through ``quantlab import``:
    init, first inference, mean and median (from the tool's measured-runs line), the op
    rows as printed; XNNPACK's own per-op rows are XNNPACK's, LiteRT's runtime events are
    not ops, and the initial AllocateTensors (times called 0) is not a per-run row."""
    f = figures
    r = _import(tmp_path, fixture)
    assert r["status"] == "ok" and r["delegate"] == "litert-cpu"
    assert (r["init_ms"], r["first_inference_ms"]) == (f["init"], f["first"])
    lat = r["latency_ms"]
    assert lat["mean"] == pytest.approx(f["mean"]) and lat["median"] == f["median"]
    assert lat["count"] == f["count"] and r["launches"][0]["median_ms"] == f["median"]
    assert r["peak_memory_mb"] == f["overall_mb"]
    assert r["runner"]["delegation"] == {"kernel": "TfLiteXNNPackDelegate", "nodes": 1,
                                         "total": 1, "partitions": 1}
    ops = [(o["kernel"], o["delegate"], o["avg_ms"], bool(o["detail"].get("runtime")))
           for o in r["ops"]]
    assert ops == [("LiteRT::Run[buffer registration]", None, f["registration"], True),
                   ("Static Reshape (NC)", "xnnpack", f["reshape"], False),
                   (f["fc"][0], "xnnpack", f["fc"][1], False),
                   ("LiteRT::Run[Buffer sync]", None, f["sync"], True)]
    assert r["ops"][2]["detail"]["first_ms"] == f["fc"][2]
    assert any("AllocateTensors (" + f["allocate"] + ")" in w for w in r["warnings"])
    # the results block's own figures, as printed, beside the measured-runs line's
    out = parse_any((FIX / fixture).read_text())
    assert (out.warmup_avg_ms, out.inference_avg_ms) == (f["warmup_avg"], f["block_avg"])
    from quantlab.harness.report.delegates import placement

    p = placement(to_raw_result("j", [out], "litert-cpu"), "litert-cpu")
    assert (p["ops_total"], p["ops_delegated"], p["fallback_ops"]) == (1, 1, [])


def test_recorded_results_block_imports_end_to_end(tmp_path: Path) -> None:
    """mlperf's GPU run (no op table, no median printed), imported with its delegate."""
    r = _import(tmp_path, "litert_gpu_results_mlperf1134.txt", "--delegate", "litert-gpu")
    assert r["status"] == "ok" and r["delegate"] == "litert-gpu"
    assert (r["init_ms"], r["first_inference_ms"]) == (23744.73, 7441.04)
    assert r["latency_ms"]["mean"] == 7430.2 and r["latency_ms"]["count"] == 10
    assert r["latency_ms"]["median"] is None and r["launches"][0]["median_ms"] is None
    assert r["ops"] == []


def test_windows_source_tags() -> None:
    """A Windows build tags lines ``[.\\litert/tools/benchmark_litert_model.h:57]`` (the
    form seen in a pasted Windows run; these two lines are composed from it)."""
    text = ("========== BENCHMARK RESULTS ==========\n"
            "INFO: [.\\litert/tools/benchmark_litert_model.h:57] Model initialization: 586.76 ms\n"
            "INFO: [.\\litert/tools/benchmark_litert_model.h:63] Inference (avg):      "
            "0.46 ms (2166 runs)\n")
    out = parse_litert_output(text)
    assert out.ok and (out.init_ms, out.inference_avg_ms) == (586.76, 0.46)


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
    from quantlab.harness.report.delegates import placement

    p = placement(raw, "litert-cpu")
    assert (p["ops_total"], p["ops_delegated"], p["partitions"]) == (6, 5, 2)
    assert p["fallback_ops"] == [{"index": 1, "op_type": "MEAN"}]


def test_litert_npu_uses_a_compiled_model_only_when_it_matches(
        phones: Any, cache: Path, model: ModelRef, tmp_path: Path) -> None:  # noqa: F811
    """A compiled model is used only when its record names this variant's sha256 and this
    host's compiler; else the job is skipped (or fails at run time) with the reason, and the
    uncompiled model is never pushed in its place. `compile --out` models are found too."""
    import dataclasses
    import hashlib

    from quantlab.agents.android import npu_compile

    qcom, _ = phones
    libs = tmp_path / "npu-libs"
    libs.mkdir()
    (libs / "libLiteRtDispatch_Qualcomm.so").write_bytes(b"dispatch")
    provision.provision_binary(elf_aarch64(tmp_path / "benchmark_litert_model"), "arm64-v8a",
                               libs, runner="benchmark_litert_model")
    ag = agent()
    q = by_id(ag.discover(), qcom.serial)
    job = _job(model, q.id, "litert-npu")
    beside = Path(model.path).parent / "npu" / "SM7250" / "m.tflite"
    beside.parent.mkdir(parents=True)
    beside.write_bytes(b"compiled from some other m.tflite")  # no record of its source
    ok, why = ag.supports(q, job)
    assert not ok and "no record of its source" in why and str(beside) in why
    # compiled from this variant (the record quantlab compile writes after the compiler ran)
    beside.write_bytes(b"compiled for SM7250 from m.tflite")
    npu_compile.record_compiled(Path(model.path), beside, "SM7250")
    assert ag.supports(q, job) == (True, "")
    raw = ag.run(q, job, lambda *a: None)  # the loopback phone has no NPU: the launch fails
    compiled_sha = hashlib.sha256(beside.read_bytes()).hexdigest()
    assert any(compiled_sha[:16] in p for p in qcom.pushed), qcom.pushed
    assert raw.runner["compiled_model"]["sha256"] == compiled_sha
    # the variant is re-made: the compiled model is stale, for the plan and for the run
    Path(model.path).write_bytes(Path(model.path).read_bytes() + b"requantized")
    new = dataclasses.replace(model, sha256=hashlib.sha256(
        Path(model.path).read_bytes()).hexdigest())
    stale = _job(new, q.id, "litert-npu")
    ok, why = ag.supports(q, stale)
    assert not ok and "compiled from a different source" in why and model.sha256[:12] in why
    pushed = len(qcom.pushed)
    raw = ag.run(q, stale, lambda *a: None)
    assert raw.status == "failed" and "compiled from a different source" in (raw.error or "")
    assert len(qcom.pushed) == pushed  # nothing pushed in its place
    # compiled with --out into another folder: found by the variant's sha256
    out = tmp_path / "elsewhere" / "m.tflite"
    out.parent.mkdir()
    out.write_bytes(b"compiled for SM7250 from the new m.tflite")
    npu_compile.record_compiled(Path(model.path), out, "SM7250")
    assert ag.supports(q, stale) == (True, "")
    # a record from another compiler version is refused
    record = npu_compile.record_path(out)
    data = json.loads(record.read_text())
    data["compiler"]["ai-edge-litert"] = "0.0.1"
    record.write_text(json.dumps(data))
    ok, why = ag.supports(q, stale)
    assert not ok and "compiled by ai-edge-litert 0.0.1" in why
