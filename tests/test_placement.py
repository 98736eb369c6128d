"""Where a delegate put the graph, judged: the delegated share in the delegate matrix, Core ML's
compute plan read like an Android fallback, the runtime's stated reasons for ops it refused,
and the placement gate (bench --min-delegated / --no-fallback, a plan file's [gate])."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from quantize_fixtures import quantlab
from tflite_build import chain_model

from quantlab.harness.records import Job, ModelRef, RawResult, Settings
from quantlab.harness.report.delegates import placement
from quantlab.ios_runner import codec

RUNNER = Path(codec.__file__).parent


def _ios_job(delegate: str) -> Job:
    model = ModelRef(path="/m/x.mlpackage", sha256="c" * 64, size_bytes=10, format="mlpackage")
    return Job(model=model, device_id="u", platform="ios", delegate=delegate, threads=1,
               settings=Settings())


def _coreml_result(delegate: str) -> RawResult:
    data: dict[str, Any] = json.loads((RUNNER / "fixtures" / "result_coreml.json").read_text())
    job = _ios_job(delegate)
    data["job_id"] = job.job_id
    return codec.parse_result(data, job)


def test_an_op_core_ml_keeps_off_the_neural_engine_is_a_fallback() -> None:
    """The runner's compute plan prefers the CPU for reduce_mean, which the Neural Engine cannot
    run: under coreml-ane it is a fallback op with that reason, like an Android fallback. Before,
    every op of the plan counted as delegated (its preferred device was taken for a delegate)."""
    p = placement(_coreml_result("coreml-ane"), "coreml-ane")
    assert (p["ops_total"], p["ops_delegated"], p["partitions"]) == (3, 2, 1)
    assert p["delegated_share"] == 2 / 3
    (fb,) = p["fallback_ops"]
    assert (fb["index"], fb["op_type"]) == (2, "ios17.reduce_mean")
    assert fb["reason"] == "cannot run on the Neural Engine (supported: cpu, gpu)"
    assert p["placement_source"].startswith("MLComputePlan (anticipated")
    # coreml-all counts the GPU too; coreml-cpu is the CPU baseline: nothing delegated
    p = placement(_coreml_result("coreml-all"), "coreml-all")
    assert p["ops_delegated"] == 2 and p["fallback_ops"][0]["reason"].startswith(
        "Core ML prefers the CPU (supported: cpu, gpu)")
    p = placement(_coreml_result("coreml-cpu"), "coreml-cpu")
    assert (p["ops_total"], p["ops_delegated"], p["delegated_share"]) == (3, 0, 0.0)


# ------------------------------------------------------------------ the placement gate (bench)


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny float models: one XNNPACK takes whole, one with SIGN, which it leaves on the
    CPU (2 of 3 ops delegated, in two partitions)."""
    d = tmp_path_factory.mktemp("chains")
    return {"whole": chain_model(d / "whole.tflite", [("ADD", 1.0), ("MUL", 2.0), ("ADD", 1.0)]),
            "sign": chain_model(d / "sign.tflite", [("ADD", 1.0), ("SIGN", None), ("ADD", 1.0)])}


def _bench(model: Path, results: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return quantlab("bench", str(model), "--device", "sim", "--delegate", "xnnpack",
                    "--repeats", "1", "--iterations", "3", "--warmup", "1",
                    "--results", str(results), *extra)


def test_min_delegated_fails_a_job_whose_delegate_left_ops_on_the_cpu(
        chains: dict[str, Path], tmp_path: Path) -> None:
    """bench --min-delegated 0.9: XNNPACK took 2 of 3 ops (SIGN stayed on the CPU), so bench
    exits 1 with the op named; before, the option did not exist (exit 2) and bench passed."""
    res = tmp_path / "r"
    proc = _bench(chains["sign"], res, "--min-delegated", "0.9", "--json")
    assert proc.returncode == 1, proc.stderr
    gate = json.loads(proc.stdout)["placement_gate"]
    (v,) = gate["verdicts"]
    assert v["passed"] is False and v["delegated_share"] == pytest.approx(2 / 3)
    assert "xnnpack took 2 of 3 ops (67%) < 90%" in v["why"] and "SIGN#1" in v["why"]
    assert [(o["index"], o["op_type"]) for o in v["fallback_ops"]] == [(1, "SIGN")]
    # the terminal names it too; the measurement is stored all the same
    human = _bench(chains["sign"], res, "--no-fallback")
    assert human.returncode == 1
    assert "placement failed" in human.stderr and "SIGN#1" in human.stderr
    rows = quantlab("delegates", "--json", "--results", str(res))
    assert rows.returncode == 0, rows.stderr
    shares = [r["delegated_share"] for r in json.loads(rows.stdout)["rows"]]
    assert shares == [pytest.approx(2 / 3)]  # the latest run's job


def test_a_fully_delegated_model_passes_and_the_plan_file_gate_applies(
        chains: dict[str, Path], tmp_path: Path) -> None:
    """The same bound passes a model XNNPACK takes whole; a plan file's [gate] min_delegated
    (without accuracy data) gates like the option."""
    ok = _bench(chains["whole"], tmp_path / "a", "--min-delegated", "0.9", "--no-fallback",
                "--json")
    assert ok.returncode == 0, ok.stderr
    (v,) = json.loads(ok.stdout)["placement_gate"]["verdicts"]
    assert v["passed"] is True and v["delegated_share"] == 1.0
    plan = tmp_path / "plan.toml"
    plan.write_text(f'models = ["{chains["sign"]}"]\ndevices = ["sim"]\ndelegates = ["xnnpack"]\n'
                    '[measure]\nrepeats = 1\niterations = 3\nwarmup = 1\n'
                    '[gate]\nmin_delegated = 0.75\n')
    shown = quantlab("plan", "--plan", str(plan))
    assert shown.returncode == 0, shown.stderr
    assert "placement gate: min_delegated 0.75" in shown.stdout
    run = quantlab("bench", "--plan", str(plan), "--results", str(tmp_path / "b"), "--json")
    assert run.returncode == 1, run.stderr
    assert "< 75%" in json.loads(run.stdout)["placement_gate"]["verdicts"][0]["why"]
    bad = _bench(chains["whole"], tmp_path / "c", "--min-delegated", "1.5")
    assert bad.returncode == 2 and "--min-delegated 1.5" in bad.stderr
    assert "Traceback" not in bad.stderr


# ------------------------------------------------------------------ plan's placement warnings


def _job(model: Path, delegate: str, platform: str = "android") -> Job:
    from quantlab.harness.models import model_ref

    return Job(model=model_ref(model), device_id="R58M", platform=platform, delegate=delegate,
               threads=1, settings=Settings())


def test_plan_warns_for_a_float_variant_sent_to_hexagon(chains: dict[str, Path]) -> None:
    """A float model to hexagon (int8-only) warns, naming its float ops; the same model to the
    GPU does not, and an all-integer graph to hexagon does not either."""
    from quantlab.harness.placement_check import job_warning, placement_warnings
    from quantlab.harness.records import Plan
    from quantlab.harness.tflite_graph import GraphOp

    plan = Plan(jobs=(_job(chains["whole"], "hexagon"), _job(chains["whole"], "gpu"),
                      _job(chains["whole"], "cpu")))
    (w,) = placement_warnings(plan)
    assert w["delegate"] == "hexagon" and w["job_id"] == plan.jobs[0].job_id
    assert [(o["index"], o["op_type"]) for o in w["ops"]] == [(0, "ADD"), (1, "MUL"), (2, "ADD")]
    assert "3 of 3 ops compute in float" in w["why"] and "ADD#0, MUL#1, ADD#2" in w["why"]
    int8 = [GraphOp(i, t, (i,), (i + 1,), (f"t{i}",), False, False, False)
            for i, t in enumerate(["QUANTIZE", "CONV_2D", "DEQUANTIZE"])]
    assert job_warning(int8, "hexagon") is None


def test_plan_names_flex_ops_a_delegate_leaves_on_the_cpu(tmp_path: Path) -> None:
    """quantlab plan on the simulator: a model with a Flex op sent to XNNPACK warns before
    anything runs, naming the op (terminal and --json); to cpu it does not."""
    model = chain_model(tmp_path / "flex.tflite", [("ADD", 1.0), ("FlexErf", None),
                                                   ("ADD", 1.0)])
    proc = quantlab("plan", str(model), "--device", "sim", "--delegate", "xnnpack,cpu")
    assert proc.returncode == 0, proc.stderr
    assert "placement" in proc.stderr and "FlexErf#1" in proc.stderr, proc.stderr
    data = quantlab("plan", str(model), "--device", "sim", "--delegate", "xnnpack,cpu", "--json")
    (w,) = json.loads(data.stdout)["placement_warnings"]
    assert w["delegate"] == "xnnpack" and w["ops"] == [{"index": 1, "op_type": "FlexErf"}]


# ------------------------------------------------------------------ the runtime's stated reason

FIXTURES = Path(__file__).parent / "fixtures" / "android"
REFUSED = (  # the GPU delegate's list, as benchmark_model prints it (tf#56301, tf#57907)
    "ERROR: Following operations are not supported by GPU delegate:\n"
    "ERROR: UNPACK: Operation is not supported.\n"
    "ERROR: DEQUANTIZE: \n"
    "ERROR: 288 operations will run on the GPU, and the remaining 2 operations will run on the "
    "CPU.\n"
    "INFO: Replacing 288 out of 290 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 "
    "partitions.\n")


def _gpu_log() -> str:
    """A finished GPU run (tf#43541) whose delegate refused two op types."""
    log = (FIXTURES / "gpu_full_delegation_tf43541.txt").read_text()
    log = log.replace("Explicitly applied GPU delegate, and the model graph will be completely "
                      "executed by the delegate.\n", "")
    head, sep, tail = log.partition("INFO: Created 1 GPU delegate kernels.")
    assert sep
    return head + REFUSED + sep + tail


def test_the_gpu_delegates_reasons_reach_the_fallback_ops_and_the_gate() -> None:
    """benchmark_model's 'not supported by GPU delegate' lines are kept per op type: a fallback
    op of that type carries the reason, and the placement gate's failure says it. Before, the
    lines were dropped and a fallback op had no reason."""
    from quantlab.android_runner.parser import parse_output
    from quantlab.android_runner.result_mapping import to_raw_result
    from quantlab.harness.cli.placement_gate import judge

    out = parse_output(_gpu_log())
    assert out.unsupported == {"UNPACK": "Operation is not supported.",
                               "DEQUANTIZE": "not supported"}
    raw = to_raw_result("j", [out], "gpu")
    p = placement(raw, "gpu")
    assert (p["ops_total"], p["ops_delegated"]) == (290, 288)
    assert "UNPACK: Operation is not supported." in p["fallback_ops_note"]
    ok, why = judge(p, "gpu", 0.999, False)
    assert ok is False and "gpu took 288 of 290 ops" in why and "UNPACK" in why
    # with an op profile, the op itself carries the reason
    profile = ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
               "============================== Run Order ==============================\n"
               "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
               "TfLiteGpuDelegateV2, 1.1, 1, 80%, 80%, 0, 1, [partition]\n"
               "UNPACK, 0.3, 0.25, 20%, 100%, 0, 1, [unpack]\n\n")
    raw = to_raw_result("j", [parse_output(_gpu_log(), profile)], "gpu")
    (fb,) = placement(raw, "gpu")["fallback_ops"]
    assert fb["op_type"] == "UNPACK" and fb["reason"] == "Operation is not supported."


def test_delegates_shows_the_reason_of_an_imported_gpu_fallback(tmp_path: Path) -> None:
    """A hand-run GPU log imported (quantlab import) with its op profile: quantlab delegates
    names the op left on the CPU with the delegate's reason, in the terminal and in --json."""
    profile = ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
               "============================== Run Order ==============================\n"
               "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
               "TfLiteGpuDelegateV2, 1.1, 1, 80%, 80%, 0, 1, [partition]\n"
               "UNPACK, 0.3, 0.25, 20%, 100%, 0, 1, [unpack]\n\n")
    log = tmp_path / "gpu.log"
    log.write_text(_gpu_log() + profile)
    results = tmp_path / "r"
    imported = quantlab("import", str(log), "--device-name", "pixel8", "--results", str(results))
    assert imported.returncode == 0, imported.stderr
    rows = quantlab("delegates", "--json", "--results", str(results))
    (row,) = json.loads(rows.stdout)["rows"]
    assert row["delegated_share"] == pytest.approx(288 / 290)
    assert row["fallback_ops"][0]["reason"] == "Operation is not supported."
    shown = quantlab("delegates", "--results", str(results))
    assert shown.returncode == 0, shown.stderr
    assert "gpu left on the CPU: UNPACK" in shown.stdout and "Operation is not supported" in \
        shown.stdout
