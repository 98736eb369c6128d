"""Quantization schemes as data: adding a scheme is one entry in :data:`SCHEMES`.

Each scheme carries its default accuracy gate (``max_drop``: fp16 < 0.5 pt, int8 < 2 pt of
the task's primary metric, from common PTQ practice), overridable per scheme with
``evaluate --max-drop int8=0.03,fp16=0.005``.

A scheme names its output format, whether it needs calibration data, and for each kind of
source model a :class:`Recipe`: the converter that makes it, by its key in
:data:`quantlab.harness.quantize.converters.CONVERTERS` (``tf`` = the TF Lite converter,
``tf-float`` = the float model the TF converter made for the op check, ``tf-calibrated`` =
the TF Lite converter's int8 family from one shared calibration, ``aeq`` =
ai-edge-quantizer, ``coreml`` = coremltools, ``tfmot`` = quantization-aware training,
``tf-mixed``/``aeq-mixed`` = int8 with the most sensitive layers kept float, ``litert-torch`` =
a PyTorch source converted to a float .tflite, then the scheme's ``.tflite`` recipe), with that
converter's settings. A scheme with a new converter is one converter module, one line in
``CONVERTERS`` and its line here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quantlab.harness.errors import UserError

SOURCE_KINDS = ("keras", "savedmodel", "tflite", "torch-export", "torch-entry")
TORCH_KINDS = ("torch-export", "torch-entry")  # a .pt2 archive; module:factory


@dataclass(frozen=True)
class Recipe:
    """How one kind of source becomes a scheme's variant: a converter's registry key and the
    settings it is given."""

    converter: str  # a key of quantlab.harness.quantize.converters.CONVERTERS
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scheme:
    """One named way to make a deployable variant."""

    name: str
    format: str  # "tflite" | "coreml" | "pte" (ExecuTorch)
    needs_calibration: bool
    description: str
    from_tf: Recipe | None = None  # Keras and SavedModel sources
    from_tflite: Recipe | None = None  # float .tflite sources
    from_torch: Recipe | None = None  # PyTorch sources (.pt2, module:factory)
    mixed: bool = False  # keep the most sensitive layers float until the gate passes
    max_drop: float = 0.02  # default gate: largest drop of the primary metric (0.02 = 2 pt)
    needs_training: bool = False  # fine-tunes on labelled data (--train); made only when named

    @property
    def suffix(self) -> str:
        """File suffix of the variant."""
        return {"coreml": ".mlpackage", "pte": ".pte"}.get(self.format, ".tflite")

    @property
    def tf_settings(self) -> dict[str, Any]:
        """The settings of the recipe for Keras and SavedModel sources ({} without one): what
        the op check reads (int8 ops, int8 I/O)."""
        return dict(self.from_tf.settings) if self.from_tf is not None else {}

    def recipe_for(self, source_kind: str) -> Recipe | None:
        """How this scheme is made from a source of this kind (None: not possible)."""
        if source_kind in TORCH_KINDS:
            return self.from_torch
        return self.from_tflite if source_kind == "tflite" else self.from_tf


def _tf(**settings: Any) -> Recipe:
    return Recipe("tf", settings)


def _calibrated(**settings: Any) -> Recipe:
    return Recipe("tf-calibrated", settings)


def _aeq(recipe: str, **settings: Any) -> Recipe:
    return Recipe("aeq", {"recipe": recipe, **settings})


LITERT_TORCH = Recipe("litert-torch")  # PyTorch → float .tflite, then the from_tflite recipe


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in [
        Scheme("fp32", "tflite", False, "float32 reference", from_tf=Recipe("tf-float"),
               from_tflite=_aeq("copy"), from_torch=LITERT_TORCH, max_drop=0.005),
        Scheme("fp16", "tflite", False, "float16 weights", from_tf=_tf(fp16=True),
               from_tflite=_aeq("fp16"), from_torch=LITERT_TORCH,
               max_drop=0.005),  # < 0.5 pt
        Scheme("dynamic-int8", "tflite", False, "int8 weights, float activations (dynamic range)",
               from_tf=_tf(optimize=True), from_tflite=_aeq("dynamic_wi8_afp32"),
               from_torch=LITERT_TORCH),
        Scheme("int8", "tflite", True, "full integer, float input/output",
               from_tf=_calibrated(optimize=True, int8_ops=True),
               from_tflite=_aeq("static_wi8_ai8"), from_torch=LITERT_TORCH),
        Scheme("int8-io", "tflite", True, "full integer, int8 input/output",
               from_tf=_calibrated(optimize=True, int8_ops=True, int8_io=True)),
        Scheme("uint8-io", "tflite", True,
               "full integer, uint8 input/output (older NNAPI and Edge-class accelerators)",
               from_tf=_calibrated(optimize=True, int8_ops=True, int8_io=True,
                                   io_dtype="uint8")),
        Scheme("int16x8", "tflite", True, "int16 activations, int8 weights",
               from_tf=_calibrated(optimize=True, int16x8=True),
               from_tflite=_aeq("static_wi8_ai16"), from_torch=LITERT_TORCH, max_drop=0.01),
        Scheme("mixed-int8", "tflite", True, "int8 with the most sensitive layers kept float",
               from_tf=Recipe("tf-mixed", {"optimize": True, "mixed": True}),
               from_tflite=Recipe("aeq-mixed", {"recipe": "static_wi8_ai8", "mixed": True}),
               from_torch=LITERT_TORCH, mixed=True),
        Scheme("qat-int8", "tflite",
               False,  # calibrates on --calib when given, else on the training data
               "quantization-aware training (tfmot) on --train data, full integer, float I/O",
               from_tf=Recipe("tfmot", {"optimize": True, "int8_ops": True, "qat": True}),
               needs_training=True),
        Scheme("qat-int8-io", "tflite",
               False,  # calibrates on --calib when given, else on the training data
               "quantization-aware training (tfmot) on --train data, full integer, int8 I/O",
               from_tf=Recipe("tfmot", {"optimize": True, "int8_ops": True, "int8_io": True,
                                        "qat": True}),
               needs_training=True),
        Scheme("coreml-fp16", "coreml", False, "Core ML ML program, float16",
               from_tf=Recipe("coreml", {"compress": None}),
               from_torch=Recipe("coreml", {"compress": None})),
        Scheme("coreml-w8", "coreml", False,
               "Core ML, int8 weights (linear symmetric, per channel)",
               from_tf=Recipe("coreml", {"compress": "linear8"}),
               from_torch=Recipe("coreml", {"compress": "linear8"})),
        Scheme("coreml-w4", "coreml", False, "Core ML, 4-bit palettized weights",
               from_tf=Recipe("coreml", {"compress": "palettize4"}),
               from_torch=Recipe("coreml", {"compress": "palettize4"})),
        Scheme("et-fp32", "pte", False, "ExecuTorch, float32, lowered to XNNPACK",
               from_torch=Recipe("executorch"), max_drop=0.005),
        Scheme("et-int8", "pte", True,
               "ExecuTorch, PT2E static int8 (XNNPACK quantizer), lowered to XNNPACK",
               from_torch=Recipe("executorch", {"int8": True})),
        Scheme("et-coreml", "pte", False,
               "ExecuTorch, lowered to its Core ML backend (float16; runs on iOS/macOS only)",
               from_torch=Recipe("executorch", {"backend": "coreml"}), max_drop=0.005),
        Scheme("et-portable", "pte", False,
               "ExecuTorch, float32, portable kernels only (no delegate)",
               from_torch=Recipe("executorch", {"backend": "portable"}), max_drop=0.005),
    ]
}
"""Every scheme quantlab knows, by name."""

ALL_TFLITE = [s for s, v in SCHEMES.items() if v.format == "tflite"]


def resolve_schemes(names: list[str], source_kind: str | None = None) -> list[Scheme]:
    """The schemes named (``all``: every scheme; ``tflite``/``coreml``/``pte``: all of that
    format).

    ``all`` and ``tflite`` leave out the schemes that train (``qat-int8``): they
    need labelled data and minutes, so they run only when named. Given the source's kind,
    ``all`` and the formats hold the schemes of its family: for a PyTorch source those with a
    recipe from PyTorch (LiteRT through litert-torch, ExecuTorch), for the others every scheme
    but ExecuTorch's (one that cannot be made from that kind still fails in the manifest with
    the reason, e.g. Core ML from a .tflite).
    """
    out: list[Scheme] = []
    for name in names or ["all"]:
        if name == "all":
            picked = [s for s in SCHEMES.values() if not s.needs_training]
        elif name in ("tflite", "coreml", "pte"):
            picked = [s for s in SCHEMES.values() if s.format == name and not s.needs_training]
        elif name in SCHEMES:
            picked = [SCHEMES[name]]
        else:
            raise UserError(f"unknown scheme {name!r}", hint=f"choose from {', '.join(SCHEMES)}")
        if source_kind is not None and name not in SCHEMES:
            if source_kind in TORCH_KINDS:
                picked = [s for s in picked if s.from_torch is not None]
            else:
                picked = [s for s in picked if s.format != "pte"]
        out += [s for s in picked if s not in out]
    return out
