"""A toy device kind, added from this test module alone: its agent and its registry line.

Nothing else in the tree names it: :func:`register` puts the line into
:mod:`quantlab.harness.kinds` (tests/test_toy_kind.py calls it and :func:`unregister` after),
and from there discovery, plan files' kind selectors, their JSON Schema, the dispatcher and
the store know the kind ``toy`` like any other. Its one device measures nothing: a job's
samples are fixed numbers, so every figure is known in advance.
"""

from __future__ import annotations

from typing import Any

from quantlab.agents.base import Progress
from quantlab.harness import kinds
from quantlab.harness.records import DeviceInfo, Job, RawResult

KIND = "toy"
SAMPLES_MS = (2.0, 2.5, 3.0)


class ToyAgent:
    """One toy device, ``toy-1``: delegates ``abacus`` (any threads) and ``slide-rule``
    (one thread only); ``.tflite`` models only."""

    kind = KIND
    delegates: tuple[str, ...] = ("abacus", "slide-rule")

    def discover(self) -> list[DeviceInfo]:
        """The one toy device, always ready."""
        return [DeviceInfo(id="toy-1", platform=KIND, name="toy device",
                           delegates=self.delegates, health=self.health(None))]

    def health(self, device: DeviceInfo | None) -> dict[str, Any]:
        """A cool toy."""
        return {"temperature_c": 20.0}

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """``.tflite`` only; ``slide-rule`` on one thread only."""
        if job.model.format != "tflite":
            return False, f"{job.model.format} models do not run on toys"
        if job.delegate == "slide-rule" and job.threads != 1:
            return False, f"slide-rule: one thread only, not {job.threads}"
        return True, ""

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """The fixed samples, once per repeat."""
        progress("counting beads", 0.5)
        return RawResult(job_id=job.job_id, status="ok", init_ms=1.0, first_inference_ms=4.0,
                         samples_ms=tuple(SAMPLES_MS for _ in range(job.settings.repeats)),
                         runner={"name": "toy"})

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """A toy never leaves."""
        return True


def register() -> kinds.Kind:
    """The toy kind's registry line."""
    return kinds.register(KIND, "toy_kind:ToyAgent", "a toy device for tests")


def unregister() -> None:
    """Remove the toy kind again."""
    kinds.unregister(KIND)
