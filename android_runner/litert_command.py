"""Build the ``benchmark_litert_model`` command line (LiteRT's CompiledModel tool) for a job.

The second Android runner beside benchmark_model. Delegates (accelerators):

* ``litert-cpu``: CPU accelerator only (XNNPACK inside the CompiledModel runtime);
* ``litert-gpu``: GPU accelerator (OpenCL/OpenGL, the accelerator library pushed with the
  tool), CPU kept on so ops the GPU does not take fall back and show up in the matrix;
* ``litert-npu``: NPU through the vendor's dispatch library (``--dispatch_library_path``);
  the model is the one ``quantlab compile --target SOC`` made for the phone's SoC.

Same host-decides rule as :mod:`quantlab.android_runner.command`: threads, warm-ups, runs, the
time limit and profiling come from the job. Which delegates this tool runs, and the flags
that select each, are lines of :data:`quantlab.android_runner.command.DELEGATES`.
"""

from __future__ import annotations

import math

from quantlab.android_runner.command import (
    DEVICE_DIR,
    LIB_DIR,
    LITERT_RUNNER,
    BenchmarkCommand,
    delegate_flags,
    delegates_of,
)
from quantlab.harness.records import Job

RUNNER = LITERT_RUNNER
BINARY = f"{DEVICE_DIR}/{RUNNER}"
DELEGATES = delegates_of(RUNNER)
"""The delegates this tool runs (from :data:`quantlab.android_runner.command.DELEGATES`)."""


def accelerator_flags(delegate: str) -> list[str]:
    """The flags that select the accelerator of ``delegate`` (and nothing else)."""
    return delegate_flags(delegate, runner=RUNNER)


def build_litert_command(job: Job, model_path: str, *, profile: bool = False,
                         num_runs: int | None = None, min_secs: float | None = None,
                         warmup_runs: int | None = None) -> BenchmarkCommand:
    """The launch for ``job`` with the model at ``model_path`` on the device; ``profile``
    turns on the tool's profiler (its op tables go to stdout)."""
    s = job.settings
    timeout = max(1, math.ceil(s.timeout_s))
    argv = [
        BINARY,
        f"--graph={model_path}",
        f"--num_threads={job.threads}",
        f"--warmup_runs={warmup_runs if warmup_runs is not None else s.warmup}",
        f"--num_runs={num_runs if num_runs is not None else s.iterations}",
        f"--min_secs={min_secs if min_secs is not None else s.min_time_s:g}",
        f"--max_secs={max(1, int(timeout * 0.8))}",
        *accelerator_flags(job.delegate),
    ]
    if profile:
        argv.append("--use_profiler=true")
    env = {"LD_LIBRARY_PATH": f"{LIB_DIR}:/vendor/lib64:/system/lib64"}
    if job.delegate == "litert-npu":
        env["ADSP_LIBRARY_PATH"] = f"{LIB_DIR};/vendor/lib/rfsa/adsp;/vendor/dsp/cdsp;/dsp"
    return BenchmarkCommand(tuple(argv), env, None, timeout)
