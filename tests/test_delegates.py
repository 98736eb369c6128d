"""Comparing delegates on the real simulator: the delegate matrix, the op-level diff,
numerics per delegate, per-op profiles that add up, and the HTML section."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantlab.agents.litert.runner.op_coverage import account_for_invoke
from quantlab.harness.numerics import compare_outputs, jsonable, verdict

ROOT = Path(__file__).resolve().parent.parent


def _quantlab(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "quantlab", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def sim_run(tflite_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Any]:
    """One real simulator run: cnn_float with xnnpack and cpu, per-op profile."""
    results = tmp_path_factory.mktemp("delegates")
    proc = _quantlab("bench", str(tflite_models["cnn"]), "--device", "sim",
                     "--delegate", "xnnpack,cpu", "--profile-ops", "--repeats", "2",
                     "--iterations", "30", "--json", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    rows = _quantlab("delegates", "--json", "--results", str(results))
    assert rows.returncode == 0, rows.stderr
    return {"results": results, "bench": json.loads(proc.stdout),
            "rows": json.loads(rows.stdout)["rows"]}


def test_delegate_rows_on_the_simulator(sim_run: dict[str, Any]) -> None:
    by = {r["delegate"]: r for r in sim_run["rows"]}
    x, c = by["xnnpack"], by["cpu"]
    assert x["ops_delegated"] > 0 and x["ops_delegated"] == x["ops_total"] == 6
    assert x["partitions"] == 1 and x["fallback_ops"] == []
    assert c["ops_delegated"] == 0 and c["partitions"] == 0 and c["ops_total"] == 6
    assert x["speedup_vs_cpu"] > 1 and c["speedup_vs_cpu"] == pytest.approx(1.0)
    for r in (x, c):
        assert r["latency"]["statistic"] == "median" and r["latency"]["method"] == "per-iteration"
        assert r["init_ms"] > 0
        assert r["numerics"]["cosine"] > 0.99
        assert r["numerics"]["top1_agreement"] == 1.0  # the CNN's output is a class vector


def test_diff_cpu_vs_xnnpack(sim_run: dict[str, Any]) -> None:
    jobs = {r["delegate"]: r["job_id"] for r in sim_run["rows"]}
    proc = _quantlab("diff", jobs["cpu"], jobs["xnnpack"][:10], "--json",
                     "--results", str(sim_run["results"]))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    moved = {(c["index"], c["op_type"], c["a"], c["b"]) for c in d["placement_changes"]}
    assert (0, "CONV_2D", "CPU", "XNNPACK") in moved and len(moved) == 6
    conv = next(o for o in d["ops"] if o["op_type"] == "CONV_2D")
    assert conv["a_ms"] > conv["b_ms"] > 0 and conv["delta_ms"] < 0
    assert 0 < conv["a_share"] <= 1
    assert {o["index"] for o in d["per_op"]} >= {0, 2, 3}
    assert d["b"]["partitions"][0]["delegate"] == "XNNPACK"
    human = _quantlab("diff", jobs["cpu"], jobs["xnnpack"], "--results",
                      str(sim_run["results"]))
    assert human.returncode == 0 and "Placement changes (6)" in human.stdout


def test_diff_unknown_job_is_a_user_error(sim_run: dict[str, Any]) -> None:
    proc = _quantlab("diff", "ffffffff", "eeeeeeee", "--results", str(sim_run["results"]))
    assert proc.returncode == 2 and "not in the store" in proc.stderr


def test_profile_rows_add_up(sim_run: dict[str, Any]) -> None:
    for r in sim_run["bench"]["results"]:
        share = r["ops_sum_ms"] / r["ops_model_ms"]
        unattributed = [o for o in r["ops"] if o["kernel"] == "(unattributed)"]
        assert 0.85 <= share <= 1.05 or unattributed


def test_html_report_has_the_delegate_matrix(sim_run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    proc = _quantlab("report", "--html", str(out), "--results", str(sim_run["results"]))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    section = text.split('data-section="delegates"')[1].split("</section>")[0]
    assert "6 of 6 ops delegated in 1 partition(s)" in section  # the placement bar
    assert "cosine" in section and "×" in section


def test_unattributed_share_becomes_its_own_row() -> None:
    rows = [{"index": 0, "kernel": "CONV_2D", "op_type": "CONV_2D", "delegate": None,
             "node_index": 0, "avg_ms": 0.3},
            {"index": 1, "kernel": "WHILE", "op_type": "WHILE", "delegate": None,
             "node_index": 1, "avg_ms": 0.5},
            {"index": 2, "kernel": "ADD", "op_type": "ADD", "delegate": None,
             "node_index": None, "avg_ms": 0.1, "detail": {"subgraph": 2}}]
    out, note = account_for_invoke(rows, 1.0)
    assert out[1]["unit"] == "ms-inclusive"  # its subgraph's ops are rows of their own
    assert out[-1]["kernel"] == "(unattributed)" and out[-1]["avg_ms"] == pytest.approx(0.6)
    assert "reason" in out[-1]["detail"] and note and "40%" in note
    # a CALL_ONCE after its first run executes nothing: it keeps its own time
    once = [{**rows[0], "avg_ms": 0.9}, {"index": 1, "kernel": "CALL_ONCE", "delegate": None,
                                         "op_type": "CALL_ONCE", "node_index": 1,
                                         "avg_ms": 0.001}]
    out, note = account_for_invoke(once, 1.0)
    assert out[1].get("unit", "ms") == "ms" and note is None
    # what the profile measured of the missing time is named, with its figures
    out, note = account_for_invoke(
        [{**rows[0], "avg_ms": 0.5}], 1.0,
        {"profiler_overhead_ms": 0.3, "memory_reads_per_invoke": 1.0, "event_cost_ms": 0.3,
         "event_cost_source": "gap before the first event inside an Invoke",
         "between_ops_ms": 0.05, "untimed_kernels": 2, "delegate_kernels": 5})
    row = out[-1]["detail"]
    assert row["profiler_overhead_ms"] == 0.3 and row["between_ops_ms"] == 0.05
    assert "0.3000 ms is the profiler's own time" in row["reason"]
    assert "1 read per Invoke" in row["reason"] and "2 of 5 XNNPACK kernels" in row["reason"]
    assert row["ops_share_of_invoke_without_profiler"] == pytest.approx(0.5 / 0.7, abs=1e-4)
    assert note and "30% of Invoke being the profiler's own time" in note
    ok, note = account_for_invoke([{**rows[0], "avg_ms": 0.95}], 1.0)
    assert len(ok) == 1 and note is None


def test_numerics_figures() -> None:
    ref = np.array([[0.1, 0.7, 0.2]])
    same = compare_outputs([ref], [ref.copy()])
    assert same["cosine"] == pytest.approx(1.0) and math.isinf(same["sqnr_db"])
    assert jsonable(same)["sqnr_db"] == "inf"
    noisy = compare_outputs({"y": ref}, {"y": ref + np.array([[0.01, -0.01, 0.0]])})
    assert 30 < noisy["sqnr_db"] < 40 and noisy["max_abs"] == pytest.approx(0.01)
    assert noisy["top1_agreement"] == 1.0
    flipped = compare_outputs([ref], [np.roll(ref, 1, axis=1)])
    assert flipped["top1_agreement"] == 0.0
    assert verdict(noisy)[0] is True and verdict({"cosine": 0.5})[0] is False
    assert verdict({})[0] is None
    assert "error" in compare_outputs([ref], [np.zeros((2, 3))])


def test_post_processed_detections_are_compared_in_matched_order() -> None:
    """TFLite_Detection_PostProcess outputs rows by score rank: two detections whose scores
    swap (a delegate's rounding) are the same detections, not wrong boxes. Matched by class and
    overlap they compare as equal; boxes that moved still count, and a delegate that returns
    zeros still fails."""
    from quantlab.harness.numerics import ALIGNED, align_detections

    boxes = np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0.0, 0.6, 0.3, 0.9],
                       [0.0, 0.0, 0.0, 0.0]]])
    ref = {"boxes": boxes, "classes": np.array([[2.0, 0.0, 1.0, 0.0]]),
           "scores": np.array([[0.81, 0.80, 0.3, 0.0]]), "count": np.array([3.0])}
    swapped = {"boxes": boxes[:, [1, 0, 2, 3]], "classes": ref["classes"][:, [1, 0, 2, 3]],
               "scores": np.array([[0.81, 0.80, 0.3, 0.0]]), "count": np.array([3.0])}
    plain = compare_outputs([ref[k] for k in ref], [swapped[k] for k in ref])  # by position
    assert plain["cosine"] < 0.8 and "aligned" not in plain
    matched = compare_outputs(ref, swapped)
    assert matched["aligned"] == ALIGNED
    assert matched["outputs"]["boxes"]["cosine"] == pytest.approx(1.0)
    assert matched["outputs"]["classes"]["cosine"] == pytest.approx(1.0)
    aligned = align_detections(ref, swapped)
    assert aligned is not None and aligned["boxes"].tolist() == boxes.tolist()
    moved = dict(swapped, boxes=swapped["boxes"] + 0.05)
    assert 0.9 < compare_outputs(ref, moved)["outputs"]["boxes"]["cosine"] < 1.0
    zeros = {k: np.zeros_like(v) for k, v in ref.items()}
    assert verdict(compare_outputs(ref, zeros))[0] is False
    assert align_detections({"y": boxes}, {"y": boxes}) is None  # not detections: as before


def test_the_numerics_gate_judges_the_delegate_not_the_quantization() -> None:
    """An int8 variant's outputs differ from the float model's by its quantization, which the
    accuracy gate judges; the numerics gate judges what the delegate changed against the
    variant itself on the host, and says both figures."""
    ok, why = verdict({"cosine": 0.85, "delegate_only": {"cosine": 0.9999}})
    assert ok is True and why == ("cosine 0.9999 ≥ 0.99 vs this variant on the host (vs the "
                                  "float model 0.8500, quantization included)")
    ok, why = verdict({"cosine": 0.995, "delegate_only": {"cosine": 0.2}})
    assert ok is False and why.startswith("cosine 0.2000 vs this variant on the host is below")
    assert verdict({"cosine": 0.995, "delegate_only": {"error": "shape (3,) differs"}})[0] \
        is False
    assert verdict({"cosine": 0.5})[0] is False  # no variant on the host: the float model
    assert verdict({"cosine": 0.5, "delegate_only": None})[0] is False


def test_compile_names_why_it_cannot(tflite_models: dict[str, Path]) -> None:
    from quantlab.agents.android.npu_compile import sdk_missing_reason

    reason = sdk_missing_reason("SM8650")
    proc = _quantlab("compile", str(tflite_models["int8"]), "--target", "SM8650")
    if reason is None:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2 and reason.split(" (")[0] in proc.stderr
    bad = _quantlab("compile", str(tflite_models["int8"]), "--target", "EXYNOS2100")
    assert bad.returncode == 2 and "no NPU compiler known" in bad.stderr


def test_compile_for_a_real_npu(tflite_models: dict[str, Path], tmp_path: Path) -> None:
    from quantlab.agents.android.npu_compile import compile_for_soc, sdk_missing_reason

    reason = sdk_missing_reason("SM8650")
    if reason:
        pytest.skip(f"Qualcomm AOT compile not possible here: {reason}")
    out = compile_for_soc(str(tflite_models["int8"]), "SM8650", str(tmp_path))
    assert Path(out["path"]).stat().st_size > 0


def test_gate_per_delegate_verdicts() -> None:
    """Every (variant, device, delegate) gets pass, FAIL or no verdict with the reason."""
    from types import SimpleNamespace as NS

    from quantlab.harness.delegate_gate import per_delegate

    def entry(sha: str, delegate: str, numerics: dict[str, Any]) -> Any:
        job = NS(model=NS(sha256=sha), device_id="phone", delegate=delegate, job_id=delegate)
        return NS(job=job, status="ok", raw=NS(numerics=numerics))

    good = {"cosine": 0.9999, "sqnr_db": 40.0, "max_abs": 0.01, "top1_agreement": 1.0,
            "computed_by": "device (benchmark_model --output_filepath)"}
    wrong = {**good, "cosine": 0.2}
    # int8's own error against float, yet the delegate computes what int8 does on the host
    quantized = {**good, "cosine": 0.9, "delegate_only": {"cosine": 0.99995, "sqnr_db": 50}}
    record = NS(run=NS(run_id="r1"), entries=(
        entry("a", "xnnpack", good), entry("a", "gpu", wrong), entry("a", "npu", quantized),
        entry("a", "litert-gpu", {"error": "no outputs", "unchecked": True}),
        entry("b", "xnnpack", good), entry("a", "nnapi", {})))
    report = {"variants": [
        {"scheme": "int8", "path": "/v/int8.tflite", "sha256": "a", "gate": {"passed": True}},
        {"scheme": "fp16", "path": "/v/fp16.tflite", "sha256": "b", "gate": {"passed": False}},
        {"scheme": "fp32", "path": "/v/fp32.tflite", "sha256": "c", "gate": {"passed": True}}]}
    out = per_delegate(report, [record])
    by = {(r["scheme"], r["delegate"]): r for r in out["rows"]}
    assert by[("int8", "xnnpack")]["passed"] is True
    assert by[("int8", "xnnpack")]["numerics_delegate_only"] is None
    npu = by[("int8", "npu")]
    assert npu["passed"] is True and npu["numerics"]["cosine"] == 0.9
    assert npu["numerics_delegate_only"]["cosine"] == 0.99995 and "0.9000" in npu["why"]
    assert by[("int8", "gpu")]["passed"] is False and "below 0.99" in by[("int8", "gpu")]["why"]
    assert by[("int8", "litert-gpu")]["passed"] is None
    assert "not checked: no outputs" in by[("int8", "litert-gpu")]["why"]
    nnapi = by[("int8", "nnapi")]
    assert nnapi["passed"] is None and "not measured" in nnapi["why"]
    assert by[("fp16", "xnnpack")]["passed"] is False  # the host accuracy gate failed
    assert out["failed"] == ["int8 · phone · gpu", "fp16 · phone · xnnpack"]
    assert out["not_benchmarked"] == ["fp32"]
