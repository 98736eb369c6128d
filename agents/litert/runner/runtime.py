"""What every mode of the runner shares: the LiteRT interpreter as a job asks for it, the
phase file that locates a crash, the error that fails a job with the runtime's reason, and
quantized values as floats."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class WorkerError(Exception):
    """A failure of the job with a message for the user (the runtime's reason)."""


class Phases:
    """Writes the current phase next to the result so a crash can be located."""

    def __init__(self, result_path: Path) -> None:
        self.path = result_path.with_suffix(".phase")

    def enter(self, phase: str) -> None:
        """Record that the process is now in ``phase``."""
        self.path.write_text(phase)


def interpreter(model: str, delegate: str, threads: int) -> Any:
    """A LiteRT interpreter for ``model``: builtin kernels for ``cpu``, XNNPACK otherwise."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if delegate == "cpu"
        else OpResolverType.AUTO
    )
    return Interpreter(
        model_path=model, num_threads=threads, experimental_op_resolver_type=resolver
    )


def first_lines(text: str, n: int = 3) -> str:
    """The first ``n`` meaningful lines of a runtime's message, as one line."""
    lines = [
        line.strip()
        for line in text.strip().splitlines()
        if line.strip() and not line.startswith("See instructions")
    ]
    return " ".join(lines[:n])


def dequantize(array: Any, scale: float, zero_point: int) -> Any:
    """Float values of a quantized array (``scale`` 0 means the array is not quantized);
    the same arithmetic as :func:`quantlab.harness.numerics.dequantize` on the host, which
    this package cannot import."""
    import numpy as np

    if scale and array.dtype.kind in "iu":
        return (array.astype(np.float64) - zero_point) * scale
    return array.astype(np.float64)
