"""A scripted in-process agent for dispatcher and store tests (no device, no runtime)."""

from __future__ import annotations

import threading
import time
from typing import Any

from quantlab.agents.base import Progress
from quantlab.harness.errors import DeviceDisconnected, QuantlabError
from quantlab.harness.records import DeviceInfo, Job, RawResult


class ScriptedAgent:
    """Devices ``fake-a``, ``fake-b``…; each job returns deterministic samples.

    ``faults`` maps a device id to how many times its next jobs raise a disconnect;
    ``comes_back`` says whether ``wait_until_back`` then succeeds; ``delay_s`` makes each
    job take time (for interrupt tests). ``errors`` maps a device id to an error every
    job on it raises. Devices in ``offline`` are listed ``offline`` until
    ``wait_until_back`` has been called (``back_after_waits`` times) with ``comes_back``.
    """

    kind = "fake"
    delegates: tuple[str, ...] = ("cpu", "fast")

    def __init__(self, device_ids: tuple[str, ...] = ("fake-a", "fake-b"),
                 faults: dict[str, int] | None = None, comes_back: bool = True,
                 delay_s: float = 0.0, errors: dict[str, QuantlabError] | None = None,
                 offline: tuple[str, ...] = (), back_after_waits: int = 1) -> None:
        self.device_ids = device_ids
        self.faults = dict(faults or {})
        self.comes_back = comes_back
        self.delay_s = delay_s
        self.errors = dict(errors or {})
        self.offline = set(offline)
        self.back_after_waits = back_after_waits
        self.waits: list[tuple[str, float]] = []
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def discover(self) -> list[DeviceInfo]:
        return [DeviceInfo(id=d, platform="android", name=d, delegates=self.delegates)
                if d not in self.offline else
                DeviceInfo(id=d, platform="android", name=d, state="offline",
                           state_hint="replug the cable")
                for d in self.device_ids]

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        return {}

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        if job.delegate == "fast" and device.id.endswith("b"):
            return False, "fast: not on this fake device"
        return True, ""

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        with self.lock:
            self.calls.append((device.id, job.job_id))
            if device.id in self.offline:
                raise AssertionError(f"{device.id}: a job ran while it was offline")
            if device.id in self.errors:
                raise self.errors[device.id]
            if self.faults.get(device.id, 0) > 0:
                self.faults[device.id] -= 1
                raise DeviceDisconnected(device.id, "connection reset")
        progress("measuring", 0.5)
        if self.delay_s:
            time.sleep(self.delay_s)
        base = 1.0 if job.delegate == "fast" else 2.0
        samples = tuple(tuple(base + 0.01 * ((i * 7 + r) % 5) for i in range(20))
                        for r in range(job.settings.repeats))
        return RawResult(job_id=job.job_id, status="ok", samples_ms=samples, init_ms=3.0,
                         first_inference_ms=base * 2)

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        with self.lock:
            self.waits.append((device.id, timeout_s))
            waited = sum(1 for d, _ in self.waits if d == device.id)
            if self.comes_back and waited >= self.back_after_waits:
                self.offline.discard(device.id)
                return True
            return False
