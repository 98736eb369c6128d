"""How closely a variant's outputs follow the float model's, output by output."""

from __future__ import annotations

import math

import numpy as np


def fidelity(
    reference: list[np.ndarray], outputs: list[np.ndarray]
) -> list[dict[str, float | None]]:
    """Per output vs the float reference: SQNR (dB), cosine, MSE, max abs error, top-1 agreement."""
    rows: list[dict[str, float | None]] = []
    for ref, out in zip(reference, outputs, strict=True):
        r = ref.astype(np.float64).reshape(len(ref), -1)
        o = out.astype(np.float64).reshape(len(out), -1)
        err = o - r
        noise = float(np.mean(err**2))
        signal = float(np.mean(r**2))
        sqnr = (
            math.inf
            if noise == 0
            else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
        )
        num = np.sum(r * o, axis=1)
        den = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
        cos = np.where(
            den > 0, num / np.where(den > 0, den, 1), np.where(np.all(r == o, axis=1), 1.0, 0.0)
        )
        agree = float(np.mean(np.argmax(r, 1) == np.argmax(o, 1))) if r.shape[1] > 1 else None
        rows.append(
            {
                "sqnr_db": None if math.isinf(sqnr) else round(sqnr, 3),
                "cosine": float(np.mean(cos)),
                "mse": noise,
                "max_abs_err": float(np.max(np.abs(err))) if err.size else 0.0,
                "top1_agreement": agree,
            }
        )
    return rows
