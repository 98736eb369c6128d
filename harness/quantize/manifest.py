"""The manifest of a variants folder (``manifest.json``): what each scheme produced, and how.

One :class:`VariantEntry` per scheme (``ok`` with its file, size, sha256, ops and
options, or ``failed`` with the reason), the source, the input, the calibration
data's statistics and the tool versions that made the variants.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from quantlab.harness.errors import UserError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
TOOLS = (
    "tensorflow-cpu",
    "tensorflow",
    "ai-edge-quantizer",
    "ai-edge-litert",
    "coremltools",
    "keras",
    "torch",
    "executorch",
    "torchao",
    "litert-torch",
    "quantlab",
)


@dataclass(frozen=True)
class VariantEntry:
    """One scheme's outcome in the manifest."""

    scheme: str
    format: str
    status: str  # ok | failed
    file: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    seconds: float | None = None
    seconds_split: dict[str, float] | None = None  # calibration, conversion, checks
    converter: str | None = None
    ops: dict[str, Any] | None = None  # total ops and ops left in float, by type
    mixed: dict[str, Any] | None = None  # mixed-int8: layers kept float, size cost, gate
    notes: list[str] | None = None  # e.g. ops kept float, outputs left float32 (op check)
    options: dict[str, Any] | None = None  # int8 options: granularity, calibration samples
    qat: dict[str, Any] | None = None  # qat-int8: training facts (epochs, early stop, timing)
    recalibration: dict[str, Any] | None = None  # evaluate --recalibrate's fits, by where
    calibration: dict[str, Any] | None = None  # the shared calibration used: id, reused


@dataclass(frozen=True)
class Manifest:
    """What a variants folder holds (written as manifest.json)."""

    out: str
    source: dict[str, Any]
    input: dict[str, Any]
    calibration: dict[str, Any] | None
    tools: dict[str, str]
    variants: list[VariantEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    schema_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        """Read ``folder/manifest.json``."""
        path = Path(folder) / MANIFEST
        if not path.exists():
            raise UserError(f"{folder}: no {MANIFEST}", hint="make it with `quantlab quantize`")
        d = json.loads(path.read_text())
        if d.get("schema_version", 1) > MANIFEST_VERSION:
            raise UserError(f"{path}: written by a newer quantlab (schema {d['schema_version']})")
        d["variants"] = [VariantEntry(**v) for v in d.get("variants", [])]
        return cls(**d)


def tool_versions() -> dict[str, str]:
    """Installed versions of the converters and runtimes that made the variants."""
    out = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
