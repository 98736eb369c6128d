"""The evaluation report's typed shape: rows and gates write the JSON evaluate has always
written, key for key, and read it back; the ladder reads the typed rows (no TensorFlow here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quantlab.harness.quantize.evaluation import Evaluation, GateVerdict, VariantEvaluation
from quantlab.harness.quantize.gate import judge
from quantlab.harness.quantize.manifest import Manifest, VariantEntry

REFUSED = {"scheme": "int8", "path": "v/int8.tflite", "sha256": "ab", "source_sha256": "cd",
           "error": "v/int8.tflite: LiteRT cannot run it", "metrics": {}, "accuracy": {},
           "fidelity": {"outputs": []}, "calibration": None, "edge_cases": [],
           "gate": {"passed": False, "drop": None, "drop_pt": None, "metric": "top1",
                    "value": None, "max_drop": 0.02}}


def _judged_row() -> dict[str, Any]:
    gate = judge("top1", 0.9, 0.85, 0.02, max_mse=0.5, mse=0.1)
    return {"scheme": None, "path": "v/other.tflite", "sha256": "ef", "source_sha256": None,
            "metrics": {"top1": 0.85}, "accuracy": {"top1": 0.85},
            "fidelity": {"top1_agreement": 0.9, "outputs": [{"mse": 0.1}]},
            "calibration": {"mean_shift": 0.01}, "gate": gate.to_dict(),
            "edge_cases": [{"case": "zeros", "ok": True}]}


def test_rows_and_gates_write_evaluates_json_key_for_key_and_read_it_back() -> None:
    judged = _judged_row()
    assert list(judged["gate"]) == ["passed", "drop", "drop_pt", "metric", "value", "max_drop",
                                    "interval", "resolved", "decided_by", "max_mse",
                                    "mse_passed", "why"]
    for row in (REFUSED, judged):
        back = VariantEvaluation.from_dict(json.loads(json.dumps(row))).to_dict()
        assert json.dumps(back) == json.dumps(row)  # the same keys in the same order
    report = Evaluation(task={"name": "classification"}, reference={"value": 0.9}, skipped=[],
                        metric="top1", samples=100, data="val.npz", warnings=[],
                        gate_confidence=False,
                        variants=[VariantEvaluation.from_dict(REFUSED),
                                  VariantEvaluation.from_dict(judged)])
    out = report.to_dict()
    assert list(out) == ["task", "reference", "skipped", "metric", "max_drop", "samples", "data",
                         "warnings", "gate_confidence", "variants", "failed"]
    assert out["max_drop"] == {"int8": 0.02, "other.tflite": 0.02}
    assert out["failed"] == ["int8", "other.tflite"]  # refused; drop 5 pt > 2 pt


def test_a_ladder_rung_whose_variant_the_runtime_refuses_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quantlab.harness.quantize import evaluate, ladder, variants

    def made(request: Any, progress: Any = None) -> Manifest:
        return Manifest(out=request.out, source={}, input={}, calibration=None, tools={},
                        variants=[VariantEntry("int8", "tflite", "ok", file="int8.tflite",
                                               size_bytes=10, sha256="ab")])

    def evaluated(folder: Any, data: Any, **_: Any) -> Evaluation:
        return Evaluation(task={}, reference={"value": 0.9}, skipped=[], metric="top1",
                          samples=100, data=str(data), warnings=[], gate_confidence=False,
                          variants=[VariantEvaluation.from_dict(REFUSED)])

    monkeypatch.setattr(variants, "quantize", made)
    monkeypatch.setattr(evaluate, "evaluate", evaluated)
    req = ladder.LadderRequest(model="m.keras", calib="c.npz", data="val.npz",
                               out=str(tmp_path))
    step = ladder._make_step(req, {"name": "int8", "scheme": "int8", "options": {},
                                   "calib": "c.npz", "calib_samples": 200}, 1, tmp_path, None)
    assert step["verdict"] == "fail" and step["drop"] is None
    assert step["why_next"] == "v/int8.tflite: LiteRT cannot run it"
    assert step["evaluation"] == REFUSED


def test_a_gate_from_judge_is_typed() -> None:
    gate = judge("top1", 0.9, 0.89, 0.02)
    assert isinstance(gate, GateVerdict) and gate.passed and gate.drop_pt == 1.0
    assert gate.to_dict()["why"] == "drop 1.00 pt ≤ 2.00 pt" and "max_mse" not in gate.to_dict()
