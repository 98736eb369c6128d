"""The processes quantlab itself starts to measure, so that Ctrl-C ends those and no other.

quantlab runs inside other programs (a notebook, a service, a CI runner calling
``quantlab.bench()``) whose own subprocesses are none of its business. Agents start
their measuring processes through :func:`start` (a :class:`subprocess.Popen` kept in a
registry until it is waited for); on Ctrl-C the dispatcher calls :func:`end_started`,
which ends exactly those — with their process groups, where they got their own session —
so the worker threads waiting on them return at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

_LOCK = threading.Lock()
_STARTED: dict[int, tuple[subprocess.Popen[bytes], bool]] = {}


@contextlib.contextmanager
def start(argv: Sequence[str], **popen_kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` (keywords as for :class:`subprocess.Popen`), registered as quantlab's
    own until the block ends; the caller waits for it inside the block."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **popen_kwargs)
    with _LOCK:
        _STARTED[id(proc)] = (proc, bool(popen_kwargs.get("start_new_session")))
    try:
        yield proc
    finally:
        with _LOCK:
            _STARTED.pop(id(proc), None)


def started() -> list[int]:
    """Pids of the registered processes still running."""
    with _LOCK:
        return [p.pid for p, _ in _STARTED.values() if p.poll() is None]


def end_started(grace_s: float = 3.0) -> None:
    """Terminate every registered process still running (its whole group when it leads
    one), then kill those still there after ``grace_s``."""
    with _LOCK:
        procs = list(_STARTED.values())
    _signal(procs, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(p.poll() is None for p, _ in procs):
        time.sleep(0.05)
    _signal(procs, signal.SIGKILL)


def _signal(procs: list[tuple[subprocess.Popen[bytes], bool]], sig: int) -> None:
    for proc, own_group in procs:
        if proc.poll() is not None:  # reaped: its pid may belong to someone else now
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if own_group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
