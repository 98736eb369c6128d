"""A device agent for lab tests and the scaling benchmark: each job sleeps a fixed time.

It speaks the real Agent protocol (discover, supports, run, wait_until_back) so that
the lab's actors, dispatcher and store are exercised for real; only the measuring is
a fixed sleep, which makes jobs device-bound and their cost known.
"""

from __future__ import annotations

import os
import time
from typing import Any

from quantlab.agents.base import Progress
from quantlab.harness.records import DeviceInfo, Job, RawResult


class SleepAgent:
    """``count`` simulator-like devices ``slp-1``…; a job sleeps ``sleep_s`` seconds.

    With ``count_file`` the number of attached devices is read from that file at every
    scan, so a test can plug and unplug devices.
    """

    kind = "sleep"
    delegates: tuple[str, ...] = ("cpu", "slow")

    def __init__(self, count: int = 1, sleep_s: float = 0.05, prefix: str = "slp",
                 count_file: str | None = None) -> None:
        self.count = int(count)
        self.sleep_s = float(sleep_s)
        self.prefix = prefix
        self.count_file = count_file

    def discover(self) -> list[DeviceInfo]:
        """The devices this agent pretends are attached (``count_file`` plugs/unplugs)."""
        if self.count_file and os.path.exists(self.count_file):
            with open(self.count_file) as fh:
                self.count = int(fh.read().strip() or 0)
        return [DeviceInfo(id=f"{self.prefix}-{i + 1}", platform="sim", name=f"sleeper {i + 1}",
                           delegates=self.delegates, cores=1)
                for i in range(self.count)]

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """A fixed, plausible health."""
        return {"battery_pct": 100, "pid": os.getpid()}

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """Everything but the ``slow`` delegate with more than one thread."""
        if job.delegate == "slow" and job.threads > 1:
            return False, "slow: single thread only"
        return True, ""

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Sleep, then return samples derived from the job (and the model file size)."""
        size = os.path.getsize(job.model.path)
        progress("measuring", 0.0)
        time.sleep(self.sleep_s)
        samples = tuple(tuple(1.0 + 0.001 * i + 0.0001 * job.threads for i in range(5))
                        for _ in range(job.settings.repeats))
        return RawResult(job_id=job.job_id, status="ok", samples_ms=samples,
                         init_ms=float(size), runner={"name": "sleep", "device": device.id,
                                                      "pid": os.getpid()})

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """The pretend devices never go away."""
        return True
