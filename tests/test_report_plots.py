"""Report plots stay legible: labels of crowded points apart, log axes for wide spans."""

from __future__ import annotations

import numpy as np

from quantlab.harness.report.plots import (
    accuracy_plot,
    latency_plot,
    needs_log_axis,
    place_labels,
    trend_plot,
)


def _boxes(points: list[tuple[float, float]], labels: list[str],
           offsets: list[tuple[float, float]]) -> list[tuple[float, float, float, float]]:
    out = []
    for (x, y), lab, (dx, dy) in zip(points, labels, offsets, strict=True):
        w = 4.8 * len(lab)
        x0 = x + dx - (w if dx < 0 else 0)
        out.append((x0, y + dy, x0 + w, y + dy + 10))
    return out


def test_labels_of_overlapping_points_do_not_overlap() -> None:
    points = [(100.0, 100.0)] * 4 + [(102.0, 101.0), (300.0, 50.0)]
    labels = ["int8", "fp16", "mixed-int8", "int16x8", "dynamic-int8", "fp32"]
    boxes = _boxes(points, labels, place_labels(points, labels))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_a_lone_point_keeps_the_default_place() -> None:
    assert place_labels([(10.0, 10.0)], ["fp32"]) == [(6, 4)]


def test_log_axis_only_beyond_ten_times() -> None:
    assert not needs_log_axis([1.0, 9.9])
    assert needs_log_axis([0.1, 2.0])
    assert not needs_log_axis([])
    assert not needs_log_axis([0.0, 5.0])  # zero is not a latency


def test_plots_say_when_the_axis_is_logarithmic() -> None:
    wide = accuracy_plot(["a", "b", "c"], [0.05, 0.05, 20.0], [0.9, 0.9, 0.95],
                         [10.0, 10.0, 40.0], "top1", "acc")
    assert "log scale" in wide
    narrow = accuracy_plot(["a", "b"], [1.0, 2.0], [0.9, 0.95], [10.0, 20.0], "top1", "acc")
    assert "log scale" not in narrow
    rng = np.random.default_rng(0)
    boxes = latency_plot(["fast", "slow"], [rng.uniform(0.1, 0.2, 20), rng.uniform(5, 6, 20)],
                         [None, None], "lat")
    assert "log scale" in boxes
    trend = trend_plot(["r1", "r2"], [0.1, 3.0], ["median"] * 2, ["per-iteration"] * 2,
                       [None, None], [], [], "trend")
    assert "log scale" in trend
