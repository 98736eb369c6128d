"""The runtime a job measures, from its model's format: LiteRT for a ``.tflite``, ExecuTorch
for a ``.pte``, Core ML for an ``.mlpackage``/``.mlmodel``.

The runtime is an axis of every comparison beside the delegate: ``delegates``, ``recommend``
and the HTML report show it, ``compare`` pairs jobs and ``history`` keys its series on it
too, so a ``.pte`` job is never taken for the same series as a ``.tflite`` job. It is derived
from the stored job (every record has its model's format), so older runs carry it too; the
runtime's version is the runner's (``RawResult.runner``).
"""

from __future__ import annotations

from typing import Any

RUNTIMES = {"tflite": "litert", "pte": "executorch", "mlpackage": "coreml", "mlmodel": "coreml"}
"""Model format (``ModelRef.format``) → the runtime that runs it."""


def runtime_of(job: Any) -> str:
    """The runtime of a :class:`~quantlab.harness.records.Job` (``litert``, ``executorch`` or
    ``coreml``; a format this table does not know is its own name)."""
    fmt = str(job.model.format)
    return RUNTIMES.get(fmt, fmt)
