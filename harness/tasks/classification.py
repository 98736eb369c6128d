"""Classification: one score vector per input; top-1/top-5, top-1 agreement, calibration (ECE)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from quantlab.harness.errors import DataError
from quantlab.harness.tasks import Context, OutputInfo, ece, intervals, score_drift


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows as probabilities: kept when they already are, softmax of logits otherwise."""
    s = scores.astype(np.float64)
    if s.size and s.min() >= 0 and s.max() <= 1 and np.allclose(s.sum(axis=1), 1, atol=1e-2):
        return s
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Classification:
    """Top-k accuracy on class-index labels; label-free: top-1 agreement with the float model."""

    name = "classification"
    primary_metric = "top1"
    label_free_metric = "top1_agreement"
    lower_is_better: frozenset[str] = frozenset()
    decoders: tuple[str, ...] = ("scores",)

    def matches(self, outputs: list[OutputInfo], y: np.ndarray | None) -> str | None:
        if len(outputs) != 1:
            return None
        classes = int(np.prod(outputs[0].shape[1:])) if len(outputs[0].shape) > 1 else 0
        if classes < 2 or any(d != 1 for d in outputs[0].shape[1:-1]):
            return None
        if y is None:
            return f"one score vector of {classes} per input, no labels"
        if y.ndim == 1 and y.dtype.kind in "iub":
            return f"one score vector of {classes} per input and class-index labels"
        return None

    def load_labels(self, labels_path: str | None, y: np.ndarray | None, n: int,
                    ctx: Context) -> Any:
        if labels_path:
            raise DataError(f"{labels_path}: classification takes its labels from the data "
                            "file (--y-key), not --labels")
        return y

    def decode(self, outputs: list[np.ndarray], ctx: Context) -> np.ndarray:
        out = outputs[0]
        return out.reshape(len(out), -1)

    def metrics(self, pred: np.ndarray, ctx: Context) -> dict[str, float]:
        y = ctx.labels
        if y is None:
            return {}
        top1 = float(np.mean(np.argmax(pred, axis=1) == y))
        k = min(5, pred.shape[1])
        topk = np.argpartition(-pred, k - 1, axis=1)[:, :k]
        top5 = float(np.mean(np.any(topk == y[:, None], axis=1)))
        return {"top1": top1, "top5": top5}

    def fidelity(self, ref: np.ndarray, pred: np.ndarray, ctx: Context
                 ) -> dict[str, float | None]:
        return {"top1_agreement": float(np.mean(np.argmax(ref, 1) == np.argmax(pred, 1)))}

    def calibration(self, ref: np.ndarray, pred: np.ndarray, ctx: Context
                    ) -> dict[str, Any] | None:
        pr, pv = probabilities(ref), probabilities(pred)
        top_ref = np.argmax(pr, axis=1)
        rows = np.arange(len(pr))
        out = score_drift(pr.max(axis=1), pv.max(axis=1),
                          (pr[rows, top_ref], pv[rows, top_ref]))
        out["score"] = "top-1 probability"
        y = ctx.labels
        out["reference_ece"] = ece(pr.max(axis=1), np.argmax(pr, 1) == y) if y is not None \
            else None
        out["ece"] = ece(pv.max(axis=1), np.argmax(pv, 1) == y) if y is not None else None
        return out

    def recalibrate(self, ref: np.ndarray, pred: np.ndarray, ctx: Context, seed: int = 0
                    ) -> dict[str, Any]:
        """A temperature fitted on a seeded half of the labelled samples, with the ECE before
        and after on the held-out half (:mod:`quantlab.harness.tasks.recalibration`)."""
        from quantlab.harness.tasks.recalibration import recalibrate

        return recalibrate(pred, ctx.labels, seed)

    def drop_interval(self, ref: np.ndarray, pred: np.ndarray, ctx: Context, metric: str
                      ) -> dict[str, Any] | None:
        """top1: Tango's paired score interval from the discordant samples; top1_agreement:
        the Wilson interval of the share of samples whose top-1 class changed."""
        started = time.perf_counter()
        r1, p1 = np.argmax(ref, axis=1), np.argmax(pred, axis=1)
        n = len(r1)
        if metric == "top1" and ctx.labels is not None:
            y = ctx.labels
            ref_ok, var_ok = r1 == y, p1 == y
            b, c = int(np.sum(ref_ok & ~var_ok)), int(np.sum(~ref_ok & var_ok))
            low, high = intervals.tango_interval(b, c, n)
            return intervals.interval_record(
                low, high, f"Tango score interval, paired: {b} of {n} samples right only with "
                f"fp32, {c} only with the variant", started,
                zero_drop=intervals.tango_interval(0, 0, n))
        if metric == "top1_agreement":
            k = int(np.sum(r1 != p1))
            low, high = intervals.wilson_interval(k, n)
            return intervals.interval_record(
                low, high, f"Wilson score interval: top-1 class changed on {k} of {n} samples",
                started, zero_drop=intervals.wilson_interval(0, n))
        return None


TASK = Classification()
