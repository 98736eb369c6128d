"""A scripted in-process agent for dispatcher and store tests (no device, no runtime)."""

from __future__ import annotations

import threading
import time
from typing import Any

from agents.base import Progress
from harness.errors import DeviceDisconnected
from harness.records import DeviceInfo, Job, RawResult


class ScriptedAgent:
    """Devices ``fake-a``, ``fake-b``…; each job returns deterministic samples.

    ``faults`` maps a device id to how many times its next jobs raise a disconnect;
    ``comes_back`` says whether ``wait_until_back`` then succeeds; ``delay_s`` makes each
    job take time (for interrupt tests).
    """

    kind = "fake"
    delegates = ("cpu", "fast")

    def __init__(self, device_ids: tuple[str, ...] = ("fake-a", "fake-b"),
                 faults: dict[str, int] | None = None, comes_back: bool = True,
                 delay_s: float = 0.0) -> None:
        self.device_ids = device_ids
        self.faults = dict(faults or {})
        self.comes_back = comes_back
        self.delay_s = delay_s
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def discover(self) -> list[DeviceInfo]:
        return [DeviceInfo(id=d, platform="android", name=d, delegates=self.delegates)
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
        return self.comes_back
