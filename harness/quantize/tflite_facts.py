"""Facts of a made .tflite read through the LiteRT interpreter: the ops left float, the input.

Every converter that makes a .tflite records :func:`float_ops` in the manifest; the worker
reads a source's input with :func:`input_spec`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def float_ops(model: bytes) -> dict[str, Any]:
    """Ops of a .tflite whose activations stay float (QUANTIZE/DEQUANTIZE aside), by op type."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    counts: dict[str, int] = {}
    total = 0
    for op in interp._get_ops_details():
        name = op["op_name"]
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        total += 1
        ins = [tensors[i] for i in op["inputs"] if i >= 0 and i in tensors]
        outs = [tensors[i] for i in op["outputs"] if i in tensors]
        if any(np.dtype(t["dtype"]) == np.float32 for t in ins[:1] + outs):
            counts[name] = counts.get(name, 0) + 1
    return {"total_ops": total, "float_ops": sum(counts.values()), "by_type": counts}


def input_spec(model: bytes) -> tuple[list[int], str, int]:
    """(shape signature with -1 for free dims, dtype name, number of inputs) of a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=model).get_input_details()
    d = details[0]
    sig = d.get("shape_signature")
    shape = [int(v) for v in (sig if sig is not None and len(sig) else d["shape"])]
    shape[0] = -1
    return shape, np.dtype(d["dtype"]).name, len(details)
