"""A stand-in delegate for culprit tests: it runs a probe model's elementwise ops itself in
numpy, each op type in a chosen dtype (``float16`` emulates a delegate that computes in fp16)
or through a perturbation (a wrong kernel), and the reference side on LiteRT's real reference
kernels. ``split=True`` makes it place like a GPU delegate that cuts its partition at every
graph output inside it, so exposing tensors changes placement (bisection)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np

from quantlab.harness.culprit import ProbeRun

UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "EXP": np.exp, "LOG": np.log, "TANH": np.tanh, "ABS": np.abs, "NEG": np.negative,
    "SQRT": np.sqrt, "RELU": lambda x: np.maximum(x, 0),
    "LOGISTIC": lambda x: 1 / (1 + np.exp(-x)), "SIGN": np.sign,
}
BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "DIV": np.divide,
    "MAXIMUM": np.maximum, "MINIMUM": np.minimum,
}


def _reference(data: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=data,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}


class StandIn:
    """``launcher(data, label)`` for :func:`quantlab.harness.culprit.find`; counts its runs."""

    def __init__(self, dtypes: dict[str, Any] | None = None,
                 perturb: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
                 split: bool = False, seed: int = 7) -> None:
        self.dtypes, self.perturb, self.split = dtypes or {}, perturb or {}, split
        self.seed, self.runs = seed, 0

    def __call__(self, data: bytes, label: str) -> ProbeRun:
        from ai_edge_litert import schema_py_generated as s

        self.runs += 1
        m = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
        g = m.subgraphs[0]
        names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
        x = np.random.default_rng(self.seed).uniform(-1, 1, list(g.tensors[g.inputs[0]].shape)
                                                     ).astype(np.float32)
        values: dict[int, np.ndarray] = {g.inputs[0]: x}
        for i, t in enumerate(g.tensors):
            buf = m.buffers[t.buffer].data if t.buffer else None
            if buf is not None and len(buf):
                values[i] = np.frombuffer(bytes(buf), np.float32).reshape(list(t.shape))
        for op in g.operators:
            kind = names[m.operatorCodes[op.opcodeIndex].builtinCode]
            dtype = self.dtypes.get(kind, self.dtypes.get("*", np.float32))
            args = [values[t].astype(dtype) for t in op.inputs]
            with np.errstate(all="ignore"):
                y = (UNARY[kind](args[0]) if kind in UNARY else BINARY[kind](*args))
                if kind in self.perturb:
                    y = self.perturb[kind](y)
            values[op.outputs[0]] = np.asarray(y, dtype).astype(np.float32)
        out = {g.tensors[t].name.decode(): values[t] for t in g.outputs}
        n = len(g.operators)
        inner = [t for t in g.outputs if any(t in op.outputs for op in g.operators[:-1])]
        if self.split and inner:  # a partition ends at every exposed tensor
            cuts = sorted({next(i for i, op in enumerate(g.operators) if t in op.outputs)
                           for t in inner})
            bounds = [-1, *cuts, n - 1] if cuts[-1] != n - 1 else [-1, *cuts]
            parts = [list(range(a + 1, b + 1)) for a, b in pairwise(bounds)
                     if b > a]
        else:
            parts = [list(range(n))]
        placement = {"ops_total": n, "ops_delegated": n,
                     "partitions": [{"delegate": "STANDIN", "nodes": p} for p in parts]}
        return ProbeRun(out, _reference(data, x), placement)
