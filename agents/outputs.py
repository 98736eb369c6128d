"""Outputs on the device: one capability shared by task accuracy, numerics and culprit probes.

"Run these N inputs through this job's runtime and delegate on this device and give me every
output back": the inputs are sent once, one device-side loop runs them all, every output comes
back once, and the host turns the outputs into whatever it needs (task metrics through
:mod:`quantlab.harness.tasks`, numerics, per-op errors). An agent offers it with one method,
:meth:`OutputsAgent.outputs`; each device family implements it in its own folder
(``agents/<family>/outputs.py``).

The contract, the same on every device kind:

* **in**: ``inputs``, an ``.npz`` with one array per model input (by the input's name, else
  ``arr_<i>``, else the only array), samples on the first axis: sample ``i`` is fed as the
  batch-1 tensor ``array[i:i+1]``. Values are what the float model takes; a model whose input
  is quantized (int8/uint8/int16) gets them quantized with its own scale and zero point, an
  array already of the input's type is fed as it is.
* **out**: ``out``, an ``.npz`` written by the agent with one array per model output, named
  ``output:<name>`` in the model's output order, samples on the first axis, dequantized to
  float32 (a Core ML model's outputs as the runtime gives them, in float32).
* **facts**: an :class:`OutputsFacts`: how many samples, which runner ran them and how
  (``runner``, ``runner_detail``: what the device-side runner said about itself, e.g. a stand-in
  that computes with host LiteRT says so), the runtime and its version, the device launches and
  host↔device file transfers it took (``transfers`` does not grow with N on any kind), the
  wall time, the delegate's placement where the runner reports one, and ``error`` (then no
  ``out``) when the device or runtime refused: one line with the reason.

A device that went away raises :class:`~quantlab.harness.errors.DeviceFault` (callers retry
as the dispatcher does); a runner that is not installed raises
:class:`~quantlab.harness.errors.DeviceUnusable`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from quantlab.harness.records import DeviceInfo, Job

Progress = Callable[[str, float | None], None]
"""Progress callback: ``progress(phase, fraction_done_or_None)``."""


@dataclass(frozen=True)
class OutputsFacts:
    """How one outputs call went: what ran the samples, what it cost, or why it could not."""

    samples: int
    runner: str  # what ran them, e.g. "benchmark_model, one launch per sample (device loop)"
    runtime: str  # "litert" | "coreml"
    runtime_version: str | None
    delegate: str
    launches: int  # runtime launches on the device (processes, or app jobs)
    transfers: dict[str, int] = field(default_factory=dict)  # {"push": n, "pull": m}
    seconds: float = 0.0  # wall time of the whole call, transfers included
    device_seconds: float | None = None  # the device-side loop alone, where it is known
    runner_detail: str | None = None  # what the device-side runner says about itself
    placement: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every sample's outputs came back."""
        return self.error is None

    @property
    def ms_per_sample(self) -> float | None:
        """Wall time per sample (transfers and launches included)."""
        return self.seconds * 1000.0 / self.samples if self.samples else None

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON (``ms_per_sample`` added)."""
        return {**asdict(self), "notes": list(self.notes), "ms_per_sample": self.ms_per_sample}

    @classmethod
    def failure(cls, job: Job, samples: int, runner: str, error: str,
                **fields: Any) -> OutputsFacts:
        """The facts of a call that brought no outputs back, with the reason."""
        return cls(samples=samples, runner=runner, runtime=fields.pop("runtime", "litert"),
                   runtime_version=fields.pop("runtime_version", None), delegate=job.delegate,
                   launches=fields.pop("launches", 0), error=error, **fields)


@runtime_checkable
class OutputsAgent(Protocol):
    """An agent whose devices can run a set of inputs and bring every output back."""

    def outputs(self, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
        """Run every sample of ``inputs`` through ``job``'s model on its delegate on
        ``device`` and write every output to ``out`` (see the module docstring)."""
        ...


def outputs_support(agent: Any, device: DeviceInfo, job: Job) -> tuple[bool, str]:
    """Whether ``agent`` can bring ``job``'s outputs back from ``device``, with the reason
    when not: it must offer :meth:`OutputsAgent.outputs` and support the job itself; an
    agent may refine it with ``outputs_supports(device, job)`` (e.g. a tool that writes no
    outputs)."""
    if not isinstance(agent, OutputsAgent):
        return False, f"{getattr(agent, 'kind', 'this device kind')} devices cannot bring " \
                      "outputs back"
    ok, why = agent.supports(device, job) if hasattr(agent, "supports") else (True, "")
    if not ok:
        return ok, why
    refine = getattr(agent, "outputs_supports", None)
    return refine(device, job) if refine is not None else (True, "")


def read_outputs(path: Path) -> dict[str, Any]:
    """The arrays of an outputs ``.npz`` by output name, in the model's output order."""
    import numpy as np

    with np.load(path) as npz:
        return {k.split(":", 1)[1]: npz[k] for k in npz.files if k.startswith("output:")}
