"""The accuracy gate: which metric, how much worse a variant is, and how much is allowed.

``--max-drop`` is parsed here (one figure for every scheme, or one per scheme);
a scheme without an override keeps its own default from the schemes registry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_MAX_DROP = 0.03
LOWER_IS_BETTER = {"mse", "mae"}


def task_metrics(pred: np.ndarray, y: np.ndarray | None) -> dict[str, float]:
    """top-1/top-5 for class labels (pred = scores N×C), MSE/MAE for float targets.

    The quick form used by mixed precision's gate; :mod:`harness.quantize.tasks` has the
    full tasks (detection, segmentation, keypoints) that ``evaluate`` uses."""
    if y is None:
        return {}
    if y.ndim == 1 and y.dtype.kind in "iub" and pred.ndim == 2 and pred.shape[1] > 1:
        top1 = float(np.mean(np.argmax(pred, axis=1) == y))
        k = min(5, pred.shape[1])
        topk = np.argpartition(-pred, k - 1, axis=1)[:, :k]
        top5 = float(np.mean(np.any(topk == y[:, None], axis=1)))
        return {"top1": top1, "top5": top5}
    target = y.reshape(pred.shape) if y.size == pred.size else y
    diff = pred.astype(np.float64) - target.astype(np.float64)
    return {"mse": float(np.mean(diff**2)), "mae": float(np.mean(np.abs(diff)))}


def main_metric(metrics: dict[str, float]) -> str:
    """The gate's metric: top1 (classifier), mse (regression), top1_agreement (no labels)."""
    for name in ("top1", "mse"):
        if name in metrics:
            return name
    return "top1_agreement"


def gate_drop(metric: str, reference: float, value: float,
              lower_is_better: set[str] | frozenset[str] = frozenset(LOWER_IS_BETTER)) -> float:
    """How much worse ``value`` is than ``reference`` (positive = worse)."""
    return value - reference if metric in lower_is_better else reference - value


def drop_text(metric: str, drop: float, allowed: float, passed: bool,
              lower_is_better: set[str] | frozenset[str] = frozenset(LOWER_IS_BETTER)) -> str:
    """The gate's reason in the evaluate table's units: ``drop 2.06 pt > 2.00 pt`` (points
    where higher is better; the metric's own units where lower is better)."""
    sign = "≤" if passed else ">"
    if metric in lower_is_better:
        return f"{metric} rise {drop:+.4g} {sign} {allowed:g}"
    return f"drop {100 * drop:.2f} pt {sign} {100 * allowed:.2f} pt"


def judge(metric: str, reference: float, value: float, allowed: float,
          lower_is_better: set[str] | frozenset[str] = frozenset(LOWER_IS_BETTER), *,
          nonfinite: tuple[int, int] = (0, 0), max_mse: float | None = None,
          mse: float | None = None) -> dict[str, Any]:
    """One variant's gate: ``passed``, ``drop`` (and ``drop_pt`` where higher is better),
    ``metric``, ``value``, ``max_drop`` and ``why`` in one line. Any NaN/Inf output value
    (``nonfinite``: how many, of how many) fails it; so does a drop that is not a number,
    and with ``max_mse`` a first output whose MSE against fp32 exceeds it."""
    drop = gate_drop(metric, reference, value, lower_is_better)
    bad, count = nonfinite
    passed = drop <= allowed + 1e-12 and not bad  # a NaN drop fails
    why = f"{bad} of {count} output values are NaN/Inf" if bad else \
        drop_text(metric, drop, allowed, passed, lower_is_better)
    gate: dict[str, Any] = {"passed": passed, "drop": drop,
                            "drop_pt": None if metric in lower_is_better
                            else round(100 * drop, 4),
                            "metric": metric, "value": value, "max_drop": allowed}
    if max_mse is not None:
        mse_passed = mse is None or not float(mse) > max_mse
        gate.update(max_mse=max_mse, mse_passed=mse_passed)
        if not mse_passed:
            gate["passed"] = False
            why += f"; output MSE {float(mse):.4g} > --max-mse {max_mse:g}"  # type: ignore[arg-type]
    gate["why"] = why
    return gate


def parse_max_drop(spec: float | str | dict[str, float] | None) -> tuple[float | None,
                                                                          dict[str, float]]:
    """``--max-drop``: ``0.03`` (every scheme), ``int8=0.03,fp16=0.005`` (those schemes; the
    others keep their defaults), or both (``0.01,int8=0.03``). Returns (global, per scheme)."""
    from harness.errors import UserError
    from harness.quantize.schemes import SCHEMES

    if spec is None:
        return None, {}
    if isinstance(spec, dict):
        return None, {k: float(v) for k, v in spec.items()}
    if isinstance(spec, int | float):
        return float(spec), {}
    overall: float | None = None
    per: dict[str, float] = {}
    for part in (p.strip() for p in str(spec).split(",") if p.strip()):
        name, eq, value = part.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"--max-drop {spec!r}: {value!r} is not a number",
                            hint="e.g. --max-drop 0.02 or --max-drop int8=0.03,fp16=0.005"
                            ) from None
        if number < 0:
            raise UserError(f"--max-drop {spec!r}: a drop cannot be negative")
        if not eq:
            overall = number
        elif name.strip() not in SCHEMES:
            raise UserError(f"--max-drop {spec!r}: unknown scheme {name.strip()!r}",
                            hint=f"choose from {', '.join(SCHEMES)}")
        else:
            per[name.strip()] = number
    return overall, per


def gate_for(scheme: str | None, overall: float | None, per: dict[str, float]) -> float:
    """The largest allowed drop for a scheme: its override, else --max-drop, else its default."""
    from harness.quantize.schemes import SCHEMES

    if scheme in per:
        return per[scheme]  # type: ignore[index]
    if overall is not None:
        return overall
    return SCHEMES[scheme].max_drop if scheme in SCHEMES else DEFAULT_MAX_DROP
