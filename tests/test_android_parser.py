"""benchmark_model output parser on real recorded outputs (tests/fixtures/android/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantlab.android_runner.parser import parse_output, strip_prefix
from quantlab.android_runner.result_mapping import profile_ops, to_raw_result

FIX = Path(__file__).parent / "fixtures" / "android"


def fixture(name: str) -> str:
    return (FIX / name).read_text()


def test_new_summary_with_phase_lines_and_peak_memory() -> None:
    out = parse_output(fixture("cpu_tf42507.txt"))
    assert out.ok and out.summary_layout == "new"
    assert out.init_ms == pytest.approx(0.855)
    assert out.first_inference_ms == pytest.approx(49.060)
    assert out.warmup_avg_ms == pytest.approx(34.8251)
    assert out.inference_avg_ms == pytest.approx(33.2094)
    assert out.warmup is not None and out.warmup.count == 15
    assert out.inference is not None and out.inference.count == 50
    assert out.inference.min_us == 32641 and out.inference.std_us == 450
    assert out.peak_memory_mb == pytest.approx(12.8672)
    assert out.memory_method and "peak memory footprint" in out.memory_method
    assert out.params["Num threads"] == "4"
    # the excerpt stops at the init Run Order header: a table with no rows, no run table
    assert [(t.section, t.title) for t in out.tables] == [("init", "Run Order")]
    assert out.run_table() is None


def test_info_prefixed_lines() -> None:
    out = parse_output(fixture("xnnpack_info_tf73862.txt"))
    assert out.ok and "info-prefix" in out.layouts
    assert out.inference_avg_ms == pytest.approx(13.5202)
    assert out.inference is not None and out.inference.count == 74
    assert out.params["Graph"] == "mobilenet_v1_1.0_224.tflite"


def test_old_summary_line_with_no_stats_label() -> None:
    out = parse_output(fixture("old_summary_yuenshome77.txt"))
    assert out.ok and out.summary_layout == "old"
    assert out.init_ms == pytest.approx(9.933)
    assert out.warmup_avg_ms == pytest.approx(76.6059)
    assert out.inference_avg_ms == pytest.approx(66.7676)
    assert out.inference is not None and out.inference.count == 15


def test_old_run_order_with_spaces_and_delegate_partition_row() -> None:
    out = parse_output(fixture("old_run_order_spaces_deepspeech2270.txt"))
    assert out.ok and "spaces" in out.layouts
    table = out.run_table()
    assert table is not None and [r.node_type for r in table.rows] == ["DELEGATE", "SPLIT", "ADD"]
    split = table.rows[1]
    assert split.start_ms == pytest.approx(21.287) and split.avg_ms == pytest.approx(0.013)
    assert split.pct == pytest.approx(0.056) and split.times_called == 1
    assert split.name.startswith("[cudnn_lstm/") and split.name.endswith("split:3]")
    ops, warnings = profile_ops(out, "nnapi")
    assert ops[0].delegate == "nnapi" and ops[0].detail["partition"] is True
    assert ops[0].op_type is None and ops[1].op_type == "SPLIT" and ops[1].delegate is None
    assert warnings and "stayed on the CPU" in warnings[0] and "SPLIT" in warnings[0]


def test_summary_by_node_type_split_on_tabs_despite_long_type() -> None:
    out = parse_output(fixture("summary_by_node_type_tf53138.txt"))
    table = out.tables[0]
    assert table.title == "Summary by node type"
    post = next(r for r in table.rows if r.node_type == "TFLite_Detection_PostProcess")
    assert post.count == 1 and post.avg_ms == pytest.approx(3.579)
    conv = table.rows[0]
    assert (conv.node_type, conv.count, conv.avg_ms, conv.times_called) == ("CONV_2D", 34,
                                                                           266.475, 34)
    # a table alone is not a benchmark: no summary line → failed, never partial success
    assert not out.ok and "no summary line" in (out.error or "")


def test_logcat_prefix_memory_delta_and_init_table_without_start_column() -> None:
    out = parse_output(fixture("logcat_nnapi_memory_delta_tf56301.txt"))
    assert "logcat" in out.layouts
    assert out.peak_memory_mb == pytest.approx(2.03516)
    assert out.memory_method and "delta" in out.memory_method
    init = out.tables[0]
    assert init.section == "init" and init.title == "Run Order"
    first = init.rows[0]
    assert first.node_type == "ModifyGraphWithDelegate" and first.start_ms is None
    assert first.first_ms == pytest.approx(54.571) and first.mem_kb == pytest.approx(1132.0)
    assert init.rows[1].times_called == 2


def test_strip_prefix_variants() -> None:
    assert strip_prefix("05-31 10:31:13.023 21767 21767 I tflite  : Use NNAPI: [1]") == (
        "Use NNAPI: [1]", "logcat")
    assert strip_prefix("INFO: count=3 avg=1") == ("count=3 avg=1", "info-prefix")
    assert strip_prefix("plain") == ("plain", None)


@pytest.mark.parametrize(("name", "needle"), [
    ("hexagon_not_created_tf53207.txt", "Could not create Hexagon delegate"),
    ("logcat_nnapi_not_applied_tf56301.txt", "will not be executed by the delegate"),
    ("qnn_zero_nodes_tf83344.txt", "0 nodes delegated out of 31"),
])
def test_delegate_not_applied_is_a_failure(name: str, needle: str) -> None:
    out = parse_output(fixture(name))
    assert not out.ok
    assert out.delegate_not_applied and needle in out.delegate_not_applied
    assert needle in (out.error or "")
    raw = to_raw_result("j1", [out], "hexagon")
    assert raw.status == "failed" and needle in (raw.error or "")


def test_truncated_run_is_failed_with_last_line() -> None:
    out = parse_output(fixture("nnapi_partial_tf43541.txt"))
    assert not out.ok
    assert "Running benchmark for at least 1 iterations" in (out.error or "")
    assert any("partially executed" in m for m in out.delegate_messages)


def test_replacing_nodes_line_is_a_delegation() -> None:
    out = parse_output(fixture("logcat_gpu_replacing_tf70664.txt"))
    assert [(d.kernel, d.nodes, d.total, d.partitions) for d in out.delegations] == [
        ("TfLiteGpuDelegateV2", 290, 290, 1)]


def test_tool_error_lines_fail_even_with_a_summary() -> None:
    text = fixture("gpu_full_delegation_tf43541.txt") + (
        "ERROR: Node number 557 (TfLiteHexagonDelegate) failed to invoke.\n")
    out = parse_output(text)
    assert not out.ok and "failed to invoke" in (out.error or "")


def test_csv_profile_file_in_stats_calculator_format() -> None:
    # No CSV file was found in a public thread; this is the layout written by
    # tensorflow/core/util/stats_calculator.cc with format_as_csv (commas in names → tabs).
    csv = (
        "Operator-wise Profiling Info for Regular Benchmark Runs:\n"
        "============================== Run Order ==============================\n"
        "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
        "CONV_2D, 1.5, 1.25, 50%, 50%, 0, 1, [conv1]\n"
        "TfLiteGpuDelegateV2, 1.1, 1, 40%, 90%, 0, 1, [partition\tof\tnodes]\n"
        "SOFTMAX, 0.3, 0.25, 10%, 100%, 0, 1, [prob]\n"
        "\n"
    )
    out = parse_output(fixture("gpu_full_delegation_tf43541.txt"), csv)
    assert out.ok and "csv" in out.layouts
    table = out.run_table()
    assert table is not None and len(table.rows) == 3
    assert table.rows[1].name == "[partition\tof\tnodes]"
    raw = to_raw_result("j", [out], "gpu")
    assert [o.kernel for o in raw.ops] == ["CONV_2D", "TfLiteGpuDelegateV2", "SOFTMAX"]
    assert raw.ops[1].delegate == "gpu" and raw.ops[0].delegate is None
    assert raw.ops_model_ms == pytest.approx(119.375)
    assert any("stayed on the CPU" in w for w in raw.warnings)


def test_memory_layouts_from_reference_lines() -> None:
    base = fixture("xnnpack_info_tf73862.txt")
    periodic = parse_output(base + "Peak memory footprint (MB): init=3.1 overall=9.5\n"
                            "Overall peak memory footprint (MB) via periodic monitoring: 12.25\n")
    assert periodic.peak_memory_mb == 12.25 and "periodic" in (periodic.memory_method or "")
    rss = parse_output(base + "[Init Phase] - Memory usage: max resident set size = 3.5 MB, "
                       "total malloc-ed size = 1.2 MB\n[Overall] - Memory usage: max resident "
                       "set size = 7.75 MB, total malloc-ed size = 2 MB\n")
    assert rss.peak_memory_mb == 7.75 and "resident" in (rss.memory_method or "")


def test_hexagon_profile_rows_are_cycles() -> None:
    profile = (
        "Operator-wise Profiling Info for Regular Benchmark Runs:\n"
        "============================== Run Order ==============================\n"
        "\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]\n"
        "\tSupernode_8x8p32to8\t1.000\t2.500\t60%\t60%\t0\t1\t[Supernode_8x8p32to8]\n"
        "\tSOFTMAX\t0.100\t0.100\t40%\t100%\t0\t1\t[prob]\n\n")
    text = fixture("xnnpack_info_tf73862.txt").replace("INFO: Graph:", "Hexagon profiling: [1]\n"
                                                       "INFO: Graph:")
    out = parse_output(text, profile)
    ops, _ = profile_ops(out, "hexagon")
    assert ops[0].unit == "cycles" and ops[0].avg_ms == pytest.approx(2500)
    assert ops[0].delegate == "hexagon"
    assert ops[1].unit == "ms" and ops[1].delegate is None


def test_raw_result_pools_repeats() -> None:
    a = parse_output(fixture("cpu_tf42507.txt"))
    b = parse_output(fixture("xnnpack_info_tf73862.txt"))
    raw = to_raw_result("job", [a, b], "cpu")
    assert raw.status == "ok" and raw.samples_ms == ()
    agg = raw.aggregates_ms
    assert agg["count"] == 124 and agg["repeats"] == 2
    assert agg["avg"] == pytest.approx((33209.4 * 50 + 13520.2 * 74) / 124 / 1000)
    assert agg["min"] == pytest.approx(13.105) and agg["max"] == pytest.approx(34.005)
    # pooled std includes the between-repeat spread, far above either repeat's own std
    assert agg["std"] > 5
    assert raw.init_ms == pytest.approx((0.855 + 12.75) / 2)
    assert raw.peak_memory_mb == pytest.approx(12.8672)


def test_one_failed_repeat_fails_the_result() -> None:
    good = parse_output(fixture("xnnpack_info_tf73862.txt"))
    bad = parse_output(fixture("nnapi_partial_tf43541.txt"))
    raw = to_raw_result("job", [good, bad], "nnapi")
    assert raw.status == "failed" and (raw.error or "").startswith("repeat 2: ")


def test_litert_count_line_with_percentiles_gives_a_tool_median() -> None:
    """benchmark_litert_model prints p5/median/p95 on its count= line: the median is the
    tool's own, kept as such (a summary, not per-iteration samples)."""
    from quantlab.harness.stats import SUMMARY, summarize

    text = ("count=20 first=5120 curr=4801 min=4702 max=5120 avg=4850.5 std=98 p5=4710 "
            "median=4833 p95=5010\n"
            "Inference timings in us: Init: 91000, First inference: 5120, "
            "Warmup (avg): 4990, Inference (avg): 4850.5\n")
    out = parse_output(text)
    assert out.ok and out.inference is not None and out.inference.median_us == 4833
    raw = to_raw_result("j", [out])
    (launch,) = raw.launches
    assert launch.median_ms == 4.833 and launch.p5_ms == 4.71 and launch.p95_ms == 5.01
    s = summarize(raw)
    assert s is not None and s.method == SUMMARY and s.statistic == "median"
    assert s.value == 4.833 and s.mean == 4.8505
