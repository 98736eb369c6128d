"""Quantizing models and evaluating their variants, from Python."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantlab._records import Record
    from quantlab.harness.quantize.data import ImageOptions
    from quantlab.harness.quantize.manifest import Manifest

PathLike = str | os.PathLike[str]


def quantize(model: PathLike, out: PathLike, schemes: str | Sequence[str] = "all",
             calib: PathLike | None = None, *, eval_data: PathLike | None = None,
             calib_samples: int = 200, seed: int = 0, max_drop: float = 0.03,
             x_key: str = "x", y_key: str = "y", image: ImageOptions | None = None,
             force: bool = False, train: PathLike | None = None,
             qat: dict[str, Any] | None = None, granularity: str = "per-channel",
             coreml_keep: Sequence[str] | None = None, jobs: int | None = None,
             input_shape: Sequence[int] | None = None,
             progress: Callable[[str, dict[str, Any]], None] | None = None) -> Manifest:
    """Make one variant of ``model`` (Keras, SavedModel, float .tflite, or with the ``torch``
    extra a ``torch.export`` ``.pt2`` or ``module:factory`` with ``input_shape``) per scheme in the
    folder ``out``, with its ``manifest.json``; returns the manifest (the record
    ``quantlab quantize`` prints). ``schemes``: names, or ``all`` / ``tflite`` /
    ``coreml``. ``calib``: calibration data (.npz/.npy or ``DIR/<class>/*.jpg``). A scheme
    that fails is in the manifest with ``status="failed"`` and its error. ``coreml_keep``:
    Keras layers whose weights ``coreml-w4`` leaves fp16 (or ``["sensitive:N"]``). ``jobs``:
    worker processes side by side (default: from the cores and the available memory)."""
    from quantlab._bench import as_list
    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.schemes import resolve_schemes
    from quantlab.harness.quantize.variants import quantize as make_variants
    from quantlab.harness.quantize.variants import source_kind

    picked = resolve_schemes(as_list(schemes) or ["all"], source_kind(Path(model)))
    request = QuantizeRequest.create(
        model, [s.name for s in picked], calib, out, eval_data=eval_data,
        calib_samples=calib_samples, seed=seed, max_drop=max_drop, x_key=x_key, y_key=y_key,
        image=image, force=force, train=train, qat=qat,
        options={"granularity": granularity,
                 **({"coreml_keep": list(coreml_keep)} if coreml_keep else {})}, jobs=jobs,
        input_shape=input_shape)
    return make_variants(request, progress=progress)


def evaluate(variants: PathLike, data: PathLike, *,
             max_drop: float | str | dict[str, float] | None = None, task: str | None = None,
             labels: PathLike | None = None, decoder: str | None = None,
             max_mse: float | None = None, x_key: str = "x", y_key: str = "y",
             image: ImageOptions | None = None, store: bool = True,
             results: str | Path | None = None, per_delegate: bool = False,
             min_top1: float | None = None, gate_confidence: bool = False,
             recalibrate: bool = False,
             progress: Callable[[str, int, int], None] | None = None) -> Record:
    """Accuracy, fidelity against fp32 and the accuracy gate of every TFLite variant in the
    folder ``variants`` on ``data``; the same record as ``quantlab evaluate --json``
    (``task``, ``metric``, ``reference``, ``variants`` with a ``gate`` each, holding the
    drop's paired 95 % ``interval``, ``failed``). ``gate_confidence``: fail only a drop
    whose whole interval lies beyond its gate (``--gate-confidence``). ``recalibrate``: each
    variant's temperature fitted on a seeded half of the labelled samples, with the ECE before
    and after on the other half, in ``calibration["recalibration"]`` (``--recalibrate``).
    With ``store`` (default) the evaluations go into the results store, where
    :func:`quantlab.recommend` finds them. ``per_delegate`` adds ``per_delegate``: a verdict
    per (variant, device, delegate) stored in ``results`` (host accuracy AND the delegate's
    numerics on the device; ``min_top1``: the least top-1 agreement of class outputs,
    default 0.99), as ``quantlab evaluate --per-delegate``."""
    from quantlab._records import Record
    from quantlab._results import results_location
    from quantlab.harness.evaluations import save_to_store
    from quantlab.harness.quantize.evaluate import evaluate as run_evaluation
    from quantlab.harness.quantize.gate import parse_max_drop

    parse_max_drop(max_drop)  # a typo fails before any model runs
    report = run_evaluation(variants, data, max_drop=max_drop, task=task,
                            labels=str(labels) if labels else None, decoder=decoder,
                            max_mse=max_mse, x_key=x_key, y_key=y_key, image=image,
                            gate_confidence=gate_confidence, recalibrate=recalibrate,
                            progress=progress).to_dict()
    if store:
        save_to_store(report, results_location(results))
    if per_delegate:
        from quantlab.harness.delegate_gate import from_store
        from quantlab.harness.numerics import DEFAULT_MIN_TOP1

        report["per_delegate"] = from_store(
            report, results_location(results),
            min_top1=DEFAULT_MIN_TOP1 if min_top1 is None else min_top1)
    return Record(report)
