"""LiteRT and Core ML variants of a PyTorch source: ``fp32`` converted by litert-torch, the other
float and int8 schemes made from that .tflite by ai-edge-quantizer (the ``.tflite`` source's
path) with the same ``--calib`` data, in the source's own NCHW layout; ``evaluate`` scores them,
beside the ExecuTorch variants, against the PyTorch float model. Core ML through coremltools
from the ``torch.export`` program (fp16, int8 weights, 4-bit palettized) and ExecuTorch's Core
ML backend (``et-coreml``), which lowers here but runs only on Apple's platforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf

torch_net = qf.torch_net  # the tiny conv net: tinynet.py, net.pt2, calib.npz (session-wide)


def test_all_for_a_pytorch_source_is_its_litert_and_executorch_schemes() -> None:
    from quantlab.harness.quantize.schemes import resolve_schemes

    names = [s.name for s in resolve_schemes(["all"], "torch-export")]
    assert names[:6] == ["fp32", "fp16", "dynamic-int8", "int8", "int16x8", "mixed-int8"]
    assert {"et-fp32", "et-int8"} <= set(names)
    assert {"coreml-fp16", "coreml-w8", "coreml-w4", "et-coreml"} <= set(names)
    assert "int8-io" not in names and "qat-int8" not in names  # no recipe from PyTorch
    assert [s.name for s in resolve_schemes(["tflite"], "torch-entry")] == names[:6]
    assert "et-fp32" not in [s.name for s in resolve_schemes(["all"], "keras")]


@pytest.fixture(scope="module")
def torch_model(torch_net: Path) -> Path:
    """The session's tiny conv net (a hidden layer of 4096 weights, which Core ML compresses):
    its .pt2 and NCHW calibration data, in one folder. Needs litert-torch."""
    pytest.importorskip("litert_torch")
    return torch_net


@pytest.fixture(scope="module")
def variants(torch_model: Path) -> Path:
    """The .pt2 made into LiteRT schemes and one ExecuTorch scheme, in one folder."""
    import quantlab

    out = torch_model / "variants"
    quantlab.quantize(torch_model / "net.pt2", out,
                      ["fp32", "fp16", "dynamic-int8", "int8", "et-fp32"],
                      calib=torch_model / "calib.npz")
    return out


def test_pt2_makes_litert_variants_through_litert_torch(torch_model: Path,
                                                       variants: Path) -> None:
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from quantlab.harness.quantize.manifest import Manifest

    manifest = Manifest.load(variants)
    rows = {v.scheme: v for v in manifest.variants}
    assert all(v.status == "ok" for v in manifest.variants), manifest.variants
    assert rows["fp32"].converter == "litert-torch"
    assert {rows[s].converter for s in ("fp16", "dynamic-int8", "int8")} == {
        "litert-torch+aeq"}
    assert {"litert-torch", "ai-edge-quantizer", "torch"} <= set(manifest.tools)
    assert manifest.calibration is not None and manifest.calibration["samples"] == 16
    assert rows["fp16"].size_bytes < rows["fp32"].size_bytes  # type: ignore[operator]
    int8_ops = rows["int8"].ops
    assert int8_ops is not None and int8_ops["float_ops"] < int8_ops["total_ops"]
    assert rows["int8"].options == {"granularity": "per-channel", "calibration_samples": 16}
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    reference = torch.export.load(torch_model / "net.pt2").module()(
        torch.from_numpy(x)).detach().numpy()
    interp = Interpreter(model_path=str(variants / "fp32.tflite"))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    assert list(inp["shape"]) == [1, 3, 8, 8]  # PyTorch's NCHW, as the data is given
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert np.abs(got - reference).max() < 1e-4


def test_evaluate_scores_litert_and_executorch_variants_against_pytorch(
        torch_model: Path, variants: Path, tmp_path: Path) -> None:
    import torch

    from quantlab.harness.quantize.evaluate import evaluate

    x = np.random.default_rng(2).standard_normal((24, 3, 8, 8)).astype(np.float32)
    float_model = torch.export.load(torch_model / "net.pt2").module()
    with torch.no_grad():
        y = np.array([int(float_model(torch.from_numpy(x[i:i + 1])).argmax())
                      for i in range(len(x))])
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    report = evaluate(variants, tmp_path / "eval.npz", task="classification").to_dict()
    assert report["reference"]["scheme"] == "float (PyTorch)"
    rows = {r["scheme"]: r for r in report["variants"]}
    assert set(rows) == {"fp32", "fp16", "dynamic-int8", "int8", "et-fp32"}
    assert not report["skipped"]
    for scheme in ("fp32", "et-fp32"):
        assert rows[scheme]["fidelity"]["outputs"][0]["mse"] < 1e-8, scheme
        assert rows[scheme]["gate"]["passed"] and rows[scheme]["gate"]["drop"] == 0.0
    assert rows["int8"]["fidelity"]["outputs"][0]["mse"] > 10 * max(
        rows["fp32"]["fidelity"]["outputs"][0]["mse"], 1e-12)


@pytest.fixture(scope="module")
def coreml_variants(torch_model: Path) -> Path:
    """The .pt2 made into the Core ML schemes, et-coreml and et-fp32."""
    pytest.importorskip("coremltools")
    import quantlab

    out = torch_model / "coreml"
    quantlab.quantize(torch_model / "net.pt2", out,
                      ["coreml-fp16", "coreml-w8", "coreml-w4", "et-coreml", "et-fp32"])
    return out


def _weight_producers(package: Path) -> dict[str, str]:
    """Each ≥ 2-D weight of a saved ML program → the op type producing it (``const`` for a
    float16 weight, ``constexpr_…`` for a compressed one), by weight size."""
    import coremltools as ct

    fn = ct.utils.load_spec(str(package)).mlProgram.functions["main"]
    out: dict[str, str] = {}
    for op in fn.block_specializations[fn.opset].operations:
        if op.type == "const" or op.type.startswith("constexpr_"):
            for o in op.outputs:
                dims = [d.constant.size for d in o.type.tensorType.dimensions]
                if len(dims) >= 2 and int(np.prod(dims)) == 8 * 512:
                    out[o.name] = op.type
    return out


def test_pt2_makes_core_ml_variants_through_coremltools(coreml_variants: Path) -> None:
    from quantlab.harness.quantize.manifest import Manifest

    manifest = Manifest.load(coreml_variants)
    rows = {v.scheme: v for v in manifest.variants}
    assert all(v.status == "ok" for v in manifest.variants), manifest.variants
    assert "coremltools" in manifest.tools
    for scheme in ("coreml-fp16", "coreml-w8", "coreml-w4"):
        assert rows[scheme].file == f"{scheme}.mlpackage" and rows[scheme].converter == "coreml"
    sizes = {s: rows[s].size_bytes or 0 for s in ("coreml-fp16", "coreml-w8", "coreml-w4")}
    assert sizes["coreml-w4"] < sizes["coreml-w8"] < sizes["coreml-fp16"]
    hidden = {s: set(_weight_producers(coreml_variants / f"{s}.mlpackage").values())
              for s in sizes}
    assert hidden["coreml-fp16"] == {"const"}
    assert hidden["coreml-w4"] == {"constexpr_lut_to_dense"}
    (w8,) = hidden["coreml-w8"]
    assert w8.startswith("constexpr_") and w8 != "constexpr_lut_to_dense"
    et = rows["et-coreml"]
    assert et.file == "et-coreml.pte" and et.converter == "executorch"
    assert et.ops is not None and et.ops["delegated_ops"] >= 4 and et.ops["portable_ops"] == 0
    assert et.ops["delegate"] == "Core ML"  # what quantize's table says took the ops
    assert rows["et-fp32"].ops is not None and rows["et-fp32"].ops["delegate"] == "XNNPACK"
    assert any("Core ML" in n for n in et.notes or []), et.notes


def test_evaluate_says_why_core_ml_variants_of_a_pytorch_source_are_not_scored(
        coreml_variants: Path, tmp_path: Path) -> None:
    from quantlab.harness.quantize.evaluate import evaluate

    np.savez(tmp_path / "eval.npz",
             x=np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32))
    report = evaluate(coreml_variants, tmp_path / "eval.npz").to_dict()
    assert [r["scheme"] for r in report["variants"]] == ["et-fp32"]
    skipped = {s["scheme"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"coreml-fp16", "coreml-w8", "coreml-w4", "et-coreml"}
    assert "macOS" in skipped["coreml-w4"] and "iPhone" in skipped["coreml-w4"]
    assert "Core ML backend" in skipped["et-coreml"] and "macOS" in skipped["et-coreml"]


def test_sensitivity_ranks_a_pytorch_models_layers_on_its_litert_float_model(
        torch_model: Path) -> None:
    from quantlab.harness.quantize.variants import sensitivity

    found = sensitivity(torch_model / "net.pt2", torch_model / "calib.npz")
    layers = found["layers"]
    assert found["by"] == "error" and len(layers) >= 4  # conv, two dense layers, the output
    assert {"FULLY_CONNECTED", "CONV_2D"} <= {r["op"] for r in layers}
    assert all(r["rel_error"] >= 0 for r in layers)
    errors = [r["added_error"] for r in layers]
    assert errors == sorted(errors, reverse=True)  # most sensitive first


def test_the_simulator_refuses_an_et_coreml_program_up_front(coreml_variants: Path) -> None:
    """et-coreml lowers here but only Apple's ExecuTorch builds run it: the simulator says so
    when it plans the job, instead of failing the launch with "error 0x20"."""
    from quantlab.agents.sim.agent import SimAgent
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import Job, Settings

    agent = SimAgent()
    (device,) = agent.discover()

    def verdict(name: str) -> tuple[bool, str]:
        job = Job(model_ref(coreml_variants / name), device.id, "sim", "et-xnnpack", 1,
                  Settings())
        return agent.supports(device, job)

    ok, why = verdict("et-coreml.pte")
    assert not ok and "CoreMLBackend" in why and "iOS" in why
    assert verdict("et-fp32.pte") == (True, "")
