"""Evaluation tasks as plug-ins: one module per task, found by name.

Each task names its primary metric (what ``--max-drop`` gates when labels are
given), its label-free fidelity measure (the gate without labels), the
decoders it knows, and turns raw model outputs into predictions, metrics,
fidelity against the float model and confidence-calibration drift. Adding a
task is one module here plus one line in :data:`TASKS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from quantlab.harness.errors import UserError

TASKS: dict[str, str] = {
    "classification": "quantlab.harness.tasks.classification",
    "detection": "quantlab.harness.tasks.detection",
    "segmentation": "quantlab.harness.tasks.segmentation",
    "regression": "quantlab.harness.tasks.regression",
}
"""Task name → module defining ``TASK`` (an object following :class:`Task`)."""


@dataclass(frozen=True)
class OutputInfo:
    """One model output as the interpreter describes it."""

    name: str
    shape: tuple[int, ...]


@dataclass
class Context:
    """What a task needs beyond the outputs: the model's I/O, the labels, the chosen decoder."""

    outputs: list[OutputInfo]
    input_shape: tuple[int, ...]  # batch first, e.g. (1, H, W, C)
    labels: Any = None  # task-specific ground truth (None: label-free)
    decoder: str | None = None
    notes: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)  # what a task derives once per run

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of an NHWC image input (1, 1 for other inputs)."""
        shape = self.input_shape
        return (int(shape[1]), int(shape[2])) if len(shape) == 4 else (1, 1)


class Task(Protocol):
    """One kind of model output, scored one way."""

    name: str
    primary_metric: str  # gated by --max-drop when labels are given
    label_free_metric: str  # a fidelity measure: the gate without labels
    lower_is_better: frozenset[str]
    decoders: tuple[str, ...]

    def matches(self, outputs: list[OutputInfo], y: np.ndarray | None) -> str | None:
        """Why this task fits the outputs/labels (None: it does not)."""
        ...

    def load_labels(self, labels_path: str | None, y: np.ndarray | None, n: int,
                    ctx: Context) -> Any:
        """The ground truth for ``n`` inputs (None: label-free)."""
        ...

    def decode(self, outputs: list[np.ndarray], ctx: Context) -> Any:
        """Raw outputs (sample axis first) → predictions."""
        ...

    def metrics(self, pred: Any, ctx: Context) -> dict[str, float]:
        """Metrics against ``ctx.labels`` ({} when label-free)."""
        ...

    def fidelity(self, ref: Any, pred: Any, ctx: Context) -> dict[str, float | None]:
        """Task-level agreement of ``pred`` with the float model's ``ref``."""
        ...

    def calibration(self, ref: Any, pred: Any, ctx: Context) -> dict[str, Any] | None:
        """Confidence-score drift vs the float model (histograms, mean shift, ECE)."""
        ...

    def drop_interval(self, ref: Any, pred: Any, ctx: Context, metric: str
                      ) -> dict[str, Any] | None:
        """The 95 % interval of the drop of ``metric`` from ``ref`` to ``pred``, paired over
        the same samples (:mod:`quantlab.harness.tasks.intervals`: ``low``, ``high``, ``method``,
        ``resamples``, ``seconds``); None when the task has no interval for that metric."""
        ...


def get_task(name: str) -> Task:
    """The task registered under ``name``; UserError naming the choices otherwise."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}", hint=f"choose from {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name]).TASK  # type: ignore[no-any-return]


def infer_task(outputs: list[OutputInfo], y: np.ndarray | None,
               labels_path: str | None) -> tuple[Task, str]:
    """The task the outputs and labels point to, with the reason; UserError when ambiguous."""
    if labels_path and str(labels_path).lower().endswith(".json"):
        return get_task("detection"), "labels are COCO annotations JSON"
    fits = [(name, why) for name in TASKS
            if (why := get_task(name).matches(outputs, y)) is not None]
    if len(fits) == 1:
        return get_task(fits[0][0]), fits[0][1]
    shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in outputs)
    if not fits:
        raise UserError(f"cannot tell the task from the outputs ({shapes})",
                        hint=f"pass --task ({', '.join(TASKS)})")
    raise UserError(
        f"the outputs ({shapes}) fit several tasks: {', '.join(n for n, _ in fits)}",
        hint="pass --task")


def subset_labels(labels: Any, index: np.ndarray) -> Any:
    """A task's ground truth for the inputs at ``index`` only (a fixed subset of the
    evaluation set): arrays are indexed, label objects (COCO annotations) give their own
    ``subset``; None stays None."""
    if labels is None:
        return None
    if isinstance(labels, np.ndarray):
        return labels[index]
    return labels.subset([int(i) for i in index])


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float | None:
    """Expected calibration error: Σ_b |accuracy_b − confidence_b| · n_b / N (None when empty)."""
    conf = np.asarray(confidence, np.float64).ravel()
    ok = np.asarray(correct, np.float64).ravel()
    if conf.size == 0:
        return None
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if np.any(sel):
            total += abs(float(ok[sel].mean()) - float(conf[sel].mean())) * int(sel.sum())
    return total / conf.size


HIST_BINS = 20


def score_drift(ref_scores: np.ndarray, scores: np.ndarray,
                shift_pairs: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Histograms of confidence scores (float model vs variant) and the mean score shift.

    ``shift_pairs`` (reference, variant) scores of the same predictions, when
    the task can pair them (the same image's top class, the same box); else
    the shift is the difference of the two means.
    """
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    r = np.clip(np.asarray(ref_scores, np.float64).ravel(), 0, 1)
    v = np.clip(np.asarray(scores, np.float64).ravel(), 0, 1)
    if shift_pairs is not None and len(shift_pairs[0]):
        shift = float(np.mean(np.asarray(shift_pairs[1], np.float64)
                              - np.asarray(shift_pairs[0], np.float64)))
        paired = True
    else:
        shift = float(v.mean() - r.mean()) if r.size and v.size else 0.0
        paired = False
    return {
        "bins": [round(float(e), 4) for e in edges],
        "reference_hist": np.histogram(r, edges)[0].astype(int).tolist(),
        "variant_hist": np.histogram(v, edges)[0].astype(int).tolist(),
        "reference_mean": float(r.mean()) if r.size else None,
        "variant_mean": float(v.mean()) if v.size else None,
        "mean_shift": shift,
        "shift_paired": paired,
    }
