"""Core ML variants (ML program) through coremltools; works on Linux (prediction needs macOS).

Keras 3 models are converted from a ``tf.function`` concrete function (a
``model.export()`` SavedModel fails in coremltools); PyTorch models from their
``torch.export`` program (coremltools 9.0 warns that torch 2.13 is untested; it converts).
Imported only inside the quantize worker process.

Palettization can keep named layers fp16 (``keep``): each layer is traced to
the Core ML ops that carry its weights through the TensorFlow graph the
converter read (the variables each conv / matmul reads, and the TF node each
Core ML op was named after), not by matching layer names inside op names: the
converter names a conv fused with its batch norm after the batch norm, and TF
scopes ``dense`` and ``dense_1`` as ``dense_1`` and ``dense_1_2``.

Converter ``coreml`` (:func:`make`): the recipe's ``compress`` and the request's
``coreml_keep``.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from quantlab.harness.quantize.converters import Source
    from quantlab.harness.quantize.schemes import Scheme

PALETTIZE_THRESHOLD = 2048
"""coremltools' default ``weight_threshold``: only weights with more values are palettized."""
TF_WEIGHT_OPS = frozenset({
    "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3DBackpropInputV2",
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
})
"""TF ops whose weights Core ML compresses (a conv, a matmul) when they read a variable."""
_WEIGHT_PATH = frozenset({"Cast", "Identity", "ReadVariableOp", "Reshape", "Transpose",
                          "ExpandDims", "Squeeze"})
"""Ops between a variable and the conv / matmul that reads it."""
_SEARCH_LIMIT = 400
"""Most TF ops visited back from a Core ML op's TF node to the weighted op it came from."""


def _concrete_function(
    source: Any, kind: str, input_shape: tuple[int, ...], input_dtype: str
) -> Any:
    import tensorflow as tf

    shape = tuple(1 if (d is None or d < 0) else int(d) for d in input_shape)
    if kind == "savedmodel":
        loaded = tf.saved_model.load(source)
        sigs = getattr(loaded, "signatures", {})
        if "serving_default" not in sigs:
            raise ValueError("the SavedModel has no serving_default signature")
        fn = sigs["serving_default"]
        fn._quantlab_keep = loaded  # keep the loaded object alive with the function
        return fn
    model = source
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec(shape, tf.as_dtype(input_dtype))
    )


def _exported_program(model: Any, input_shape: tuple[int, ...], input_dtype: str) -> Any:
    """A PyTorch model's ``torch.export`` program in the ATen dialect coremltools reads."""
    import torch

    shape = tuple(1 if (d is None or d < 0) else int(d) for d in input_shape)
    example = (torch.zeros(shape, dtype=getattr(torch, input_dtype)),)
    with torch.no_grad():
        return torch.export.export(model, example).run_decompositions({})


def _variable_layers(model: Any) -> dict[int, list[str]]:
    """Keras layers owning each variable (nested layers too, innermost first), by ``id`` of the
    variable's handle (the tensor a concrete function captures)."""
    flatten = getattr(model, "_flatten_layers", None)  # Keras 3: nested layers too
    layers = list(flatten(include_self=False, recursive=True) if flatten else model.layers)
    out: dict[int, list[str]] = {}
    for layer in sorted(layers, key=lambda la: len(la.weights)):
        for w in layer.weights:
            handle = getattr(getattr(w, "value", w), "handle", None)
            if handle is not None and layer.name not in out.get(id(handle), []):
                out.setdefault(id(handle), []).append(layer.name)
    return out


def _tf_weighted_ops(fn: Any, var_layers: dict[int, list[str]]) -> dict[str, tuple[list[str],
                                                                                   int]]:
    """Each TF conv / matmul that reads a variable: (the layers owning it, its size)."""
    by_input = {internal.name: var_layers.get(id(ext)) for ext, internal in fn.graph.captures}

    def layers_of(tensor: Any, depth: int = 0) -> tuple[list[str], int]:
        owners = by_input.get(tensor.name)
        if owners:
            return owners, 0
        if tensor.op.type not in _WEIGHT_PATH or depth > 8:
            return [], 0
        for t in tensor.op.inputs:
            names, _ = layers_of(t, depth + 1)
            if names:
                return names, int(tensor.shape.num_elements() or 0)
        return [], 0

    out: dict[str, tuple[list[str], int]] = {}
    for op in fn.graph.get_operations():
        if op.type in TF_WEIGHT_OPS:
            for t in op.inputs:
                names, size = layers_of(t)
                if names:
                    out[op.name] = (names, size)
                    break
    return out


def _sanitized(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def _mil_weight_ops(program: Any) -> list[tuple[str, int]]:
    """(name, largest const weight size) of each Core ML op with a float weight (≥ 2-D const)."""
    out = []
    for op in program.functions["main"].operations:
        if op.op_type == "const" or op.op_type.startswith("constexpr_"):
            continue
        sizes = []
        for value in op.inputs.values():
            for var in value if isinstance(value, (tuple, list)) else (value,):
                producer = getattr(var, "op", None)
                val = getattr(var, "val", None)
                if producer is not None and producer.op_type == "const" and isinstance(
                        val, np.ndarray) and val.ndim >= 2 and val.dtype.kind == "f":
                    sizes.append(int(val.size))
        if sizes:
            out.append((op.name, max(sizes)))
    return out


def weight_layers(fn: Any, model: Any, program: Any) -> dict[str, dict[str, Any]]:
    """Core ML weight ops by Keras layer: ``{layer: {"ops": [op names], "size": largest
    weight}}``, in the order of the ML program. A Core ML op is traced to the TF node it was
    named after (the longest TF node name its name starts with), then back through that node's
    inputs to the nearest TF conv / matmul whose weight has the op's size."""
    weighted = _tf_weighted_ops(fn, _variable_layers(model))
    graph_ops = {_sanitized(op.name): op for op in fn.graph.get_operations()}
    out: dict[str, dict[str, Any]] = {}
    for name, size in _mil_weight_ops(program):
        node = next((graph_ops[name[:end]] for end in range(len(name), 0, -1)
                     if name[:end] in graph_ops), None)
        if node is None:
            continue
        owners = _nearest_weighted(node, weighted, size)
        for layer in owners:
            entry = out.setdefault(layer, {"ops": [], "size": 0})
            entry["ops"].append(name)
            entry["size"] = max(entry["size"], size)
    return out


def _nearest_weighted(node: Any, weighted: dict[str, tuple[list[str], int]], size: int
                      ) -> list[str]:
    """Layers of the nearest weighted TF op at or above ``node`` whose weight has ``size``."""
    seen = {node.name}
    queue = deque([node])
    while queue and len(seen) < _SEARCH_LIMIT:
        op = queue.popleft()
        if op.name in weighted:
            names, weight_size = weighted[op.name]
            if weight_size == size:
                return names
            continue  # another layer's conv / matmul: do not look past it
        for t in op.inputs:
            if t.op.name not in seen:
                seen.add(t.op.name)
                queue.append(t.op)
    return []


def kept_ops(layers: dict[str, dict[str, Any]], keep: list[str], ranking: list[str]
             ) -> tuple[list[str], list[str], list[str]]:
    """(layers kept, their Core ML op names, notes) for a ``keep`` request: layer names, or
    ``sensitive:N`` for the N most int8-sensitive layers (``ranking``: converter tensor names,
    most sensitive first) among those that palettization compresses.

    OptionError (a user error) names a layer that owns no Core ML weight op."""
    from quantlab.harness.quantize.options import OptionError, sensitive_count
    from quantlab.harness.quantize.sensitivity import names_from_ranking

    count = sensitive_count(keep)
    notes: list[str] = []
    if count is not None:
        compressed = [n for n, v in layers.items() if v["size"] > PALETTIZE_THRESHOLD]
        names = names_from_ranking(compressed, ranking, count)
        if not names:
            raise ValueError(f"--coreml-keep sensitive:{count}: no layer that palettization "
                             "compresses matches the sensitivity ranking; name the layers")
        if len(names) < count:
            notes = [f"--coreml-keep sensitive:{count}: only {len(names)} ranked layer(s) have "
                     f"weights that palettization compresses (over {PALETTIZE_THRESHOLD} values)"]
    else:
        names = list(dict.fromkeys(keep))
        unknown = [n for n in names if n not in layers]
        if unknown:
            raise OptionError(
                f"--coreml-keep: layer {unknown[0]!r} matches no Core ML weight op",
                hint=f"layers with weights: {', '.join(layers) or 'none'}")
        notes = [f"--coreml-keep {n}: its weights ({layers[n]['size']} values) are too small "
                 f"to palettize (≤ {PALETTIZE_THRESHOLD}); fp16 either way"
                 for n in names if layers[n]["size"] <= PALETTIZE_THRESHOLD]
    ops = list(dict.fromkeys(op for n in names for op in layers[n]["ops"]))
    return names, ops, notes


def _weight_sources(program: Any, ops: list[str]) -> dict[str, list[str]]:
    """For each named op, the op types producing its ≥ 2-D weights (``const`` when left
    uncompressed, ``constexpr_lut_to_dense`` when palettized)."""
    wanted = set(ops)
    out: dict[str, list[str]] = {}
    for op in program.functions["main"].operations:
        if op.name not in wanted:
            continue
        kinds = []
        for value in op.inputs.values():
            for var in value if isinstance(value, (tuple, list)) else (value,):
                producer = getattr(var, "op", None)
                shape = getattr(var, "shape", ())
                if producer is not None and (producer.op_type == "const" or producer.op_type
                                             .startswith("constexpr_")) and len(shape) >= 2:
                    kinds.append(producer.op_type)
        out[op.name] = kinds
    return out


def convert(
    source: Any,
    kind: str,
    settings: dict[str, Any],
    input_shape: tuple[int, ...],
    input_dtype: str,
    out_path: str,
) -> dict[str, Any]:
    """Convert to an .mlpackage at ``out_path`` (fp16 ML program, optionally weight-compressed).

    ``settings``: ``compress`` (None, ``linear8`` or ``palettize4``); with ``palettize4``,
    ``keep`` (layer names or ``sensitive:N``) and ``ranking`` (for ``sensitive:N``) leave those
    layers' weights fp16. Returns facts for the manifest: ``keep``, ``keep_ops`` and ``notes``
    when layers were kept, else nothing.
    """
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct
    from coremltools.optimize import coreml as cto

    fn = None
    common = {"convert_to": "mlprogram", "compute_precision": ct.precision.FLOAT16,
              "minimum_deployment_target": ct.target.iOS17}
    if kind in ("torch-export", "torch-entry"):  # a PyTorch model: its torch.export program
        mlmodel = ct.convert(_exported_program(source, input_shape, input_dtype), **common)
    else:
        fn = _concrete_function(source, kind, input_shape, input_dtype)
        mlmodel = ct.convert([fn], source="tensorflow", **common)
    facts: dict[str, Any] = {}
    compress = settings.get("compress")
    keep = settings.get("keep") or []
    if keep and compress != "palettize4":
        raise ValueError("keeping layers fp16 applies to palettized weights (coreml-w4) only")
    if compress == "linear8":
        config = cto.OptimizationConfig(
            global_config=cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", granularity="per_channel"
            )
        )
        mlmodel = cto.linear_quantize_weights(mlmodel, config)
    elif compress == "palettize4":
        ops: list[str] = []
        if keep:
            if kind != "keras":
                raise ValueError("keeping layers fp16 needs a Keras source")
            layers = weight_layers(fn, source, mlmodel._mil_program)
            names, ops, notes = kept_ops(layers, keep, list(settings.get("ranking") or []))
            facts = {"keep": names, "keep_ops": ops, **({"notes": notes} if notes else {})}
        config = cto.OptimizationConfig(
            global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=4),
            op_name_configs={op: None for op in ops},  # None: leave this op's weights as they are
        )
        mlmodel = cto.palettize_weights(mlmodel, config)
        if ops:
            left = _weight_sources(mlmodel._mil_program, ops)
            wrong = [op for op in ops if any(k != "const" for k in left.get(op, []))]
            if wrong:
                raise ValueError(f"ops meant to stay fp16 were compressed: {', '.join(wrong)}")
    elif compress is not None:
        raise ValueError(f"unknown Core ML compression {compress!r}")
    mlmodel.save(out_path)
    return facts


def make(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Converter ``coreml``: an .mlpackage with the recipe's ``compress``, keeping the
    request's ``coreml_keep`` layers fp16 where the scheme palettizes; the manifest gets the
    layers kept and their Core ML ops (``options``) and any notes."""
    from quantlab.harness.quantize.converters import prepare

    prepared = prepare(source, scheme, "coreml")
    facts = convert(source.model, source.kind, {**settings, **_keep(source, scheme)},
                    tuple(source.input_shape), source.input_dtype, str(prepared.out))
    fields = prepared.fields
    if facts.get("notes"):
        fields["notes"] = [*fields.get("notes", []), *facts["notes"]]
    if facts.get("keep") is not None:
        fields["options"] = {**fields.get("options", {}), "keep": facts["keep"],
                             "keep_ops": facts["keep_ops"]}
    return {"file": prepared.out.name, **fields}


def _keep(source: Source, scheme: Scheme) -> dict[str, Any]:
    """The layers a palettized Core ML scheme keeps fp16 (``keep``) and, for
    ``sensitive:N``, the int8 sensitivity ranking on the calibration data (``ranking``)."""
    from quantlab.harness.quantize import options as qoptions

    keep = source.req.options.coreml_keep
    if not keep or not qoptions.keeps_layers(scheme):
        return {}
    if source.kind in ("torch-export", "torch-entry"):
        raise ValueError("keeping layers fp16 (--coreml-keep) needs a Keras source")
    if qoptions.sensitive_count(keep) is None:
        return {"keep": list(keep)}
    if source.calib_x is None:
        raise ValueError("--coreml-keep sensitive:N ranks layers on calibration data "
                         "(--calib)")
    from quantlab.harness.quantize import tflite_tf

    ranking = tflite_tf.layer_errors(source.model, source.kind, source.calib_x)
    return {"keep": list(keep), "ranking": [r["layer"] for r in ranking]}
