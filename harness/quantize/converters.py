"""Converters by name: a scheme's recipe names one (:mod:`~quantlab.harness.quantize.schemes`),
:data:`CONVERTERS` finds it.

Each key maps to ``"module:function"``, imported only when the worker makes a variant with it
(the converters' libraries are heavy). A converter is called with the loaded source
(:class:`Source`: the worker's model, its float .tflite, the calibration and evaluation arrays
and the request), the scheme and its recipe's settings; it writes the variant into the work
folder and returns the variant's manifest fields (``file``, ``converter``, ``ops``, ``notes``,
``options`` …), raising an exception when the variant cannot be made (the scheme is then
``failed`` with the reason). :func:`prepare` is what converters do first: the op check, the
calibration data a scheme needs and the options recorded. Adding a converter is one module
with such a function and one line in :data:`CONVERTERS`.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from quantlab.harness.quantize.events import Events
from quantlab.harness.quantize.requests import WorkerRequest
from quantlab.harness.quantize.schemes import Scheme

CONVERTERS: dict[str, str] = {
    "tf": "quantlab.harness.quantize.tflite_tf:make",
    "tf-float": "quantlab.harness.quantize.tflite_tf:make_float",
    "tf-calibrated": "quantlab.harness.quantize.tf_calibrated:make",
    "tf-mixed": "quantlab.harness.quantize.mixed:make_tf",
    "aeq": "quantlab.harness.quantize.tflite_aeq:make",
    "aeq-mixed": "quantlab.harness.quantize.mixed:make_aeq",
    "coreml": "quantlab.harness.quantize.coreml:make",
    "tfmot": "quantlab.harness.quantize.qat:make_variant",
    "executorch": "quantlab.harness.quantize.executorch_pte:make",
    "litert-torch": "quantlab.harness.quantize.torch_litert:make",
}
"""Converter key (named by a scheme's :class:`~quantlab.harness.quantize.schemes.Recipe`) →
``"module:function"`` following :class:`Converter`."""


class Source(Protocol):
    """The source as the worker loaded it (:class:`quantlab.harness.quantize.worker.Job`)."""

    req: WorkerRequest
    events: Events
    source: str  # the source's path
    kind: str  # keras | savedmodel | tflite | torch-export | torch-entry
    work: Path  # the variants folder being made
    max_drop: float  # mixed-int8's gate
    model: Any  # the loaded Keras / SavedModel / PyTorch model (None for a .tflite source)
    example_inputs: tuple[Any, ...]  # a PyTorch source's example inputs (torch tensors)
    fp32: bytes  # the float .tflite: the source itself, the TF converter's float model, or
    # for a PyTorch source litert-torch's (b"" until a LiteRT scheme converts it)
    aeq_source: str  # the .tflite ai-edge-quantizer reads (the source, or a prepared copy)
    calib_x: np.ndarray | None
    eval_x: np.ndarray | None
    eval_y: np.ndarray | None
    input_shape: list[int]
    input_dtype: str
    ops: dict[str, Any]  # the source's builtin, custom and Flex ops (op check)
    model_sha256: str  # the source's sha256 ("" until a calibration needs it)
    calibrations: dict[str, Any]  # this process's calibrations by key (calibrations.obtain)


class Converter(Protocol):
    """Makes one variant: ``(source, scheme, settings) -> manifest fields``."""

    def __call__(self, source: Source, scheme: Scheme, settings: dict[str, Any], /
                 ) -> dict[str, Any]:
        """Write the variant into ``source.work``; return its manifest fields."""
        ...


class OpCheckError(ValueError):
    """A scheme cannot be made or run: the ops it needs, and the runtimes that lack them."""


def load_converter(key: str) -> Converter:
    """The converter registered under ``key`` (its module imported now)."""
    if key not in CONVERTERS:
        raise ValueError(f"no converter {key!r} (known: {', '.join(CONVERTERS)})")
    module, _, name = CONVERTERS[key].partition(":")
    converter: Converter = getattr(importlib.import_module(module), name)
    return converter


@dataclass
class Prepared:
    """A variant about to be made: where it goes and its manifest fields so far."""

    out: Path
    fields: dict[str, Any]  # converter, and notes and options where there are any
    check_notes: list[str] = field(default_factory=list)  # the op check's notes
    timing: dict[str, float] = field(default_factory=dict)  # seconds: checks, calibration

    def written(self, model: bytes) -> dict[str, Any]:
        """Write a .tflite variant; its manifest fields with its float ops (and ``timing``,
        which the worker turns into the manifest's ``seconds_split``)."""
        from quantlab.harness.quantize.tflite_facts import float_ops

        self.out.write_bytes(model)
        t0 = time.perf_counter()
        ops = float_ops(model)
        self.timing["checks"] = self.timing.get("checks", 0.0) + time.perf_counter() - t0
        return {"file": self.out.name, **self.fields, "ops": ops, "timing": self.timing}


def prepare(source: Source, scheme: Scheme, converter: str) -> Prepared:
    """The op check (OpCheckError when the ops rule the scheme out) and the calibration data
    the scheme needs (ValueError without it); the manifest fields so far: the ``converter``
    recorded, the check's ``notes`` and the ``options`` recorded for the scheme."""
    from quantlab.harness.quantize import options as qoptions
    from quantlab.harness.quantize.opcheck import scheme_check

    t0 = time.perf_counter()
    check = scheme_check(scheme, source.ops)
    if not check["ok"]:
        raise OpCheckError(f"op check: {check['reason']}")
    if scheme.needs_calibration and source.calib_x is None:
        raise ValueError(f"{scheme.name} needs calibration data (--calib)")
    fields: dict[str, Any] = {"converter": converter}
    if check["notes"]:
        fields["notes"] = check["notes"]
    calib_count = None if source.calib_x is None else len(source.calib_x)
    recorded = qoptions.recorded(scheme, source.req.options, calib_count)
    if recorded:
        fields["options"] = recorded
    return Prepared(source.work / f"{scheme.name}{scheme.suffix}", fields, list(check["notes"]),
                    {"checks": time.perf_counter() - t0})
