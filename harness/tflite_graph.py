"""A .tflite's primary graph read from its flatbuffer (no interpreter, which refuses a model
with Flex or unregistered custom ops): each op's index, type, tensors and whether it computes in
float, for the plan's placement warnings and the culprit finder's probes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64")
PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE")
"""Ops that convert between float and integer at a graph's edges: not float compute."""


@dataclass(frozen=True)
class GraphOp:
    """One operator of subgraph 0, in execution order."""

    index: int
    op_type: str  # builtin name, custom code (Flex ops keep their "Flex" prefix)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    output_names: tuple[str, ...]
    float_compute: bool  # its first input or an output is a float tensor (Q/DQ excluded)
    flex: bool
    custom: bool
    constant: bool = False
    """Every input is a constant or another constant op's output (e.g. the DEQUANTIZE of a
    float16 weight): its output is fixed before the first inference, and delegates fold it."""


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def read_ops(model: bytes | Path) -> list[GraphOp]:
    """The ops of the model's first subgraph."""
    s = _schema()
    data = model.read_bytes() if isinstance(model, Path) else model
    m = s.Model.GetRootAsModel(data, 0)
    builtin = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    sub = m.Subgraphs(0)
    dynamic = {int(sub.Inputs(i)) for i in range(sub.InputsLength())}
    dynamic |= {t for t in range(sub.TensorsLength()) if sub.Tensors(t).IsVariable()}
    out = []
    for k in range(sub.OperatorsLength()):
        op = sub.Operators(k)
        code = m.OperatorCodes(op.OpcodeIndex())
        number = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        custom_code = code.CustomCode()
        custom = number == s.BuiltinOperator.CUSTOM
        name = custom_code.decode() if custom and custom_code else builtin.get(
            number, f"BUILTIN_{number}")
        ins = tuple(int(op.Inputs(i)) for i in range(op.InputsLength()))
        outs = tuple(int(op.Outputs(i)) for i in range(op.OutputsLength()))

        def is_float(t: int) -> bool:
            return t >= 0 and types.get(sub.Tensors(t).Type()) in FLOAT_TYPES

        names = tuple((sub.Tensors(t).Name() or b"").decode() for t in outs)
        floating = name not in PASS_THROUGH and (any(is_float(t) for t in ins[:1])
                                                 or any(is_float(t) for t in outs))
        constant = not any(t in dynamic for t in ins if t >= 0)
        if not constant:
            dynamic.update(outs)
        out.append(GraphOp(k, name, ins, outs, names, floating,
                           flex=custom and name.startswith("Flex"), custom=custom,
                           constant=constant))
    return out
