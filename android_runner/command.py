"""Build the benchmark_model command line for a job, per delegate.

The host decides everything here (threads, warm-ups, runs, profiling, memory
report, time limit); the device only executes the line. Delegates apply in the
order their flags appear, so exactly one delegate flag group is emitted.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field

from quantlab.harness.errors import UnknownDeviceError
from quantlab.harness.records import Job

DEVICE_DIR = "/data/local/tmp/quantlab"
"""Where quantlab keeps the runner, delegate libraries and models on the device."""

LIB_DIR = f"{DEVICE_DIR}/lib"
BINARY = f"{DEVICE_DIR}/benchmark_model"
QNN_DELEGATE_LIB = "libQnnTFLiteDelegate.so"
QNN_HTP_LIB = "libQnnHtp.so"

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi", "hexagon", "qnn")


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


def delegate_flags(delegate: str, profile_ops: bool = False) -> list[str]:
    """The flags that select ``delegate`` (and nothing else)."""
    if delegate == "cpu":
        return ["--use_xnnpack=false"]
    if delegate == "xnnpack":
        return ["--use_xnnpack=true"]
    if delegate == "gpu":
        return ["--use_gpu=true"]
    if delegate == "nnapi":
        return ["--use_nnapi=true"]
    if delegate == "hexagon":
        flags = ["--use_hexagon=true", f"--hexagon_lib_path={LIB_DIR}"]
        if profile_ops:
            flags.append("--hexagon_profiling=true")
        return flags
    if delegate == "qnn":
        options = (f"backend_type:htp;library_path:{LIB_DIR}/{QNN_HTP_LIB};"
                   f"skel_library_dir:{LIB_DIR}")
        return [f"--external_delegate_path={LIB_DIR}/{QNN_DELEGATE_LIB}",
                f"--external_delegate_options={options}"]
    raise UnknownDeviceError(f"--delegate {delegate}: not an Android delegate",
                             hint=f"Android delegates: {', '.join(DELEGATES)}")


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
