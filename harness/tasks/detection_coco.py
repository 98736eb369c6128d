"""COCO ground truth and mAP: the annotations file read into arrays (its images, in order, are
the evaluation inputs in order), detections as COCO result rows, and COCO bbox mAP@[.5:.95]
and mAP@.5 computed by faster-coco-eval, a maintained COCO evaluation library.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.errors import DataError
from quantlab.harness.tasks.detection_boxes import (
    MAX_DETECTIONS,
    DetectionBatch,
    Detections,
    ranks,
)


class CocoTruth:
    """COCO ground truth as arrays: images, categories and one row per annotation (``ann_*``,
    in file order); :func:`coco_map` hands it to faster-coco-eval."""

    def __init__(self, image_ids: Sequence[int] | np.ndarray,
                 category_ids: Sequence[int] | np.ndarray, ann_image: np.ndarray,
                 ann_category: np.ndarray, ann_box: np.ndarray, ann_area: np.ndarray,
                 ann_crowd: np.ndarray, ann_id: np.ndarray) -> None:
        self.ann_image = np.asarray(ann_image, np.int64)
        self.ann_category = np.asarray(ann_category, np.int64)
        self.ann_box = np.asarray(ann_box, np.float64).reshape(-1, 4)
        self.ann_area = np.asarray(ann_area, np.float64)
        self.ann_crowd = np.asarray(ann_crowd, bool)
        self.ann_id = np.asarray(ann_id, np.int64)
        self.images = np.unique(np.asarray(image_ids, np.int64))
        self.categories = np.unique(np.asarray(category_ids, np.int64))

    @classmethod
    def from_rows(cls, image_ids: Sequence[int], category_ids: Sequence[int],
                  rows: np.ndarray) -> CocoTruth:
        """Truth from result rows [image_id, x, y, w, h, score, category_id] (area w·h)."""
        return cls(image_ids, category_ids, rows[:, 0].astype(np.int64),
                   rows[:, 6].astype(np.int64), rows[:, 1:5], rows[:, 3] * rows[:, 4],
                   np.zeros(len(rows), bool), np.arange(1, len(rows) + 1))


@dataclass(frozen=True)
class CocoLabels:
    """COCO annotations whose images, in file order, are the evaluation inputs in order."""

    path: str
    gt: CocoTruth
    image_ids: list[int]
    sizes: list[tuple[float, float]]  # (height, width) per image
    category_ids: list[int]  # model class i ↔ category_ids[i]

    def subset(self, index: Sequence[int]) -> CocoLabels:
        """The labels of the inputs at ``index`` (in that order): their images and only
        their annotations (a fixed subset of the evaluation set, ``evaluate --samples``)."""
        ids = [self.image_ids[i] for i in index]
        keep = np.isin(self.gt.ann_image, ids)
        g = self.gt
        gt = CocoTruth(ids, self.category_ids, g.ann_image[keep], g.ann_category[keep],
                       g.ann_box[keep], g.ann_area[keep], g.ann_crowd[keep], g.ann_id[keep])
        return CocoLabels(self.path, gt, ids, [self.sizes[i] for i in index],
                          list(self.category_ids))


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
    anns = d["annotations"]
    gt = _annotations_fast(anns, ids, cat_ids)
    if gt is None:  # something is off: the annotation-by-annotation reading names it
        gt = _annotations_checked(path, anns, ids, cat_ids)
    return CocoLabels(path, gt, ids, sizes, cat_ids)


def _annotations_fast(anns: list[Any], ids: list[int], cat_ids: list[int]) -> CocoTruth | None:
    """The annotations read column by column (None when any is malformed or unknown)."""
    try:
        box = np.array([a["bbox"] for a in anns], np.float64).reshape(len(anns), -1)
        image = np.array([a["image_id"] for a in anns], np.int64)
        cat = np.array([a["category_id"] for a in anns], np.int64)
        given = np.array(["area" in a for a in anns], bool)
        area = np.array([a.get("area", 0.0) for a in anns], np.float64)
        crowd = np.array([a.get("iscrowd", 0) for a in anns], np.int64) != 0
        ann_id = np.array([a.get("id", k + 1) for k, a in enumerate(anns)], np.int64)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    if box.shape[1:] != (4,) or not (np.all(np.isin(image, ids)) and
                                     np.all(np.isin(cat, cat_ids))):
        return None
    area = np.where(given, area, box[:, 2] * box[:, 3])
    return CocoTruth(ids, cat_ids, image, cat, box, area, crowd, ann_id)


def _annotations_checked(path: str, anns: list[Any], ids: list[int], cat_ids: list[int]
                         ) -> CocoTruth:
    """The annotations read one by one; DataError naming the first one that is wrong."""
    known_images, known_cats = set(ids), set(cat_ids)
    rows = []
    for k, a in enumerate(anns):
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            image_id, cat = int(a["image_id"]), int(a["category_id"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: annotation {k} needs bbox [x, y, w, h], image_id and "
                            "category_id") from None
        if image_id not in known_images or cat not in known_cats:
            raise DataError(f"{path}: annotation {k} names an unknown image or category")
        rows.append((image_id, cat, x, y, w, h, float(a.get("area", w * h)),
                     bool(int(a.get("iscrowd", 0))), int(a.get("id", k + 1))))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 9
    return CocoTruth(ids, cat_ids, np.array(cols[0], np.int64), np.array(cols[1], np.int64),
                     np.array(cols[2:6], np.float64).T.reshape(-1, 4),
                     np.array(cols[6], np.float64), np.array(cols[7], bool),
                     np.array(cols[8], np.int64))


def detections_array(dets: Sequence[Detections], image_ids: Sequence[int],
                     sizes: Sequence[tuple[float, float]],
                     category_ids: Sequence[int]) -> np.ndarray:
    """Rows [image_id, x, y, w, h, score, category_id] in pixels (COCO results layout): each
    image's detections of a known class, best score first, at most :data:`MAX_DETECTIONS`."""
    b = DetectionBatch.of(dets)
    cats = np.asarray(category_ids, np.int64)
    valid = (b.classes >= 0) & (b.classes < len(cats))
    img, scores, classes = b.image[valid], b.scores[valid], b.classes[valid]
    boxes = b.boxes[valid].astype(np.float64)
    order = np.lexsort((-scores, img))  # stable: ties keep the image's order
    _, rank = ranks(img[order], b.n)
    order = order[rank < MAX_DETECTIONS]
    img, scores, classes, boxes = img[order], scores[order], classes[order], boxes[order]
    hw = np.asarray(sizes, np.float64).reshape(-1, 2)
    h, w = hw[img, 0], hw[img, 1]
    return np.column_stack([
        np.asarray(image_ids, np.float64)[img], boxes[:, 1] * w, boxes[:, 0] * h,
        (boxes[:, 3] - boxes[:, 1]) * w, (boxes[:, 2] - boxes[:, 0]) * h,
        scores.astype(np.float64), cats[classes]]).reshape(-1, 7)


def _library_truth(gt: CocoTruth) -> Any:
    """The ground truth as faster-coco-eval's ``COCO`` (built once per :class:`CocoTruth`)."""
    cached = getattr(gt, "_coco", None)
    if cached is not None:
        return cached
    from faster_coco_eval import COCO

    coco = COCO()
    coco.dataset = {
        "images": [{"id": int(i)} for i in gt.images],
        "categories": [{"id": int(c)} for c in gt.categories],
        "annotations": [{"id": int(i), "image_id": int(im), "category_id": int(c),
                         "bbox": [float(v) for v in box], "area": float(area),
                         "iscrowd": int(crowd)}
                        for i, im, c, box, area, crowd in zip(
                            gt.ann_id, gt.ann_image, gt.ann_category, gt.ann_box, gt.ann_area,
                            gt.ann_crowd, strict=True)],
    }
    coco.createIndex()
    gt._coco = coco  # type: ignore[attr-defined]
    return coco


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a moment (refcounting still frees everything)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def coco_map(gt: CocoTruth, results: np.ndarray) -> tuple[float, float]:
    """(mAP@[.5:.95], mAP@.5) of the results against the ground truth (0.0 without results),
    computed by faster-coco-eval (COCO bbox evaluation: area "all", 100 detections).

    The library builds a dict or two per annotation and per (image, category); with the
    cyclic collector running, its collections took a third of the time (demo detector, 8
    evaluations of 2,000 images: 1.10 s, 0.68 s with the collector paused)."""
    from faster_coco_eval import COCOeval_faster

    res = np.asarray(results, np.float64).reshape(-1, 7)
    if len(res) == 0 or len(gt.images) == 0 or len(gt.categories) == 0:
        return 0.0, 0.0
    with _collector_paused():
        truth = _library_truth(gt)
        ev = COCOeval_faster(truth, truth.loadRes(res), "bbox",
                             print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(0.0, float(ev.stats[0])), max(0.0, float(ev.stats[1]))


