"""How many samples one invoke takes: the batch a model's inputs are resized to.

Shared by the runner's ``outputs`` mode (:mod:`.outputs`) and the host's evaluation
(``quantlab.harness.quantize.tflite_runner``), so a variant's outputs on the simulator and on
the host come from the same batches. A model runs one sample at a time when it has an op that
decodes only image 0 of a batch (``TFLite_Detection_PostProcess``), when its per-sample tensors
are large (:data:`BATCH_BYTES`: such batches run no faster and a big head would allocate
gigabytes) or when its outputs do not keep the batch axis (a fixed reshape folds it into
another axis). The last is probed at batch 2, never at the full batch: a full batch's tensors
cost more to allocate and run than the probe saves (BlazeFace at batch 64: 0.25 s to learn it
cannot batch, 8 ms at batch 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BATCH = 64
"""Samples per invoke where the model allows it."""
BATCH_BYTES = 4 << 20
"""Tensor bytes a batch may hold (the sum of every per-sample op output tensor)."""
UNBATCHABLE_OPS = ("TFLite_Detection_PostProcess",)  # decodes image 0 of a batch only
PROBE = 2
"""The batch at which a model shows whether its outputs keep the batch axis."""


def sample_bytes(interp: Any, ops: list[dict[str, Any]]) -> int:
    """Bytes of every op output tensor that depends on the inputs, for one sample: what a
    batch multiplies (ops on constants alone, an fp16 model's weight DEQUANTIZE, are not per
    sample). BlazeFace holds 10 MB: 410 random images ran in 0.264 s one by one and in
    0.308 s in batches of 64, whose tensors took 37 ms to allocate."""
    import numpy as np

    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    fed = {d["index"] for d in interp.get_input_details()}
    for op in ops:
        if any(i in fed for i in op["inputs"]):
            fed.update(op["outputs"])
    outs = {i for op in ops for i in op["outputs"] if i in tensors and i in fed}
    return max(1, sum(int(np.prod(tensors[i]["shape"])) * np.dtype(tensors[i]["dtype"]).itemsize
                      for i in outs))


def _resize(interp: Any, batch: int | None, shapes: list[list[int]]) -> None:
    """Every input's batch axis set to ``batch`` (``None``: the model's own ``shapes``), then
    the tensors allocated."""
    for d, shape in zip(interp.get_input_details(), shapes, strict=True):
        interp.resize_tensor_input(d["index"], shape if batch is None else [batch, *shape[1:]])
    interp.allocate_tensors()


def _keeps_batch(interp: Any, batch: int) -> bool:
    """Whether every output has ``batch`` as its first axis. A shape computed while running
    (a Keras Flatten's reshape) is only known after an invoke, so a mismatch is confirmed by
    one invoke on zeros."""
    import numpy as np

    outs = interp.get_output_details()
    if all(len(o["shape"]) and int(o["shape"][0]) == batch for o in outs):
        return True
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interp.invoke()
    return all(interp.get_tensor(o["index"]).shape[:1] == (batch,) for o in outs)


def fit_batch(interp: Any, wanted: int, reload: Callable[[], Any]) -> tuple[Any, int]:
    """The interpreter with its tensors allocated for the largest batch up to ``wanted`` that
    the model takes (see the module docstring), and that batch: 1 when the model runs one
    sample at a time, its tensors then at the model's own shapes. ``reload`` gives a fresh
    interpreter for the same model, used only when a failed probe left this one unusable.
    The final allocation's ``ValueError``/``RuntimeError`` (a model LiteRT cannot prepare) is
    the caller's to report."""
    ops = interp._get_ops_details()
    batch = 1
    if wanted > 1 and not any(op["op_name"] in UNBATCHABLE_OPS for op in ops):
        batch = max(1, min(wanted, BATCH_BYTES // sample_bytes(interp, ops)))
    if batch == 1:
        interp.allocate_tensors()
        return interp, 1
    shapes = [[int(x) for x in d["shape"]] for d in interp.get_input_details()]
    try:
        if _keeps_batch_at(interp, min(PROBE, batch), shapes) and (
                batch <= PROBE or _keeps_batch_at(interp, batch, shapes)):
            return interp, batch
        _resize(interp, None, shapes)
        return interp, 1
    except (ValueError, RuntimeError):
        interp = reload()
        interp.allocate_tensors()
        return interp, 1


def _keeps_batch_at(interp: Any, batch: int, shapes: list[list[int]]) -> bool:
    """Resize to ``batch`` and say whether the outputs keep it."""
    _resize(interp, batch, shapes)
    return _keeps_batch(interp, batch)
