"""How closely a variant's outputs follow the float model's, output by output."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _reference_terms(ref: np.ndarray) -> dict[str, Any]:
    """What the comparisons need from one reference output alone (the same for every variant),
    and scratch arrays of its size for the variant side."""
    r = ref.astype(np.float64).reshape(len(ref), -1)
    return {"r": r, "signal": float(np.mean(r**2)), "norm": np.linalg.norm(r, axis=1),
            "top1": np.argmax(r, 1) if r.shape[1] > 1 else None,
            "scratch": [np.empty_like(r) for _ in range(3)]}


def fidelity(
    reference: list[np.ndarray], outputs: list[np.ndarray],
    reference_cache: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, float | None]]:
    """Per output vs the float reference: SQNR (dB), cosine, MSE, max abs error, top-1 agreement.

    ``reference_cache``: a dict kept across calls with the same ``reference`` (evaluate's
    variants): what is computed from the reference alone, and scratch arrays reused in place of
    fresh temporaries (the same arithmetic, in the same order).
    """
    rows: list[dict[str, float | None]] = []
    for k, (ref, out) in enumerate(zip(reference, outputs, strict=True)):
        terms = reference_cache.get(k) if reference_cache is not None else None
        if terms is None:
            terms = _reference_terms(ref)
            if reference_cache is not None:
                reference_cache[k] = terms
        r = terms["r"]
        flat = out.reshape(len(out), -1)
        if flat.shape == r.shape:
            o, err, tmp = terms["scratch"]
            np.copyto(o, flat, casting="unsafe")  # = out.astype(float64)
        else:
            o, err, tmp = flat.astype(np.float64), None, None
        err = np.subtract(o, r, out=err)
        noise = float(np.mean(np.multiply(err, err, out=tmp)))  # = mean(err ** 2)
        signal = terms["signal"]
        sqnr = (
            math.inf
            if noise == 0
            else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
        )
        num = np.add.reduce(np.multiply(r, o, out=tmp), axis=1)  # = sum(r * o, axis=1)
        # = norm(r, axis=1) * norm(o, axis=1), norm being sqrt(add.reduce(x * x, axis))
        den = terms["norm"] * np.sqrt(np.add.reduce(np.multiply(o, o, out=tmp), axis=1))
        pos = den > 0
        cos = num / np.where(pos, den, 1)
        if not np.all(pos):  # a zero (or NaN) norm: 1 when the rows are equal, else 0
            cos = np.where(pos, cos, np.where(np.all(r == o, axis=1), 1.0, 0.0))
        agree = (float(np.mean(terms["top1"] == np.argmax(o, 1)))
                 if terms["top1"] is not None else None)
        rows.append(
            {
                "sqnr_db": None if math.isinf(sqnr) else round(sqnr, 3),
                "cosine": float(np.mean(cos)),
                "mse": noise,
                "max_abs_err": float(np.max(np.abs(err, out=tmp))) if err.size else 0.0,
                "top1_agreement": agree,
            }
        )
    return rows
