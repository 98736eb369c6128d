"""Regression and keypoints: MSE/MAE (and PCK for keypoint targets); label-free: cosine."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from quantlab.harness.errors import DataError
from quantlab.harness.tasks import Context, OutputInfo, intervals

PCK_THRESHOLD = 0.2
"""A keypoint is correct within this share of the target keypoints' extent (PCK@0.2)."""


def pck(pred: np.ndarray, target: np.ndarray, threshold: float = PCK_THRESHOLD) -> float:
    """Share of keypoints within ``threshold`` × (the larger side of the target's bounding box)."""
    extent = np.max(target.max(axis=1) - target.min(axis=1), axis=-1)  # (N,)
    dist = np.linalg.norm(pred - target, axis=-1)  # (N, K)
    return float(np.mean(dist <= threshold * np.maximum(extent, 1e-12)[:, None]))


class Regression:
    """Float targets: MSE (primary, lower is better), MAE; keypoint targets (N, K, 2|3) add PCK."""

    name = "regression"
    primary_metric = "mse"
    label_free_metric = "cosine"
    lower_is_better = frozenset({"mse", "mae"})
    decoders: tuple[str, ...] = ("values",)

    def matches(self, outputs: list[OutputInfo], y: np.ndarray | None) -> str | None:
        if len(outputs) == 1 and y is not None and y.dtype.kind == "f":
            return "float targets"
        if len(outputs) == 1 and y is None and len(outputs[0].shape) == 2 \
                and outputs[0].shape[1] == 1:
            return "one value per input, no labels"
        return None

    def load_labels(self, labels_path: str | None, y: np.ndarray | None, n: int,
                    ctx: Context) -> Any:
        if labels_path:
            raise DataError(f"{labels_path}: regression takes its targets from the data file "
                            "(--y-key), not --labels")
        return y

    def decode(self, outputs: list[np.ndarray], ctx: Context) -> np.ndarray:
        return outputs[0].astype(np.float64)

    def metrics(self, pred: np.ndarray, ctx: Context) -> dict[str, float]:
        y = ctx.labels
        if y is None:
            return {}
        target = y.reshape(pred.shape) if y.size == pred.size else y
        diff = pred - target.astype(np.float64)
        out = {"mse": float(np.mean(diff**2)), "mae": float(np.mean(np.abs(diff)))}
        if y.ndim == 3 and y.shape[-1] in (2, 3) and pred.size == y.size:
            out["pck"] = pck(pred.reshape(y.shape)[..., :2], y[..., :2].astype(np.float64))
        return out

    def fidelity(self, ref: np.ndarray, pred: np.ndarray, ctx: Context
                 ) -> dict[str, float | None]:
        r = ref.reshape(len(ref), -1)
        o = pred.reshape(len(pred), -1)
        return {"cosine": float(np.mean(_cosines(ref, pred))),
                "output_mse": float(np.mean((r - o) ** 2))}

    def calibration(self, ref: Any, pred: Any, ctx: Context) -> dict[str, Any] | None:
        return None  # no confidence scores

    def drop_interval(self, ref: np.ndarray, pred: np.ndarray, ctx: Context, metric: str
                      ) -> dict[str, Any] | None:
        """A paired bootstrap over samples of the per-sample terms: squared or absolute
        errors (mse, mae), or each sample's cosine with the float model (cosine)."""
        started = time.perf_counter()
        if metric in ("mse", "mae") and ctx.labels is not None:
            y = ctx.labels.astype(np.float64)

            def terms(out: np.ndarray) -> np.ndarray:
                diff = out.reshape(len(out), -1) - y.reshape(len(y), -1)
                return np.mean(diff**2 if metric == "mse" else np.abs(diff), axis=1)
            drops = intervals.mean_drop(terms(ref), terms(pred), lower_is_better=True)
        elif metric == "cosine":
            drops = intervals.mean_drop(_cosines(ref, ref), _cosines(ref, pred))
        else:
            return None
        low, high = intervals.paired_bootstrap(drops, len(ref))
        return intervals.interval_record(low, high, "paired bootstrap over samples",
                                         started, intervals.RESAMPLES)


def _cosines(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Each sample's cosine with the float model (1 for equal zero rows, 0 for a zero row)."""
    r, o = ref.reshape(len(ref), -1), pred.reshape(len(pred), -1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
    same = np.all(r == o, axis=1)
    return np.asarray(np.where(den > 0, np.sum(r * o, axis=1) / np.where(den > 0, den, 1),
                               np.where(same, 1.0, 0.0)))


TASK = Regression()
