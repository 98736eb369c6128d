"""Quantization schemes as data: adding a scheme is one entry in :data:`SCHEMES`.

Each scheme carries its default accuracy gate (``max_drop``: fp16 < 0.5 pt, int8 < 2 pt of
the task's primary metric, from common PTQ practice), overridable per scheme with
``evaluate --max-drop int8=0.03,fp16=0.005``.

A scheme names its output format, whether it needs calibration data, and for
each kind of source model the converter that makes it (``tf`` = the TF Lite
converter, ``aeq`` = ai-edge-quantizer, ``coreml`` = coremltools) with that
converter's settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quantlab.harness.errors import UserError

SOURCE_KINDS = ("keras", "savedmodel", "tflite")


@dataclass(frozen=True)
class Scheme:
    """One named way to make a deployable variant."""

    name: str
    format: str  # "tflite" | "coreml"
    needs_calibration: bool
    description: str
    tf: dict[str, Any] | None = None  # TF converter settings (Keras / SavedModel sources)
    aeq: dict[str, Any] | None = None  # ai-edge-quantizer recipe (float .tflite sources)
    coreml: dict[str, Any] | None = None  # coremltools settings (Keras / SavedModel sources)
    mixed: bool = False  # keep the most sensitive layers float until the gate passes
    extra: dict[str, Any] = field(default_factory=dict)
    max_drop: float = 0.02  # default gate: largest drop of the primary metric (0.02 = 2 pt)
    needs_training: bool = False  # fine-tunes on labelled data (--train); made only when named

    @property
    def suffix(self) -> str:
        """File suffix of the variant."""
        return ".mlpackage" if self.format == "coreml" else ".tflite"

    def converter_for(self, source_kind: str) -> str | None:
        """Which converter makes this scheme from a source of this kind (None: not possible)."""
        if source_kind == "tflite":
            return "aeq" if self.aeq is not None else None
        if self.coreml is not None:
            return "coreml"
        return "tf" if self.tf is not None else None


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in [
        Scheme("fp32", "tflite", False, "float32 reference", tf={}, aeq={"recipe": "copy"},
               max_drop=0.005),
        Scheme(
            "fp16", "tflite", False, "float16 weights", tf={"fp16": True}, aeq={"recipe": "fp16"},
            max_drop=0.005,  # < 0.5 pt
        ),
        Scheme(
            "dynamic-int8",
            "tflite",
            False,
            "int8 weights, float activations (dynamic range)",
            tf={"optimize": True},
            aeq={"recipe": "dynamic_wi8_afp32"},
        ),
        Scheme(
            "int8",
            "tflite",
            True,
            "full integer, float input/output",
            tf={"optimize": True, "int8_ops": True},
            aeq={"recipe": "static_wi8_ai8"},
        ),
        Scheme(
            "int8-io",
            "tflite",
            True,
            "full integer, int8 input/output",
            tf={"optimize": True, "int8_ops": True, "int8_io": True},
        ),
        Scheme(
            "int16x8",
            "tflite",
            True,
            "int16 activations, int8 weights",
            tf={"optimize": True, "int16x8": True},
            aeq={"recipe": "static_wi8_ai16"},
            max_drop=0.01,
        ),
        Scheme(
            "mixed-int8",
            "tflite",
            True,
            "int8 with the most sensitive layers kept float",
            tf={"optimize": True, "mixed": True},
            aeq={"recipe": "static_wi8_ai8", "mixed": True},
            mixed=True,
        ),
        Scheme(
            "qat-int8",
            "tflite",
            False,  # calibrates on --calib when given, else on the training data
            "quantization-aware training (tfmot) on --train data, full integer, float I/O",
            tf={"optimize": True, "int8_ops": True, "qat": True},
            needs_training=True,
        ),
        Scheme(
            "qat-int8-io",
            "tflite",
            False,  # calibrates on --calib when given, else on the training data
            "quantization-aware training (tfmot) on --train data, full integer, int8 I/O",
            tf={"optimize": True, "int8_ops": True, "int8_io": True, "qat": True},
            needs_training=True,
        ),
        Scheme(
            "coreml-fp16", "coreml", False, "Core ML ML program, float16", coreml={"compress": None}
        ),
        Scheme(
            "coreml-w8",
            "coreml",
            False,
            "Core ML, int8 weights (linear symmetric, per channel)",
            coreml={"compress": "linear8"},
        ),
        Scheme(
            "coreml-w4",
            "coreml",
            False,
            "Core ML, 4-bit palettized weights",
            coreml={"compress": "palettize4"},
        ),
    ]
}
"""Every scheme quantlab knows, by name."""

ALL_TFLITE = [s for s, v in SCHEMES.items() if v.format == "tflite"]


def resolve_schemes(names: list[str]) -> list[Scheme]:
    """The schemes named (``all``: every scheme; ``tflite``/``coreml``: all of that format).

    ``all`` and ``tflite`` leave out the schemes that train (``qat-int8``): they
    need labelled data and minutes, so they run only when named.
    """
    out: list[Scheme] = []
    for name in names or ["all"]:
        if name == "all":
            picked = [s for s in SCHEMES.values() if not s.needs_training]
        elif name in ("tflite", "coreml"):
            picked = [s for s in SCHEMES.values() if s.format == name and not s.needs_training]
        elif name in SCHEMES:
            picked = [SCHEMES[name]]
        else:
            raise UserError(f"unknown scheme {name!r}", hint=f"choose from {', '.join(SCHEMES)}")
        out += [s for s in picked if s not in out]
    return out
