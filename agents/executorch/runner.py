"""The ExecuTorch runner: one process-level repeat of one ``.pte`` job, in a process of its own.

``python -m quantlab.agents.executorch.runner JOB.json RESULT.json`` loads the program with
``executorch.runtime``, warms it up and times ``forward`` (mode ``measure``), or runs it with
ETDump on and reads the per-op profile back with ExecuTorch's own Inspector (mode
``profile``), or runs fixed inputs through it and its float reference (mode ``numerics``; the
host half of a phone's check: ``numerics-prepare``; every sample of an .npz: ``outputs``,
:mod:`.numerics`); the same job and result
JSON as the LiteRT runner's (:mod:`quantlab.agents.litert.runner`), so the simulator reads
both alike. A native crash ends only this process; the phase file next to the result says
where it was.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .etdump import EtdumpError, read_etdump  # relative: gateways receive the folder alone
from .numerics import DTYPES, NumericsError, fixed_inputs, numerics, outputs, prepare

MEMORY_METHOD = "VmHWM of the measuring process"


class RunnerError(Exception):
    """The runtime refused the program or failed to run it (the job fails with the reason)."""


def _phase(result: Path, what: str) -> None:
    result.with_suffix(".phase").write_text(what)


def _peak_memory_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inputs(method: Any, seed: int, inputs: str | None = None, model: str = "") -> list[Any]:
    """The ``--inputs`` arrays (their first sample), else random inputs of the shapes and
    dtypes the program's ``forward`` declares."""
    import numpy as np
    import torch

    if inputs:
        meta = method.metadata
        tensors = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        try:
            arrays, _ = fixed_inputs([tuple(int(d) for d in t.sizes()) for t in tensors],
                                     [DTYPES.get(int(t.dtype()), "float32") for t in tensors],
                                     inputs, model)
        except NumericsError as exc:
            raise RunnerError(str(exc)) from None
        return [torch.from_numpy(a) for a in arrays]
    rng = np.random.default_rng(seed)
    meta, out = method.metadata, []
    for i in range(meta.num_inputs()):
        tensor = meta.input_tensor_meta(i)
        dtype = DTYPES.get(int(tensor.dtype()), "float32")
        shape = tuple(int(d) for d in tensor.sizes())
        arr = (rng.standard_normal(shape) if dtype.startswith("float")
               else rng.integers(0, 2, size=shape)).astype(dtype)
        out.append(torch.from_numpy(arr))
    return out


def measure(job: dict[str, Any], result: Path) -> dict[str, Any]:
    """Load, run once, warm up and time the program; the result dict."""
    _phase(result, "loading ExecuTorch")
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(int(job["threads"]))
    settings = job["settings"]
    _phase(result, "loading the program")
    t0 = time.perf_counter_ns()
    try:
        method = Runtime.get().load_program(job["model"]).load_method("forward")
    except Exception as exc:
        raise RunnerError(f"ExecuTorch could not load the program: {_first(exc)}") from None
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    args = _inputs(method, int(job.get("seed", 0)), settings.get("inputs"), job["model"])
    execute = method.execute
    _phase(result, "running the first inference")
    t0 = time.perf_counter_ns()
    try:
        execute(args)
    except Exception as exc:
        raise RunnerError(f"ExecuTorch failed to run the program: {_first(exc)}") from None
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    _phase(result, "warming up")
    for _ in range(int(settings["warmup"])):
        execute(args)
    _phase(result, "measuring")
    iterations, min_time_ns = int(settings["iterations"]), float(settings["min_time_s"]) * 1e9
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    while len(samples) < iterations or clock() - start < min_time_ns:
        t = clock()
        execute(args)
        samples.append(clock() - t)
    return {
        "samples_ms": [s / 1e6 for s in samples],
        "init_ms": init_ms,
        "first_inference_ms": first_ms,
        "peak_memory_mb": _peak_memory_mb(),
        "memory_method": MEMORY_METHOD,
        "threads_used": portable_lib._threadpool_get_thread_count(),
    }


def check_numerics(job: dict[str, Any], result: Path) -> dict[str, Any]:
    """Fixed inputs through the program and its float reference, every array saved
    (:mod:`.numerics`)."""
    _phase(result, "loading ExecuTorch")
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(int(job["threads"]))
    _phase(result, "numerics: loading the program")
    try:
        method = Runtime.get().load_program(job["model"]).load_method("forward")
    except Exception as exc:
        raise RunnerError(f"ExecuTorch could not load the program: {_first(exc)}") from None
    _phase(result, "numerics: running the float reference")
    try:
        mode = {"numerics-prepare": prepare, "outputs": outputs}.get(job.get("mode") or "",
                                                                     numerics)
        return mode(job, method)
    except NumericsError as exc:
        raise RunnerError(str(exc)) from None


def profile(job: dict[str, Any], result: Path) -> dict[str, Any]:
    """The per-op profile from ETDump: each XNNPACK kernel inside a delegate, what each
    delegate call spent outside its kernels, each operator left to the portable kernels,
    against ``Method::execute`` (ms per inference, Inspector's p10/p50/p90 in ``detail``)."""
    _phase(result, "loading ExecuTorch")
    import torch
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(int(job["threads"]))
    _phase(result, "loading the program with ETDump")
    try:
        module = portable_lib._load_for_executorch(job["model"], enable_etdump=True,
                                                   debug_buffer_size=0)
    except Exception as exc:
        raise RunnerError(f"ExecuTorch could not load the program: {_first(exc)}") from None
    shape = tuple(int(d) for d in module.method_meta("forward").input_tensor_meta(0).sizes())
    args = [torch.randn(shape, generator=torch.Generator().manual_seed(0))]
    _phase(result, "profiling ops")
    for _ in range(max(int(job["settings"]["iterations"]), 10)):
        module.forward(args)
    etdump = result.with_suffix(".etdp")
    module.write_etdump_result_to_file(str(etdump))
    try:
        return read_etdump(etdump)
    except EtdumpError as exc:
        raise RunnerError(str(exc)) from None


def _first(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def main(argv: list[str]) -> int:
    """Read the job JSON, write the result JSON; exit 0 unless the process crashed."""
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    try:
        mode = job.get("mode") or "measure"
        modes = {"measure": measure, "profile": profile, "numerics": check_numerics,
                 "numerics-prepare": check_numerics, "outputs": check_numerics}
        if mode not in modes:
            raise RunnerError(f"mode {mode!r} is not supported by the ExecuTorch runner yet")
        out = modes[mode](job, result_path)
        out["error"] = None
    except RunnerError as exc:
        out = {"error": str(exc)}
    out["pid"] = os.getpid()
    result_path.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
