"""Detection end to end: an SSD detector (TFLite_Detection_PostProcess) trained on generated
shapes → quantize (op check, PostProcess kept float, int8-io outputs left float) → evaluate
--task detection with COCO labels (mAP, agreement, calibration, gate, edge cases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import quantize_fixtures as qf

from quantlab.harness.quantize.manifest import Manifest

quantlab = qf.quantlab
detector = qf.detector_all  # the session's detector and its fp32/fp16/int8/int8-io variants


def _evaluate(detector: dict[str, Path], *extra: str) -> tuple[int, dict[str, Any], str]:
    r = quantlab("evaluate", str(detector["variants"]), "--data", str(detector["eval"]),
                 "--no-store", "--json", *extra)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}, r.stderr


def test_evaluate_detection_with_coco_labels(detector: dict[str, Path]) -> None:
    code, report, err = _evaluate(detector, "--task", "detection", "--labels",
                                  str(detector["labels"]))
    assert code == 0, err
    assert report["task"]["name"] == "detection" and report["task"]["decoder"] == "ssd"
    assert report["metric"] == "map"
    rows = {v["scheme"]: v for v in report["variants"]}
    assert set(rows) == {"fp32", "fp16", "int8", "int8-io"}
    for v in rows.values():
        assert 0.5 < v["metrics"]["map"] <= v["metrics"]["map50"] <= 1.0  # trained, not chance
        assert 0.9 < v["fidelity"]["agreement_map50"] <= 1.0
        cal = v["calibration"]
        assert sum(cal["reference_hist"]) > 0 and cal["ece"] is not None
        gate = v["gate"]
        assert gate["drop_pt"] == pytest.approx(100 * gate["drop"], abs=1e-4)
        # int8's drop depends on how the detector trained on this CPU (+1.1 pt here, +2.06
        # and -1.43 pt on other machines, against a 2 pt gate): the verdict must follow the
        # figures, whichever side it falls on
        assert gate["passed"] is (gate["drop"] <= gate["max_drop"]), gate
    # fp32 is the reference itself and fp16 moves mAP by hundredths of a point: both pass
    # with a wide margin (a 0.5 pt gate)
    assert rows["fp32"]["gate"]["drop"] == 0 and rows["fp32"]["gate"]["passed"]
    assert abs(rows["fp16"]["gate"]["drop"]) < 0.002 and rows["fp16"]["gate"]["passed"]
    assert rows["fp32"]["fidelity"]["agreement_map50"] == 1.0
    assert rows["fp32"]["fidelity"]["agreement_map"] == 1.0
    # per-output fidelity compares only the rows PostProcess wrote (past each count the op
    # leaves whatever the buffer held: raw, fp32 against itself once read -686 dB)
    for o in rows["fp32"]["fidelity"]["outputs"]:
        assert o["sqnr_db"] is None and o["cosine"] == 1.0 and o["mse"] == 0.0, o
    for o in rows["fp16"]["fidelity"]["outputs"]:
        assert o["sqnr_db"] is None or o["sqnr_db"] > 0, o
    assert rows["fp16"]["gate"]["max_drop"] == 0.005 and rows["int8"]["gate"]["max_drop"] == 0.02
    # edge cases: odd sizes go through the resize path; out-of-range input runs, and whether
    # int8 diverges there depends on the trained weights (it did for 2 of 3 training seeds),
    # so only a divergence's warning is asserted
    cases = {e["case"]: e for e in rows["int8"]["edge_cases"]}
    odd = [e for c, e in cases.items() if c.startswith("odd-size")]
    assert len(odd) == 2 and all(e["ok"] and "resized" in e["path"] for e in odd)
    out_of_range = cases["out-of-range"]
    assert out_of_range["ok"], cases
    if out_of_range.get("diverged"):
        assert "differs from fp32" in out_of_range["warning"] or \
            "detections" in out_of_range["warning"]
    assert not any(e.get("diverged") for e in rows["fp32"]["edge_cases"])


def test_the_gate_fails_a_variant_beyond_max_drop(detector: dict[str, Path]) -> None:
    code, report, err = _evaluate(detector, "--labels", str(detector["labels"]),
                                  "--max-drop", "int8=0.001,int8-io=0.5")
    assert code == 1 and err.rstrip().endswith("for: int8"), err
    gate = {v["scheme"]: v["gate"] for v in report["variants"]}
    assert gate["int8"]["drop"] > 0.001 and not gate["int8"]["passed"]
    assert gate["int8-io"]["passed"] and gate["int8-io"]["max_drop"] == 0.5


def test_label_free_gate_is_agreement_and_task_inferred(detector: dict[str, Path]) -> None:
    code, report, err = _evaluate(detector)
    assert code == 0, err
    assert report["task"]["why"].startswith("inferred: four outputs")
    assert report["metric"] == "agreement_map50"
    for v in report["variants"]:
        assert v["gate"]["value"] == v["fidelity"]["agreement_map50"]


def test_int8_keeps_postprocess_float_and_says_so(detector: dict[str, Path]) -> None:
    m = Manifest.load(detector["variants"])
    assert m.source["ops"]["custom"] == {"TFLite_Detection_PostProcess": 1}
    v = {e.scheme: e for e in m.variants}
    assert all(e.status == "ok" for e in v.values())
    assert any("kept in float" in n for n in v["int8"].notes or [])
    assert any("left float32" in n for n in v["int8-io"].notes or [])
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(detector["variants"] / v["int8-io"].file))
    assert str(interp.get_input_details()[0]["dtype"]).endswith("int8'>")
    assert all(str(o["dtype"]).endswith("float32'>") for o in interp.get_output_details())
    r = quantlab("quantize", str(detector["ssd"]), "--out", "unused", "--check", "--json")
    assert r.returncode == 0, r.stderr
    checks = {c["scheme"]: c for c in json.loads(r.stdout)["schemes"]}
    assert checks["int8"]["ok"] and "TFLite_Detection_PostProcess" in checks["int8"]["ops"]
    assert not checks["coreml-fp16"]["checked"]


def test_recalibrate_finds_each_variants_threshold_for_fp32s_recall(
    detector: dict[str, Path]
) -> None:
    code, report, err = _evaluate(detector, "--labels", str(detector["labels"]),
                                  "--recalibrate", "--max-drop", "1")
    assert code == 0, err
    rows = {v["scheme"]: v["calibration"]["recalibration"] for v in report["variants"]}
    fp32 = rows["fp32"]
    assert fp32["threshold"] is not None and fp32["recall"] >= fp32["reference_recall"]
    assert fp32["recall_at_reference_threshold"] == fp32["reference_recall"] > 0
    for rec in rows.values():
        assert rec["reference_recall"] == fp32["reference_recall"]
        if rec["threshold"] is not None:
            assert rec["recall"] >= rec["reference_recall"]
        # fitted on a seeded half of the images, its recall judged on the other half
        assert rec["split"]["fit"] + rec["split"]["held_out"] == report["samples"]
        assert rec["held_out"]["reference_recall"] == fp32["held_out"]["reference_recall"]


def test_recalibrate_prints_each_detection_threshold(detector: dict[str, Path]) -> None:
    r = quantlab("evaluate", str(detector["variants"]), "--data", str(detector["eval"]),
                 "--no-store", "--labels", str(detector["labels"]), "--recalibrate",
                 "--max-drop", "1")
    assert r.returncode == 0, r.stderr
    assert "recalibrated fp32: fp32's recall at score ≥ 0.5 is" in r.stdout
    assert "recalibrated int8:" in r.stdout
    assert "held-out: recall" in r.stdout
