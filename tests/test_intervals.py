"""The accuracy gate's intervals on fixed numbers: Tango's paired score interval and Wilson's,
the bootstrap of COCO mAP over images (checked against hand-computed AP and against
faster-coco-eval on duplicated images), the 'too small to resolve' warning and
--gate-confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantlab.harness.quantize.gate import judge, unresolved_warnings
from quantlab.harness.tasks import Context, OutputInfo, get_task, intervals
from quantlab.harness.tasks.detection_bootstrap import coco_matches, resampled_map
from quantlab.harness.tasks.detection_coco import CocoTruth, coco_map


def _profile_p21(b: int, c: int, n: int, delta: float) -> float:
    """The constrained maximum-likelihood p21 under p12 − p21 = delta, by brute force."""
    a_d = n - b - c
    lo = max(0.0, -delta) + 1e-12
    hi = (1 - delta) / 2 - 1e-12
    grid = np.linspace(lo, hi, 200001)
    with np.errstate(divide="ignore"):
        ll = (b * np.log(grid + delta) if b else 0) + (c * np.log(grid) if c else 0) + \
            a_d * np.log(np.clip(1 - 2 * grid - delta, 1e-300, None))
    return float(grid[int(np.argmax(ll))])


@pytest.mark.parametrize("b,c,n,delta", [(5, 2, 100, 0.05), (0, 0, 100, 0.02),
                                         (12, 30, 200, -0.04), (3, 0, 50, 0.1)])
def test_tango_uses_the_constrained_maximum_likelihood(b: int, c: int, n: int,
                                                       delta: float) -> None:
    """The score statistic's variance uses the p21 that maximizes the likelihood under the
    null (found here by a grid search): the closed form in intervals matches it."""
    p21 = _profile_p21(b, c, n, delta)
    want = (b - c - n * delta) / math.sqrt(n * (2 * p21 + delta * (1 - delta)))
    assert intervals._tango_score(b, c, n, delta) == pytest.approx(want, rel=1e-3)


def test_tango_interval_fixed_numbers() -> None:
    # no discordant sample of 100: ±z²/(n + z²) = ±3.70 pt, not [0, 0]
    low, high = intervals.tango_interval(0, 0, 100)
    z2 = intervals.Z ** 2
    assert high == pytest.approx(z2 / (100 + z2), abs=1e-9) and low == pytest.approx(-high)
    # at each bound the score statistic is ±z; the estimate lies inside
    for b, c, n in ((2, 0, 100), (40, 20, 160), (1, 7, 21)):
        low, high = intervals.tango_interval(b, c, n)
        assert low < (b - c) / n < high
        assert intervals._tango_score(b, c, n, low) == pytest.approx(intervals.Z, abs=1e-6)
        assert intervals._tango_score(b, c, n, high) == pytest.approx(-intervals.Z, abs=1e-6)
    assert intervals.tango_interval(3, 1, 100) == pytest.approx(
        tuple(-x for x in reversed(intervals.tango_interval(1, 3, 100))))


def test_tango_interval_covers_95_percent() -> None:
    """2,000 simulated evaluations of 100 samples whose true drop is 2 points (3 % of
    samples right only with fp32, 1 % only with the variant): the interval covers it about
    95 % of the time (the seed is fixed: this is a fixed set of numbers)."""
    rng = np.random.default_rng(7)
    counts = rng.multinomial(100, [0.03, 0.01, 0.96], size=2000)
    covered = sum(lo <= 0.02 <= hi for lo, hi in
                  (intervals.tango_interval(int(b), int(c), 100) for b, c, _ in counts))
    assert 0.93 <= covered / 2000 <= 0.975


def test_wilson_interval_fixed_numbers() -> None:
    assert intervals.wilson_interval(5, 100) == pytest.approx((0.02152, 0.11175), abs=1e-4)
    low, high = intervals.wilson_interval(0, 100)
    assert low == 0 and high == pytest.approx(0.0370, abs=1e-4)


def _classification(n_right_only_fp32: int, n_right_only_variant: int, n: int = 100
                    ) -> tuple[np.ndarray, np.ndarray, Context]:
    y = np.arange(n) % 10
    ref = np.eye(10)[y] * 0.9 + 0.01
    pred = ref.copy()
    wrong = (y + 1) % 10
    for i in range(n_right_only_fp32):  # the variant is wrong where fp32 is right
        pred[i] = np.eye(10)[wrong[i]]
    for i in range(n - n_right_only_variant, n):  # fp32 wrong, the variant right
        ref[i] = np.eye(10)[wrong[i]]
    ctx = Context([OutputInfo("scores", (1, 10))], (1, 8, 8, 1), labels=y)
    return ref, pred, ctx


def test_a_100_sample_set_cannot_resolve_a_2_point_gate() -> None:
    """With 100 samples a 0-point drop's interval is ±3.70 pt: evaluate says the set is too
    small for the 2-pt gate, and how many samples would resolve it."""
    task = get_task("classification")
    ref, pred, ctx = _classification(0, 0)
    interval = task.drop_interval(ref, pred, ctx, "top1")
    assert interval is not None and interval["low"] == pytest.approx(-0.0370, abs=1e-4)
    gate = judge("top1", 0.9, 0.9, 0.02, interval=interval)
    assert gate.passed and gate.resolved is False
    (warning,) = unresolved_warnings([("int8", gate)], 100)
    assert warning.startswith("with 100 samples the 95 % interval of a 0-point drop is "
                              "±3.70 pt, wider than the 2.00-pt gate of int8")
    assert "about 189 samples would" in warning
    # 1,000 samples resolve it
    ref, pred, ctx = _classification(0, 0, 1000)
    gate = judge("top1", 0.9, 0.9, 0.02, interval=task.drop_interval(ref, pred, ctx, "top1"))
    assert gate.resolved is True and unresolved_warnings([("int8", gate)], 1000) == []


def test_gate_confidence_fails_only_drops_whose_interval_lies_beyond_the_gate() -> None:
    task = get_task("classification")
    # 3 samples right only with fp32 of 100: drop 3 pt > 2 pt, interval reaches below 2 pt
    ref, pred, ctx = _classification(3, 0)
    interval = task.drop_interval(ref, pred, ctx, "top1")
    assert interval is not None and interval["low"] < 0.02 < 0.03 < interval["high"]
    point = judge("top1", 1.0, 0.97, 0.02, interval=interval)
    assert point.passed is False and point.decided_by == "point estimate"
    assert point.why is not None and point.why.startswith("drop 3.00 pt > 2.00 pt (95 % interval ")
    sure = judge("top1", 1.0, 0.97, 0.02, interval=interval, confidence=True)
    assert sure.passed is True and sure.decided_by == "interval"
    assert sure.why is not None and \
        sure.why.endswith("the interval reaches the gate, so --gate-confidence passes it")
    # 30 of 100: the whole interval lies beyond the gate, and it fails either way
    ref, pred, ctx = _classification(30, 0)
    interval = task.drop_interval(ref, pred, ctx, "top1")
    assert interval is not None and interval["low"] > 0.02
    sure = judge("top1", 1.0, 0.7, 0.02, interval=interval, confidence=True)
    assert sure.passed is False and sure.why is not None and \
        sure.why.endswith("all of it beyond the gate")


def test_label_free_agreement_has_a_wilson_interval() -> None:
    task = get_task("classification")
    ref, pred, ctx = _classification(4, 0)
    ctx.labels = None
    interval = task.drop_interval(ref, pred, ctx, "top1_agreement")
    assert interval is not None
    assert (interval["low"], interval["high"]) == pytest.approx(
        intervals.wilson_interval(4, 100))


# ------------------------------------------------------------------ COCO mAP, by hand


def _truth(boxes: list[tuple[int, int, list[float]]], crowd: tuple[int, ...] = (),
           images: int = 1, categories: int = 1) -> CocoTruth:
    """Truth from (image_id, category_id, [x, y, w, h]) rows."""
    rows = np.array([[im, *box, 1.0, cat] for im, cat, box in boxes], np.float64)
    gt = CocoTruth.from_rows(list(range(1, images + 1)), list(range(1, categories + 1)), rows)
    gt.ann_crowd[list(crowd)] = True
    return gt


def _map_both_ways(gt: CocoTruth, results: np.ndarray) -> tuple[tuple[float, float],
                                                                tuple[float, float]]:
    """(faster-coco-eval's, the bootstrap's with every weight 1) (mAP, mAP@.5)."""
    m, m50 = resampled_map(coco_matches(gt, results), np.ones((1, len(gt.images))))
    return coco_map(gt, results), (float(m[0]), float(m50[0]))


def test_coco_map_matches_hand_computed_ap() -> None:
    """One image, two truth boxes; detections: a perfect hit (0.9), a miss (0.8), a hit at
    IoU 0.62 (0.7). Up to IoU 0.60 precision is 1 up to recall 0.5 and 2/3 up to 1: AP =
    (51 + 50 · 2/3) / 101 on COCO's 101 recall points; from 0.65 the third is a miss: AP =
    51 / 101. mAP = (3 · 0.83498 + 7 · 0.50495) / 10."""
    gt = _truth([(1, 1, [0, 0, 10, 10]), (1, 1, [50, 50, 10, 10])])
    res = np.array([[1, 0, 0, 10, 10, 0.9, 1], [1, 80, 80, 5, 5, 0.8, 1],
                    [1, 50, 50, 10, 6.2, 0.7, 1]], np.float64)
    ap_low, ap_high = (51 + 50 * 2 / 3) / 101, 51 / 101
    want = ((3 * ap_low + 7 * ap_high) / 10, ap_low)
    library, bootstrap = _map_both_ways(gt, res)
    assert library == pytest.approx(want, abs=1e-9)
    assert bootstrap == pytest.approx(want, abs=1e-9)


def test_coco_map_crowds_and_empty_categories_by_hand() -> None:
    """A detection on a crowd region counts for nothing; a category without truth is left
    out of the mean: one hit of one truth box, one crowd hit, one miss in category 2 (no
    truth there) → AP 1 at every threshold."""
    gt = _truth([(1, 1, [0, 0, 10, 10]), (1, 1, [40, 40, 30, 30])], crowd=(1,),
                categories=2)
    res = np.array([[1, 0, 0, 10, 10, 0.5, 1], [1, 45, 45, 10, 10, 0.9, 1],
                    [1, 90, 90, 5, 5, 0.95, 2]], np.float64)
    library, bootstrap = _map_both_ways(gt, res)
    assert library == pytest.approx((1.0, 1.0)) and bootstrap == pytest.approx((1.0, 1.0))


def _random_case(seed: int) -> tuple[CocoTruth, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    images, cats = 12, 3
    boxes, crowd = [], []
    for im in range(1, images + 1):
        for _ in range(int(rng.integers(0, 4))):
            if rng.random() < 0.1:
                crowd.append(len(boxes))
            boxes.append((im, int(rng.integers(1, cats + 1)),
                          [*rng.uniform(0, 60, 2), *rng.uniform(5, 30, 2)]))
    gt = _truth(boxes, tuple(crowd), images, cats)
    rows = []
    for im, cat, (x, y, w, h) in boxes:  # jittered hits, and misses
        for _ in range(int(rng.integers(0, 3))):
            rows.append([im, x + rng.normal(0, 2), y + rng.normal(0, 2), w, h,
                         rng.random(), cat])
    for _ in range(25):
        rows.append([int(rng.integers(1, images + 1)), *rng.uniform(0, 80, 2),
                     *rng.uniform(5, 30, 2), rng.random(), int(rng.integers(1, cats + 1))])
    return gt, np.array(rows, np.float64), images


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bootstrap_map_is_coco_map_on_random_cases(seed: int) -> None:
    gt, res, _ = _random_case(seed)
    library, bootstrap = _map_both_ways(gt, res)
    assert bootstrap == pytest.approx(library, abs=1e-12)


def test_a_resample_is_coco_map_of_the_duplicated_images() -> None:
    """A resample that draws image 1 three times and leaves image 2 out has the mAP that
    faster-coco-eval gives the data set with image 1 copied three times."""
    gt, res, images = _random_case(5)
    counts = np.random.default_rng(9).multinomial(images, np.full(images, 1 / images))
    boxes, crowd, rows, new_id = [], [], [], 0
    for im in range(1, images + 1):
        sel = np.flatnonzero(gt.ann_image == im)
        for _ in range(int(counts[im - 1])):
            new_id += 1
            for k in sel:
                if gt.ann_crowd[k]:
                    crowd.append(len(boxes))
                boxes.append((new_id, int(gt.ann_category[k]), list(gt.ann_box[k])))
            rows += [[new_id, *r[1:]] for r in res[res[:, 0] == im]]
    assert counts.max() > 1 and counts.min() == 0  # duplicates and left-out images
    dup = _truth(boxes, tuple(crowd), new_id, 3)
    want = coco_map(dup, np.array(rows, np.float64))
    m, m50 = resampled_map(coco_matches(gt, res), counts[None, :].astype(np.float64))
    assert (float(m[0]), float(m50[0])) == pytest.approx(want, abs=1e-9)



def test_bootstrap_map_is_coco_map_with_ties_crowds_and_odd_areas() -> None:
    """On a coarse grid (many equal IoUs and scores), with crowds, a category without truth,
    more than 100 results on an image, areas out of range and negative widths, every weight
    1 gives faster-coco-eval's mAP and mAP@.5."""
    rng = np.random.default_rng(12)
    for trial in range(30):
        n_img, n_cat = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        n_gt, n_det = int(rng.integers(1, 40)), int(rng.integers(0, 260 if trial % 10 else 40))
        img_ids = np.sort(rng.choice(np.arange(1, 10 * n_img), n_img, replace=False))
        cat_ids = np.sort(rng.choice(np.arange(1, 50), n_cat, replace=False))
        grid = float(rng.choice([1.0, 2.5, 10.0]))

        def boxes(n: int, grid: float = grid) -> np.ndarray:
            return np.column_stack([rng.integers(0, 8, (n, 2)) * grid,
                                    rng.integers(1, 5, (n, 2)) * grid]).astype(float)

        gb = boxes(n_gt)
        g_img, g_cat = rng.choice(img_ids, n_gt), rng.choice(cat_ids[:max(1, n_cat - 1)], n_gt)
        crowd = rng.random(n_gt) < float(rng.choice([0.0, 0.2]))
        area = gb[:, 2] * gb[:, 3]
        if n_gt > 3 and trial % 4 == 0:
            area[1], area[2] = 2e10, -1.0
        src = rng.integers(0, n_gt, n_det)
        db = gb[src] + rng.integers(-1, 2, (n_det, 4)) * grid / 2
        db[:, 2:] = np.abs(db[:, 2:]) + 0.5
        db[rng.random(n_det) < 0.3] = boxes(1)
        db[: min(3, n_det), 2] *= -1 if trial % 5 == 0 else 1
        d_img = np.where(rng.random(n_det) < 0.8, g_img[src], rng.choice(img_ids, n_det))
        d_cat = np.where(rng.random(n_det) < 0.8, g_cat[src], rng.choice(cat_ids, n_det))
        res = np.column_stack([d_img, db, np.round(rng.random(n_det), 1), d_cat]
                              ).astype(np.float64)
        gt = CocoTruth(img_ids, cat_ids, g_img, g_cat, gb, area, crowd,
                       np.arange(1, n_gt + 1))
        library, bootstrap = _map_both_ways(gt, res)
        assert bootstrap == pytest.approx(library, abs=1e-12), trial
