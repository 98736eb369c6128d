"""The Agent protocol every device kind implements, and the registry that finds them.

An agent turns a :class:`~quantlab.harness.records.Job` into a
:class:`~quantlab.harness.records.RawResult`
on one kind of device. The kinds and their agent classes are registered in
:mod:`quantlab.harness.kinds` (one line per kind); :func:`load_agent` looks a kind up there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from quantlab.harness import kinds
from quantlab.harness.records import DeviceInfo, Job, RawResult

Progress = Callable[[str, float | None], None]
"""Progress callback: ``progress(phase, fraction_done_or_None)``."""


def no_progress(phase: str, fraction: float | None) -> None:
    """A progress callback that ignores everything."""


@runtime_checkable
class Agent(Protocol):
    """One kind of device: how to find them, check them, and run jobs on them."""

    kind: str
    """The device kind's registered name (:mod:`quantlab.harness.kinds`): ``sim``,
    ``android``, ``ios``, ``linux`` …; its devices carry it as ``DeviceInfo.platform``."""

    delegates: tuple[str, ...]
    """Delegates this kind of device knows, in the order they are shown."""

    def discover(self) -> list[DeviceInfo]:
        """Every device of this kind that is attached now, ready or not."""
        ...

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """Live health: battery %, temperature °C, thermal status, power source."""
        ...

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """Whether ``device`` can run ``job``; the reason when it cannot."""
        ...

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Measure ``job`` on ``device``.

        Returns a ``failed`` RawResult when the runtime refuses the job; raises
        :class:`~quantlab.harness.errors.DeviceFault` when the device went away (the
        dispatcher retries).
        """
        ...

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """After a DeviceFault: wait up to ``timeout_s`` for the device to be usable again.

        Returns True when it is back (the dispatcher then retries the job), False
        when it did not return in time (the job ends ``failed``).
        """
        ...


def load_agent(kind: str, **options: Any) -> Agent:
    """Instantiate the agent of a registered device ``kind`` (imports its module only now);
    :class:`~quantlab.harness.kinds.UnknownKind` for a kind that is not registered."""
    module_name, class_name = kinds.get(kind).agent.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    agent: Agent = cls(**options)
    return agent
