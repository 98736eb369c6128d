"""Build the benchmark_model command line for a job, per delegate, and keep the one list of
Android delegates.

The host decides everything here (threads, warm-ups, runs, profiling, memory
report, time limit); the device only executes the line. Delegates apply in the
order their flags appear, so exactly one delegate flag group is emitted.

:data:`DELEGATES` is every Android delegate, for both tools (benchmark_model and
benchmark_litert_model, :mod:`quantlab.android_runner.litert_command`): the tool that runs it
and the flags that select it. The agent (:mod:`quantlab.agents.android.agent`) offers them in
this order. Adding an Android delegate is one line there plus its flags builder.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quantlab.harness.errors import UnknownDeviceError

if TYPE_CHECKING:  # the delegate list is read by the CLI's help: no records imported for it
    from quantlab.harness.records import Job

DEVICE_DIR = "/data/local/tmp/quantlab"
"""Where quantlab keeps the runner, delegate libraries and models on the device."""

LIB_DIR = f"{DEVICE_DIR}/lib"
BINARY = f"{DEVICE_DIR}/benchmark_model"
QNN_DELEGATE_LIB = "libQnnTFLiteDelegate.so"
QNN_HTP_LIB = "libQnnHtp.so"

BENCHMARK_MODEL = "benchmark_model"
"""TensorFlow Lite's benchmark tool (the interpreter and its delegates)."""
LITERT_RUNNER = "benchmark_litert_model"
"""LiteRT's CompiledModel benchmark tool (its CPU, GPU and NPU accelerators)."""


@dataclass(frozen=True)
class Delegate:
    """One Android delegate: the tool that runs it and the flags that select it (given
    whether the launch profiles ops)."""

    runner: str
    flags: Callable[[bool], list[str]]


def _fixed(*flags: str) -> Callable[[bool], list[str]]:
    """Flags that do not depend on profiling."""
    return lambda profile_ops: list(flags)


def _hexagon_flags(profile_ops: bool) -> list[str]:
    flags = ["--use_hexagon=true", f"--hexagon_lib_path={LIB_DIR}"]
    if profile_ops:
        flags.append("--hexagon_profiling=true")
    return flags


def _qnn_flags(profile_ops: bool) -> list[str]:
    options = (f"backend_type:htp;library_path:{LIB_DIR}/{QNN_HTP_LIB};"
               f"skel_library_dir:{LIB_DIR}")
    return [f"--external_delegate_path={LIB_DIR}/{QNN_DELEGATE_LIB}",
            f"--external_delegate_options={options}"]


DELEGATES: dict[str, Delegate] = {
    "xnnpack": Delegate(BENCHMARK_MODEL, _fixed("--use_xnnpack=true")),
    "cpu": Delegate(BENCHMARK_MODEL, _fixed("--use_xnnpack=false")),
    "gpu": Delegate(BENCHMARK_MODEL, _fixed("--use_gpu=true")),
    "nnapi": Delegate(BENCHMARK_MODEL, _fixed("--use_nnapi=true")),
    "hexagon": Delegate(BENCHMARK_MODEL, _hexagon_flags),
    "qnn": Delegate(BENCHMARK_MODEL, _qnn_flags),
    "litert-cpu": Delegate(LITERT_RUNNER, _fixed("--use_cpu=true", "--use_gpu=false",
                                                 "--use_npu=false")),
    "litert-gpu": Delegate(LITERT_RUNNER, _fixed("--use_gpu=true", "--use_cpu=true",
                                                 "--use_npu=false")),
    "litert-npu": Delegate(LITERT_RUNNER, _fixed("--use_npu=true", "--use_cpu=true",
                                                 "--use_gpu=false",
                                                 f"--dispatch_library_path={LIB_DIR}")),
}
"""Every Android delegate in the order shown (the first is the default): its tool and flags."""


def runner_of(delegate: str) -> str:
    """The tool that runs ``delegate`` (:data:`BENCHMARK_MODEL` or :data:`LITERT_RUNNER`)."""
    return DELEGATES[delegate].runner


def delegates_of(runner: str) -> tuple[str, ...]:
    """The delegates one tool runs, in :data:`DELEGATES` order."""
    return tuple(name for name, d in DELEGATES.items() if d.runner == runner)


@dataclass(frozen=True)
class BenchmarkCommand:
    """One benchmark_model launch: argv, environment, files it writes, and its time limit."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    profile_file: str | None = None
    timeout_s: int = 600
    log_file: str | None = None  # stdout and stderr go to this device file as printed

    def shell(self) -> str:
        """The device shell line: ``cd``, environment, toybox ``timeout`` around the tool;
        every word shell-quoted, so device paths are used literally. With ``log_file`` the
        tool's output goes to that file while it runs (the energy sampler watches it)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        argv = " ".join(shlex.quote(a) for a in self.argv)
        prefix = f"{env} " if env else ""
        log = f" > {shlex.quote(self.log_file)} 2>&1" if self.log_file else ""
        return (f"cd {shlex.quote(DEVICE_DIR)} && {prefix}timeout -k 5 {self.timeout_s} "
                f"{argv}{log}")


def delegate_flags(delegate: str, profile_ops: bool = False,
                   runner: str = BENCHMARK_MODEL) -> list[str]:
    """The flags that select ``delegate`` (and nothing else) on ``runner``."""
    found = DELEGATES.get(delegate)
    if found is None or found.runner != runner:
        raise UnknownDeviceError(f"--delegate {delegate}: not an Android delegate"
                                 if runner == BENCHMARK_MODEL else
                                 f"--delegate {delegate}: not a {runner} accelerator",
                                 hint=f"{runner} delegates: {', '.join(delegates_of(runner))}")
    return found.flags(profile_ops)


def build_command(
    job: Job,
    model_path: str,
    *,
    profile_file: str | None = None,
    num_runs: int | None = None,
    min_secs: float | None = None,
    warmup_runs: int | None = None,
    extra_flags: tuple[str, ...] = (),
) -> BenchmarkCommand:
    """The launch for ``job`` with the model at ``model_path`` on the device.

    ``profile_file`` turns on op profiling written as CSV to that device path;
    ``num_runs``/``min_secs``/``warmup_runs`` override the job settings (energy's
    sustained loop, the profiling launch); ``extra_flags`` go before the delegate's
    (the numerics launch's input and output files).
    """
    s = job.settings
    runs = num_runs if num_runs is not None else s.iterations
    secs = min_secs if min_secs is not None else s.min_time_s
    warm = warmup_runs if warmup_runs is not None else s.warmup
    timeout = max(1, math.ceil(s.timeout_s))
    argv = [
        BINARY,
        f"--graph={model_path}",
        f"--num_threads={job.threads}",
        f"--warmup_runs={warm}",
        "--warmup_min_secs=0",
        f"--num_runs={runs}",
        f"--min_secs={secs:g}",
        f"--max_secs={max(1, int(timeout * 0.8))}",
        "--report_peak_memory_footprint=true",
    ]
    if profile_file:
        argv += ["--enable_op_profiling=true", "--op_profiling_output_mode=csv",
                 f"--op_profiling_output_file={profile_file}"]
    argv += list(extra_flags)
    argv += delegate_flags(job.delegate, profile_ops=bool(profile_file))
    env: dict[str, str] = {}
    if job.delegate in ("hexagon", "qnn", "gpu"):
        env["LD_LIBRARY_PATH"] = f"{LIB_DIR}:/vendor/lib64:/system/lib64"
    if job.delegate in ("hexagon", "qnn"):
        env["ADSP_LIBRARY_PATH"] = f"{LIB_DIR};/vendor/lib/rfsa/adsp;/vendor/dsp/cdsp;/dsp"
    # the tool stops measuring at --max_secs; toybox timeout kills it at the job's limit
    return BenchmarkCommand(tuple(argv), env, profile_file, timeout)
