"""The accuracy gate: which metric, how much worse a variant is, and how much is allowed.

``--max-drop`` is parsed here (one figure for every scheme, or one per scheme);
a scheme without an override keeps its own default from the schemes registry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quantlab.harness.quantize.evaluation import GateVerdict

DEFAULT_MAX_DROP = 0.03
LOWER_IS_BETTER = {"mse", "mae"}


def task_metrics(pred: np.ndarray, y: np.ndarray | None) -> dict[str, float]:
    """top-1/top-5 for class labels (pred = scores N×C), MSE/MAE for float targets.

    The quick form used by mixed precision's gate; :mod:`quantlab.harness.tasks` has the
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


def _units(metric: str, lower_is_better: set[str] | frozenset[str]) -> tuple[float, str]:
    """(scale, unit) a drop of ``metric`` is shown in: points where higher is better."""
    return (1.0, "") if metric in lower_is_better else (100.0, " pt")


def interval_text(metric: str, low: float, high: float,
                  lower_is_better: set[str] | frozenset[str] = frozenset(LOWER_IS_BETTER)
                  ) -> str:
    """A drop's interval in the table's units: ``−0.87 … +3.12 pt`` (``±3.70 pt`` when it is
    symmetric about 0)."""
    scale, unit = _units(metric, lower_is_better)
    if abs(low + high) < 1e-12 and high > 0:
        return f"±{scale * high:.2f}{unit}" if unit else f"±{high:.4g}"
    if unit:
        return f"{scale * low:+.2f} … {scale * high:+.2f}{unit}"
    return f"{low:+.4g} … {high:+.4g}"


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
          mse: float | None = None, interval: dict[str, Any] | None = None,
          confidence: bool = False) -> GateVerdict:
    """One variant's gate: ``passed``, ``drop`` (and ``drop_pt`` where higher is better),
    ``metric``, ``value``, ``max_drop``, the drop's 95 % ``interval`` (with ``resolved``:
    whether it lies wholly on one side of ``max_drop``) and ``why`` in one line.

    The point estimate decides, unless ``confidence`` (``--gate-confidence``): then only a
    drop whose whole interval lies beyond ``max_drop`` fails. Any NaN/Inf output value
    (``nonfinite``: how many, of how many) fails it; so does a drop that is not a number,
    and with ``max_mse`` a first output whose MSE against fp32 exceeds it."""
    drop = gate_drop(metric, reference, value, lower_is_better)
    bad, count = nonfinite
    point = drop <= allowed + 1e-12  # a NaN drop fails
    bounds: tuple[float, float] | None = None
    if interval is not None and np.isfinite([interval["low"], interval["high"]]).all():
        bounds = float(interval["low"]), float(interval["high"])
    by_interval = confidence and bounds is not None
    passed = (not bounds[0] > allowed + 1e-12 if bounds is not None and by_interval
              else point) and not bad
    if bad:
        why = f"{bad} of {count} output values are NaN/Inf"
    else:
        why = drop_text(metric, drop, allowed, point, lower_is_better)
        if bounds is not None and (interval or {}).get("method") != REFERENCE_ITSELF:
            why += f" (95 % interval {interval_text(metric, *bounds, lower_is_better)})"
            if by_interval and point != passed:
                why += ": the interval reaches the gate, so --gate-confidence passes it"
            elif by_interval and not passed:
                why += ": all of it beyond the gate"
    mse_passed = None
    if max_mse is not None:
        mse_passed = mse is None or not float(mse) > max_mse
        if not mse_passed:
            passed = False
            why += f"; output MSE {float(mse):.4g} > --max-mse {max_mse:g}"  # type: ignore[arg-type]
    return GateVerdict(
        passed=passed, drop=drop,
        drop_pt=None if metric in lower_is_better else round(100 * drop, 4),
        metric=metric, value=value, max_drop=allowed,
        interval=dict(interval) if interval is not None else None,
        resolved=None if bounds is None else
        bool(bounds[1] <= allowed + 1e-12 or bounds[0] > allowed + 1e-12),
        decided_by="interval" if by_interval else "point estimate",
        max_mse=max_mse, mse_passed=mse_passed, why=why)


def unresolved_warnings(gates: list[tuple[str, GateVerdict]], samples: int,
                        lower_is_better: set[str] | frozenset[str] = frozenset(LOWER_IS_BETTER)
                        ) -> list[str]:
    """Where the evaluation set is too small to resolve a gate: the 95 % interval of a
    0-point drop (top-1 and agreement, known from the sample count alone) or of the
    variant's own drop (bootstrap) is wider than the gate. ``gates``: (variant, its gate).
    One line per gate."""
    from quantlab.harness.tasks.intervals import samples_to_resolve

    zero: dict[tuple[str, float], list[str]] = {}
    out: list[str] = []
    for name, gate in gates:
        interval = gate.interval
        if not interval or interval.get("method") == REFERENCE_ITSELF:
            continue
        allowed, metric = gate.max_drop, gate.metric
        scale, unit = _units(metric, lower_is_better)
        if interval.get("zero_drop"):
            low, high = interval["zero_drop"]
            if high > allowed + 1e-12:
                text = interval_text(metric, low, high, lower_is_better)
                zero.setdefault((text, allowed), []).append(name)
        elif np.isfinite([interval["low"], interval["high"]]).all() and \
                (interval["high"] - interval["low"]) / 2 > allowed:
            text = interval_text(metric, interval["low"], interval["high"], lower_is_better)
            out.append(f"with {samples} samples the 95 % interval of {name}'s drop is {text}, "
                       f"wider than its {scale * allowed:.2f}{unit} gate: the evaluation set "
                       "is too small to resolve it")
    for (text, allowed), names in zero.items():
        need = samples_to_resolve(allowed)
        out.insert(0, f"with {samples} samples the 95 % interval of a 0-point drop is {text}, "
                   f"wider than the {100 * allowed:.2f}-pt gate of {', '.join(names)}: the "
                   "evaluation set is too small to resolve it"
                   + (f" (about {need} samples would)" if need else ""))
    return out


REFERENCE_ITSELF = "the reference itself"


def parse_max_drop(spec: float | str | dict[str, float] | None) -> tuple[float | None,
                                                                          dict[str, float]]:
    """``--max-drop``: ``0.03`` (every scheme), ``int8=0.03,fp16=0.005`` (those schemes; the
    others keep their defaults), or both (``0.01,int8=0.03``). Returns (global, per scheme)."""
    from quantlab.harness.errors import UserError
    from quantlab.harness.quantize.schemes import SCHEMES

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
    from quantlab.harness.quantize.schemes import SCHEMES

    if scheme in per:
        return per[scheme]  # type: ignore[index]
    if overall is not None:
        return overall
    return SCHEMES[scheme].max_drop if scheme in SCHEMES else DEFAULT_MAX_DROP
