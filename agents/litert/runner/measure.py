"""The runner's ``measure`` and ``profile`` modes: load, warm up and time the model (latency
samples, load/init and first-inference time, the process's own peak memory, RAPL energy when
asked, which nodes a delegate took), and the per-op profile through the LiteRT C API
(:mod:`.profiler`; :mod:`.op_types` labels the kernels, :mod:`.op_coverage` squares the rows
with Invoke)."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from .inputs import load_inputs, random_input
from .op_coverage import account_for_invoke
from .rapl import DEFAULT_RAPL_ROOT, RAPL_IDLE_S, RAPL_ROOT_ENV, Rapl, rapl_energy
from .runtime import Phases, WorkerError, first_lines, interpreter

MEMORY_METHOD = (
    "VmHWM of the measuring process" if sys.platform.startswith("linux")
    else "ru_maxrss of the measuring process"
)


def peak_memory_mb() -> float:
    """The measuring process's own peak memory (MiB): VmHWM on Linux, else ru_maxrss."""
    # Linux: VmHWM, the peak of this program's own address space. ru_maxrss is no good
    # there: it survives execve, so a worker started by a large controller (one that
    # trained a model) would report the controller's peak as its own.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return kb / 1024 / 1024 if sys.platform == "darwin" else kb / 1024



def placement(interp: Any, delegate: str) -> dict[str, Any]:
    """Which model nodes ran inside a delegate partition and which stayed on the CPU.

    Read from the interpreter's graph after the delegate was applied: each ``DELEGATE``
    node stands for one partition, and the nodes it replaced are those that produce its
    outputs, traced back to its inputs. Only the primary subgraph is covered.
    """
    try:
        details = list(interp._get_ops_details())
    except Exception as exc:  # a private API: keep the measurement, say why there is none
        return {"error": f"the interpreter did not list its nodes ({exc})"}
    nodes = [d for d in details if d["op_name"] != "DELEGATE"]
    producer = {int(t): int(d["index"]) for d in nodes for t in d["outputs"]}
    by_index = {int(d["index"]): d for d in nodes}
    partitions = []
    taken: set[int] = set()
    for d in details:
        if d["op_name"] != "DELEGATE":
            continue
        boundary = {int(t) for t in d["inputs"]}
        stack, covered = [int(t) for t in d["outputs"]], set()
        while stack:
            n = producer.get(stack.pop())
            if n is None or n in covered:
                continue
            covered.add(n)
            stack.extend(int(t) for t in by_index[n]["inputs"] if int(t) not in boundary)
        taken |= covered
        partitions.append({"delegate": "XNNPACK", "nodes": sorted(covered),
                           "op_types": sorted({by_index[n]["op_name"] for n in covered})})
    cpu = [{"index": int(d["index"]), "op_type": str(d["op_name"])} for d in nodes
           if int(d["index"]) not in taken]
    return {
        "source": "interpreter graph: nodes each DELEGATE node replaced",
        "requested": delegate,
        "ops_total": len(nodes),
        "ops_delegated": len(taken),
        "partitions": partitions,
        "cpu_ops": cpu,
    }


def prepared(job: dict[str, Any], phases: Phases
             ) -> tuple[Any, float, float, dict[str, Any], float]:
    """Load the model, set its inputs, run the first inference and warm up: the invoke
    function, the load/init and first-inference times (ms), the placement and the model load
    alone (the interpreter built, before allocation applies the delegate)."""
    import numpy as np

    settings = job["settings"]
    phases.enter("loading the model")
    t0 = time.perf_counter_ns()
    try:
        interp = interpreter(job["model"], job["delegate"], job["threads"])
        loaded = time.perf_counter_ns()
        phases.enter("allocating tensors")
        interp.allocate_tensors()  # where LiteRT applies the XNNPACK delegate
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"LiteRT could not load the model: {first_lines(str(exc))}") from None
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    load_ms = (loaded - t0) / 1e6  # the rest of init_ms: allocation (and XNNPACK)
    where = placement(interp, job["delegate"])

    details = interp.get_input_details()
    if settings.get("inputs"):
        arrays = load_inputs(settings["inputs"], details)
    else:
        rng = np.random.default_rng(int(job.get("seed", 0)))
        arrays = [random_input(d, rng) for d in details]
    for d, arr in zip(details, arrays, strict=True):
        if tuple(arr.shape) != tuple(d["shape"]):
            interp.resize_tensor_input(d["index"], arr.shape)
    if any(tuple(a.shape) != tuple(d["shape"]) for d, a in zip(details, arrays, strict=True)):
        interp.allocate_tensors()
        details = interp.get_input_details()
    for d, arr in zip(details, arrays, strict=True):
        interp.set_tensor(d["index"], arr)

    invoke = interp.invoke
    phases.enter("running the first inference")
    t0 = time.perf_counter_ns()
    try:
        invoke()
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"LiteRT failed to run the model: {first_lines(str(exc))}") from None
    first_ms = (time.perf_counter_ns() - t0) / 1e6

    phases.enter("warming up")
    for _ in range(int(settings["warmup"])):
        invoke()
    return invoke, init_ms, first_ms, where, load_ms


def measure(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """Load, warm up and time the model; returns the result dict."""
    settings = job["settings"]
    invoke, init_ms, first_ms, where, load_ms = prepared(job, phases)
    phases.enter("measuring")
    # RAPL (and the idle sleep before the loop that lets clocks drop) only with --energy
    rapl = Rapl(Path(job.get("rapl_root") or os.environ.get(RAPL_ROOT_ENV, DEFAULT_RAPL_ROOT))
                ) if settings.get("energy") else None
    reading = rapl if rapl is not None and not rapl.reason else None
    iterations, min_time_ns = int(settings["iterations"]), float(settings["min_time_s"]) * 1e9
    samples: list[int] = []
    clock = time.perf_counter_ns
    idle_uj = idle_ns = 0.0
    if reading:  # the idle baseline, just before the load
        phases.enter("measuring idle package power")
        idle_s = float(job.get("rapl_idle_s", RAPL_IDLE_S))
        idle_before, t_idle = reading.read(), clock()
        time.sleep(idle_s)
        idle_after, idle_ns = reading.read(), clock() - t_idle
        idle_uj = reading.delta_uj(idle_before, idle_after)
        phases.enter("measuring")
    energy_before = reading.read() if reading else []
    start = clock()
    while len(samples) < iterations or clock() - start < min_time_ns:
        t = clock()
        invoke()
        samples.append(clock() - t)
    load_ns = clock() - start
    energy_after = reading.read() if reading else []

    energy = None
    reason = rapl.reason if rapl is not None else None
    if reading and samples:
        energy, reason = rapl_energy(idle_uj, idle_ns / 1e9,
                                     reading.delta_uj(energy_before, energy_after), load_ns / 1e9,
                                     len(samples))
        if energy is not None:
            energy["detail"]["domains"] = [d.name for d in reading.domains]
    return {
        "samples_ms": [s / 1e6 for s in samples],
        "init_ms": init_ms,
        "load_ms": load_ms,
        "first_inference_ms": first_ms,
        "peak_memory_mb": peak_memory_mb(),
        "memory_method": MEMORY_METHOD,
        "energy": energy,
        "energy_unavailable_reason": reason,
        "placement": where,
    }


def profile(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """The per-op profiled phase (same threads and kernel mode as the measurement)."""
    from .profiler import ProfileUnavailable, profile_model

    settings = job["settings"]
    phases.enter("reading the model's ops")
    nodes: list[str] = []
    try:
        interp = interpreter(job["model"], job["delegate"], job["threads"])
        interp.allocate_tensors()
        nodes = [str(d["op_name"]) for d in interp._get_ops_details()]
    except Exception:
        nodes = []
    phases.enter("profiling ops")
    try:
        prof = profile_model(
            job["model"],
            threads=int(job["threads"]),
            builtin_kernels=job["delegate"] == "cpu",
            warmup=min(int(settings["warmup"]), 10),
            runs=max(int(settings["iterations"]), 10),
        )
    except ProfileUnavailable as exc:
        raise WorkerError(str(exc)) from None
    from .op_types import label_ops

    rows, note = account_for_invoke(label_ops(prof.ops, nodes), prof.invoke_ms,
                                    prof.accounting)
    return {"ops": rows, "ops_model_ms": prof.invoke_ms, "ops_note": note}
