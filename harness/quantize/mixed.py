"""Converters ``tf-mixed`` and ``aeq-mixed`` (mixed-int8): int8, with the most sensitive layers
kept float until the gate passes.

Plain int8 is tried first; only when it misses the gate are the layers ranked by their int8
error on (a reproducible subset of) the evaluation data (the manifest's ``rank_seconds`` is
empty when nothing was ranked), then kept float one by one
(:func:`quantlab.harness.quantize.sensitivity.greedy_keep_float`) until
the variant's drop is within the request's ``max_drop``, within the options' limits on the
layers kept and the size. The TF Lite converter does it for Keras and SavedModel sources,
ai-edge-quantizer for a float .tflite; the manifest records which (``tf`` or ``aeq``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from quantlab.harness.quantize import data as qdata
from quantlab.harness.quantize.converters import prepare

if TYPE_CHECKING:
    from quantlab.harness.quantize.converters import Source
    from quantlab.harness.quantize.schemes import Scheme

DEBUG_SAMPLES = 200
"""Evaluation samples the layers are ranked on."""


def make_tf(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Converter ``tf-mixed``: a Keras or SavedModel source through the TF Lite converter."""
    return _make(source, scheme, "tf", settings)


def make_aeq(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Converter ``aeq-mixed``: a float .tflite through ai-edge-quantizer (``settings``: its
    recipe)."""
    return _make(source, scheme, "aeq", settings)


def _make(source: Source, scheme: Scheme, converter: str, settings: dict[str, Any]
          ) -> dict[str, Any]:
    prepared = prepare(source, scheme, converter)
    model, mixed = keep_float(source, scheme, converter, settings)
    calibration = mixed.pop("calibration", None)
    prepared.fields["mixed"] = mixed
    if calibration:
        prepared.timing["calibration"] = calibration.pop("spent")
        prepared.fields["calibration"] = calibration
    return prepared.written(model)


def keep_float(source: Source, scheme: Scheme, converter: str, settings: dict[str, Any]
               ) -> tuple[bytes, dict[str, Any]]:
    """Greedy mixed precision: keep the most sensitive layers float until the gate passes;
    returns (the variant, what was kept and why: the manifest's ``mixed``, with the shared
    calibration's record under ``calibration`` for the TF converter)."""
    from quantlab.harness.quantize import options as qoptions
    from quantlab.harness.quantize.sensitivity import greedy_keep_float, rank_by_accuracy

    calib_x = source.calib_x
    assert calib_x is not None
    eval_x = source.eval_x if source.eval_x is not None else calib_x
    if not source.req.data.eval_data:  # the held-out rule: the gate's data is the calibration's
        source.events.emit("warning", message=f"{scheme.name} chose its float layers by error "
                           "on the calibration data: give held-out data with --eval")
    # errors are measured on (a reproducible subset of) the evaluation data
    debug_x = qdata.Dataset(eval_x, None, "eval").take(DEBUG_SAMPLES, 0).x
    opts = source.req.options
    granular = qoptions.converter_settings(scheme, opts)  # per-tensor, when asked
    if converter == "aeq":
        from quantlab.harness.quantize import tflite_aeq

        def errors() -> list[dict[str, Any]]:
            return tflite_aeq.layer_errors(source.aeq_source, calib_x, debug_x, granular)

        def build(keep: list[str]) -> bytes:
            return tflite_aeq.convert(source.aeq_source, {**settings, **granular}, calib_x,
                                      keep)
    else:  # from the calibration the int8 family shares (calibrations.obtain)
        from quantlab.harness.quantize import tf_calibrated

        calibration = tf_calibrated.shared(source, scheme.name, granular)
        per_tensor = bool(granular.get("per_tensor"))

        def errors() -> list[dict[str, Any]]:
            return tf_calibrated.layer_errors(calibration.debug, debug_x, per_tensor)

        def build(keep: list[str]) -> bytes:
            return tf_calibrated.keep_float(calibration.debug, keep, per_tensor)

    seconds: dict[str, float] = {}  # stays empty when plain int8 passes: nothing ranked

    def rank() -> list[str]:
        t0 = time.perf_counter()
        layers = [r["layer"] for r in errors()]
        seconds["error"] = time.perf_counter() - t0
        if opts.mixed_rank == "accuracy":
            t0 = time.perf_counter()
            by_drop = rank_by_accuracy(build, layers, source.fp32, eval_x, source.eval_y,
                                       source.work)
            layers = [r["layer"] for r in by_drop]
            seconds["accuracy"] = time.perf_counter() - t0
        return layers

    share = opts.mixed_max_size_share
    model, mixed = greedy_keep_float(
        build,
        rank,
        source.fp32,
        eval_x,
        source.eval_y,
        source.max_drop,
        source.work,
        on_step=lambda step: source.events.emit("mixed_step", scheme=scheme.name, **step),
        max_float=opts.mixed_max_float_layers,
        max_size=int(share * len(source.fp32)) if share else None,
    )
    if converter != "aeq":
        mixed["calibration"] = {**calibration.record(), "spent": calibration.spent}
    return model, {**mixed, "rank": opts.mixed_rank, "rank_seconds": seconds}
