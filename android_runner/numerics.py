"""Numerics on an Android phone: fixed inputs in, the delegate's outputs back.

benchmark_model reads input tensors from raw files (``--input_layer``,
``--input_layer_shape``, ``--input_layer_value_files``: each file exactly the tensor's
bytes) and, after its last run, writes every output tensor's raw bytes one after the
other to ``--output_filepath`` (in the interpreter's output order). quantlab makes the
inputs and the float reference's outputs on the host
(:func:`quantlab.agents.litert.reference.prepare`), pushes the input files, runs one short
launch on the job's delegate, pulls the output file, splits it by the model's output tensors
and compares on the host (:mod:`quantlab.harness.device_numerics`, shared with the iPhone).

``benchmark_litert_model`` (the ``litert-*`` delegates) fills its inputs with random
data and writes no outputs, so it cannot be checked: :data:`LITERT_REASON` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LITERT_REASON = ("benchmark_litert_model fills its inputs with random data and writes no "
                 "outputs, so its numerics cannot be checked: run the same model with a "
                 "benchmark_model delegate (xnnpack, gpu, nnapi, …) for numerics")
OLD_TOOL_REASON = ("benchmark_model wrote no output file: builds older than TensorFlow 2.15 "
                   "ignore --output_filepath; provision a newer benchmark_model "
                   "(`quantlab android provision`)")


class NumericsUnsupported(ValueError):
    """The model's tensors cannot go through benchmark_model's input/output files."""


def _escape(name: str) -> str:
    """A tensor name inside ``--input_layer_value_files`` (``:`` is written ``::``)."""
    return name.replace(":", "::")


def input_flags(prepared: Mapping[str, Any], remote_dir: str) -> list[str]:
    """benchmark_model flags that load the prepared input files from ``remote_dir``.
    Raises :class:`NumericsUnsupported` for a model whose inputs the flags cannot name
    (a ``,`` in a name, string tensors)."""
    inputs = list(prepared["inputs"])
    for spec in inputs:
        if "," in spec["name"]:
            raise NumericsUnsupported(f"input {spec['name']!r} has a comma in its name, which "
                                      "benchmark_model's --input_layer cannot express")
        if spec["dtype"] in ("object", "bytes", "str"):
            raise NumericsUnsupported(f"input {spec['name']!r} is a string tensor")
    if not inputs:
        return []
    return [
        "--input_layer=" + ",".join(s["name"] for s in inputs),
        "--input_layer_shape=" + ":".join(",".join(str(d) for d in s["shape"])
                                          for s in inputs),
        "--input_layer_value_files=" + ",".join(
            f"{_escape(s['name'])}:{remote_dir}/{s['file']}" for s in inputs),
    ]
