"""Op-support check: which ops a model needs, and which runtimes lack them, before converting.

Read from the .tflite flatbuffer itself (no interpreter, which would refuse a model with
unresolved ops). Flex ops (TensorFlow ops kept through ``SELECT_TF_OPS``) and custom ops are
flagged with the runtimes that lack them; a scheme that cannot work fails with that list
instead of a converter stack trace. ``TFLite_Detection_PostProcess`` (SSD box decoding and
NMS) is a custom op every LiteRT runtime ships: it stays float in int8 schemes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KNOWN_CUSTOM_OPS: dict[str, str] = {
    "TFLite_Detection_PostProcess": "SSD box decoding + NMS; built into LiteRT (host, Android "
    "benchmark_model, TensorFlowLiteSwift); stays float in int8 schemes",
}
"""Custom ops that the standard LiteRT runtimes register, with what they are."""

FLEX_LACKED_BY = ("ai-edge-litert (host evaluation and the simulator)",
                  "benchmark_model without Flex (use benchmark_model_plus_flex)",
                  "TensorFlowLiteSwift without the TensorFlowLiteSelectTfOps pod")
CUSTOM_LACKED_BY = ("every stock LiteRT runtime (the app must register the op)",)
FLOAT_KEPT_OPS = ("TFLite_Detection_PostProcess",)
"""Ops whose outputs int8 schemes leave in float (boxes, classes, scores, count)."""


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _builtin_names() -> dict[int, str]:
    s = _schema()
    return {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}


def model_ops(model: bytes) -> dict[str, Any]:
    """``{"builtin": {op: count}, "custom": {op: count}, "flex": {op: count}}`` of a .tflite."""
    s = _schema()
    m = s.Model.GetRootAsModel(model, 0)
    names = _builtin_names()
    codes = []
    for i in range(m.OperatorCodesLength()):
        c = m.OperatorCodes(i)
        code = max(int(c.BuiltinCode()), int(c.DeprecatedBuiltinCode()))
        custom = c.CustomCode()
        codes.append(custom.decode() if custom else names.get(code, f"BUILTIN_{code}"))
    out: dict[str, dict[str, int]] = {"builtin": {}, "custom": {}, "flex": {}}
    custom_code = s.BuiltinOperator.CUSTOM
    for g in range(m.SubgraphsLength()):
        sub = m.Subgraphs(g)
        for k in range(sub.OperatorsLength()):
            idx = sub.Operators(k).OpcodeIndex()
            c = m.OperatorCodes(idx)
            is_custom = max(int(c.BuiltinCode()), int(c.DeprecatedBuiltinCode())) == custom_code
            name = codes[idx]
            kind = ("flex" if name.startswith("Flex") else "custom") if is_custom else "builtin"
            out[kind][name] = out[kind].get(name, 0) + 1
    return out


def model_io(model: bytes) -> tuple[list[int], str, int]:
    """(input shape signature with -1 for the batch, dtype name, number of inputs) of a .tflite,
    read from the flatbuffer (works when an interpreter would refuse the model)."""
    s = _schema()
    m = s.Model.GetRootAsModel(model, 0)
    sub = m.Subgraphs(0)
    t = sub.Tensors(sub.Inputs(0))
    sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
    shape = [int(v) for v in np.asarray(sig)]
    if shape:
        shape[0] = -1
    types = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    dtype = {"FLOAT32": "float32", "INT8": "int8", "UINT8": "uint8", "INT16": "int16",
             "INT32": "int32", "FLOAT16": "float16"}.get(types.get(t.Type(), ""), "float32")
    return shape, dtype, int(sub.InputsLength())


def scheme_check(scheme: Any, ops: dict[str, Any]) -> dict[str, Any]:
    """Whether ``scheme`` can be made and run given the source's ops, and why; with the ops it
    will need and the notes to put in the manifest."""
    needs = sorted(ops["builtin"])
    tf = scheme.tf_settings
    int8 = bool(tf.get("int8_ops") or tf.get("int16x8") or tf.get("mixed")) \
        or scheme.needs_calibration
    if int8:
        needs = sorted({*needs, "QUANTIZE", "DEQUANTIZE"})
    custom = sorted(ops["custom"])
    flex = sorted(ops["flex"])
    unknown = [c for c in custom if c not in KNOWN_CUSTOM_OPS]
    problems: list[str] = []
    if scheme.format == "tflite":
        if flex:
            problems.append(f"needs Flex (SELECT_TF_OPS) ops {', '.join(flex)}, which "
                            f"{'; '.join(FLEX_LACKED_BY)} lack")
        if unknown:
            problems.append(f"needs custom ops {', '.join(unknown)}, which "
                            f"{'; '.join(CUSTOM_LACKED_BY)} lacks")
    notes: list[str] = []
    kept = [c for c in custom if c in FLOAT_KEPT_OPS]
    if kept and int8 and scheme.format == "tflite":
        notes.append(f"{', '.join(kept)} kept in float (int8 has no kernel for it; its "
                     "inputs are dequantized)")
        if tf.get("int8_io"):
            notes.append(f"outputs of {', '.join(kept)} (boxes, classes, scores, count) left "
                         f"float32: they are not quantizable; the input is "
                         f"{tf.get('io_dtype', 'int8')}")
    return {
        "scheme": scheme.name,
        "ok": not problems,
        "reason": "; ".join(problems) or None,
        "ops": needs + custom + flex,
        "custom_ops": custom,
        "flex_ops": flex,
        "notes": notes,
        "checked": scheme.format == "tflite",
    }
