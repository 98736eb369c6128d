"""How closely a variant's outputs follow the float model's, output by output.

Outputs are compared a block of samples at a time in float64, so the temporaries stay
cache-sized and a detector's raw outputs (a YOLO head: 2.8 MB per image) are never copied whole
into float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

BLOCK_VALUES = 1 << 16  # output values compared at a time


def _blocks(rows: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) of row blocks of about :data:`BLOCK_VALUES` values."""
    n, width = rows.shape
    step = max(1, BLOCK_VALUES // max(1, width))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _reference_terms(ref: np.ndarray) -> dict[str, Any]:
    """What the comparisons need from one reference output alone (the same for every
    variant): mean square, each sample's norm and top-1 class."""
    r2 = ref.reshape(len(ref), -1)
    square = 0.0
    norm = np.empty(len(r2))
    top1 = np.empty(len(r2), np.int64) if r2.shape[1] > 1 else None
    for s, e in _blocks(r2):
        r = r2[s:e].astype(np.float64)
        rr = np.add.reduce(r * r, axis=1)
        square += float(rr.sum())
        norm[s:e] = np.sqrt(rr)
        if top1 is not None:
            top1[s:e] = np.argmax(r, 1)
    return {"shape": r2.shape, "signal": square / r2.size if r2.size else 0.0, "norm": norm,
            "top1": top1}


def _compare(ref: np.ndarray, out: np.ndarray, terms: dict[str, Any]
             ) -> dict[str, float | None]:
    """SQNR, cosine, MSE, max abs error and top-1 agreement of one output against the
    reference, block by block."""
    r2, o2 = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    noise = 0.0
    worst: list[float] = []
    num, o_norm = np.empty(len(r2)), np.empty(len(r2))
    equal = np.empty(len(r2), bool)
    agree = 0
    top1 = terms["top1"]
    for s, e in _blocks(r2):
        r, o = r2[s:e].astype(np.float64), o2[s:e].astype(np.float64)
        err = o - r
        noise += float(np.add.reduce(err * err, axis=None))
        if err.size:
            worst.append(float(np.max(np.abs(err))))  # a NaN stays a NaN
        num[s:e] = np.add.reduce(r * o, axis=1)
        o_norm[s:e] = np.sqrt(np.add.reduce(o * o, axis=1))
        equal[s:e] = np.all(r == o, axis=1)
        if top1 is not None:
            agree += int(np.count_nonzero(top1[s:e] == np.argmax(o, 1)))
    mse = noise / r2.size if r2.size else 0.0
    signal = terms["signal"]
    ratio = signal / mse if mse else math.inf  # 0 when the noise overflowed to inf
    sqnr = 10 * math.log10(ratio) if 0 < ratio < math.inf else (
        math.inf if mse == 0 else -math.inf)
    den = terms["norm"] * o_norm
    pos = den > 0
    cos = num / np.where(pos, den, 1)
    if not np.all(pos):  # a zero (or NaN) norm: 1 when the rows are equal, else 0
        cos = np.where(pos, cos, np.where(equal, 1.0, 0.0))
    return {
        "sqnr_db": None if math.isinf(sqnr) else round(sqnr, 3),
        "cosine": float(np.mean(cos)),
        "mse": mse,
        "max_abs_err": float(np.max(worst)) if worst else 0.0,
        "top1_agreement": agree / len(r2) if top1 is not None else None,
    }


def fidelity(
    reference: list[np.ndarray], outputs: list[np.ndarray],
    reference_cache: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per output vs the float reference: SQNR (dB), cosine, MSE, max abs error, top-1 agreement.

    ``reference_cache``: a dict kept across calls with the same ``reference`` (evaluate's
    variants) for what is computed from the reference alone. An output whose shape differs
    from the reference's gets no figures and an ``error`` saying so.
    """
    rows: list[dict[str, Any]] = []
    for k, (ref, out) in enumerate(zip(reference, outputs, strict=True)):
        terms = reference_cache.get(k) if reference_cache is not None else None
        if terms is None:
            terms = _reference_terms(ref)
            if reference_cache is not None:
                reference_cache[k] = terms
        if out.shape != ref.shape:
            rows.append({"sqnr_db": None, "cosine": None, "mse": None, "max_abs_err": None,
                         "top1_agreement": None,
                         "error": f"output {k} is {list(out.shape)}, the float model's "
                                  f"{list(ref.shape)}"})
            continue
        rows.append(_compare(ref, out, terms))
    return rows
