"""ExecuTorch variants (converter ``executorch``): a PyTorch source lowered to XNNPACK as a
``.pte``, float (``et-fp32``) or statically quantized to int8 with PT2E and the XNNPACK
quantizer, calibrated on ``--calib`` (``et-int8``).

Runs in the quantize worker (it imports torch and executorch). The manifest records how many
of the model's ops the XNNPACK delegate took and which stayed on ExecuTorch's portable kernels.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from quantlab.harness.quantize.converters import Source, prepare
from quantlab.harness.quantize.schemes import Scheme

_BOOKKEEPING = ("getitem", "executorch_call_delegate", "quantize_per_tensor",
                "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel")


def make(source: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Write the scheme's ``.pte`` into the work folder; its manifest fields."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    prep = prepare(source, scheme, "executorch")
    model, example = source.model, tuple(source.example_inputs)
    with torch.no_grad():
        if settings.get("int8"):
            model = _quantized(model, example, source.calib_x,
                               per_channel=source.req.options.granularity != "per-tensor")
        program = torch.export.export(model, example)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    ops = _op_counts(lowered.exported_program().graph_module)
    prep.out.write_bytes(lowered.to_executorch().buffer)
    return {"file": prep.out.name, **prep.fields, "ops": ops,
            "notes": [*prep.check_notes, *_notes(ops)] or None}


def _quantized(model: Any, example: tuple[Any, ...], calib_x: Any, *, per_channel: bool) -> Any:
    """PT2E static int8: prepare with the XNNPACK quantizer, calibrate, convert."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=per_channel))
    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    batch = example[0].shape[0]
    for i in range(0, len(calib_x) - batch + 1, batch):
        prepared(torch.from_numpy(calib_x[i:i + batch]))
    return convert_pt2e(prepared)


def _op_counts(graph_module: Any) -> dict[str, Any]:
    """Ops inside the XNNPACK delegate and ops left to the portable kernels, by type."""
    delegated = 0
    for _, child in graph_module.named_children():
        original = getattr(child, "original_module", None)
        if original is not None:
            delegated += sum(1 for n in original.graph.nodes if n.op == "call_function"
                             and not _name(n.target).startswith(_BOOKKEEPING))
    portable: Counter[str] = Counter(
        _name(n.target) for n in graph_module.graph.nodes
        if n.op == "call_function" and not _name(n.target).startswith(_BOOKKEEPING))
    return {"total_ops": delegated + sum(portable.values()), "delegated_ops": delegated,
            "portable_ops": sum(portable.values()), "by_type": dict(portable)}


def _name(target: Any) -> str:
    name = str(getattr(target, "__name__", target))
    return name.split("aten.", 1)[-1] if "aten." in name else name


def _notes(ops: dict[str, Any]) -> list[str]:
    if not ops["portable_ops"]:
        return []
    kinds = ", ".join(sorted(ops["by_type"]))
    return [f"{ops['portable_ops']} ops outside the XNNPACK delegate (portable kernels): {kinds}"]
