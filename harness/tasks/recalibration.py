"""Confidence recalibration: the temperature that makes a classifier's scores honest again.

``evaluate --recalibrate`` fits one temperature T per variant on a fixed, seeded half of the
labelled samples (softmax(logits / T) minimising the negative log-likelihood) and reports the
ECE before and after on the other, held-out half, so the figure is not measured on the samples
T was fitted to. Scores that are already probabilities are taken as logits through their log
(the same softmax up to a constant). The split is recorded with the values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quantlab.harness.tasks import ece

FIT_SHARE = 0.5
"""Share of the labelled samples the temperature is fitted on; the rest is held out."""

TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 401))
"""The temperatures tried (log-spaced 0.05 … 20, 1.5 % apart), then refined around the best."""


def log_scores(scores: np.ndarray) -> np.ndarray:
    """Rows as logits: kept when they are logits, the log when they are probabilities."""
    s = np.asarray(scores, np.float64)
    s = s.reshape(len(s), -1)
    if s.size and s.min() >= 0 and s.max() <= 1 and np.allclose(s.sum(axis=1), 1, atol=1e-2):
        return np.log(np.clip(s, 1e-12, 1.0))
    return s


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), y]))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature in 0.05 … 20 minimising the NLL of ``y`` (a log-spaced grid, then a
    finer grid between the best point's neighbours)."""
    z = log_scores(logits)
    labels = np.asarray(y, np.int64)
    losses = [nll(z, labels, float(t)) for t in TEMPERATURES]
    best = int(np.argmin(losses))
    low = TEMPERATURES[max(best - 1, 0)]
    high = TEMPERATURES[min(best + 1, len(TEMPERATURES) - 1)]
    fine = np.linspace(low, high, 41)
    return float(fine[int(np.argmin([nll(z, labels, float(t)) for t in fine]))])


def split(n: int, seed: int = 0, share: float = FIT_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held-out) sample indices: a fixed permutation of ``range(n)`` from ``seed``."""
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, min(n - 1, round(n * share)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def _ece_at(z: np.ndarray, y: np.ndarray, temperature: float) -> float | None:
    p = _softmax(z / temperature)
    return ece(p.max(axis=1), np.argmax(p, axis=1) == y)


def reliability(z: np.ndarray, y: np.ndarray, temperature: float, bins: int = 10
                ) -> dict[str, list[Any]]:
    """The reliability diagram's points at ``temperature``: per confidence bin (the ECE's),
    the mean top-1 probability, the share right and the count (None for an empty bin)."""
    p = _softmax(z / temperature)
    conf, right = p.max(axis=1), (np.argmax(p, axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    sel = [which == b for b in range(bins)]
    return {"confidence": [float(conf[s].mean()) if s.any() else None for s in sel],
            "accuracy": [float(right[s].mean()) if s.any() else None for s in sel],
            "count": [int(s.sum()) for s in sel]}


def recalibrate(scores: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Fit a temperature on the fit split of ``scores``/``y`` and measure the ECE on the
    held-out split before (T = 1) and after: ``temperature``, ``ece_before``, ``ece_after``,
    ``reliability`` (``before``/``after``: :func:`reliability` on the held-out split) and
    ``split`` (``seed``, ``fit`` and ``held_out`` sample counts, ``share``)."""
    z = log_scores(scores)
    labels = np.asarray(y, np.int64)
    fit, held = split(len(z), seed)
    t = fit_temperature(z[fit], labels[fit])
    return {"method": "temperature", "temperature": t,
            "ece_before": _ece_at(z[held], labels[held], 1.0),
            "ece_after": _ece_at(z[held], labels[held], t),
            "reliability": {"before": reliability(z[held], labels[held], 1.0),
                            "after": reliability(z[held], labels[held], t)},
            "split": {"seed": seed, "share": FIT_SHARE, "fit": len(fit),
                      "held_out": len(held)}}


def recall_at(scores: np.ndarray, hits: np.ndarray, truths: int, threshold: float) -> float:
    """Share of the ``truths`` truth boxes matched by the detections scored ≥ ``threshold``
    (``hits``: each detection's match, taken best score first so a threshold keeps a prefix)."""
    s, h = np.asarray(scores, np.float64), np.asarray(hits, bool)
    return float(np.sum(h[s >= threshold])) / truths if truths else 0.0


def matching_threshold(ref_scores: np.ndarray, ref_hits: np.ndarray, scores: np.ndarray,
                       hits: np.ndarray, truths: int, ref_threshold: float) -> dict[str, Any]:
    """The highest score threshold at which the variant's recall reaches the float model's
    recall at ``ref_threshold``: ``threshold`` (None when no threshold reaches it),
    ``reference_threshold``, ``reference_recall``, ``recall`` (the variant's there) and
    ``recall_at_reference_threshold``."""
    target = recall_at(ref_scores, ref_hits, truths, ref_threshold)
    s, h = np.asarray(scores, np.float64), np.asarray(hits, bool)
    order = np.argsort(-s, kind="stable")
    found = np.cumsum(h[order]) / truths if truths else np.zeros(len(s))
    # a threshold keeps every detection scored at or above it: only the last of a tie counts
    last = np.r_[s[order][1:] != s[order][:-1], True] if len(s) else np.zeros(0, bool)
    ok = np.flatnonzero(last & (found >= target - 1e-12))
    threshold = float(s[order][ok[0]]) if len(ok) else None
    return {"method": "score threshold", "reference_threshold": ref_threshold,
            "reference_recall": target, "threshold": threshold,
            "recall": None if threshold is None else recall_at(s, h, truths, threshold),
            "recall_at_reference_threshold": recall_at(s, h, truths, ref_threshold)}
