"""PyTorch sources: a ``torch.export`` archive (``.pt2``) or a Python entry point
(``module:factory`` with ``--input-shape``), behind the optional ``quantlab[torch]`` extra.

The controller side (:func:`torch_kind`, :func:`require_extra`) imports nothing of torch: it
recognises a source by its name and checks that the extra is installed without importing it,
so ``quantlab --help`` and the commands that do not read PyTorch models stay as fast as
before. :func:`load` runs in the quantize worker process.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

from quantlab.harness.errors import ModelError, UserError

TORCH_KINDS = ("torch-export", "torch-entry")
EXTRA_HINT = "pip install 'quantlab[torch]' (torch==2.13.0, executorch==1.5.1)"
_ENTRY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_entry_point(text: str) -> bool:
    """``text`` names a factory as ``module:function`` (and is no existing path)."""
    return bool(_ENTRY.match(text)) and not Path(text).exists()


def torch_kind(text: str) -> str | None:
    """``torch-export`` for a ``.pt2``, ``torch-entry`` for ``module:factory``, else None."""
    if is_entry_point(text):
        return "torch-entry"
    if Path(text).suffix.lower() == ".pt2":
        return "torch-export"
    return None


def extra_missing() -> list[str]:
    """The packages of the ``torch`` extra that are not installed (found without importing)."""
    return [name for name in ("torch", "executorch")
            if importlib.util.find_spec(name) is None]


def require_extra(what: str) -> None:
    """UserError naming the extra when PyTorch or ExecuTorch is missing (``what``: the file)."""
    missing = extra_missing()
    if missing:
        raise UserError(f"{what}: PyTorch models and .pte files need the torch extra "
                        f"({', '.join(missing)} not installed)", hint=EXTRA_HINT)


def parse_shape(text: str) -> tuple[int, ...]:
    """``1,3,32,32`` → (1, 3, 32, 32); UserError for anything else."""
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise UserError(f"--input-shape {text!r}: not a shape",
                        hint="give positive sizes with the batch first, e.g. 1,3,32,32")
    return shape


def load(source: str, kind: str, input_shape: tuple[int, ...] | None
         ) -> tuple[Any, tuple[Any, ...]]:
    """The float model (an ``nn.Module`` in eval mode, or the archive's module) and its example
    inputs; ModelError naming the source when it cannot be loaded."""
    import torch

    if kind == "torch-export":
        try:
            program = torch.export.load(source)
        except Exception as exc:
            raise ModelError(source, f"torch.export.load cannot read it ({_first(exc)})",
                             hint="save it with torch.export.save(torch.export.export(...))"
                             ) from None
        args = tuple(program.example_inputs[0]) if program.example_inputs else ()
        if input_shape:
            args = (torch.zeros(input_shape),)
        if not args:
            raise ModelError(source, "the archive holds no example inputs",
                             hint="pass --input-shape")
        return program.module(), args
    module_name, _, factory = source.partition(":")
    try:
        model = getattr(importlib.import_module(module_name), factory)()
    except Exception as exc:
        raise ModelError(source, f"the factory failed ({_first(exc)})",
                         hint="is the module importable from here (PYTHONPATH)?") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(source, f"the factory returned a {type(model).__name__}, "
                         "not a torch.nn.Module")
    if not input_shape:
        raise ModelError(source, "a module:factory source needs its example-input shape",
                         hint="pass --input-shape 1,3,32,32")
    return model.eval(), (torch.zeros(input_shape),)


def _first(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]
