"""``quantlab culprit``: which op of a model makes a delegate's outputs differ from the host's
reference kernels. The search (:func:`find`) makes probe models by flatbuffer surgery
(:mod:`.surgery`), has a launcher run each on the delegate and on the reference kernels, and
judges every exposed tensor (:mod:`.figures`).

Two modes. ``all-in-one``: one probe exposes every op's output, when the delegate places it as
it places the model (same ops delegated, same partitions). Otherwise ``bisection``: exposing
tensors split the delegate's partitions, so the probes are the model cut after one op, and a
binary search over the cut finds the first op whose output crosses the bound (assuming an
error, once there, stays: the model's output must fail for the search to start). Launches:
the model itself, the all-in-one probe, and in bisection ⌈log2 ops⌉ cuts plus one that
exposes the culprit's inputs; every launch is counted in the report.

A launcher is any ``(model bytes, label) -> ProbeRun``: the simulator's runs the LiteRT
runner's numerics mode on this host (:mod:`quantlab.agents.litert.probe`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantlab.harness.culprit.figures import (
    blame,
    failed,
    op_rows,
    placement_of,
    same_placement,
    tensor_figures,
)
from quantlab.harness.culprit.surgery import Probe, expose, truncate
from quantlab.harness.errors import UserError
from quantlab.harness.numerics import DEFAULT_MIN_COSINE
from quantlab.harness.tflite_graph import GraphOp, read_ops


@dataclass(frozen=True)
class ProbeRun:
    """One launch of a probe: its outputs on the delegate and on the reference kernels (by
    output name), and where the delegate placed its ops (a runner placement dict)."""

    outputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    placement: dict[str, Any] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Launcher = Callable[[bytes, str], ProbeRun]


class _Counter:
    def __init__(self, launch: Launcher) -> None:
        self.launch, self.labels = launch, []  # type: ignore[var-annotated]

    def __call__(self, data: bytes, label: str) -> ProbeRun:
        self.labels.append(label)
        run = self.launch(data, label)
        if run.error:
            raise UserError(f"culprit: the {label} launch failed: {run.error}")
        return run


def _figures(probe: Probe, run: ProbeRun, label: str, changed: bool) -> dict[int, dict[str, Any]]:
    out = {}
    for t, name in probe.outputs:
        if name in run.outputs and name in run.reference:
            f = tensor_figures(run.reference[name], run.outputs[name])
            out[t] = {**f, "tensor": name, "probe": label, "placement_changed": changed}
    return out


def find(model: bytes, launch: Launcher, min_cosine: float = DEFAULT_MIN_COSINE,
         force_bisection: bool = False) -> dict[str, Any]:
    """Search ``model`` for the op where the delegate's numerics leave the reference's.

    Returns ``{mode, launches, launch_labels, launch_bound, ops_total, min_cosine, model_output:
    {failed, ...}, ops: [row], first_failing, largest, placement_changed, verdict}``."""
    ops = read_ops(model)
    if not ops:
        raise UserError("culprit: the model has no ops")
    counted = _Counter(launch)
    n = len(ops)
    original = counted(model, "model")
    where = placement_of(original.placement, n)
    model_figs = [tensor_figures(original.reference[k], v) for k, v in original.outputs.items()
                  if k in original.reference]
    model_failed = next((w for f in model_figs if (w := failed(f, min_cosine))), None)
    # Ops computing constants (a float16 weight's DEQUANTIZE) are left out: delegates fold
    # them and never write their outputs, so what a probe reads back there means nothing.
    wanted = [t for op in ops if not op.constant for t in op.outputs]
    probe = expose(model, wanted)
    mode, figures, changed_probes = "all-in-one", {}, []
    if not force_bisection:
        run = counted(probe.data, "all tensors")
        probe_where = placement_of(run.placement, n)
        if same_placement(where, probe_where, n):
            figures = _figures(probe, run, "all tensors", False)
        else:
            changed_probes.append("all tensors")
    if force_bisection or changed_probes:
        mode = "bisection"
        figures = _bisect(model, ops, counted, where, model_failed, min_cosine, changed_probes)
    rows = op_rows(ops, figures, where, min_cosine)
    verdict = blame(rows)
    bound = 2 * math.ceil(math.log2(max(n, 2))) + 2
    return {
        "mode": mode, "launches": len(counted.labels), "launch_labels": counted.labels,
        "launch_bound": bound, "ops_total": n,
        "ops_constant": sum(1 for op in ops if op.constant), "min_cosine": min_cosine,
        "model_output": {"failed": model_failed,
                         "cosine": min((f["cosine"] for f in model_figs), default=None)},
        "placement": {"delegated": sum(1 for v in where.values() if v != "CPU"),
                      "changed_by": changed_probes},
        "ops": rows, **verdict,
        "verdict": _sentence(verdict, mode, rows, model_failed),
    }


def _bisect(model: bytes, ops: list[GraphOp], launch: _Counter, where: dict[int, str],
            model_failed: str | None, min_cosine: float, changed: list[str]
            ) -> dict[int, dict[str, Any]]:
    """Probes cut after one op: the first whose output crosses the bound, by binary search,
    then one probe exposing that op's inputs (the error it added)."""
    figures: dict[int, dict[str, Any]] = {}
    if model_failed is None:
        return figures
    produced = {t for op in ops if not op.constant for t in op.outputs}
    dynamic = [op for op in ops if not op.constant]

    def cut(k: int, extra: tuple[int, ...] = ()) -> dict[int, dict[str, Any]]:
        label = f"cut after op {k}" + (" with its inputs" if extra else "")
        probe = truncate(model, k, extra)
        run = launch(probe.data, label)
        moved = not same_placement(where, placement_of(run.placement, k + 1), k + 1)
        if moved:
            changed.append(label)
        return _figures(probe, run, label, moved)

    lo, hi = 0, len(dynamic) - 1  # the last op's output is the model's: it failed
    while lo < hi:
        mid = (lo + hi) // 2
        got = cut(dynamic[mid].index)
        figures.update(got)
        if any(failed(got[t], min_cosine) for t in dynamic[mid].outputs if t in got):
            hi = mid
        else:
            lo = mid + 1
    inputs = tuple(t for t in dynamic[lo].inputs if t in produced)
    figures.update(cut(dynamic[lo].index, inputs))
    return figures


def _sentence(verdict: dict[str, Any], mode: str, rows: list[dict[str, Any]],
              model_failed: str | None) -> str:
    first, largest = verdict["first_failing"], verdict["largest"]
    if first is None:
        if mode == "bisection" and model_failed is None:
            return ("no culprit at the model's outputs, which are within the bound; bisection "
                    "starts only from a failing output, so intermediate tensors were not probed "
                    "(an error the later ops hide is not seen)")
        return f"no culprit: every probed op's output is within the bound ({len(rows)} ops)"
    text = f"first op over the bound: {first['op_type']}#{first['index']} ({first['failed']})"
    if largest is not None:
        same = largest["index"] == first["index"]
        text += ("; it also added the most error" if same else
                 f"; most error added by {largest['op_type']}#{largest['index']}")
    return text
