"""ExecuTorch's host glue: its version, the ``torch`` extra found without importing it, and
the runner module the launcher starts (:mod:`quantlab.agents.executorch.runner`)."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version

RUNNER_MODULE = f"{__package__}.runner"
"""What ``python -m`` runs for a ``.pte`` job."""

DELEGATES = ("et-xnnpack",)
"""The ExecuTorch delegates the host runs: the program as lowered (XNNPACK partitions)."""


def executorch_version() -> str | None:
    """The installed executorch's version, or None."""
    try:
        return version("executorch")
    except PackageNotFoundError:
        return None


def installed() -> bool:
    """Whether ExecuTorch and torch are installed (the ``torch`` extra), without importing."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "executorch"))
