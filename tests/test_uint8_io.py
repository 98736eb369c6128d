"""The ``uint8-io`` scheme (issue 22): full integer with uint8 input and output, as older
NNAPI and Edge-class accelerators take; evaluated on the host and from the simulator's own
outputs, its inputs quantized and outputs dequantized with the tensors' uint8 parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import quantize_fixtures as qf

from quantlab.harness.device_eval import evaluate_on_devices
from quantlab.harness.plan import discover
from quantlab.harness.quantize.requests import QuantizeRequest
from quantlab.harness.quantize.variants import quantize

digits = qf.digits
digits_calib = qf.digits_calib


def test_uint8_io_variant_is_uint8_at_its_edges_and_evaluates(
        digits: tuple[Path, Path], digits_calib: Path, tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    m = quantize(QuantizeRequest.create(digits[0], ["fp32", "uint8-io"], digits_calib,
                                        tmp_path / "v"))
    by = {v.scheme: v for v in m.variants}
    assert by["uint8-io"].status == "ok", by["uint8-io"].error
    interp = Interpreter(model_path=str(tmp_path / "v" / by["uint8-io"].file))
    assert interp.get_input_details()[0]["dtype"] == np.uint8
    assert interp.get_output_details()[0]["dtype"] == np.uint8
    r = qf.quantlab("evaluate", str(tmp_path / "v"), "--data", str(digits[1]), "--no-store",
                    "--json")
    rows = {v["scheme"]: v for v in json.loads(r.stdout)["variants"]}
    # a trained 10-class model: far above chance, and within 5 points of fp32
    assert rows["uint8-io"]["metrics"]["top1"] > 0.5
    assert abs(rows["uint8-io"]["gate"]["drop"]) < 0.05
    fleet = discover(["sim"])
    device = {x["scheme"]: x for x in evaluate_on_devices(
        fleet, list(fleet.devices), tmp_path / "v", digits[1], delegates=["xnnpack"],
        samples=100)["rows"]}
    assert device["uint8-io"]["error"] is None
    assert abs(device["uint8-io"]["vs_host"]["drop"]) <= 0.01  # the host's own kernels
