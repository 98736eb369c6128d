"""Dispatch: one worker per device, jobs for a device strictly one after another.

Devices run in parallel. A :class:`~harness.errors.DeviceFault` (the device went
away) makes the worker wait for the device (``agent.wait_until_back``) and retry
the job, bounded by attempts and time; the other devices carry on. Ctrl-C or
SIGTERM stops every worker: the running jobs are stored ``interrupted``, finished
ones stay, and ``quantlab bench --resume RUN_ID`` runs what is missing.
"""

from __future__ import annotations

import contextlib
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from harness.errors import DeviceFault, JobFailed
from harness.plan import Fleet
from harness.records import DeviceInfo, Job, RawResult
from harness.store import Store


class Reporter(Protocol):
    """What the dispatcher tells the user interface."""

    def job_started(self, job: Job, attempt: int) -> None:
        """A job starts on its device."""

    def job_progress(self, job: Job, phase: str, fraction: float | None) -> None:
        """The agent reports progress within a job."""

    def job_finished(self, job: Job, status: str, error: str | None) -> None:
        """A job ended (ok, failed, interrupted)."""

    def note(self, message: str) -> None:
        """Something the user should know (retries, device faults, bugs)."""


class NullReporter:
    """A reporter that shows nothing."""

    def job_started(self, job: Job, attempt: int) -> None:
        pass

    def job_progress(self, job: Job, phase: str, fraction: float | None) -> None:
        pass

    def job_finished(self, job: Job, status: str, error: str | None) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass
class DeviceAccount:
    """What happened on one device during a run."""

    device_id: str
    host: str | None = None
    ok: int = 0
    failed: int = 0
    interrupted: int = 0
    retries: int = 0
    faults: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {"device_id": self.device_id, "host": self.host, "ok": self.ok,
                "failed": self.failed, "interrupted": self.interrupted,
                "retries": self.retries, "faults": self.faults}


class Interrupted(Exception):
    """The run was interrupted (Ctrl-C / SIGTERM); finished jobs are stored."""


class Dispatcher:
    """Runs the jobs of one stored run on their devices."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        fleet: Fleet,
        reporter: Reporter | None = None,
        retry_timeout_s: float = 120.0,
        max_attempts: int = 3,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.fleet = fleet
        self.reporter = reporter or NullReporter()
        self.retry_timeout_s = retry_timeout_s
        self.max_attempts = max_attempts
        self.cancel = threading.Event()
        self.accounts: dict[str, DeviceAccount] = {}

    def run(self, jobs: Sequence[Job]) -> list[DeviceAccount]:
        """Run every job; returns the per-device account.

        Raises :class:`Interrupted` after a Ctrl-C once the store is consistent.
        """
        queues: dict[str, list[Job]] = {}
        for job in jobs:
            queues.setdefault(job.device_id, []).append(job)
        # Each worker signals its own end: Thread.is_alive() can report a running thread as
        # finished once a Ctrl-C has interrupted Thread.join() (CPython < 3.13, gh-90882).
        finished: list[threading.Event] = []
        for device_id, queue in queues.items():
            device = self.fleet.get(device_id)
            self.accounts[device_id] = DeviceAccount(device_id, device.host)
            done = threading.Event()
            th = threading.Thread(target=self._worker, args=(device, queue, done),
                                  name=f"quantlab-{device_id}", daemon=True)
            finished.append(done)
            th.start()
        try:
            for done in finished:
                while not done.wait(0.2):
                    pass
        except KeyboardInterrupt:
            self._interrupt(finished)
            raise Interrupted() from None
        return list(self.accounts.values())

    def _interrupt(self, finished: list[threading.Event]) -> None:
        self.cancel.set()
        _terminate_children()
        for done in finished:
            while not done.is_set():
                try:
                    done.wait(0.2)
                except KeyboardInterrupt:  # a second Ctrl-C while we tidy up: keep tidying
                    _terminate_children()

    def _worker(self, device: DeviceInfo, queue: list[Job], done: threading.Event) -> None:
        try:
            agent = self.fleet.agent_for(device.id)
            account = self.accounts[device.id]
            for job in queue:
                if self.cancel.is_set():
                    return
                self._run_job(agent, device, job, account)
        finally:
            done.set()

    def _run_job(self, agent: object, device: DeviceInfo, job: Job,
                 account: DeviceAccount) -> None:
        from agents.base import Agent

        assert isinstance(agent, Agent)
        attempt = 0
        while True:
            attempt += 1
            self.store.mark_running(self.run_id, job.job_id)
            self.reporter.job_started(job, attempt)

            def progress(phase: str, fraction: float | None, _job: Job = job) -> None:
                self.reporter.job_progress(_job, phase, fraction)

            try:
                raw = agent.run(device, job, progress)
            except DeviceFault as exc:
                if self.cancel.is_set():
                    return self._interrupted(job, account)
                account.faults.append(exc.one_line())
                if attempt >= self.max_attempts:
                    return self._fail(job, account, f"{exc.one_line()} (gave up after "
                                      f"{attempt} attempts)")
                self.reporter.note(f"{exc.one_line()}; waiting up to "
                                   f"{self.retry_timeout_s:.0f}s for it to come back")
                if not agent.wait_until_back(device, self.retry_timeout_s):
                    return self._fail(job, account, f"{exc.one_line()}; the device did not come "
                                      f"back within {self.retry_timeout_s:.0f}s")
                if self.cancel.is_set():
                    return self._interrupted(job, account)
                account.retries += 1
                self.reporter.note(f"{device.id} is back; retrying {job.label()}")
                continue
            except JobFailed as exc:
                raw = RawResult.failure(job.job_id, exc.one_line())
            except Exception as exc:  # a bug in an agent must not take the run down
                if self.cancel.is_set():
                    return self._interrupted(job, account)
                self.reporter.note("".join(traceback.format_exception(exc)))
                raw = RawResult.failure(job.job_id, f"internal error in the {agent.kind} agent: "
                                        f"{exc!r}")
            if self.cancel.is_set():
                return self._interrupted(job, account)
            self.store.save_result(self.run_id, job.job_id, raw)
            if raw.status == "ok":
                account.ok += 1
            else:
                account.failed += 1
            self.reporter.job_finished(job, raw.status, raw.error)
            return None

    def _fail(self, job: Job, account: DeviceAccount, error: str) -> None:
        self.store.save_result(self.run_id, job.job_id, RawResult.failure(job.job_id, error))
        account.failed += 1
        self.reporter.job_finished(job, "failed", error)

    def _interrupted(self, job: Job, account: DeviceAccount) -> None:
        self.store.mark_interrupted(self.run_id, job.job_id)
        account.interrupted += 1
        self.reporter.job_finished(job, "interrupted", None)


def _terminate_children() -> None:
    """Stop the measuring processes this controller started (runtimes, adb shells)."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=3)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
