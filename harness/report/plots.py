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
    ax.set_xlabel("latency per inference (ms) — box: quartiles, red bar: 95% CI of the median")
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


def accuracy_plot(labels: list[str], latency: list[float], accuracy: list[float],
                  size_kib: list[float], metric: str, title: str) -> str:
    """Accuracy vs median latency (marker area ∝ file size), the Pareto front joined."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    sizes = np.asarray(size_kib)
    area = 30 + 300 * sizes / sizes.max() if sizes.size and sizes.max() > 0 else 40
    ax.scatter(latency, accuracy, s=area, alpha=0.6, color="#2980b9", edgecolors="#1c4966")
    front = pareto_front(list(zip(latency, accuracy, strict=True)))
    ax.plot([latency[i] for i in front], [accuracy[i] for i in front], "--", color="#c0392b",
            label="Pareto front (faster or more accurate than every other point)")
    for i, lab in enumerate(labels):
        ax.annotate(lab, (latency[i], accuracy[i]), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    ax.margins(x=0.25, y=0.2)
    ax.set_xlabel("median latency (ms) — marker size ∝ file size")
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
