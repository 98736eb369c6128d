"""LiteRT variants of a PyTorch source (converter ``litert-torch``): the model converted once to
a float ``.tflite`` by litert-torch, then each scheme made from that file exactly as for a
``.tflite`` source (the scheme's ``from_tflite`` recipe: ai-edge-quantizer's ``copy`` for
``fp32``, its float16 weight casting for ``fp16``, its int8 recipes calibrated on the same
``--calib`` data for ``dynamic-int8``, ``int8``, ``int16x8`` and ``mixed-int8``).

The float ``.tflite`` keeps PyTorch's input layout (NCHW for an image model: litert-torch adds
the transposes inside the graph), so calibration and evaluation data are given as for the
ExecuTorch variants, in the layout the PyTorch model takes. It is written once per quantize
run beside the variants (``.source-litert.tflite``) and is what the op check reads.

Runs in the quantize worker (it imports torch and litert-torch).
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

from quantlab.harness.quantize.converters import Source, load_converter
from quantlab.harness.quantize.schemes import Scheme

FLOAT_FILE = ".source-litert.tflite"
INSTALL_HINT = ("pip install --no-deps litert-torch==0.10.0 litert-converter==0.5.0 jax==0.10.2 "
                "jaxlib==0.10.2 (docs/runtimes.md: why --no-deps)")


def make(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Write the scheme's ``.tflite`` (from litert-torch's float model); its manifest fields,
    with the converter recorded as ``litert-torch`` (fp32) or ``litert-torch+aeq``."""
    recipe = scheme.from_tflite
    if recipe is None:
        raise ValueError(f"{scheme.name} has no recipe from a float .tflite, so none from "
                         "litert-torch's")
    seconds = float_tflite(source)
    fields = load_converter(recipe.converter)(source, scheme, {**recipe.settings, **settings})
    copy = recipe.settings.get("recipe") == "copy"
    fields["converter"] = "litert-torch" if copy else f"litert-torch+{fields['converter']}"
    if seconds is not None:
        note = f"litert-torch converted the PyTorch model to a float .tflite in {seconds:.1f} s"
        fields["notes"] = [*(fields.get("notes") or []), note]
    return fields


def float_tflite(source: Source) -> float | None:
    """Convert the PyTorch model to a float ``.tflite`` once (the seconds it took; None when
    already done): ``source.fp32``, ``source.aeq_source`` and ``source.ops`` then describe it,
    as they do for a ``.tflite`` source."""
    if source.fp32:
        return None
    if importlib.util.find_spec("litert_torch") is None:
        raise ValueError(f"LiteRT variants of a PyTorch model need litert-torch, which is not "
                         f"installed: {INSTALL_HINT}")
    import litert_torch
    import torch

    from quantlab.harness.quantize import opcheck
    from quantlab.harness.quantize.signature import (
        fold_fp16_weights,
        normalize_op_codes,
        with_default_signature,
    )

    path = source.work / FLOAT_FILE
    t0 = time.perf_counter()
    with torch.no_grad():
        litert_torch.convert(source.model, tuple(source.example_inputs)).export(str(path))
    model = path.read_bytes()
    for step in (normalize_op_codes, with_default_signature, fold_fp16_weights):
        model, _ = step(model)
    path.write_bytes(model)
    source.fp32, source.aeq_source = model, str(path)
    source.ops = opcheck.model_ops(model)
    return time.perf_counter() - t0
