"""Probe models made by flatbuffer surgery on a copy of a .tflite: the model's own ops, with
extra graph outputs that expose intermediate tensors (:func:`expose`), or cut after one op
(:func:`truncate`). Nothing of the original file changes; the probes' signatures are dropped
(they name the original outputs only), and an exposed tensor whose name is empty or shared
gets a unique one (``name#index``) so every output comes back under its own name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Probe:
    """A probe model's bytes and its outputs, in order: (tensor index, name)."""

    data: bytes
    outputs: tuple[tuple[int, str], ...]
    ops: int  # how many of the model's ops it keeps (the first ``ops`` in execution order)


def _load(model: bytes) -> Any:
    from ai_edge_litert import schema_py_generated as s

    return s.ModelT.InitFromPackedBuf(bytearray(model), 0)


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name or "")


def _finish(m: Any, graph: Any, outputs: Sequence[int], ops: int, size: int) -> Probe:
    import flatbuffers

    outputs = list(dict.fromkeys(outputs))
    names = [_text(t.name) for t in graph.tensors]
    seen: dict[str, int] = {}
    for t in outputs:
        seen[names[t]] = seen.get(names[t], 0) + 1
    for t in outputs:
        if not names[t] or seen[names[t]] > 1:
            names[t] = f"{names[t]}#{t}"
            graph.tensors[t].name = names[t]
    graph.outputs = outputs
    m.signatureDefs = None
    builder = flatbuffers.Builder(size + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return Probe(bytes(builder.Output()), tuple((t, names[t]) for t in outputs), ops)


def expose(model: bytes, tensors: Sequence[int]) -> Probe:
    """The whole model with ``tensors`` (indices in subgraph 0) added to its outputs, after
    the model's own outputs."""
    m = _load(model)
    graph = m.subgraphs[0]
    return _finish(m, graph, [*list(graph.outputs), *tensors], len(graph.operators or []),
                   len(model))


def truncate(model: bytes, last_op: int, tensors: Sequence[int] = ()) -> Probe:
    """The model's ops up to ``last_op`` (execution order) and no further; its outputs are that
    op's outputs, then ``tensors`` (which must be computed by the ops kept, or be inputs)."""
    m = _load(model)
    graph = m.subgraphs[0]
    graph.operators = list(graph.operators)[: last_op + 1]
    return _finish(m, graph, [*list(graph.operators[last_op].outputs), *tensors], last_op + 1,
                   len(model))
