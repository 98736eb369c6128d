"""COCO mAP of bootstrap resamples of the images, from each detection's matches found once.

COCO evaluation matches detections to the truth image by image and category by category, so a
resample of the images (an image drawn twice counts its detections and its truth twice) only
changes how much each detection and each truth box weighs. :func:`coco_matches` finds, once,
each detection's match at the ten IoU thresholds (.50:.05:.95) as COCOeval does (bbox, area
"all", 100 detections): per image and category, detections best score first each take the
unmatched truth box they overlap most at or above the threshold, preferring a box COCO does
not ignore (a crowd, or an area out of range); a crowd box (overlap = intersection over the
detection's area) can take several, and a detection matched to an ignored box counts for
nothing. :func:`resampled_map` then gives mAP@[.5:.95] and
mAP@.5 per resample from weighted running sums over the score-sorted detections, with COCO's
101-point interpolated precision; with every weight 1 it is COCO's mAP (tests check it against
faster-coco-eval). This is what makes a paired bootstrap interval of an mAP drop affordable:
200 resamples of the demo detector's 2,000 images take about 0.3 s per model, of BlazeFace's
410 photos about 0.03 s (the benchmark in benchmarks/quantize_eval.py reports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantlab.harness.tasks.detection_boxes import MAX_DETECTIONS, ranks
from quantlab.harness.tasks.detection_coco import CocoTruth

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
AREA_RANGE = (0.0, 1e10)  # COCO's area "all"
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
CHUNK_VALUES = 1 << 22  # resamples × thresholds × detections summed at a time (32 MB)


@dataclass(frozen=True)
class Matches:
    """Per category, its detections in COCO's accumulation order (score, then image), with
    whether each is a true or false positive at each IoU threshold, and each image's count
    of truth boxes COCO does not ignore (crowds, areas out of range). ``image`` indexes
    ``CocoTruth.images``."""

    categories: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (image, tp (T,D), fp (T,D))
    truth_per_image: np.ndarray  # (K, I) truth boxes not ignored, per category and image


def _coco_iou(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO's box overlap of pairs ``det[k]``, ``gt[k]`` (x, y, w, h): intersection over
    union, or over the detection's area where the truth box is a crowd."""
    x0 = np.maximum(det[:, 0], gt[:, 0])
    y0 = np.maximum(det[:, 1], gt[:, 1])
    x1 = np.minimum(det[:, 0] + det[:, 2], gt[:, 0] + gt[:, 2])
    y1 = np.minimum(det[:, 1] + det[:, 3], gt[:, 1] + gt[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    det_area = det[:, 2] * det[:, 3]
    union = np.where(crowd, det_area, det_area + gt[:, 2] * gt[:, 3] - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def coco_matches(gt: CocoTruth, results: np.ndarray) -> Matches:
    """Each detection of ``results`` (rows [image_id, x, y, w, h, score, category_id]) matched
    against ``gt`` (a :class:`~quantlab.harness.tasks.detection_coco.CocoTruth`) at every
    IoU threshold, as COCOeval matches them."""
    images = np.asarray(gt.images)
    cats = np.asarray(gt.categories)
    n_img, n_cat = len(images), len(cats)
    res = np.asarray(results, np.float64).reshape(-1, 7)
    d_img = np.searchsorted(images, res[:, 0].astype(np.int64))
    d_cat = np.searchsorted(cats, res[:, 6].astype(np.int64))
    known = (d_img < n_img) & (d_cat < n_cat)
    known[known] &= (images[d_img[known]] == res[known, 0]) & (cats[d_cat[known]] == res[known, 6])
    res, d_img, d_cat = res[known], d_img[known], d_cat[known]
    # groups (image, category); detections best score first within a group (stable)
    d_group = d_img * n_cat + d_cat
    order = np.lexsort((-res[:, 5], d_group))
    res, d_img, d_cat, d_group = res[order], d_img[order], d_cat[order], d_group[order]
    _, rank = ranks(d_group, n_img * n_cat)
    keep = rank < MAX_DETECTIONS
    res, d_img, d_cat, d_group, rank = res[keep], d_img[keep], d_cat[keep], d_group[keep], \
        rank[keep]
    g_img = np.searchsorted(images, gt.ann_image)
    g_cat = np.searchsorted(cats, gt.ann_category)
    g_crowd = gt.ann_crowd.astype(bool)
    # COCO ignores crowds and, for area "all", annotations whose area is out of [0, 1e10]
    g_ignore = g_crowd | (gt.ann_area < AREA_RANGE[0]) | (gt.ann_area > AREA_RANGE[1])
    truth_counts = ~g_ignore
    g_group = g_img * n_cat + g_cat
    g_order = np.lexsort((g_ignore, g_group))  # within a group, ignored boxes last
    g_group, g_crowd, g_ignore = g_group[g_order], g_crowd[g_order], g_ignore[g_order]
    g_box = np.asarray(gt.ann_box, np.float64).reshape(-1, 4)[g_order]
    g_starts = np.searchsorted(g_group, np.arange(n_img * n_cat + 1))
    # every (detection, truth box) pair of one group
    counts = g_starts[d_group + 1] - g_starts[d_group]
    p_det = np.repeat(np.arange(len(res)), counts)
    p_gt = np.repeat(g_starts[d_group], counts) + (
        np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts))
    iou = _coco_iou(res[p_det, 1:5], g_box[p_gt], g_crowd[p_gt])
    n_t = len(IOU_THRESHOLDS)
    matched = np.zeros((n_t, len(res)), bool)
    ignored = np.zeros((n_t, len(res)), bool)
    taken = np.zeros((n_t, len(g_box)), bool)
    p_rank = rank[p_det]
    by_rank = np.argsort(p_rank, kind="stable")
    bounds = np.searchsorted(p_rank[by_rank], np.arange(int(p_rank.max(initial=-1)) + 2))
    for r in range(len(bounds) - 1):
        p = by_rank[bounds[r]:bounds[r + 1]]
        if not len(p):
            continue
        det, box = p_det[p], p_gt[p]
        # a pair's claim: above the threshold and box still free (crowds never fill up);
        # a non-crowd box outranks any crowd, then the larger overlap, then the later box
        ok = (iou[p][None, :] >= np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]) & \
            (~taken[:, box] | g_crowd[box][None, :])
        claim = np.where(ok, iou[p] + 2.0 * ~g_ignore[box] + 1e-12 * np.arange(len(p)), -1.0)
        starts = np.flatnonzero(np.r_[True, det[1:] != det[:-1]])
        best = np.maximum.reduceat(claim, starts, axis=1)  # (T, detections of this rank)
        seg = np.cumsum(np.r_[True, det[1:] != det[:-1]]) - 1
        win = (claim == best[:, seg]) & (claim >= 0)
        t_idx, pair = np.nonzero(win)
        matched[t_idx, det[pair]] = True
        ignored[t_idx, det[pair]] = g_ignore[box[pair]]
        taken[t_idx, box[pair]] = True
    det_area = res[:, 3] * res[:, 4]  # an unmatched detection out of the area range: ignored
    ignored |= ~matched & ((det_area < AREA_RANGE[0]) | (det_area > AREA_RANGE[1]))[None, :]
    tp, fp = matched & ~ignored, ~matched & ~ignored
    truth = np.zeros((n_cat, n_img))
    np.add.at(truth, (g_cat, g_img), truth_counts.astype(np.float64))
    per_cat = []
    for k in range(n_cat):
        sel = np.flatnonzero(d_cat == k)
        # COCO sorts each category's detections by score, ties in image order
        o = sel[np.lexsort((rank[sel], d_img[sel], -res[sel, 5]))]
        # false positives after the last true positive never reach a recall threshold first,
        # and the precision envelope only looks right: they change no resample's AP
        hits = np.flatnonzero(tp[:, o].any(axis=0))
        o = o[:hits[-1] + 1] if len(hits) else o[:0]
        per_cat.append((d_img[o], tp[:, o], fp[:, o]))
    return Matches(per_cat, truth)


def resampled_map(matches: Matches, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mAP@[.5:.95], mAP@.5) of each resample, ``weights`` (resamples, images) counting how
    often each image is drawn (NaN for a resample holding no truth box).

    Only the true positives' points are computed: recall rises only there, and a false
    positive's precision is below the point before it, so the precision envelope read at
    each recall threshold is the running maximum over true positives alone. Each needs the
    weighted true positives up to it (per threshold) and the weighted detections up to it
    (one running sum for every threshold, unless matched crowds make some not count)."""
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    n_b, n_t = len(weights), len(IOU_THRESHOLDS)
    total = np.zeros((n_b, n_t))
    seen = np.zeros(n_b)
    for k, (img, tp, fp) in enumerate(matches.categories):
        truth = weights @ matches.truth_per_image[k]  # (B,)
        present = truth > 0
        seen += present
        if not len(img):
            continue
        counted = tp | fp  # what precision counts: all but detections matched to crowds
        shared = bool((counted == counted[:1]).all())
        chunk = max(1, CHUNK_VALUES // tp.size)
        for s in range(0, n_b, chunk):
            part = slice(s, s + chunk)
            w = weights[part][:, img]  # (b, D)
            per_truth = np.where(present[part], truth[part], 1)[:, None]
            dets_all = np.cumsum(w * counted[0], axis=1) if shared else None
            for t in range(n_t):
                at = np.flatnonzero(tp[t])
                if not len(at):
                    continue
                tps = np.cumsum(w[:, at], axis=1)  # (b, true positives)
                dets = (dets_all if dets_all is not None else
                        np.cumsum(w * counted[t], axis=1))[:, at]
                pr = np.maximum.accumulate((tps / (dets + np.spacing(1)))[:, ::-1],
                                           axis=1)[:, ::-1]
                ap = _interpolated(tps / per_truth, pr)
                total[part, t] += np.where(present[part], ap, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_threshold = total / seen[:, None]
    return per_threshold.mean(axis=1), per_threshold[:, 0]


def _interpolated(rc: np.ndarray, pr: np.ndarray) -> np.ndarray:
    """Mean over COCO's 101 recall thresholds of the precision envelope ``pr`` at the first
    point whose recall ``rc`` reaches each, per row: (b,). A point whose recall reaches m
    thresholds, after a point reaching m', is the first for the m − m' thresholds between,
    so the mean is Σ pr · (m − m') / 101; the counts come from one exact comparison of
    every recall with the thresholds, as COCO's searchsorted makes it."""
    reached = np.searchsorted(RECALL_THRESHOLDS, rc.reshape(-1), side="right").reshape(rc.shape)
    steps = np.diff(reached, axis=-1, prepend=0)
    return np.asarray((pr * steps).sum(axis=-1) / len(RECALL_THRESHOLDS))
