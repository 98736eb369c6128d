"""Dispatch: one worker per device, jobs for a device strictly one after another.

Devices run in parallel. A :class:`~quantlab.harness.errors.DeviceFault` (the device went
away) makes the worker wait for the device (``agent.wait_until_back``) and retry
the job, bounded by the run's :class:`~quantlab.harness.retry.RetryPolicy` (attempts and
time, the one ``ab`` uses too); the other devices carry on. A device that is
offline when the run starts (a USB hub reset, a phone rebooting) is waited for the
same way before its first job, and described again once back. A
:class:`~quantlab.harness.errors.DeviceUnusable` (runner not installed, phone not trusted)
fails the job that met it and skips the device's remaining jobs with the reason; any
other :class:`~quantlab.harness.errors.QuantlabError` fails its job with its message. Ctrl-C or
SIGTERM stops every worker: the running jobs are stored ``interrupted``, finished
ones stay, and ``quantlab bench --resume RUN_ID`` runs what is missing; only the
processes quantlab started (:mod:`quantlab.harness.processes`) are ended, never the caller's.

A store that cannot take a device's result (disk full, a value it refuses) stops that
device's worker, says why, and leaves its job and the ones after it unfinished: the
run then closes ``incomplete`` rather than ``done``, and ``--resume`` finishes it. While
workers run, a heartbeat stamps the run as live (:mod:`quantlab.harness.store.owner`); a run
taken over by ``--resume --force`` elsewhere stops here before its next job.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from quantlab.agents.base import Agent
from quantlab.harness.errors import QuantlabError
from quantlab.harness.plan import Fleet
from quantlab.harness.processes import end_started
from quantlab.harness.records import DeviceInfo, Job, RawResult
from quantlab.harness.retry import RetryPolicy, launch
from quantlab.harness.store import Store
from quantlab.harness.store.owner import HEARTBEAT_S


class Reporter(Protocol):
    """What the dispatcher tells the user interface."""

    def job_started(self, job: Job, attempt: int) -> None:
        """A job starts on its device."""

    def job_progress(self, job: Job, phase: str, fraction: float | None) -> None:
        """The agent reports progress within a job."""

    def job_finished(self, job: Job, status: str, error: str | None) -> None:
        """A job ended (ok, failed, skipped, interrupted)."""

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
    skipped: int = 0
    interrupted: int = 0
    retries: int = 0
    faults: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the device's jobs stopped before their end
    unfinished: int = 0  # jobs left unfinished by that stop

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {"device_id": self.device_id, "host": self.host, "ok": self.ok,
                "failed": self.failed, "skipped": self.skipped,
                "interrupted": self.interrupted,
                "retries": self.retries, "faults": self.faults,
                "stopped": self.stopped, "unfinished": self.unfinished}


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
        heartbeat_s: float = HEARTBEAT_S,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.fleet = fleet
        self.reporter = reporter or NullReporter()
        self.retry = retry or RetryPolicy(attempts=max_attempts, wait_s=retry_timeout_s)
        self.heartbeat_s = heartbeat_s
        self.cancel = threading.Event()
        self.lost = threading.Event()  # another process took the run over
        self.accounts: dict[str, DeviceAccount] = {}

    def run(self, jobs: Sequence[Job]) -> list[DeviceAccount]:
        """Run every job; returns the per-device account.

        Raises :class:`Interrupted` after a Ctrl-C once the store is consistent.
        """
        queues: dict[str, list[Job]] = {}
        for job in jobs:
            queues.setdefault(job.device_id, []).append(job)
        self._in_workers({device_id: functools.partial(self._worker, queue=queue)
                          for device_id, queue in queues.items()})
        return list(self.accounts.values())

    def run_on(self, device_id: str, work: Callable[[Agent, DeviceInfo], None]) -> DeviceAccount:
        """Run ``work(agent, device)`` on one device's worker thread, with the run's
        heartbeat and Ctrl-C handling (``ab``'s interleaved launches: ``work`` reads
        :attr:`cancel` and :attr:`lost`). Returns the device's account; raises
        :class:`Interrupted` after a Ctrl-C once ``work`` has returned."""

        def worker(device: DeviceInfo, done: threading.Event) -> None:
            try:
                work(self.fleet.agent_for(device.id), device)
            except Exception as exc:  # a bug: say so, and leave the run unfinished
                self._stop_device(device, [], self.accounts[device.id], exc)
            finally:
                done.set()

        self._in_workers({device_id: worker})
        return self.accounts[device_id]

    def _in_workers(self, work: dict[str, Callable[[DeviceInfo, threading.Event], None]]
                    ) -> None:
        """One thread per device runs its ``work(device, done)`` (which sets ``done`` at
        its end) while the heartbeat stamps the run; a Ctrl-C stops them all."""
        # Each worker signals its own end: Thread.is_alive() can report a running thread as
        # finished once a Ctrl-C has interrupted Thread.join() (CPython < 3.13, gh-90882).
        # A Ctrl-C can land while threads are still being started: the try covers that too.
        finished: list[threading.Event] = []
        beating = threading.Event()
        try:
            threading.Thread(target=self._beat, args=(beating,), name="quantlab-heartbeat",
                             daemon=True).start()
            for device_id, target in work.items():
                device = self.fleet.get(device_id)
                self.accounts[device_id] = DeviceAccount(device_id, device.host)
                done = threading.Event()
                th = threading.Thread(target=target, args=(device, done),
                                      name=f"quantlab-{device_id}", daemon=True)
                finished.append(done)
                th.start()
            for done in finished:
                while not done.wait(0.2):
                    pass
        except KeyboardInterrupt:
            self._interrupt(finished)
            raise Interrupted() from None
        finally:
            beating.set()

    def _beat(self, stop: threading.Event) -> None:
        """Stamp the run as live until ``stop``; notice a takeover and stop the workers."""
        failing = False
        while not stop.wait(self.heartbeat_s):
            try:
                ours = self.store.heartbeat(self.run_id)
            except Exception as exc:  # the store is failing: the workers will say so
                if not failing:
                    self.reporter.note(f"heartbeat of run {self.run_id} not stored: {exc}")
                failing = True
                continue
            failing = False
            if not ours:
                self.lost.set()
                self.reporter.note(f"run {self.run_id} was taken over by another quantlab "
                                   "(bench --resume --force): no further jobs start here")
                return

    def _interrupt(self, finished: list[threading.Event]) -> None:
        self.cancel.set()
        end_started()
        for done in finished:
            while not done.is_set():
                try:
                    done.wait(0.2)
                except KeyboardInterrupt:  # a second Ctrl-C while we tidy up: keep tidying
                    end_started()

    def _worker(self, device: DeviceInfo, done: threading.Event, queue: list[Job]) -> None:
        account = self.accounts[device.id]
        k = 0
        try:
            agent = self.fleet.agent_for(device.id)
            if device.state == "offline":
                back = self._wait_for_offline(agent, device, queue, account)
                if back is None:
                    return
                device, queue = back
            for k, job in enumerate(queue):
                if self.cancel.is_set() or self.lost.is_set():
                    return
                unusable = self._run_job(agent, device, job, account)
                if unusable is not None:
                    for rest in queue[k + 1:]:
                        self._skip(rest, account, f"not run: {unusable}")
                    return
        except Exception as exc:  # the store failed (disk full, a refused value), or a bug
            self._stop_device(device, queue[k:], account, exc)
        finally:
            done.set()

    def _stop_device(self, device: DeviceInfo, left: list[Job], account: DeviceAccount,
                     exc: Exception) -> None:
        """The device's worker cannot go on: say why and leave its jobs unfinished (the
        run closes ``incomplete``; ``--resume`` runs them)."""
        reason = exc.one_line() if isinstance(exc, QuantlabError) else f"internal error: {exc!r}"
        if not isinstance(exc, QuantlabError):
            self.reporter.note("".join(traceback.format_exception(exc)))
        account.stopped, account.unfinished = reason, len(left)
        self.reporter.note(f"{device.id}: stopped with {len(left)} job(s) unfinished: {reason}")
        if left:  # say so on the job it stopped at, if the store still takes that
            with contextlib.suppress(Exception):
                self.store.set_status(self.run_id, left[0].job_id, "interrupted",
                                      f"not finished: {reason}")

    def _wait_for_offline(self, agent: Agent, device: DeviceInfo, queue: list[Job],
                          account: DeviceAccount) -> tuple[DeviceInfo, list[Job]] | None:
        """A device offline at the start: wait for it like for a drop during the run.

        Returns the device as described once back and the jobs it supports (the others
        are stored ``skipped`` with the reason), or None when it did not come back (its
        jobs are stored ``failed`` with the reason) or the run was interrupted.
        """
        hint = f": {device.state_hint}" if device.state_hint else ""
        offline = f"{device.id} was offline when the run started"
        account.faults.append(offline)
        self.reporter.note(f"{offline}; waiting up to {self.retry.wait_s:.0f}s for it")
        back = agent.wait_until_back(device, self.retry.wait_s)
        if self.cancel.is_set():
            return None
        fresh = None
        if back:
            fresh = next((d for d in agent.discover() if d.id == device.id), None)
        if fresh is None or fresh.state != "ready":
            state = fresh.state if fresh is not None else device.state
            reason = (f"{device.id} is {state}{hint} (it did not come back within "
                      f"{self.retry.wait_s:.0f}s of the run's start)")
            for job in queue:
                self._fail(job, account, reason)
            return None
        fresh = replace(fresh, host=fresh.host or device.host)
        self.store.update_device(self.run_id, fresh)
        self.reporter.note(f"{device.id} is back; starting its jobs")
        runnable = []
        for job in queue:
            ok, why = agent.supports(fresh, job)
            if ok:
                runnable.append(job)
            else:
                self._skip(job, account, why)
        return fresh, runnable

    def _run_job(self, agent: Agent, device: DeviceInfo, job: Job,
                 account: DeviceAccount) -> str | None:
        """Run one job to its end under the run's retry policy and store its outcome;
        returns the reason when the device is unusable for the rest of the run
        (:class:`DeviceUnusable`), else None."""

        def start(attempt: int) -> bool:
            if not self.store.mark_running(self.run_id, job.job_id):
                self.reporter.note(f"{job.label()}: already finished by another quantlab; "
                                   "not measured again")
                return False
            self.reporter.job_started(job, attempt)
            return True

        def progress(phase: str, fraction: float | None) -> None:
            self.reporter.job_progress(job, phase, fraction)

        outcome = launch(agent, device, job, self.retry, cancel=self.cancel,
                         note=self.reporter.note, progress=progress, start=start)
        account.faults.extend(outcome.faults)
        account.retries += outcome.retries
        if outcome.interrupted:
            self._interrupted(job, account)
            return None
        if outcome.raw is None:  # finished by another quantlab
            return None
        raw = outcome.raw
        self.store.save_result(self.run_id, job.job_id, raw)
        if raw.status == "ok":
            account.ok += 1
        else:
            account.failed += 1
        self.reporter.job_finished(job, raw.status, raw.error)
        return outcome.unusable

    def _fail(self, job: Job, account: DeviceAccount, error: str) -> None:
        self.store.save_result(self.run_id, job.job_id, RawResult.failure(job.job_id, error))
        account.failed += 1
        self.reporter.job_finished(job, "failed", error)

    def _skip(self, job: Job, account: DeviceAccount, reason: str) -> None:
        self.store.set_status(self.run_id, job.job_id, "skipped", reason)
        account.skipped += 1
        self.reporter.job_finished(job, "skipped", reason)

    def _interrupted(self, job: Job, account: DeviceAccount) -> None:
        self.store.mark_interrupted(self.run_id, job.job_id)
        account.interrupted += 1
        self.reporter.job_finished(job, "interrupted", None)
