"""``evaluate`` of ExecuTorch variants: the ``.pte`` files of a variants folder made from a
PyTorch source, scored against the PyTorch float model itself.

:class:`PteRunner` (a ``.pte`` through ``executorch.runtime``) and :class:`TorchRunner` (the
source's float model) offer what :class:`~quantlab.harness.quantize.tflite_runner.TfliteRunner`
offers :mod:`quantlab.harness.quantize.evaluate` (``input``, ``input_shape``, ``outputs``,
``predict``), so the tasks, fidelity and gates are the same. Both import torch: only a
folder with ExecuTorch variants loads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.errors import ModelError, UserError


class _Runner:
    """One sample at a time (the programs are exported with batch 1)."""

    input_shape: tuple[int, ...]
    outputs: list[dict[str, Any]]

    @property
    def input(self) -> dict[str, Any]:
        """The input as TfliteRunner describes it (a free batch dimension)."""
        return {"shape_signature": [-1, *self.input_shape[1:]]}

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def predict(self, x: np.ndarray, progress: Callable[[int], None] | None = None
                ) -> list[np.ndarray]:
        """Run all samples; one float array per output, first axis = samples."""
        chunks: list[list[np.ndarray]] = []
        for i in range(len(x)):
            outs = self._run(np.ascontiguousarray(x[i:i + 1], dtype=np.float32))
            chunks = chunks or [[] for _ in outs]
            for keep, out in zip(chunks, outs, strict=True):
                keep.append(out)
            if progress:
                progress(1)
        return [np.concatenate(c).astype(np.float32) for c in chunks]

    def _describe(self) -> None:
        outs = self._run(np.zeros(self.input_shape, np.float32))
        self.outputs = [{"name": f"output_{i}", "shape": tuple(o.shape)}
                        for i, o in enumerate(outs)]


class TorchRunner(_Runner):
    """The PyTorch float model (the reference)."""

    def __init__(self, model: Any, input_shape: tuple[int, ...]) -> None:
        self.model, self.input_shape = model, tuple(input_shape)
        self._describe()

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            out = self.model(torch.from_numpy(x))
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.detach().numpy() for o in outs]


class PteRunner(_Runner):
    """A ``.pte`` through ``executorch.runtime`` on this host."""

    def __init__(self, path: str, batch: int = 1) -> None:
        from executorch.runtime import Runtime

        try:
            self.method = Runtime.get().load_program(path).load_method("forward")
        except Exception as exc:
            raise ModelError(path, f"ExecuTorch cannot load it ({str(exc)[:200]})") from None
        meta = self.method.metadata.input_tensor_meta(0)
        self.input_shape = tuple(int(d) for d in meta.sizes())
        self._describe()

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        return [o.numpy() for o in self.method.execute([torch.from_numpy(x)])]


def torch_reference(folder: Path) -> tuple[dict[str, Any], TorchRunner, list[dict[str, Any]]
                                           ] | None:
    """For a variants folder made from a PyTorch source: the reference entry, the float
    model's runner and the ``.pte`` variants (as ``variant_files`` lists them); None for any
    other folder. UserError when the source cannot be found or the extra is missing."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    source = data.get("source") or {}
    ptes = [v for v in data.get("variants", [])
            if v.get("status") == "ok" and v.get("format") == "pte"]
    if source.get("kind") not in ("torch-export", "torch-entry") or not ptes:
        return None
    from quantlab.harness.quantize import torch_source

    torch_source.require_extra(str(folder))
    path = str(source["path"])
    if source["kind"] == "torch-export" and not Path(path).is_file():
        raise UserError(f"{folder}: its PyTorch source {path} is gone (the float reference)",
                        hint="run evaluate where the .pt2 is (its path as quantize was given)")
    shape = tuple(1 if d is None or int(d) < 0 else int(d) for d in data["input"]["shape"])
    model, _ = torch_source.load(path, source["kind"], shape)
    ref = {"scheme": "float (PyTorch)", "path": path, "sha256": source.get("sha256"),
           "source_sha256": source.get("sha256")}
    variants = [{"scheme": v["scheme"], "path": str(folder / v["file"]),
                 "sha256": v.get("sha256"), "source_sha256": source.get("sha256")}
                for v in ptes]
    return ref, TorchRunner(model, shape), variants
