"""A lab of pretend phones for nightly tests: each job's latency is a fixed number.

It speaks the Agent protocol (discover, supports, run, wait_until_back) so that plan
files, the dispatcher, the store, compare, history and the CI outputs run for real;
only the measuring is arithmetic. Tests set the class attributes between nights:
which phones are attached, the night's number, and which (phone, file) drifts.
Samples are a level times a fixed pattern within ±1 %, so a median is its level.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, ClassVar

from quantlab.agents.base import Progress
from quantlab.harness.records import DeviceInfo, Job, RawResult


class NightlyLabAgent:
    """Phones ``attached``; a job on ``file`` (``a/int8.tflite``) takes a level of its own,
    times ``rate ** (night - 1)`` for the (phone, file) pairs in ``drifting``, and twice as
    slow on its first run of a night for those in ``once`` (a one-off slow night)."""

    kind = "fake"
    delegates: tuple[str, ...] = ("xnnpack", "gpu")
    attached: tuple[str, ...] = ("R58M-1", "R58M-2")
    night = 1
    rate = 1.04
    drifting: frozenset[tuple[str, str]] = frozenset()
    once: frozenset[tuple[str, str]] = frozenset()  # slow (×2) the first time each night only
    spiked: ClassVar[set[tuple[int, str, str]]] = set()  # (night, phone, file) had its slow run

    def discover(self) -> list[DeviceInfo]:
        """The phones attached tonight."""
        return [DeviceInfo(id=d, platform="android", name=d, model="Pixel 8", soc="Tensor G3",
                           delegates=self.delegates) for d in self.attached]

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """A cool, charged phone."""
        return {"battery_pct": 90}

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """Everything."""
        return True, ""

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Samples at this job's level tonight."""
        progress("measuring", 0.5)
        path = Path(job.model.path)
        file = f"{path.parent.name}/{path.name}"
        level = 1.0 + (zlib.crc32(file.encode()) % 400) / 100  # 1–5 ms, fixed per file
        if (device.id, file) in self.drifting:
            level *= self.rate ** (self.night - 1)
        if (device.id, file) in self.once and (self.night, device.id, file) not in self.spiked:
            self.spiked.add((self.night, device.id, file))  # a one-off: the next run is not
            level *= 2.0
        pattern = [1.0 + 0.002 * ((i * 7) % 11 - 5) for i in range(job.settings.iterations)]
        launches = [1.0, 1.003, 0.997, 1.002][:job.settings.repeats]
        return RawResult(job_id=job.job_id, status="ok", init_ms=3.0,
                         samples_ms=tuple(tuple(level * f * x for x in pattern)
                                          for f in launches))

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """A phone that is gone stays gone."""
        return device.id in self.attached
