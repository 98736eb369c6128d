"""Detection decoders: TFLite SSD (``TFLite_Detection_PostProcess``: boxes, classes, scores,
count in any output order), YOLO-style raw outputs (``[1, 4+C, N]`` or ``[1, N, 4+C]``, host
NMS) and BlazeFace-style anchors; each turns every image's raw outputs into one
:class:`~quantlab.harness.tasks.detection_boxes.DetectionBatch`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from quantlab.harness.errors import UserError
from quantlab.harness.tasks import Context, OutputInfo
from quantlab.harness.tasks.detection_boxes import (
    MAX_DETECTIONS,
    NMS_IOU,
    PRE_NMS,
    DetectionBatch,
    greedy_nms,
    ranks,
    shifted_boxes,
)

SCORE_FLOOR = 0.01  # raw-output decoders drop candidates below this score before NMS


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))


def _from_candidates(scores: np.ndarray, box_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     classes: np.ndarray | None, iou: float) -> DetectionBatch:
    """(n, N) candidate scores and classes (None: one class) → NMS'd detections of the n
    images; ``box_of(image, index)`` gives the yxyx boxes of the candidates that enter NMS."""
    n = len(scores)
    img, idx, s = _best_first(scores)
    starts, _ = ranks(img, n)
    b = box_of(img, idx)
    c = classes[img, idx] if classes is not None else np.zeros(len(img), np.int64)
    alive = greedy_nms(shifted_boxes(b, c), starts, iou)
    kept = np.cumsum(alive)
    before = np.concatenate([[0], kept])[starts[:-1]]  # survivors in earlier images
    alive &= kept - before[img] <= MAX_DETECTIONS
    return DetectionBatch(np.clip(b[alive], 0, 1).astype(np.float32),
                          s[alive].astype(np.float32), c[alive].astype(np.int64), img[alive], n)


def _best_first(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, index, score) of the candidates scoring at least :data:`SCORE_FLOOR` (compared
    in float64), per image best first with ties in index order, at most :data:`PRE_NMS` per
    image. Most anchors pass the floor in some models (BlazeFace: 540 of 896): then each image's
    row is sorted; few pass in others (YOLO): then only the candidates are."""
    keep = scores >= np.float64(SCORE_FLOOR)
    count = np.count_nonzero(keep, axis=1)
    if scores.shape[1] > 1 and 4 * int(count.sum()) > scores.size:
        order = np.argsort(np.where(keep, -scores, np.inf), axis=1, kind="stable")
        take = np.minimum(count, PRE_NMS)
        width = int(take.max(initial=0))
        order = order[:, :width]
        valid = np.arange(width) < take[:, None]
        img = np.nonzero(valid)[0]
        idx = order[valid]
        return img, idx, scores[img, idx]
    img, idx = np.nonzero(keep)
    s = scores[img, idx]
    order = np.lexsort((-s, img))  # per image best first, ties in index order (stable)
    img, idx, s = img[order], idx[order], s[order]
    if np.any(count > PRE_NMS):
        _, rank = ranks(img, len(scores))
        pre = rank < PRE_NMS
        img, idx, s = img[pre], idx[pre], s[pre]
    return img, idx, s


def _best_class(cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class, score) of the best class of every candidate of (C, n, N) scores, as np.argmax
    picks it (the first of equal scores; a NaN wins)."""
    if len(cls) > 8 or np.isnan(cls).any():
        best = np.argmax(cls, axis=0)
        return best, np.take_along_axis(cls, best[None], axis=0)[0]
    conf = cls.max(axis=0)
    best = np.zeros(conf.shape, np.uint8)
    for c in range(len(cls) - 1, -1, -1):  # a few classes: plane by plane, the first max last
        np.putmask(best, cls[c] == conf, c)
    return best, conf


# -- decoders ---------------------------------------------------------------------------------

def ssd_roles(infos: list[OutputInfo], outputs: list[np.ndarray]) -> dict[str, int]:
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


def decode_ssd(outputs: list[np.ndarray], ctx: Context) -> DetectionBatch:
    """TFLite_Detection_PostProcess outputs (boxes, classes, scores, count) in any order."""
    roles = ssd_roles(ctx.outputs, outputs)
    boxes, classes = outputs[roles["boxes"]], outputs[roles["classes"]]
    scores, count = outputs[roles["scores"]], outputs[roles["count"]].reshape(len(boxes), -1)
    k = np.clip(np.round(np.nan_to_num(count[:, 0])), 0, boxes.shape[1]).astype(np.int64)
    real = np.arange(boxes.shape[1])[None, :] < k[:, None]  # rows past each count are padding
    return DetectionBatch(np.clip(boxes[real], 0, 1), scores[real].astype(np.float32),
                          np.round(classes[real]).astype(np.int64), np.nonzero(real)[0],
                          len(boxes))


def written_rows(outputs: list[np.ndarray], ctx: Context) -> list[np.ndarray]:
    """SSD outputs with the rows past each image's count set to 0. TFLite_Detection_PostProcess
    leaves those rows unwritten (whatever the buffer held before), so compared raw they are
    noise: the float model against itself once read -686 dB."""
    roles = ssd_roles(ctx.outputs, outputs)
    boxes = outputs[roles["boxes"]]
    count = outputs[roles["count"]].reshape(len(boxes), -1)
    k = np.clip(np.round(np.nan_to_num(count[:, 0])), 0, boxes.shape[1]).astype(np.int64)
    padding = np.arange(boxes.shape[1])[None, :] >= k[:, None]
    out = list(outputs)
    for role in ("boxes", "classes", "scores"):
        a = outputs[roles[role]].copy()
        a[padding] = 0
        out[roles[role]] = a
    return out


def decode_yolo(outputs: list[np.ndarray], ctx: Context) -> DetectionBatch:
    """One raw output ``[1, 4+C, N]`` or ``[1, N, 4+C]``: cx, cy, w, h then C class scores.

    Boxes in pixels (any coordinate > 2) are divided by the input size; class
    scores outside [0, 1] are taken as logits. Host NMS per class.
    """
    if len(outputs) != 1 or outputs[0].ndim != 3 or min(outputs[0].shape[1:]) < 5:
        shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in ctx.outputs)
        raise UserError(f"the yolo decoder needs one output [1, 4+C, N] or [1, N, 4+C]; "
                        f"the model has {shapes}", hint="try --decoder ssd")
    raw = outputs[0]
    if raw.shape[1] < raw.shape[2]:
        raw = raw.transpose(0, 2, 1)
    chan = np.ascontiguousarray(np.moveaxis(raw, -1, 0))  # (4+C, n, N): one plane per value
    if chan.dtype.kind != "f":
        chan = chan.astype(np.float64)
    h, w = ctx.input_hw
    pixels = max(np.nanmax(chan[:4]), -np.nanmin(chan[:4])) > 2  # = nanmax(|box|)
    cls = chan[4:]  # scores as given are compared as they are (float64 adds nothing exact)
    if cls.size and (cls.min() < 0 or cls.max() > 1):
        cls = _sigmoid(cls.astype(np.float64))
    best, conf = _best_class(cls)

    def box_of(img: np.ndarray, idx: np.ndarray) -> np.ndarray:
        b = chan[:4, img, idx].T.astype(np.float64)
        if pixels:
            b = b / np.array([w, h, w, h], np.float64)
        return np.stack([b[:, 1] - b[:, 3] / 2, b[:, 0] - b[:, 2] / 2,
                         b[:, 1] + b[:, 3] / 2, b[:, 0] + b[:, 2] / 2], axis=-1).reshape(-1, 4)

    return _from_candidates(conf, box_of, best, NMS_IOU)


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


def decode_anchors(outputs: list[np.ndarray], ctx: Context) -> DetectionBatch:
    """Raw anchor outputs (BlazeFace): regressors [1, N, 4+2K] (dx, dy, w, h in input pixels,
    then keypoints) and classificators [1, N, 1] (logits); host NMS."""
    if len(outputs) != 2:
        raise UserError("the blazeface decoder needs two outputs: regressors [1,N,4+] and "
                        "classificators [1,N,1]")
    reg, cls = sorted(outputs, key=lambda o: -o.shape[-1])
    h, w = ctx.input_hw
    anchors = ssd_anchors(w, reg.shape[1])

    def box_of(img: np.ndarray, idx: np.ndarray) -> np.ndarray:
        r = reg[img, idx]
        cx = r[:, 0] / w + anchors[idx, 0]
        cy = r[:, 1] / h + anchors[idx, 1]
        bw, bh = r[:, 2] / w, r[:, 3] / h
        return np.stack([cy - bh / 2, cx - bw / 2, cy + bh / 2, cx + bw / 2],
                        axis=-1).reshape(-1, 4)

    return _from_candidates(_sigmoid(cls[..., 0].astype(np.float64)), box_of, None, 0.3)


DECODERS: dict[str, Callable[[list[np.ndarray], Context], DetectionBatch]] = {
    "ssd": decode_ssd,
    "yolo": decode_yolo,
    "blazeface": decode_anchors,
}
"""Decoder name → function (raw outputs, context) → detections of every image."""


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


