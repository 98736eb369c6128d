"""ExecuTorch's ``executor_runner`` on a phone: its command line and its output read back.

The runner is ExecuTorch's own example runner (``examples/portable/executor_runner``), built
for the phone with the XNNPACK backend linked in and ETDump on (``ET_EVENT_TRACER_ENABLED``),
with the posix platform layer so its log reaches stderr. Its flags: ``--model_path``,
``--num_executions``, ``--cpu_threads``, ``--etdump_path``, ``--inputs`` (raw input files,
comma-separated) and ``--output_file`` (base name: ``BASE-<i>.bin`` per output). It has no
warm-up flag: the host asks for ``warmup + iterations`` executions and drops the first
``warmup``. What it prints (ExecuTorch ≥ 1.3; the posix log format
``I 00:00:00.004311 executorch:executor_runner.cpp:626] <message>``)::

    Model loaded in 1.234000 ms.
    Iteration 1 of 12: 3.456000 ms
    Model executed successfully 12 time(s) in 41.472000 ms.

A failed check logs an ``E``/``F`` line and aborts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quantlab.android_runner.command import DEVICE_DIR, BenchmarkCommand

if TYPE_CHECKING:
    from quantlab.harness.records import Job

RUNNER = "executor_runner"
"""The runner's name (its provisioned file and ``RawResult.runner["name"]``)."""
BINARY = f"{DEVICE_DIR}/executorch/{RUNNER}"
DELEGATES = ("et-xnnpack",)
"""The ExecuTorch delegates a phone runs: the program as lowered (its XNNPACK partitions)."""
MIN_VERSION = "1.3"
"""The first ExecuTorch whose executor_runner prints each iteration's time."""

_LOG = re.compile(r"^(?:([DIEF]) \d\d:\d\d:\d\d\.\d+ executorch:[^\]]*\] )?(.*)$")
_ITERATION = re.compile(r"Iteration (\d+) of (\d+): ([0-9.]+(?:e[-+]?\d+)?) ms")
_LOADED = re.compile(r"Model loaded in ([0-9.]+(?:e[-+]?\d+)?) ms")
_DONE = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.]+(?:e[-+]?\d+)?) ms")


def build_command(job: Job, model_path: str, executions: int,
                  etdump_path: str | None = None, extra_flags: tuple[str, ...] = ()
                  ) -> BenchmarkCommand:
    """One executor_runner launch of ``model_path`` (``executions`` times, the job's threads;
    with ``etdump_path`` the ETDump goes there), under the job's device-side time limit."""
    argv = [BINARY, f"--model_path={model_path}", f"--num_executions={executions}",
            f"--cpu_threads={job.threads}"]
    if etdump_path:
        argv.append(f"--etdump_path={etdump_path}")
    argv += list(extra_flags)
    return BenchmarkCommand(tuple(argv), {}, None, max(1, math.ceil(job.settings.timeout_s)))


@dataclass(frozen=True)
class RunnerOutput:
    """One executor_runner launch, read back: every iteration's time, the load time, or the
    reason it failed."""

    ok: bool
    error: str | None = None
    samples_ms: tuple[float, ...] = ()
    load_ms: float | None = None
    executions: int | None = None  # what its last line says it ran
    total_ms: float | None = None
    lines: tuple[str, ...] = field(default=(), repr=False)


def parse_output(text: str) -> RunnerOutput:
    """Read an executor_runner launch's stdout and stderr (see the module docstring)."""
    samples: list[float] = []
    load_ms = total_ms = None
    executions = None
    errors: list[str] = []
    lines = tuple(line.rstrip() for line in text.splitlines() if line.strip())
    for line in lines:
        m = _LOG.match(line)
        level, message = (m.group(1), m.group(2)) if m else (None, line)
        if (it := _ITERATION.search(message)) is not None:
            samples.append(float(it.group(3)))
        elif (ld := _LOADED.search(message)) is not None:
            load_ms = float(ld.group(1))
        elif (done := _DONE.search(message)) is not None:
            executions, total_ms = int(done.group(1)), float(done.group(2))
        elif level in ("E", "F") or message.startswith("ERROR: "):
            errors.append(message.strip())
    if executions is None:
        why = errors[-1] if errors else (lines[-1] if lines else "no output")
        return RunnerOutput(False, f"executor_runner failed: {why}", tuple(samples), load_ms,
                            lines=lines)
    if not samples:
        return RunnerOutput(False, f"executor_runner printed no per-iteration times: provision "
                            f"one built from ExecuTorch {MIN_VERSION} or newer",
                            load_ms=load_ms, executions=executions, total_ms=total_ms,
                            lines=lines)
    return RunnerOutput(True, None, tuple(samples), load_ms, executions, total_ms, lines)
