"""Object detection: decoders for TFLite SSD, YOLO-style and BlazeFace-style outputs, COCO mAP
by faster-coco-eval, agreement mAP with the float model (the label-free gate), score drift.

Boxes are kept as ``[ymin, xmin, ymax, xmax]`` normalized to the model input, as TFLite's
``TFLite_Detection_PostProcess`` gives them; COCO boxes are ``[x, y, width, height]`` in pixels
of each image named in the annotations file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import DataError, UserError
from harness.quantize.tasks import Context, OutputInfo, ece, score_drift

SCORE_FLOOR = 0.01  # raw-output decoders drop candidates below this score before NMS
MAX_DETECTIONS = 100  # per image, as COCO evaluation counts them
PRE_NMS = 300  # candidates per image entering NMS
NMS_IOU = 0.5
AGREEMENT_SCORE = 0.5  # float-model detections at or above this score are the agreement truth
MATCH_IOU = 0.5
CALIBRATION_FLOOR = 0.05  # detections scored below this are left out of histograms and ECE


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes (K, 4) ymin/xmin/ymax/xmax normalized, scores, classes."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def above(self, score: float) -> Detections:
        """Only the detections scored at least ``score``."""
        keep = self.scores >= score
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (M, 4) with every box of ``b`` (K, 4), yxyx."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    y0 = np.maximum(a[:, None, 0], b[None, :, 0])
    x0 = np.maximum(a[:, None, 1], b[None, :, 1])
    y1 = np.minimum(a[:, None, 2], b[None, :, 2])
    x1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU,
        limit: int = MAX_DETECTIONS) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")[:PRE_NMS]
    shifted = boxes[order] + (classes[order].astype(np.float64) * 4.0)[:, None]  # classes apart
    keep: list[int] = []
    alive = np.ones(len(order), bool)
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) >= limit:
            break
        rest = np.nonzero(alive[i + 1:])[0] + i + 1
        if rest.size:
            alive[rest[iou_matrix(shifted[i : i + 1], shifted[rest])[0] > iou]] = False
    return np.asarray(keep, dtype=np.int64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))


def _from_candidates(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                     iou: float) -> Detections:
    keep = scores >= SCORE_FLOOR
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    idx = nms(boxes, scores, classes, iou)
    return Detections(np.clip(boxes[idx], 0, 1).astype(np.float32),
                      scores[idx].astype(np.float32), classes[idx].astype(np.int64))


# -- decoders ---------------------------------------------------------------------------------

def _ssd_roles(infos: list[OutputInfo], outputs: list[np.ndarray]) -> dict[str, int]:
    """Which output is boxes/classes/scores/count, by shape, then name, then values."""
    roles: dict[str, int] = {}
    pairs = []
    for i, out in enumerate(outputs):
        if out.ndim == 3 and out.shape[-1] == 4:
            roles["boxes"] = i
        elif out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1 and len(infos) == 4
                                and any(o.ndim == 2 and o.shape[1] > 1 for o in outputs)):
            roles["count"] = i
        elif out.ndim == 2:
            pairs.append(i)
    if "boxes" not in roles or "count" not in roles or len(pairs) != 2:
        shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in infos)
        raise UserError(f"the ssd decoder needs boxes [1,N,4], classes [1,N], scores [1,N] "
                        f"and count [1]; the model has {shapes}", hint="try --decoder yolo")
    by_name: dict[str, int] = {}
    for i in pairs:
        name = infos[i].name.lower()
        if "class" in name:
            by_name["classes"] = i
        elif "score" in name:
            by_name["scores"] = i
    if len(by_name) != 2:  # PostProcess output order (boxes:0, classes:1, scores:2, count:3)
        idx = {i: re.search(r":(\d+)$", infos[i].name) for i in pairs}
        if all(idx.values()) and {int(m.group(1)) for m in idx.values() if m} == {1, 2}:
            by_name = {("classes" if int(m.group(1)) == 1 else "scores"): i
                       for i, m in idx.items() if m}
    if len(by_name) != 2:  # by values: classes are whole numbers, scores lie in [0, 1]
        whole = [i for i in pairs if np.all(outputs[i] == np.round(outputs[i]))]
        if len(whole) == 1:
            by_name = {"classes": whole[0], "scores": next(i for i in pairs if i != whole[0])}
        else:
            desc = [i for i in pairs if np.all(np.diff(outputs[i], axis=1) <= 1e-6)]
            s = desc[0] if len(desc) == 1 else pairs[1]
            by_name = {"scores": s, "classes": next(i for i in pairs if i != s)}
    roles.update(by_name)
    return roles


def decode_ssd(outputs: list[np.ndarray], ctx: Context) -> list[Detections]:
    """TFLite_Detection_PostProcess outputs (boxes, classes, scores, count) in any order."""
    roles = _ssd_roles(ctx.outputs, outputs)
    boxes, classes = outputs[roles["boxes"]], outputs[roles["classes"]]
    scores, count = outputs[roles["scores"]], outputs[roles["count"]].reshape(len(boxes), -1)
    dets = []
    for i in range(len(boxes)):
        k = int(np.clip(np.round(count[i, 0]), 0, boxes.shape[1]))
        dets.append(Detections(np.clip(boxes[i, :k], 0, 1), scores[i, :k].astype(np.float32),
                               np.round(classes[i, :k]).astype(np.int64)))
    return dets


def decode_yolo(outputs: list[np.ndarray], ctx: Context) -> list[Detections]:
    """One raw output ``[1, 4+C, N]`` or ``[1, N, 4+C]``: cx, cy, w, h then C class scores.

    Boxes in pixels (any coordinate > 2) are divided by the input size; class
    scores outside [0, 1] are taken as logits. Host NMS per class.
    """
    if len(outputs) != 1 or outputs[0].ndim != 3 or min(outputs[0].shape[1:]) < 5:
        shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in ctx.outputs)
        raise UserError(f"the yolo decoder needs one output [1, 4+C, N] or [1, N, 4+C]; "
                        f"the model has {shapes}", hint="try --decoder ssd")
    raw = outputs[0].astype(np.float64)
    if raw.shape[1] < raw.shape[2]:
        raw = raw.transpose(0, 2, 1)
    h, w = ctx.input_hw
    box = raw[..., :4]
    if np.nanmax(np.abs(box)) > 2:
        box = box / np.array([w, h, w, h], np.float64)
    cls = raw[..., 4:]
    if cls.size and (cls.min() < 0 or cls.max() > 1):
        cls = _sigmoid(cls)
    yxyx = np.stack([box[..., 1] - box[..., 3] / 2, box[..., 0] - box[..., 2] / 2,
                     box[..., 1] + box[..., 3] / 2, box[..., 0] + box[..., 2] / 2], axis=-1)
    best = np.argmax(cls, axis=-1)
    conf = np.take_along_axis(cls, best[..., None], axis=-1)[..., 0]
    return [_from_candidates(yxyx[i], conf[i], best[i], NMS_IOU) for i in range(len(raw))]


def ssd_anchors(input_size: int, count: int) -> np.ndarray:
    """(count, 2) anchor centres (cx, cy) of MediaPipe-style SSD anchors for a square input.

    Two layouts cover BlazeFace models: stride s with 2 anchors per cell plus
    stride 2s with 6 per cell (short range), or stride s with 1 per cell (full range).
    """
    for stride in (2, 4, 8, 16, 32):
        a, b = input_size // stride, input_size // (2 * stride)
        for layout in ([(a, 2), (b, 6)], [(a, 1)]):
            if sum(n * n * k for n, k in layout) == count:
                centres = []
                for n, k in layout:
                    c = (np.arange(n) + 0.5) / n
                    cy, cx = np.meshgrid(c, c, indexing="ij")
                    grid = np.stack([cx.ravel(), cy.ravel()], axis=-1)
                    centres.append(np.repeat(grid, k, axis=0))
                return np.concatenate(centres)
    raise UserError(f"no SSD anchor layout gives {count} anchors for a {input_size}px input",
                    hint="pass --decoder ssd or yolo if the model decodes its own boxes")


def decode_anchors(outputs: list[np.ndarray], ctx: Context) -> list[Detections]:
    """Raw anchor outputs (BlazeFace): regressors [1, N, 4+2K] (dx, dy, w, h in input pixels,
    then keypoints) and classificators [1, N, 1] (logits); host NMS."""
    if len(outputs) != 2:
        raise UserError("the blazeface decoder needs two outputs: regressors [1,N,4+] and "
                        "classificators [1,N,1]")
    reg, cls = sorted(outputs, key=lambda o: -o.shape[-1])
    h, w = ctx.input_hw
    anchors = ssd_anchors(w, reg.shape[1])
    cx = reg[..., 0] / w + anchors[None, :, 0]
    cy = reg[..., 1] / h + anchors[None, :, 1]
    bw, bh = reg[..., 2] / w, reg[..., 3] / h
    yxyx = np.stack([cy - bh / 2, cx - bw / 2, cy + bh / 2, cx + bw / 2], axis=-1)
    scores = _sigmoid(cls[..., 0].astype(np.float64))
    zeros = np.zeros(scores.shape[1], np.int64)
    return [_from_candidates(yxyx[i], scores[i], zeros, 0.3) for i in range(len(reg))]


DECODERS: dict[str, Callable[[list[np.ndarray], Context], list[Detections]]] = {
    "ssd": decode_ssd,
    "yolo": decode_yolo,
    "blazeface": decode_anchors,
}
"""Decoder name → function (raw outputs, context) → detections per image."""


def pick_decoder(outputs: list[OutputInfo]) -> tuple[str, str] | None:
    """(decoder, why) from the output shapes, or None when no decoder fits."""
    shapes = [o.shape for o in outputs]
    if len(shapes) == 4 and any(len(s) == 3 and s[-1] == 4 for s in shapes) and \
            sum(len(s) == 2 for s in shapes) >= 2:
        return "ssd", "four outputs: boxes [1,N,4], classes, scores, count"
    if len(shapes) == 2 and all(len(s) == 3 for s in shapes) and shapes[0][1] == shapes[1][1] \
            and sorted(s[-1] for s in shapes)[0] == 1 and max(s[-1] for s in shapes) >= 4:
        return "blazeface", "anchor regressors [1,N,4+] and one score per anchor [1,N,1]"
    if len(shapes) == 1 and len(shapes[0]) == 3 and min(shapes[0][1:]) >= 5 and \
            max(shapes[0][1:]) >= 4 * min(shapes[0][1:]):
        return "yolo", f"one raw output {list(shapes[0])} = [1, 4+C, N] or [1, N, 4+C]"
    return None


# -- ground truth and COCO evaluation --------------------------------------------------------

@dataclass(frozen=True)
class CocoLabels:
    """COCO annotations whose images, in file order, are the evaluation inputs in order."""

    path: str
    gt: Any  # faster_coco_eval.COCO
    image_ids: list[int]
    sizes: list[tuple[float, float]]  # (height, width) per image
    category_ids: list[int]  # model class i ↔ category_ids[i]


def load_coco(path: str, n: int) -> CocoLabels:
    """Read and check a COCO annotations JSON for ``n`` inputs; DataError naming what is wrong."""
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such labels file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(d, dict) or not all(k in d for k in ("images", "annotations",
                                                           "categories")):
        raise DataError(f"{path}: not COCO annotations (needs images, annotations, categories)")
    images, cats = d["images"], d["categories"]
    if len(images) != n:
        raise DataError(f"{path}: {len(images)} images for {n} inputs in --data",
                        hint="the file's images, in order, are the inputs of --data, in order")
    try:
        ids = [int(im["id"]) for im in images]
        sizes = [(float(im["height"]), float(im["width"])) for im in images]
        cat_ids = [int(c["id"]) for c in cats]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: images need id, width, height and categories an id ({exc})"
                        ) from None
    known_images, known_cats = set(ids), set(cat_ids)
    anns = []
    for k, a in enumerate(d["annotations"]):
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            image_id, cat = int(a["image_id"]), int(a["category_id"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: annotation {k} needs bbox [x, y, w, h], image_id and "
                            "category_id") from None
        if image_id not in known_images or cat not in known_cats:
            raise DataError(f"{path}: annotation {k} names an unknown image or category")
        anns.append({"id": int(a.get("id", k + 1)), "image_id": image_id, "category_id": cat,
                     "bbox": [x, y, w, h], "area": float(a.get("area", w * h)),
                     "iscrowd": int(a.get("iscrowd", 0))})
    gt = _coco({"images": [{"id": i, "height": s[0], "width": s[1]} for i, s in
                           zip(ids, sizes, strict=True)],
                "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cat_ids]})
    return CocoLabels(path, gt, ids, sizes, cat_ids)


def _coco(dataset: dict[str, Any]) -> Any:
    from faster_coco_eval import COCO

    return COCO(dataset, print_function=lambda *a, **k: None)


def detections_array(dets: list[Detections], image_ids: list[int],
                     sizes: list[tuple[float, float]], category_ids: list[int]) -> np.ndarray:
    """Rows [image_id, x, y, w, h, score, category_id] in pixels (COCO results layout)."""
    rows = []
    cats = np.asarray(category_ids)
    for d, image_id, (h, w) in zip(dets, image_ids, sizes, strict=True):
        valid = (d.classes >= 0) & (d.classes < len(cats))
        if not np.any(valid):
            continue
        b = d.boxes[valid].astype(np.float64)
        order = np.argsort(-d.scores[valid], kind="stable")[:MAX_DETECTIONS]
        b = b[order]
        rows.append(np.column_stack([
            np.full(len(b), image_id, np.float64), b[:, 1] * w, b[:, 0] * h,
            (b[:, 3] - b[:, 1]) * w, (b[:, 2] - b[:, 0]) * h,
            d.scores[valid][order].astype(np.float64), cats[d.classes[valid][order]]]))
    return np.concatenate(rows) if rows else np.zeros((0, 7))


def coco_map(gt: Any, results: np.ndarray) -> tuple[float, float]:
    """(mAP@[.5:.95], mAP@.5) of the results against the ground truth (0.0 without results)."""
    from faster_coco_eval import COCOeval_faster

    if len(results) == 0:
        return 0.0, 0.0
    dt = gt.loadRes(results)
    ev = COCOeval_faster(gt, dt, "bbox", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return max(0.0, float(ev.stats[0])), max(0.0, float(ev.stats[1]))


def _matches(dets: Detections, truth: Detections) -> np.ndarray:
    """For each detection (best score first), whether it matches an unused truth box."""
    order = np.argsort(-dets.scores, kind="stable")
    hit = np.zeros(len(dets.scores), bool)
    if not len(truth.scores):
        return hit
    ious = iou_matrix(dets.boxes[order], truth.boxes)
    used = np.zeros(len(truth.scores), bool)
    for rank, i in enumerate(order):
        cand = np.where(~used & (truth.classes == dets.classes[i]) & (ious[rank] >= MATCH_IOU),
                        ious[rank], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= 0:
            used[j] = True
            hit[i] = True
    return hit


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

    def decode(self, outputs: list[np.ndarray], ctx: Context) -> list[Detections]:
        return DECODERS[ctx.decoder or "ssd"](outputs, ctx)

    def metrics(self, pred: list[Detections], ctx: Context) -> dict[str, float]:
        labels: CocoLabels | None = ctx.labels
        if labels is None:
            return {}
        res = detections_array(pred, labels.image_ids, labels.sizes, labels.category_ids)
        m, m50 = coco_map(labels.gt, res)
        return {"map": m, "map50": m50}

    def fidelity(self, ref: list[Detections], pred: list[Detections], ctx: Context
                 ) -> dict[str, float | None]:
        truth = [d.above(AGREEMENT_SCORE) for d in ref]
        if not any(len(t.scores) for t in truth):
            same = float(not any(len(p.above(AGREEMENT_SCORE).scores) for p in pred))
            return {"agreement_map50": same, "agreement_map": same}
        h, w = ctx.input_hw
        ids = list(range(1, len(ref) + 1))
        cats = sorted({int(c) for d in truth for c in d.classes} |
                      {int(c) for d in pred for c in d.classes if c >= 0})
        cat_index = list(range(max(cats) + 1))
        key = f"agreement-gt-{id(ref)}-{len(cat_index)}"
        if key in ctx.cache:  # the float model's truth is the same for every variant
            gt = ctx.cache[key]
            m, m50 = coco_map(gt, detections_array(pred, ids, [(h, w)] * len(ids), cat_index))
            return {"agreement_map50": m50, "agreement_map": m}
        anns = detections_array(truth, ids, [(h, w)] * len(ids), cat_index)
        gt = ctx.cache[key] = _coco({
            "images": [{"id": i, "height": h, "width": w} for i in ids],
            "annotations": [{"id": k + 1, "image_id": int(r[0]), "category_id": int(r[6]),
                             "bbox": [float(v) for v in r[1:5]], "area": float(r[3] * r[4]),
                             "iscrowd": 0} for k, r in enumerate(anns)],
            "categories": [{"id": c, "name": str(c)} for c in cat_index]})
        m, m50 = coco_map(gt, detections_array(pred, ids, [(h, w)] * len(ids), cat_index))
        return {"agreement_map50": m50, "agreement_map": m}

    def calibration(self, ref: list[Detections], pred: list[Detections], ctx: Context
                    ) -> dict[str, Any] | None:
        r_scores = np.concatenate([np.zeros(0)] + [d.above(CALIBRATION_FLOOR).scores for d in ref])
        v_scores = np.concatenate([np.zeros(0)] + [d.above(CALIBRATION_FLOOR).scores for d in pred])
        pair_r, pair_v = [], []
        for r, v in zip(ref, pred, strict=True):
            strong = r.above(AGREEMENT_SCORE)
            if not len(strong.scores) or not len(v.scores):
                continue
            ious = iou_matrix(strong.boxes, v.boxes)
            ious[strong.classes[:, None] != v.classes[None, :]] = 0
            j = np.argmax(ious, axis=1)
            ok = ious[np.arange(len(j)), j] >= MATCH_IOU
            pair_r.append(strong.scores[ok])
            pair_v.append(v.scores[j[ok]])
        pairs = (np.concatenate(pair_r), np.concatenate(pair_v)) if pair_r else None
        out = score_drift(r_scores, v_scores, pairs)
        out["score"] = f"detection score (≥ {CALIBRATION_FLOOR})"
        labels: CocoLabels | None = ctx.labels
        if labels and f"ece-{id(ref)}" not in ctx.cache:
            ctx.cache[f"ece-{id(ref)}"] = self._ece(ref, labels, ctx)
        out["reference_ece"] = ctx.cache.get(f"ece-{id(ref)}")
        out["ece"] = (ctx.cache[f"ece-{id(ref)}"] if pred is ref else
                      self._ece(pred, labels, ctx)) if labels else None
        return out

    @staticmethod
    def _ece(dets: list[Detections], labels: CocoLabels, ctx: Context) -> float | None:
        """ECE of detection scores, a detection being correct when it matches a truth box."""
        if "truth" not in ctx.cache:
            cat_pos = {c: i for i, c in enumerate(labels.category_ids)}
            truth = []
            for image_id, (h, w) in zip(labels.image_ids, labels.sizes, strict=True):
                anns = labels.gt.loadAnns(labels.gt.getAnnIds(imgIds=[image_id]))
                boxes = np.array([[a["bbox"][1] / h, a["bbox"][0] / w,
                                   (a["bbox"][1] + a["bbox"][3]) / h,
                                   (a["bbox"][0] + a["bbox"][2]) / w] for a in anns]
                                 ).reshape(-1, 4)
                classes = np.array([cat_pos.get(a["category_id"], -1) for a in anns], np.int64)
                truth.append(Detections(boxes, np.ones(len(boxes)), classes))
            ctx.cache["truth"] = truth
        conf, correct = [], []
        for d, t in zip(dets, ctx.cache["truth"], strict=True):
            kept = d.above(CALIBRATION_FLOOR)
            conf.append(kept.scores)
            correct.append(_matches(kept, t))
        return ece(np.concatenate([np.zeros(0), *conf]),
                   np.concatenate([np.zeros(0, bool), *correct]))


TASK = Detection()
