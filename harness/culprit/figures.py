"""Per-op figures of a culprit search: each exposed tensor's outputs on the delegate against the
host's reference kernels (:func:`quantlab.harness.numerics.compare_arrays`: cosine, SQNR, max
abs error, NaN/Inf counts), its relative error, the error an op **added** (its output's error
minus the worst of its inputs'), and the verdicts: the first op whose output crosses the bound
and the op that added the most.

The relative error is ``‖delegate − reference‖ / ‖reference‖`` (SQNR in dB is ``−20·log10`` of
it); a NaN or Inf in the delegate's output makes it infinite and the op failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from quantlab.harness.numerics import DEFAULT_MIN_COSINE, compare_arrays
from quantlab.harness.tflite_graph import GraphOp


def tensor_figures(reference: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    """compare_arrays' figures of one tensor plus ``error`` (relative, inf for NaN/Inf)."""
    f = compare_arrays(reference, output)
    if f.get("error"):
        return {**f, "compare_error": f.pop("error"), "error": math.inf}
    sqnr = f["sqnr_db"]
    if f["nonfinite"] > 0:
        err = math.inf
    elif sqnr == math.inf:
        err = 0.0
    elif sqnr == -math.inf:
        err = math.inf
    else:
        err = 10 ** (-sqnr / 20)
    f["error"] = err
    return f


def failed(fig: Mapping[str, Any], min_cosine: float = DEFAULT_MIN_COSINE) -> str | None:
    """Why one tensor's figures cross the bound, or None."""
    if fig.get("compare_error"):
        return str(fig["compare_error"])
    if fig["nonfinite"]:
        return f"{fig['nonfinite']} of {fig['values']} values are NaN/Inf"
    if fig["cosine"] < min_cosine:
        return f"cosine {fig['cosine']:.4f} < {min_cosine}"
    return None


def op_rows(ops: Sequence[GraphOp], figures: Mapping[int, dict[str, Any]],
            where: Mapping[int, str], min_cosine: float) -> list[dict[str, Any]]:
    """One row per op with a figure for one of its outputs (``figures``: tensor index →
    :func:`tensor_figures` plus ``tensor`` name and ``probe``), in execution order."""
    rows = []
    for op in ops:
        outs = [figures[t] for t in op.outputs if t in figures]
        if not outs:
            continue
        worst = max(outs, key=lambda f: f["error"])
        fed = [figures[t]["error"] for t in op.inputs if t in figures]
        inputs_worst = max(fed, default=0.0)
        added = 0.0 if math.isinf(inputs_worst) else worst["error"] - inputs_worst
        why = failed(worst, min_cosine)
        rows.append({
            "index": op.index, "op_type": op.op_type, "tensor": worst["tensor"],
            "placement": where.get(op.index, "unknown"), "cosine": worst.get("cosine"),
            "sqnr_db": worst.get("sqnr_db"), "max_abs": worst.get("max_abs"),
            "nonfinite": worst.get("nonfinite"), "error": worst["error"],
            "inputs_error": inputs_worst, "added": added, "failed": why,
            "probe": worst["probe"], "placement_changed": worst.get("placement_changed", False),
        })
    return rows


def blame(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``first_failing`` (the first op whose output crosses the bound) and ``largest`` (the op
    that added the most error), each ``{index, op_type, tensor, why|added}`` or None; with no
    op over the bound there is no culprit and neither is named (the rows keep every figure)."""
    first = next((r for r in rows if r["failed"]), None)
    largest = None if first is None else max(
        (r for r in rows if r["added"] > 0), key=lambda r: r["added"], default=None)
    return {
        "first_failing": None if first is None else {
            k: first[k] for k in ("index", "op_type", "tensor", "failed", "added")},
        "largest": None if largest is None else {
            k: largest[k] for k in ("index", "op_type", "tensor", "added", "error")},
    }


def placement_of(placement: Mapping[str, Any] | None, n_ops: int) -> dict[int, str]:
    """Op index → ``"<delegate> partition <k>"`` or ``"CPU"``, from a runner's placement
    (``partitions: [{delegate, nodes}]``); empty when none was recorded."""
    if not placement or placement.get("error") or placement.get("ops_total") is None:
        return {}
    out = {i: "CPU" for i in range(n_ops)}
    for k, part in enumerate(placement.get("partitions") or [], 1):
        for node in part.get("nodes") or []:
            out[int(node)] = f"{part.get('delegate') or 'delegate'} partition {k}"
    return out


def same_placement(original: Mapping[int, str], probe: Mapping[int, str], kept: int) -> bool:
    """Whether a probe keeping the first ``kept`` ops put them where the original model did:
    the same ops delegated, grouped into the same partitions."""
    def groups(where: Mapping[int, str]) -> list[frozenset[int]]:
        by: dict[str, set[int]] = {}
        for i in range(kept):
            by.setdefault(where.get(i, "unknown"), set()).add(i)
        return sorted((frozenset(v) for k, v in by.items() if k != "CPU"), key=min)
    return (not original and not probe) or groups(original) == groups(probe)
