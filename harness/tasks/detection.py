"""Object detection: decoders for TFLite SSD, YOLO-style and BlazeFace-style outputs, COCO mAP,
agreement mAP with the float model (the label-free gate), score drift.

Boxes are kept as ``[ymin, xmin, ymax, xmax]`` normalized to the model input, as TFLite's
``TFLite_Detection_PostProcess`` gives them; COCO boxes are ``[x, y, width, height]`` in pixels
of each image named in the annotations file.

Everything runs on all images at once (issue 12): the decoders give one
:class:`DetectionBatch` (flat arrays, image by image), and host NMS and matching work on flat
arrays with one loop step per detection *rank* (not per image). COCO bbox mAP@[.5:.95] and
mAP@.5 (:func:`coco_map`) are computed by faster-coco-eval, a maintained COCO evaluation
library, once per variant over all images.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from quantlab.harness.errors import UserError
from quantlab.harness.tasks import Context, OutputInfo, ece, intervals, score_drift
from quantlab.harness.tasks.detection_bootstrap import coco_matches, resampled_map
from quantlab.harness.tasks.detection_boxes import (
    DetectionBatch,
    Detections,
    by_rank,
    cross_pairs,
    first_best,
    iou_pairs,
    ranks,
    segments,
)
from quantlab.harness.tasks.detection_coco import (
    CocoLabels,
    CocoTruth,
    coco_map,
    detections_array,
    load_coco,
)
from quantlab.harness.tasks.detection_decode import DECODERS, pick_decoder, written_rows

DETECTION_RESAMPLES = 200
"""Bootstrap resamples of an mAP drop's interval: each costs weighted running sums over the
true positives (demo detector, 2,000 images: about 0.3 s per model for 200)."""
AGREEMENT_SCORE = 0.5  # float-model detections at or above this score are the agreement truth
MATCH_IOU = 0.5
CALIBRATION_FLOOR = 0.05  # detections scored below this are left out of histograms and ECE


def _match_flags(dets: DetectionBatch, truth: DetectionBatch) -> np.ndarray:
    """For each detection, whether it matches an unused truth box of its image and class
    (IoU ≥ :data:`MATCH_IOU`), detections taken best score first, each to its best box."""
    order = np.lexsort((-dets.scores, dets.image))  # stable: ties keep the image's order
    img = dets.image[order]
    _, rank = ranks(img, dets.n)
    hit = np.zeros(len(order), bool)
    used = np.zeros(len(truth.scores), bool)
    d_idx, g_idx = cross_pairs(img, truth.starts)
    if not len(d_idx):
        return hit
    iou = iou_pairs(dets.boxes[order][d_idx], truth.boxes[g_idx])
    fits = (truth.classes[g_idx] == dets.classes[order][d_idx]) & (iou >= MATCH_IOU)
    pairs, bounds = by_rank(rank[d_idx])
    for r in range(len(bounds) - 1):
        p = pairs[bounds[r]:bounds[r + 1]]
        if not len(p):
            continue
        dd, gg = d_idx[p], g_idx[p]
        ok = fits[p] & ~used[gg]
        starts, seg = segments(dd)
        _, first = first_best(np.where(ok, iou[p], -1.0), starts, seg)
        found = ok[first]
        used[gg[first[found]]] = True
        hit[order[dd[starts[found]]]] = True
    return hit


def _label_truth(labels: CocoLabels) -> DetectionBatch:
    """Each input's truth boxes (normalized yxyx, its image's annotations in file order) with
    the model class of their category."""
    gt = labels.gt
    ids = np.asarray(labels.image_ids, np.int64)
    by_image = np.argsort(gt.ann_image, kind="stable")
    sorted_ids = gt.ann_image[by_image]
    lo = np.searchsorted(sorted_ids, ids, side="left")
    counts = np.searchsorted(sorted_ids, ids, side="right") - lo
    image = np.repeat(np.arange(len(ids)), counts)
    ann = by_image[np.repeat(lo, counts) + np.arange(int(counts.sum()))
                   - np.repeat(np.cumsum(counts) - counts, counts)]
    hw = np.asarray(labels.sizes, np.float64).reshape(-1, 2)
    h, w = hw[image, 0], hw[image, 1]
    b = gt.ann_box[ann]
    boxes = np.stack([b[:, 1] / h, b[:, 0] / w, (b[:, 1] + b[:, 3]) / h,
                      (b[:, 0] + b[:, 2]) / w], axis=1).reshape(-1, 4)
    cat_pos = {c: i for i, c in enumerate(labels.category_ids)}
    classes = np.array([cat_pos.get(int(c), -1) for c in gt.ann_category[ann]], np.int64)
    return DetectionBatch(boxes, np.ones(len(boxes)), classes, image, len(ids))


class Detection:
    """COCO mAP@[.5:.95] (primary) and mAP@.5; label-free: agreement mAP@.5 with the float
    model (its detections scored ≥ 0.5 as the truth)."""

    name = "detection"
    primary_metric = "map"
    label_free_metric = "agreement_map50"
    lower_is_better: frozenset[str] = frozenset()
    decoders = tuple(DECODERS)

    def matches(self, outputs: list[OutputInfo], y: np.ndarray | None) -> str | None:
        picked = pick_decoder(outputs)
        return f"{picked[1]} (decoder {picked[0]})" if picked else None

    def load_labels(self, labels_path: str | None, y: np.ndarray | None, n: int,
                    ctx: Context) -> Any:
        if ctx.decoder is None:
            picked = pick_decoder(ctx.outputs)
            if picked is None:
                shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in ctx.outputs)
                raise UserError(f"no detection decoder fits the outputs ({shapes})",
                                hint=f"pass --decoder ({', '.join(DECODERS)})")
            ctx.decoder = picked[0]
            ctx.notes.append(f"decoder {picked[0]} inferred: {picked[1]}")
        elif ctx.decoder not in DECODERS:
            raise UserError(f"unknown decoder {ctx.decoder!r}",
                            hint=f"choose from {', '.join(DECODERS)}")
        return load_coco(labels_path, n) if labels_path else None

    def fidelity_outputs(self, outputs: list[np.ndarray], ctx: Context) -> list[np.ndarray]:
        """The raw outputs as per-output fidelity should compare them: for ssd, the padding
        rows past each count (unwritten by the op) zeroed."""
        return written_rows(outputs, ctx) if ctx.decoder == "ssd" else outputs

    def decode(self, outputs: list[np.ndarray], ctx: Context) -> DetectionBatch:
        return DECODERS[ctx.decoder or "ssd"](outputs, ctx)

    def metrics(self, pred: Sequence[Detections], ctx: Context) -> dict[str, float]:
        labels: CocoLabels | None = ctx.labels
        if labels is None:
            return {}
        res = detections_array(pred, labels.image_ids, labels.sizes, labels.category_ids)
        m, m50 = coco_map(labels.gt, res)
        return {"map": m, "map50": m50}

    def fidelity(self, ref: Sequence[Detections], pred: Sequence[Detections], ctx: Context
                 ) -> dict[str, float | None]:
        ref_b, pred_b = DetectionBatch.of(ref), DetectionBatch.of(pred)
        agreement = _agreement_truth(ref_b, pred_b, ctx)
        if agreement is None:
            same = float(not len(pred_b.above(AGREEMENT_SCORE).scores))
            return {"agreement_map50": same, "agreement_map": same}
        truth, ids, sizes, cat_index = agreement
        m, m50 = coco_map(truth, detections_array(pred_b, ids, sizes, cat_index))
        return {"agreement_map50": m50, "agreement_map": m}

    def drop_interval(self, ref: Sequence[Detections], pred: Sequence[Detections],
                      ctx: Context, metric: str) -> dict[str, Any] | None:
        """A paired bootstrap over images of COCO mAP: against the labels (map, map50), or
        against the float model's detections scored ≥ 0.5 (agreement_map50, agreement_map);
        each resample's mAP comes from the detections' matches, found once
        (:mod:`~quantlab.harness.tasks.detection_bootstrap`), and the float model's side is
        computed once for every variant. :data:`DETECTION_RESAMPLES` resamples."""
        started = time.perf_counter()
        ref_b, pred_b = DetectionBatch.of(ref), DetectionBatch.of(pred)
        labels: CocoLabels | None = ctx.labels
        if metric in ("map", "map50") and labels is not None:
            truth, ids, sizes, cats = labels.gt, labels.image_ids, labels.sizes, \
                labels.category_ids
        elif metric in ("agreement_map50", "agreement_map") and \
                (agreement := _agreement_truth(ref_b, pred_b, ctx)) is not None:
            truth, ids, sizes, cats = agreement
        else:
            return None
        weights = intervals.resample_weights(len(truth.images), DETECTION_RESAMPLES)
        pick = 1 if metric.endswith("50") else 0

        def resampled(dets: DetectionBatch) -> np.ndarray:
            # by content: the float model's side serves every variant, and variants with the
            # same detections (int8 and int8-io, often) are resampled once
            rows = detections_array(dets, ids, sizes, cats)
            key = (f"bootstrap-{metric}-{id(truth)}-"
                   f"{hashlib.blake2b(rows.tobytes(), digest_size=16).hexdigest()}")
            if key not in ctx.cache:
                ctx.cache[key] = resampled_map(coco_matches(truth, rows), weights)[pick]
            return np.asarray(ctx.cache[key])

        low, high = intervals.percentile_interval(resampled(ref_b) - resampled(pred_b))
        return intervals.interval_record(low, high, "paired bootstrap over images (COCO "
                                         "matches found once per model)", started,
                                         DETECTION_RESAMPLES)

    def calibration(self, ref: Sequence[Detections], pred: Sequence[Detections], ctx: Context
                    ) -> dict[str, Any] | None:
        ref_b, pred_b = DetectionBatch.of(ref), DetectionBatch.of(pred)
        r_scores = ref_b.above(CALIBRATION_FLOOR).scores.astype(np.float64)
        v_scores = pred_b.above(CALIBRATION_FLOOR).scores.astype(np.float64)
        strong = ref_b.above(AGREEMENT_SCORE)
        s_idx, v_idx = cross_pairs(strong.image, pred_b.starts)
        pairs = None
        if len(s_idx):  # each strong reference box paired with its best same-class box
            ious = iou_pairs(strong.boxes[s_idx], pred_b.boxes[v_idx])
            ious[strong.classes[s_idx] != pred_b.classes[v_idx]] = 0
            starts, seg = segments(s_idx)
            best, first = first_best(ious, starts, seg)
            ok = best >= MATCH_IOU
            pairs = (strong.scores[s_idx[starts[ok]]], pred_b.scores[v_idx[first[ok]]])
        out = score_drift(r_scores, v_scores, pairs)
        out["score"] = f"detection score (≥ {CALIBRATION_FLOOR})"
        labels: CocoLabels | None = ctx.labels
        if labels and f"ece-{id(ref)}" not in ctx.cache:
            ctx.cache[f"ece-{id(ref)}"] = self._ece(ref_b, labels, ctx)
        out["reference_ece"] = ctx.cache.get(f"ece-{id(ref)}")
        out["ece"] = (ctx.cache[f"ece-{id(ref)}"] if pred is ref else
                      self._ece(pred_b, labels, ctx)) if labels else None
        return out

    def recalibrate(self, ref: Sequence[Detections], pred: Sequence[Detections], ctx: Context,
                    seed: int = 0) -> dict[str, Any]:
        """The score threshold at which the variant's recall (IoU ≥ :data:`MATCH_IOU`, same
        class) reaches the float model's at :data:`AGREEMENT_SCORE`, on every labelled image
        (:func:`quantlab.harness.tasks.recalibration.matching_threshold`)."""
        from quantlab.harness.tasks.recalibration import matching_threshold

        if "truth" not in ctx.cache:
            ctx.cache["truth"] = _label_truth(ctx.labels)
        truth = ctx.cache["truth"]
        ref_b, pred_b = DetectionBatch.of(ref), DetectionBatch.of(pred)
        return matching_threshold(ref_b.scores, _match_flags(ref_b, truth), pred_b.scores,
                                  _match_flags(pred_b, truth), len(truth.scores),
                                  AGREEMENT_SCORE)

    @staticmethod
    def _ece(dets: DetectionBatch, labels: CocoLabels, ctx: Context) -> float | None:
        """ECE of detection scores, a detection being correct when it matches a truth box."""
        if "truth" not in ctx.cache:
            ctx.cache["truth"] = _label_truth(labels)
        kept = dets.above(CALIBRATION_FLOOR)
        return ece(kept.scores.astype(np.float64), _match_flags(kept, ctx.cache["truth"]))


def _agreement_truth(ref: DetectionBatch, pred: DetectionBatch, ctx: Context
                     ) -> tuple[CocoTruth, list[int], list[tuple[float, float]], list[int]] | None:
    """The label-free gate's truth, the float model's detections scored ≥
    :data:`AGREEMENT_SCORE` (built once: the same for every variant), with the image ids,
    sizes and categories the detections are written with; None when there is none."""
    truth = ref.above(AGREEMENT_SCORE)
    if not len(truth.scores):
        return None
    h, w = ctx.input_hw
    ids = list(range(1, len(ref) + 1))
    sizes = [(float(h), float(w))] * len(ids)
    cats = {int(c) for c in np.unique(truth.classes)} | \
        {int(c) for c in np.unique(pred.classes) if c >= 0}
    cat_index = list(range(max(cats) + 1))
    key = f"agreement-gt-{id(ref)}-{len(cat_index)}"
    if key not in ctx.cache:
        rows = detections_array(truth, ids, sizes, cat_index)
        ctx.cache[key] = CocoTruth.from_rows(ids, cat_index, rows)
    return ctx.cache[key], ids, sizes, cat_index


TASK = Detection()
