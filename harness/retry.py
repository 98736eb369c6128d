"""One retry policy for every measurement: how a launch's outcome is read, and what happens
when its device goes away.

A :class:`~quantlab.harness.errors.DeviceFault` (the device disconnected or timed out) is
met by waiting for the device (``agent.wait_until_back``, up to :attr:`RetryPolicy.wait_s`)
and launching the job again, up to :attr:`RetryPolicy.attempts` launches in all. A
:class:`~quantlab.harness.errors.DeviceUnusable` fails the launch and says the device can run
nothing more; :class:`~quantlab.harness.errors.JobFailed` or any other
:class:`~quantlab.harness.errors.QuantlabError` fails it with its own words; anything else is
a bug in the agent and fails it as an internal error. A launch whose run was stopped
(Ctrl-C) is ``interrupted``, whatever it returned.

The dispatcher's jobs and ab's interleaved launches both go through :func:`launch`, so a
run's policy (:class:`quantlab.session.Session` holds one) reaches every command that
measures; storing the outcome is the caller's.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from quantlab.agents.base import Agent, Progress
from quantlab.harness.errors import DeviceFault, DeviceUnusable, JobFailed, QuantlabError
from quantlab.harness.records import DeviceInfo, Job, RawResult


@dataclass(frozen=True)
class RetryPolicy:
    """How a run meets a device that went away during a job."""

    attempts: int = 3
    """Launches of one job in all, the first included, while its device keeps going away."""
    wait_s: float = 120.0
    """How long to wait for a device that went away (or was offline at the start)."""


@dataclass
class Launch:
    """What launching one job came to."""

    raw: RawResult | None = None
    """The result to store (``ok`` or ``failed``); None: nothing to store (``interrupted``,
    or the job was found finished by another process before it started)."""
    interrupted: bool = False
    """The run was stopped while the job ran: it is ``interrupted``, not its result."""
    unusable: str | None = None
    """Why the device can run nothing more in this run (a ``DeviceUnusable``)."""
    faults: list[str] = field(default_factory=list)
    """The device faults met, one line each."""
    retries: int = 0
    """Launches after a fault, once the device was back."""


def _always(attempt: int) -> bool:
    return True


def quiet(message: str) -> None:
    """A ``note`` that tells nobody: the default for callers that show no fault notes."""


def launch(agent: Agent, device: DeviceInfo, job: Job, policy: RetryPolicy, *,
           cancel: threading.Event | None = None, note: Callable[[str], None] | None = None,
           progress: Progress | None = None,
           start: Callable[[int], bool] = _always) -> Launch:
    """Run ``job`` on ``device`` to one outcome under ``policy``.

    ``start(attempt)`` is called before each launch (the dispatcher marks the job running
    there) and returns False when the job must not run (another process finished it);
    ``cancel`` set means the run was stopped; ``note`` tells the user about faults and
    retries; ``progress`` is passed to the agent.
    """
    stopped = cancel or threading.Event()
    note = note or quiet
    out = Launch()
    attempt = 0
    while True:
        attempt += 1
        if not start(attempt):
            return out
        try:
            raw = agent.run(device, job, progress or (lambda phase, fraction: None))
        except DeviceFault as exc:
            if stopped.is_set():
                out.interrupted = True
                return out
            out.faults.append(exc.one_line())
            if attempt >= policy.attempts:
                out.raw = RawResult.failure(job.job_id, f"{exc.one_line()} (gave up after "
                                            f"{attempt} attempts)")
                return out
            note(f"{exc.one_line()}; waiting up to {policy.wait_s:.0f}s for it to come back")
            if not agent.wait_until_back(device, policy.wait_s):
                out.raw = RawResult.failure(job.job_id, f"{exc.one_line()}; the device did "
                                            f"not come back within {policy.wait_s:.0f}s")
                return out
            if stopped.is_set():
                out.interrupted = True
                return out
            out.retries += 1
            note(f"{device.id} is back; retrying {job.label()}")
            continue
        except DeviceUnusable as exc:
            if stopped.is_set():
                out.interrupted = True
                return out
            out.raw = RawResult.failure(job.job_id, exc.one_line())
            out.unusable = exc.one_line()
            return out
        except JobFailed as exc:
            raw = RawResult.failure(job.job_id, exc.one_line())
        except QuantlabError as exc:  # a user error or a fault the agent named: its words
            if stopped.is_set():
                out.interrupted = True
                return out
            raw = RawResult.failure(job.job_id, exc.one_line())
        except Exception as exc:  # a bug in an agent must not take the run down
            if stopped.is_set():
                out.interrupted = True
                return out
            note("".join(traceback.format_exception(exc)))
            kind = getattr(agent, "kind", type(agent).__name__)
            raw = RawResult.failure(job.job_id, f"internal error in the {kind} agent: {exc!r}")
        if stopped.is_set():
            out.interrupted = True
            return out
        out.raw = raw
        return out
