"""ExecuTorch's host glue: its version, the ``torch`` extra found without importing it, and
the runner module the launcher starts (:mod:`quantlab.agents.executorch.runner`)."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from typing import Any

RUNNER_MODULE = f"{__package__}.runner"
"""What ``python -m`` runs for a ``.pte`` job."""

DELEGATES = ("et-xnnpack", "et-portable")
"""The ExecuTorch delegates the host runs, each the program as lowered: ``et-xnnpack`` a
program with XNNPACK delegate calls, ``et-portable`` one without (portable kernels only)."""

XNNPACK_BACKEND = b"XnnpackBackend"
"""The backend id an XNNPACK delegate call names in a ``.pte``."""


APPLE_ONLY_BACKENDS = (b"CoreMLBackend", b"MPSBackend")
"""Backend ids a program's delegate calls name that only ExecuTorch's iOS/macOS builds run."""


def foreign_backends(path: str) -> list[str]:
    """The Apple-only backends a ``.pte`` delegates to (empty: the host can run it).

    A delegate call names its backend by id, a string in the program's flatbuffer, so a scan
    of the file finds it without loading ExecuTorch (this runs when a job is planned).
    """
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return [b.decode() for b in APPLE_ONLY_BACKENDS if data.find(b) >= 0]


def program_delegate(path: str) -> str:
    """The host delegate a ``.pte`` runs on: ``et-xnnpack`` where it calls XNNPACK, else
    ``et-portable`` (the same byte scan as :func:`foreign_backends`)."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return "et-xnnpack" if data.find(XNNPACK_BACKEND) >= 0 else "et-portable"


def program_refusal(path: str, delegate: str) -> str | None:
    """Why the ``.pte`` at ``path`` must not run on ``delegate`` (None: it may), from the byte
    scans above: a program delegating to an Apple-only backend runs nowhere quantlab's
    runners reach, and a program runs only on the delegate it was lowered for (an XNNPACK
    program on ``et-xnnpack``, one without XNNPACK calls on ``et-portable``), so no job is
    measured under another delegate's label. The simulator, gateways and phones all ask."""
    import os

    name = os.path.basename(path)
    try:
        apple, fits = foreign_backends(path), program_delegate(path)
    except (OSError, ValueError):  # gone or empty: the run itself says so
        return None
    if apple:
        return (f"{name} delegates to {', '.join(apple)}, which only ExecuTorch's iOS/macOS "
                "builds run (quantlab's runners, the iPhone app's included, link XNNPACK only)")
    if delegate == fits:
        return None
    return (f"{name} delegates to XNNPACK: it runs on et-xnnpack" if fits == "et-xnnpack" else
            f"{name} has no XNNPACK delegate call (portable kernels only): it runs on "
            "et-portable")


def float_reference(path: str) -> tuple[dict[str, Any] | None, str]:
    """The float model a ``.pte`` variant's numerics are compared with, and why: the PyTorch
    source of the variants folder it lies in (``manifest.json``'s ``source``: a ``.pt2`` that
    is still there, or a ``module:factory`` entry point), as ``evaluate`` scores it; else that
    folder's ``et-fp32`` program (when it is not the file itself). ``(None, reason)`` when
    there is neither: the check is then not made."""
    import json
    from pathlib import Path

    folder = Path(path).resolve().parent
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None, (f"{Path(path).name} has no manifest.json beside it: no float reference "
                      "(numerics compare a variant quantize made with its PyTorch source)")
    source = manifest.get("source") or {}
    kind, where = source.get("kind"), str(source.get("path") or "")
    if kind == "torch-entry" or (kind == "torch-export" and Path(where).is_file()):
        return {"kind": kind, "path": where}, "the PyTorch source"
    for v in manifest.get("variants", []):
        own = folder / str(v.get("file") or "")
        if v.get("scheme") == "et-fp32" and v.get("status") == "ok" and own.is_file() \
                and own.resolve() != Path(path).resolve():
            return {"kind": "pte", "path": str(own)}, "the et-fp32 program"
    return None, (f"no float reference for {Path(path).name}: its PyTorch source "
                  f"{where or '(none recorded)'} is gone and the folder has no et-fp32 program")


def executorch_version() -> str | None:
    """The installed executorch's version, or None."""
    try:
        return version("executorch")
    except PackageNotFoundError:
        return None


def installed() -> bool:
    """Whether ExecuTorch and torch are installed (the ``torch`` extra), without importing."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "executorch"))
