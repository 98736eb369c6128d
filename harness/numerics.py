"""Numerics per delegate: a delegate's outputs compared with the float model's, on the host.

Fixed inputs (``--inputs`` or seeded random ones matching each input's dtype, shape and
quantization) go to the device; the outputs come back and are compared here with the
float reference model's outputs on the same inputs. Plain numpy: the runtimes that
produce the arrays run in worker processes (:mod:`quantlab.agents.litert.runner`), never here.

Figures, per output and for the whole job (the worst output):

* ``cosine``: cosine similarity of the flattened outputs (1.0 = same direction);
* ``sqnr_db``: signal-to-quantization-noise ratio, 10·log10(Σref² / Σ(ref − out)²);
  ``inf`` when the outputs are identical;
* ``max_abs``: the largest absolute difference;
* ``top1_agreement``: share of rows whose arg-max agrees, only where the output is a
  class vector (rank 1 or 2, last dimension ≥ 2); None otherwise.

Against the float model these figures include the variant's quantization error, which
``evaluate``'s accuracy gate judges. A quantized detector's post-processed outputs can point
elsewhere than the float model's (int8 demo detector: cosine 0.89) while its mAP is within
its gate, so where the variant itself ran on the host's reference kernels,
``delegate_only`` holds the same figures against it, and the numerics gate
(:func:`verdict`) judges those: what the delegate changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_MIN_COSINE = 0.99
"""The numerics gate of ``evaluate --per-delegate`` and ``recommend``: a delegate whose
outputs point elsewhere (cosine below this) than the variant's own on the host's reference
kernels fails; where those are not known (a Core ML model, a variant that is its own float
reference), than the float model's."""

DEFAULT_MIN_TOP1 = 0.99
"""The numerics gate's bound on top-1 agreement, where an output is a class vector
(``bench --min-top1``, ``evaluate --per-delegate --min-top1``, a plan's ``[gate] min_top1``,
``recommend --min-top1``): a cosine of 0.995 can hide 20 % of the inputs changing class."""

NUMERIC_FIELDS = ("cosine", "sqnr_db", "max_abs", "top1_agreement")
COUNT_FIELDS = ("nonfinite", "reference_nonfinite", "values")
"""How many output values were NaN/Inf on the device (``nonfinite``) and in the reference,
of how many (``values``): any non-finite output value fails the gate."""


def dequantize(array: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float values of a quantized array (``scale`` 0 means the array is not quantized)."""
    if scale and array.dtype.kind in "iu":
        return (array.astype(np.float64) - zero_point) * scale
    return array.astype(np.float64)


def _is_class_vector(shape: tuple[int, ...]) -> bool:
    return 1 <= len(shape) <= 2 and shape[-1] >= 2


def compare_arrays(reference: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    """The figures for one output tensor (both in float), over the values finite on both
    sides; ``nonfinite`` counts the output's NaN/Inf values (``reference_nonfinite`` the
    reference's), ``values`` how many it has."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        return {"error": f"shape {tuple(out.shape)} differs from the reference's "
                         f"{tuple(ref.shape)}", "shape": list(out.shape)}
    out_ok, ref_ok = np.isfinite(out), np.isfinite(ref)
    counts = {"nonfinite": int(out.size - np.count_nonzero(out_ok)),
              "reference_nonfinite": int(ref.size - np.count_nonzero(ref_ok)),
              "values": int(out.size)}
    both = (out_ok & ref_ok).ravel()
    a, b = ref.ravel(), out.ravel()
    if not both.all():
        a, b = a[both], b[both]
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(a * a))
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        cosine = 1.0
    elif na == 0.0 or nb == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(a, b) / (na * nb))
    sqnr = math.inf if noise == 0.0 else (10 * math.log10(signal / noise) if signal else -math.inf)
    top1 = None
    if _is_class_vector(ref.shape):
        r2, o2 = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
        # a row holding NaN/Inf disagrees (argmax would pick the NaN)
        rows_ok = np.isfinite(r2).all(axis=1) & np.isfinite(o2).all(axis=1)
        top1 = float(np.mean((np.argmax(r2, axis=1) == np.argmax(o2, axis=1)) & rows_ok))
    return {"cosine": cosine, "sqnr_db": sqnr, "max_abs": float(np.max(np.abs(a - b)))
            if a.size else 0.0, "top1_agreement": top1, "shape": list(ref.shape), **counts}


ALIGNED = ("detections matched by class and overlap before comparing: their order is the "
           "score rank, which small differences permute")


def align_detections(reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
                     ) -> dict[str, np.ndarray] | None:
    """The outputs' post-processed detections (TFLite_Detection_PostProcess: boxes [1,N,4],
    classes, scores, count) in the reference's row order: each reference detection, best score
    first, takes the unused output detection of its class that overlaps it most; the others
    keep their order in the rows left. None when the outputs are not such detections."""
    from quantlab.harness.errors import UserError
    from quantlab.harness.tasks import OutputInfo
    from quantlab.harness.tasks.detection_boxes import iou_matrix
    from quantlab.harness.tasks.detection_decode import ssd_roles

    names = list(reference)
    if len(names) != 4 or sorted(outputs) != sorted(names) or \
            any(np.shape(reference[n]) != np.shape(outputs[n]) for n in names):
        return None
    refs = [np.asarray(reference[n], np.float64) for n in names]
    try:
        roles = ssd_roles([OutputInfo(n, tuple(r.shape)) for n, r in zip(names, refs,
                                                                           strict=True)], refs)
    except UserError:
        return None
    box, cls, score, count = (names[roles[k]] for k in ("boxes", "classes", "scores", "count"))
    if np.shape(reference[box])[0] != 1:
        return None
    rows = np.shape(reference[box])[1]

    def detections(side: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
        n = float(np.asarray(side[count], np.float64).ravel()[0])
        k = int(min(max(n, 0), rows)) if np.isfinite(n) else 0
        return np.asarray(side[box], np.float64)[0, :k], np.asarray(side[cls])[0, :k], k

    rb, rc, k = detections(reference)
    ob, oc, m = detections(outputs)
    ious = iou_matrix(rb, ob)
    ious[rc[:, None] != oc[None, :]] = 0.0
    used = np.zeros(m, bool)
    take: list[int | None] = []
    for i in range(k):
        row = np.where(used, 0.0, ious[i]) if m else np.zeros(0)
        j = int(np.argmax(row)) if m else -1
        if m and row[j] > 0:
            used[j] = True
            take.append(j)
        else:
            take.append(None)
    rest = iter([j for j in range(rows) if j >= m or not used[j]])
    perm = [t if i < k and t is not None else next(rest)
            for i, t in enumerate(take + [None] * (rows - k))]
    out = dict(outputs)
    for name in (box, cls, score):
        out[name] = np.asarray(outputs[name])[:, perm]
    return out


def compare_outputs(reference: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                    outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, Any]:
    """Figures per output (by name, else by position) and the worst of each over outputs.
    Post-processed detections are compared in matched order (:func:`align_detections`)."""
    aligned = None
    if isinstance(reference, Mapping) and isinstance(outputs, Mapping):
        aligned = align_detections(reference, outputs)
        outputs = aligned if aligned is not None else outputs
        names = list(reference)
        pairs = [(n, reference[n], outputs.get(n)) for n in names]
    else:
        refs, outs = list(reference.values() if isinstance(reference, Mapping) else reference), \
            list(outputs.values() if isinstance(outputs, Mapping) else outputs)
        pairs = [(f"output_{i}", r, outs[i] if i < len(outs) else None)
                 for i, r in enumerate(refs)]
    per: dict[str, dict[str, Any]] = {}
    for name, ref, out in pairs:
        per[name] = ({"error": "the device returned no such output"} if out is None
                     else compare_arrays(ref, out))
    ok = [v for v in per.values() if "error" not in v]
    summary: dict[str, Any] = {"outputs": per}
    if aligned is not None:  # rows of detections, not class scores: no top-1 figure
        summary["aligned"] = ALIGNED
        for v in ok:
            v["top1_agreement"] = None
    if not ok:
        summary["error"] = "; ".join(f"{k}: {v['error']}" for k, v in per.items()) or \
            "no outputs to compare"
        return summary
    summary["cosine"] = min(v["cosine"] for v in ok)
    summary["sqnr_db"] = min(v["sqnr_db"] for v in ok)
    summary["max_abs"] = max(v["max_abs"] for v in ok)
    tops = [v["top1_agreement"] for v in ok if v["top1_agreement"] is not None]
    summary["top1_agreement"] = min(tops) if tops else None
    for count in ("nonfinite", "reference_nonfinite", "values"):
        summary[count] = sum(int(v.get(count, 0)) for v in ok)
    return summary


def delegate_only(variant: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]
                  ) -> dict[str, Any]:
    """The figures of a delegate's outputs against the variant's own outputs on the host's
    reference kernels: what the delegate changed, without the variant's quantization error
    (which the float comparison includes and ``evaluate``'s accuracy gate judges)."""
    result = compare_outputs(variant, got)
    if result.get("error"):
        return {"error": result["error"]}
    return {**{k: result.get(k) for k in NUMERIC_FIELDS + COUNT_FIELDS},
            "against": "this variant on TFLite reference kernels (host)"}


def jsonable(numerics: Mapping[str, Any]) -> dict[str, Any]:
    """The figures with NaN and ±inf written as strings (``"nan"``, ``"inf"``, ``"-inf"``),
    numpy scalars as Python ones, so the dict survives strict JSON (PostgreSQL's ``json``
    type refuses a bare NaN token)."""
    def fix(v: Any) -> Any:
        if isinstance(v, float | np.floating):
            f = float(v)
            if math.isnan(f):
                return "nan"
            if math.isinf(f):
                return "inf" if f > 0 else "-inf"
            return f
        if isinstance(v, np.integer | np.bool_):
            return v.item()
        if isinstance(v, Mapping):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [fix(x) for x in v]
        return v
    return fix(dict(numerics))


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or ±inf number (nested in dicts and lists) replaced by None:
    a figure that could not be measured, as evaluation records keep it."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_or_none(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(x) for x in value]
    return value


def as_float(value: Any) -> float | None:
    """A figure back as a float (``"inf"`` → inf); None stays None."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def nonfinite_reason(numerics: Mapping[str, Any]) -> str | None:
    """Why a numerics record fails for NaN/Inf values ("N of M output values are NaN/Inf"),
    or None: the device's outputs first, then the reference's (no comparison is possible)."""
    values = int(as_float(numerics.get("values")) or 0)
    bad = int(as_float(numerics.get("nonfinite")) or 0)
    if bad:
        return f"{bad} of {values} output values are NaN/Inf"
    bad_ref = int(as_float(numerics.get("reference_nonfinite")) or 0)
    if bad_ref:
        return (f"the reference's outputs hold NaN/Inf ({bad_ref} of {values} values): "
                "nothing to compare with")
    return None


def _judge(figures: Mapping[str, Any], against: str, min_cosine: float, min_top1: float
           ) -> tuple[bool, str]:
    """Cosine, then top-1 agreement where the figures have one, against the bounds (a NaN
    fails): (passed, why)."""
    cos = as_float(figures.get("cosine"))
    top1 = as_float(figures.get("top1_agreement"))
    if not (cos is not None and cos >= min_cosine):
        return False, f"cosine {cos:.4f} {against} is below {min_cosine:g}"
    if top1 is not None and not top1 >= min_top1:
        return False, f"top-1 agreement {top1:.1%} {against} is below {100 * min_top1:g}%"
    agree = f", top-1 agreement {top1:.1%} ≥ {100 * min_top1:g}%" if top1 is not None else ""
    return True, f"cosine {cos:.4f} ≥ {min_cosine:g}{agree}"


def verdict(numerics: Mapping[str, Any] | None, min_cosine: float = DEFAULT_MIN_COSINE,
            min_top1: float = DEFAULT_MIN_TOP1) -> tuple[bool | None, str]:
    """Whether a delegate's numerics pass (None when there is nothing to judge) and why.

    The delegate passes when its cosine is at least ``min_cosine`` and, where an output is
    a class vector (``top1_agreement`` is not None), its top-1 agreement at least
    ``min_top1``: against the variant itself on the host where that ran
    (``delegate_only``), else against the float model.
    A record with ``error`` fails, unless it is marked ``unchecked``: the check could not
    be made (a runner that writes no outputs, inputs it cannot load), which says nothing
    about the delegate. Any NaN/Inf output value fails (:func:`nonfinite_reason`), and so
    does a figure that is not a number (a record stored before the values were counted)."""
    if not numerics:
        return None, "numerics not measured (bench --numerics, or --profile-ops on the simulator)"
    if numerics.get("error") and numerics.get("unchecked"):
        return None, f"numerics not checked: {numerics['error']}"
    if numerics.get("error"):
        return False, f"numerics failed: {numerics['error']}"
    own = numerics.get("delegate_only")
    if isinstance(own, Mapping) and own.get("error"):
        return False, f"numerics failed: {own['error']}"
    for record in (numerics, own if isinstance(own, Mapping) else {}):
        if (why := nonfinite_reason(record)) is not None:
            return False, f"numerics failed: {why}"
    cos = as_float(numerics.get("cosine"))
    if isinstance(own, Mapping) and own.get("cosine") is not None:
        # the delegate judged against the variant itself
        vs_float = f" (vs the float model {cos:.4f}, quantization included)" \
            if cos is not None else ""
        ok, why = _judge(own, "vs this variant on the host", min_cosine, min_top1)
        return ok, (why if not ok else why + " vs this variant on the host") + vs_float
    if cos is None:
        return None, "numerics carry no cosine"
    return _judge(numerics, "vs the float model", min_cosine, min_top1)
