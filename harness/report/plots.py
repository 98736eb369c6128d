"""Plots for the HTML report, drawn with matplotlib and inlined as SVG.

Why matplotlib: it is the long-maintained standard of scientific Python, already
a dependency, renders headless (Agg) with no browser, JavaScript or network, and
writes SVG that embeds in one self-contained HTML file that opens from disk.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "figure.dpi": 100})


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def latency_plot(labels: list[str], samples: list[np.ndarray],
                 cis: list[tuple[float, float] | None], title: str) -> str:
    """Horizontal box plots with every sample as a jittered strip and the median's 95 % CI."""
    n = len(labels)
    fig, ax = plt.subplots(figsize=(8.5, 0.55 * n + 1.2))
    pos = np.arange(n)
    ax.boxplot(samples, positions=pos, vert=False, widths=0.5, showfliers=False,
               medianprops={"color": "#c0392b", "linewidth": 1.6},
               boxprops={"color": "#34495e"}, whiskerprops={"color": "#34495e"})
    rng = np.random.default_rng(0)
    for i, x in enumerate(samples):
        ax.scatter(x, i + rng.uniform(-0.18, 0.18, size=x.size), s=5, alpha=0.35,
                   color="#2980b9", linewidths=0)
        ci = cis[i]
        if ci:
            ax.plot(ci, [i + 0.34, i + 0.34], color="#c0392b", linewidth=3, solid_capstyle="butt")
    ax.set_yticks(pos, labels)
    ax.invert_yaxis()
    log = needs_log_axis([float(v) for x in samples for v in np.ravel(x)])
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("latency per inference (ms" + (", log scale" if log else "")
                  + ") — box: quartiles, red bar: 95% CI of the median")
    ax.set_title(title, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower x AND higher y is better), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -np.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


LOG_SPAN = 10.0
"""Latency axes switch to a log scale when the largest value is more than this many times
the smallest (a 0.1 ms and a 20 ms model on one linear axis hide the fast one)."""


def needs_log_axis(values: Any) -> bool:
    """Whether positive values span more than :data:`LOG_SPAN` (×)."""
    arr = np.asarray([v for v in np.ravel(np.asarray(values, dtype=float)) if v > 0])
    return bool(arr.size) and float(arr.max()) > LOG_SPAN * float(arr.min())


LABEL_OFFSETS: list[tuple[float, float]] = [
    (6, 4), (6, -12), (-6, 4), (-6, -12), (6, 16), (6, -24), (-6, 16), (-6, -24),
    (6, 28), (6, -36), (-6, 28), (-6, -36)]
"""Where a point's label may go (points right/up of the marker; negative x: left of it)."""


def place_labels(points: list[tuple[float, float]], labels: list[str], char_w: float = 4.8,
                 line_h: float = 10.0) -> list[tuple[float, float]]:
    """An offset (in points) per label so that no two labels overlap where it can be
    helped: each label takes the first place in :data:`LABEL_OFFSETS` that is free, the
    labels of the most crowded points placed first. ``points`` are in display points."""
    boxes: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float]] = [LABEL_OFFSETS[0]] * len(points)

    def box(i: int, off: tuple[float, float]) -> tuple[float, float, float, float]:
        w = char_w * len(labels[i])
        x0 = points[i][0] + off[0] - (w if off[0] < 0 else 0)
        y0 = points[i][1] + off[1]
        return x0, y0, x0 + w, y0 + line_h

    def free(b: tuple[float, float, float, float]) -> bool:
        return all(b[2] <= o[0] or o[2] <= b[0] or b[3] <= o[1] or o[3] <= b[1] for o in boxes)

    def crowd(i: int) -> int:
        return sum(abs(points[i][0] - p[0]) < 40 and abs(points[i][1] - p[1]) < 20
                   for p in points)

    for i in sorted(range(len(points)), key=lambda i: (-crowd(i), points[i])):
        found = next((off for off in LABEL_OFFSETS if free(box(i, off))), None)
        # all taken: stack above the highest label
        choice = found if found is not None else (6.0, max(o[3] for o in boxes) - points[i][1]
                                                  + 2)
        out[i] = choice
        boxes.append(box(i, choice))
    return out


def accuracy_plot(labels: list[str], latency: list[float], accuracy: list[float],
                  size_kib: list[float], metric: str, title: str) -> str:
    """Accuracy vs median latency (marker area ∝ file size), the Pareto front joined;
    labels placed apart when points crowd, a log latency axis when latencies span > 10×."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    sizes = np.asarray(size_kib)
    area = 30 + 300 * sizes / sizes.max() if sizes.size and sizes.max() > 0 else 40
    ax.scatter(latency, accuracy, s=area, alpha=0.6, color="#2980b9", edgecolors="#1c4966")
    front = pareto_front(list(zip(latency, accuracy, strict=True)))
    ax.plot([latency[i] for i in front], [accuracy[i] for i in front], "--", color="#c0392b",
            label="Pareto front (faster or more accurate than every other point)")
    log = needs_log_axis(latency)
    if log:
        ax.set_xscale("log")
    ax.margins(x=0.25, y=0.2)
    ax.autoscale_view()
    to_points = 72.0 / fig.dpi
    shown = [tuple(float(c) * to_points for c in ax.transData.transform((x, y)))
             for x, y in zip(latency, accuracy, strict=True)]
    offsets = place_labels(shown, labels)  # type: ignore[arg-type]
    for i, lab in enumerate(labels):
        dx, dy = offsets[i]
        moved = (dx, dy) != LABEL_OFFSETS[0]
        ax.annotate(lab, (latency[i], accuracy[i]), textcoords="offset points", xytext=(dx, dy),
                    fontsize=8, ha="right" if dx < 0 else "left",
                    arrowprops={"arrowstyle": "-", "color": "#7f8c8d", "linewidth": 0.6}
                    if moved else None)
    ax.set_xlabel("median latency (ms" + (", log scale" if log else "")
                  + ") — marker size ∝ file size")
    ax.set_ylabel(metric)
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    return _svg(fig)


def bar_plot(labels: list[str], values: list[float], colors: list[str], xlabel: str,
             title: str) -> str:
    """Horizontal bars, largest on top."""
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * len(labels) + 1.0))
    pos = np.arange(len(labels))
    ax.barh(pos, values, color=colors)
    ax.set_yticks(pos, labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


_METHOD_MARKERS = {"per-iteration": "o", "per-launch": "s", "summary": "^"}


def trend_plot(labels: list[str], values: list[float | None], statistics: list[str | None],
               methods: list[str | None], cis: list[tuple[float, float] | None],
               changes: list[tuple[int, str, bool]], failed: list[int], title: str) -> str:
    """One series across runs: each point's figure (marker by statistic and method) with its
    95 % CI; change points as vertical lines (red slower, green faster; dotted while
    unconfirmed); failed jobs as red crosses on the axis."""
    n = len(labels)
    fig, ax = plt.subplots(figsize=(8.5, 3.0))
    x = np.arange(n)
    known = [i for i in range(n) if values[i] is not None]
    if known:
        ax.plot([x[i] for i in known], [float(values[i] or 0.0) for i in known],
                color="#95a5a6",
                linewidth=1, zorder=1)
    groups: dict[tuple[str, str], list[int]] = {}
    for i in known:
        groups.setdefault((statistics[i] or "?", methods[i] or "?"), []).append(i)
    for (stat, method), idx in sorted(groups.items()):
        ys = np.array([values[i] for i in idx], dtype=float)
        bounds = [cis[i] or (float(ys[k]), float(ys[k])) for k, i in enumerate(idx)]
        lo = ys - np.array([b[0] for b in bounds])
        hi = np.array([b[1] for b in bounds]) - ys
        ax.errorbar(x[idx], ys, yerr=np.vstack([np.maximum(lo, 0), np.maximum(hi, 0)]),
                    fmt=_METHOD_MARKERS.get(method, "D"), color="#2980b9", ecolor="#7fb3d5",
                    capsize=3, markersize=5, label=f"{stat} ({method}), 95% CI", zorder=2)
    for i, verdict, confirmed in changes:
        colour = "#c0392b" if verdict == "slower" else "#1e8449"
        ax.axvline(i - 0.5, color=colour, linestyle="-" if confirmed else ":", linewidth=1.5,
                   label=f"{verdict}{'' if confirmed else ' (unconfirmed)'}")
    if failed:
        ymin = min((v for v in values if v is not None), default=0.0)
        ax.scatter(x[failed], [ymin] * len(failed), marker="x", color="#c0392b", s=40,
                   label="failed", zorder=3)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_xlim(-0.6, max(n - 0.4, 0.6))
    log = needs_log_axis([v for v in values if v is not None])
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale)" if log else "latency (ms)")
    ax.set_title(title, loc="left")
    ax.grid(axis="y", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, frameon=False, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


def sustained_plot(windows: list[dict[str, Any]], throttle_at_s: float | None,
                   threshold_ms: float | None, title: str) -> str:
    """A sustained run over time: each window's latency median and p90 (left axis), the
    hottest temperature where read (right axis), the throttling limit as a dashed line and
    the throttling point as a red vertical line."""
    fig, ax = plt.subplots(figsize=(8.5, 3.0))
    mid = [(w["start_s"] + w["end_s"]) / 2 for w in windows]
    for key, name, style in (("median_ms", "median", "o-"), ("p90_ms", "p90", "s--")):
        pts = [(x, w[key]) for x, w in zip(mid, windows, strict=True) if w.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, markersize=4,
                    color="#2980b9" if key == "median_ms" else "#7fb3d5", label=name)
    if threshold_ms is not None:
        ax.axhline(threshold_ms, color="#95a5a6", linestyle=":", linewidth=1,
                   label="throttling limit (first window + threshold)")
    if throttle_at_s is not None:
        ax.axvline(throttle_at_s, color="#c0392b", linewidth=1.5,
                   label=f"throttled from {throttle_at_s:.1f}s")
    ax.set_xlabel("time since the sustained run started (s)")
    ax.set_ylabel("latency (ms)")
    temps = [(x, max(w["temperatures_c"].values())) for x, w in zip(mid, windows, strict=True)
             if w.get("temperatures_c")]
    handles, names = ax.get_legend_handles_labels()
    if temps:
        ax2 = ax.twinx()
        ax2.plot([t[0] for t in temps], [t[1] for t in temps], "^-", color="#e67e22",
                 markersize=3, linewidth=1, label="hottest sensor (°C)")
        ax2.set_ylabel("°C")
        more, labels = ax2.get_legend_handles_labels()
        handles, names = handles + more, names + labels
    ax.set_title(title, loc="left")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles, names, fontsize=7, frameon=False, loc="upper left",
              bbox_to_anchor=(1.08, 1.0))
    return _svg(fig)


def score_histograms(labels: list[str], bins: list[float], reference: list[list[int]],
                     variants: list[list[int]], score: str, title: str) -> str:
    """One panel per variant: its confidence-score histogram over the float model's."""
    n = len(labels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(8.5, 2.3 * rows + 0.6), squeeze=False,
                             sharex=True)
    edges = np.asarray(bins)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        ax.stairs(reference[k], edges, color="#7f8c8d", linewidth=1.4, label="fp32",
                  fill=True, alpha=0.35)
        ax.stairs(variants[k], edges, color="#c0392b", linewidth=1.4, label=labels[k])
        ax.set_title(labels[k], loc="left", fontsize=9)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, frameon=False)
    fig.supxlabel(score, fontsize=9)
    fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.tight_layout()
    return _svg(fig)


def reliability_diagrams(labels: list[str], before: list[dict[str, Any]],
                         after: list[dict[str, Any]], title: str) -> str:
    """One panel per variant: share right against mean confidence per bin, before (grey) and
    after (red) recalibration, over the diagonal of perfect calibration."""
    n = len(labels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(8.5, 2.6 * rows + 0.6), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        ax.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.8, linestyle="--")
        for pts, color, name in ((before[k], "#7f8c8d", "before"),
                                 (after[k], "#c0392b", "after")):
            xy = [(c, a) for c, a in zip(pts["confidence"], pts["accuracy"], strict=True)
                  if c is not None and a is not None]
            if xy:
                ax.plot(*zip(*xy, strict=True), marker="o", markersize=3, color=color,
                        linewidth=1.2, label=name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(labels[k], loc="left", fontsize=9)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, frameon=False)
    fig.supxlabel("mean confidence (top-1 probability)", fontsize=9)
    fig.supylabel("share right", fontsize=9)
    fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.tight_layout()
    return _svg(fig)
