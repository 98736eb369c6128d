"""TFLite variants from a float .tflite through ai-edge-quantizer recipes (no TF source needed).

Converter ``aeq`` (:func:`make`). Imported only inside the quantize worker process.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from quantlab.harness.quantize.converters import Source
    from quantlab.harness.quantize.schemes import Scheme

FLOAT_CASTING_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE")


def _quantizer(source: str, settings: dict[str, Any], keep_float: list[str] | None = None) -> Any:
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe

    q = quantizer.Quantizer(source)
    name = settings["recipe"]
    if name == "fp16":
        for op in FLOAT_CASTING_OPS:
            q.add_weight_only_config(
                regex=".*",
                operation_name=getattr(qtyping.TFLOperationName, op),
                num_bits=16,
                algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING,
            )
    else:
        entries = getattr(recipe, name)()
        if settings.get("per_tensor"):  # one weight scale per tensor instead of per channel
            for entry in entries:
                weights = entry.get("op_config", {}).get("weight_tensor_config")
                if weights and weights.get("granularity") == "CHANNELWISE":
                    weights["granularity"] = "TENSORWISE"
        q.load_quantization_recipe(entries)
    for layer in keep_float or []:
        q.update_quantization_recipe(
            regex=f"^{re.escape(layer)};$",  # AEQ op scope: output names joined, ";" after
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE,
        )
    return q


def _signature_data(source: str, calib_x: np.ndarray) -> dict[str, list[dict[str, np.ndarray]]]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=source)
    sigs = interp.get_signature_list()
    if not sigs:
        raise ValueError(
            "the .tflite has no signature; ai-edge-quantizer needs one (re-export with a signature)"
        )
    key = next(iter(sigs))
    inputs = sigs[key]["inputs"]
    if len(inputs) != 1:
        raise ValueError(
            f"calibration supports single-input models (signature {key!r} has {len(inputs)})"
        )
    name = inputs[0]
    return {key: [{name: calib_x[i : i + 1]} for i in range(len(calib_x))]}


def convert(
    source: str,
    settings: dict[str, Any],
    calib_x: np.ndarray | None,
    keep_float: list[str] | None = None,
) -> bytes:
    """Quantize a float .tflite with an AEQ recipe (``copy`` returns the file unchanged)."""
    if settings["recipe"] == "copy":
        return Path(source).read_bytes()
    q = _quantizer(source, settings, keep_float)
    calibration = None
    if q.need_calibration:
        if calib_x is None:
            raise ValueError("this scheme needs calibration data (--calib)")
        calibration = q.calibrate(_signature_data(source, calib_x), num_threads=1)
    result = q.quantize(calibration, enable_progress_report=False)
    if result.quantized_model is None:
        raise ValueError("ai-edge-quantizer produced no model")
    return bytes(result.quantized_model)


def make(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Converter ``aeq``: the float .tflite through the recipe named in ``settings``
    (``recipe``), with the int8 options (per-tensor weights)."""
    from quantlab.harness.quantize.converters import prepare
    from quantlab.harness.quantize.options import converter_settings

    prepared = prepare(source, scheme, "aeq")
    settings = {**settings, **converter_settings(scheme, source.req.options)}
    return prepared.written(convert(source.aeq_source, settings, source.calib_x))


def layer_errors(
    source: str,
    calib_x: np.ndarray,
    debug_x: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per-tensor error of static int8 vs float on the calibration data, most sensitive first.

    Compares every intermediate tensor of the float and the quantized model
    (ai-edge-quantizer's validator). Each row: ``layer`` (the op's output
    tensor name, usable to keep that op float), ``mse``, ``snr_db``, and
    ``rel_error`` = RMS error relative to the tensor's float RMS,
    ``added_error`` = how much of it this op added (the ranking key).
    Ranges come from ``calib_x``, errors are measured on ``debug_x``
    (default: ``calib_x``).
    """
    from ai_edge_quantizer.utils import validation_utils

    settings = {"recipe": "static_wi8_ai8", **(extra or {})}  # extra: e.g. per_tensor
    q = _quantizer(source, settings)
    data = _signature_data(source, calib_x)
    q.quantize(q.calibrate(data, num_threads=1), enable_progress_report=False)
    if debug_x is not None:
        data = _signature_data(source, debug_x)
    metrics = [
        validation_utils.ValidationErrorMetric.MSE,
        validation_utils.ValidationErrorMetric.SNR,
    ]
    result = q.validate(data, error_metrics=metrics, num_threads=1)
    rows = []
    for key in result.available_signature_keys():
        sig = result.get_signature_comparison_result(key)
        for tensor, vals in {**sig.intermediate_tensors, **sig.output_tensors}.items():
            mse = float(vals.get("mse", vals.get("MSE", 0.0)))
            snr = vals.get("snr", vals.get("SNR"))  # signal/noise power ratio (linear)
            snr_f = float(snr) if snr is not None else None
            if snr_f is not None and snr_f > 0 and np.isfinite(snr_f):
                rel, snr_db = float(1 / np.sqrt(snr_f)), float(10 * np.log10(snr_f))
            else:
                rel, snr_db = float(np.sqrt(mse)), None
            rows.append(
                {"layer": tensor, "op": None, "rel_error": rel, "mse": mse, "snr_db": snr_db}
            )
    _add_local_error(source, rows)
    rows.sort(key=lambda r: (r["added_error"], r["rel_error"]), reverse=True)
    return rows


def _add_local_error(source: str, rows: list[dict[str, Any]]) -> None:
    """Set each row's ``op`` and ``added_error``: its error minus the worst error of its inputs.

    The validator compares whole models, so error made early shows up in
    every later tensor; the increase at each op points at the op that made it.
    """
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=source)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    producer: dict[str, tuple[str, list[str]]] = {}
    for op in interp._get_ops_details():
        ins = [names[i] for i in op["inputs"] if i >= 0 and i in names]
        for o in op["outputs"]:
            if o in names:
                producer[names[o]] = (op["op_name"], ins)
    rel = {r["layer"]: r["rel_error"] for r in rows}
    for r in rows:
        op_name, ins = producer.get(r["layer"], (None, []))
        upstream = max((rel.get(n, 0.0) for n in ins), default=0.0)
        r["op"] = op_name
        r["added_error"] = max(0.0, r["rel_error"] - upstream)
