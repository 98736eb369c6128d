"""Semantic segmentation: per-pixel class scores; mean IoU, pixel accuracy, pixel agreement."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from quantlab.harness.errors import DataError
from quantlab.harness.tasks import Context, OutputInfo, intervals


def _masks(scores: np.ndarray, hw: tuple[int, int] | None) -> np.ndarray:
    """(N, H, W) class masks from NHWC or NCHW score maps."""
    if scores.ndim == 3:
        return scores.astype(np.int64)
    if hw is not None and scores.shape[2:] == hw and scores.shape[1:3] != hw:
        return np.argmax(scores, axis=1)
    return np.argmax(scores, axis=-1)


def mean_iou(pred: np.ndarray, target: np.ndarray, classes: int) -> float:
    """Mean over classes present in the prediction or the target of |P ∩ T| / |P ∪ T|."""
    ious = []
    for c in range(classes):
        p, t = pred == c, target == c
        union = np.count_nonzero(p | t)
        if union:
            ious.append(np.count_nonzero(p & t) / union)
    return float(np.mean(ious)) if ious else 1.0


class Segmentation:
    """Integer masks (N, H, W) as labels: mean IoU (primary), pixel accuracy."""

    name = "segmentation"
    primary_metric = "mean_iou"
    label_free_metric = "pixel_agreement"
    lower_is_better: frozenset[str] = frozenset()
    decoders: tuple[str, ...] = ("argmax",)

    def matches(self, outputs: list[OutputInfo], y: np.ndarray | None) -> str | None:
        if len(outputs) != 1 or len(outputs[0].shape) != 4:
            return None
        shape = outputs[0].shape
        if y is not None and y.ndim == 3 and y.dtype.kind in "iub" and \
                (tuple(y.shape[1:]) in (shape[1:3], shape[2:4])):
            return "a score map per pixel and integer masks"
        if y is None and min(shape[1], shape[2]) > 1 and shape[3] > 1:
            return "a score map per pixel, no labels"
        return None

    def load_labels(self, labels_path: str | None, y: np.ndarray | None, n: int,
                    ctx: Context) -> Any:
        if labels_path:
            raise DataError(f"{labels_path}: segmentation takes its masks from the data file "
                            "(--y-key), not --labels")
        return y

    def decode(self, outputs: list[np.ndarray], ctx: Context) -> dict[str, np.ndarray]:
        scores = outputs[0]
        hw = tuple(ctx.labels.shape[1:3]) if ctx.labels is not None else None
        masks = _masks(scores, hw)  # type: ignore[arg-type]
        classes = scores.shape[-1] if masks.shape[1:] == scores.shape[1:3] else scores.shape[1]
        return {"masks": masks, "classes": np.asarray(classes)}

    def metrics(self, pred: dict[str, np.ndarray], ctx: Context) -> dict[str, float]:
        y = ctx.labels
        if y is None:
            return {}
        masks = pred["masks"]
        if masks.shape != y.shape:
            raise DataError(f"masks of shape {y.shape[1:]} for predictions of {masks.shape[1:]}")
        classes = max(int(pred["classes"]), int(y.max()) + 1)
        return {"mean_iou": mean_iou(masks, y, classes),
                "pixel_accuracy": float(np.mean(masks == y))}

    def fidelity(self, ref: dict[str, np.ndarray], pred: dict[str, np.ndarray], ctx: Context
                 ) -> dict[str, float | None]:
        classes = int(ref["classes"])
        return {"pixel_agreement": float(np.mean(ref["masks"] == pred["masks"])),
                "agreement_iou": mean_iou(pred["masks"], ref["masks"], classes)}

    def calibration(self, ref: Any, pred: Any, ctx: Context) -> dict[str, Any] | None:
        return None

    def drop_interval(self, ref: dict[str, np.ndarray], pred: dict[str, np.ndarray],
                      ctx: Context, metric: str) -> dict[str, Any] | None:
        """A paired bootstrap over images: each image's per-class intersections and unions
        (mean_iou), or its share of pixels agreeing with the float model (pixel_agreement)."""
        started = time.perf_counter()
        y = ctx.labels
        drops: Callable[[np.ndarray], np.ndarray]
        if metric == "mean_iou" and y is not None:
            classes = max(int(ref["classes"]), int(pred["classes"]), int(y.max()) + 1)
            ref_iu, var_iu = _iou_counts(ref["masks"], y, classes), \
                _iou_counts(pred["masks"], y, classes)

            def miou_drops(weights: np.ndarray) -> np.ndarray:
                return np.asarray(_resampled_miou(weights, *ref_iu)
                                  - _resampled_miou(weights, *var_iu))
            drops = miou_drops
        elif metric == "pixel_agreement":
            n = len(ref["masks"])
            agree = np.mean((ref["masks"] == pred["masks"]).reshape(n, -1), axis=1)
            drops = intervals.mean_drop(np.ones(n), agree)
        else:
            return None
        low, high = intervals.paired_bootstrap(drops, len(ref["masks"]))
        return intervals.interval_record(low, high, "paired bootstrap over images",
                                         started, intervals.RESAMPLES)


def _iou_counts(masks: np.ndarray, target: np.ndarray, classes: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per image and class, the pixels of |P ∩ T| and |P ∪ T|: (N, C) each."""
    n = len(masks)
    p, t = masks.reshape(n, -1).astype(np.int64), target.reshape(n, -1).astype(np.int64)
    offset = (np.arange(n) * classes)[:, None]
    size = n * classes
    p_ok, t_ok = (p >= 0) & (p < classes), (t >= 0) & (t < classes)  # e.g. no -1 labels
    inter = np.bincount((p + offset)[(p == t) & p_ok], minlength=size).reshape(n, classes)
    pred = np.bincount((p + offset)[p_ok], minlength=size).reshape(n, classes)
    true = np.bincount((t + offset)[t_ok], minlength=size).reshape(n, classes)
    return inter.astype(np.float64), (pred + true - inter).astype(np.float64)


def _resampled_miou(weights: np.ndarray, inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """:func:`mean_iou` of each resample from its images' weights."""
    i, u = weights @ inter, weights @ union
    present = u > 0
    ratio = np.where(present, i / np.where(present, u, 1), 0.0)
    return np.asarray(ratio.sum(axis=1) / np.maximum(present.sum(axis=1), 1))


TASK = Segmentation()
