"""Tiny float .tflite models written directly as flatbuffers (no TensorFlow): a chain of
elementwise and unary ops on one input, with constants where an op takes two operands.

Tests use them where the graph itself is the point (an intermediate tensor that overflows
fp16, an op type a delegate refuses) and a model must be made in milliseconds, not through
the TensorFlow converter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

BINARY = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"}
"""Ops that take (previous tensor, a constant)."""


def chain_model(path: Path, ops: Sequence[tuple[str, float | None]],
                shape: tuple[int, ...] = (1, 8), names: Sequence[str] | None = None) -> Path:
    """Write a model computing ``ops`` in order on input ``x`` (float32, ``shape``): each item
    is ``(OP, constant)`` for a binary op (the constant broadcast as a scalar) or ``(OP, None)``
    for a unary one (LOG, EXP, RELU, TANH, ABS, NEG, SQRT, LOGISTIC …; ``FlexName`` is a Flex
    custom op, which no host interpreter loads: for reading the file only). Tensor ``i`` of the
    chain is named ``names[i]`` (default ``t<i>``); the last is the model's output."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version = 3
    model.buffers = [s.BufferT()]  # buffer 0: empty, by convention
    graph = s.SubGraphT()
    graph.tensors, graph.operators = [], []
    codes: dict[str, int] = {}
    model.operatorCodes = []

    def tensor(name: str, data: np.ndarray | None = None, tshape: Sequence[int] = shape) -> int:
        t = s.TensorT()
        t.shape = list(tshape)
        t.type = s.TensorType.FLOAT32
        t.name = name
        t.buffer = 0
        if data is not None:
            buf = s.BufferT()
            buf.data = np.frombuffer(np.asarray(data, np.float32).tobytes(), np.uint8)
            model.buffers.append(buf)
            t.buffer = len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    def code(op: str) -> int:
        if op not in codes:
            c = s.OperatorCodeT()
            value = (s.BuiltinOperator.CUSTOM if op.startswith("Flex")
                     else getattr(s.BuiltinOperator, op))
            if op.startswith("Flex"):  # a TensorFlow op kept by SELECT_TF_OPS
                c.customCode = op
            c.builtinCode = value
            c.deprecatedBuiltinCode = min(value, 127)
            c.version = 1
            model.operatorCodes.append(c)
            codes[op] = len(model.operatorCodes) - 1
        return codes[op]

    current = tensor("x")
    graph.inputs = [current]
    for i, (op, const) in enumerate(ops):
        name = names[i] if names else f"t{i}"
        inputs = [current]
        if op in BINARY:
            assert const is not None, f"{op} needs a constant"
            inputs.append(tensor(f"{name}/const", np.array([const], np.float32), (1,)))
        out = tensor(name)
        operator = s.OperatorT()
        operator.opcodeIndex = code(op)
        operator.inputs, operator.outputs = inputs, [out]
        graph.operators.append(operator)
        current = out
    graph.outputs = [current]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path
