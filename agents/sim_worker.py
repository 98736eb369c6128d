"""The measuring process of the simulator agent: one process-level repeat of one job.

``python -m quantlab.agents.sim_worker JOB.json RESULT.json`` loads the model with the
LiteRT Python Interpreter, measures it and writes a JSON result. It runs in a
fresh process per repeat so that native crashes (a malformed model) only end
this process; the controller reads the phase file to say where it crashed.

Modes (``"mode"`` in the job JSON): ``measure`` (latency, memory, energy, placement),
``profile`` (per-op profile through :mod:`quantlab.agents.litert_profile`), ``numerics``
(fixed inputs through the model and through the float reference, compared) and
``numerics-prepare`` (the host half of a phone's numerics check: input files and the
float reference's outputs; the model runs on the phone). RAPL energy is read by
:mod:`quantlab.agents.rapl`, only when the job asks for energy; profile rows are checked against
Invoke by :mod:`quantlab.agents.op_coverage`.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from .op_coverage import account_for_invoke
from .rapl import DEFAULT_RAPL_ROOT, RAPL_IDLE_S, RAPL_ROOT_ENV, Rapl, rapl_energy


class WorkerError(Exception):
    """A failure of the job with a message for the user (the runtime's reason)."""


# --------------------------------------------------------------------------- phase file


class Phases:
    """Writes the current phase next to the result so a crash can be located."""

    def __init__(self, result_path: Path) -> None:
        self.path = result_path.with_suffix(".phase")

    def enter(self, phase: str) -> None:
        self.path.write_text(phase)


# --------------------------------------------------------------------------- inputs


def dtype_name(dtype: Any) -> str:
    import numpy as np

    return str(np.dtype(dtype))


def random_input(detail: dict[str, Any], rng: Any,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> Any:
    """Random data for one input: its dtype, shape (dynamic dims → 1) and quantization;
    float values (or the floats a quantized input stands for) uniform in ``value_range``."""
    import numpy as np

    low, high = value_range
    shape = [max(int(d), 1) for d in detail.get("shape_signature", detail["shape"])]
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind == "f":
        return rng.uniform(low, high, shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    info = np.iinfo(dtype)
    if scale and dtype in (np.int8, np.uint8, np.int16):
        # values that the quantization maps to floats in value_range
        q = np.round(rng.uniform(low, high, shape) / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)
    lo, hi = max(info.min, 0), min(info.max, 255)
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def load_inputs(path: str, details: list[dict[str, Any]]) -> list[Any]:
    """Arrays of an .npz per input: by name, else positional ``arr_N``, else the only array."""
    import numpy as np

    try:
        npz = np.load(path)
    except Exception as exc:
        raise WorkerError(f"--inputs {path}: cannot read .npz ({exc})") from None
    keys = list(npz.keys())
    arrays = []
    for i, d in enumerate(details):
        name = d["name"]
        if name in keys:
            key = name
        elif f"arr_{i}" in keys:
            key = f"arr_{i}"
        elif len(keys) == 1 and len(details) == 1:
            key = keys[0]
        else:
            raise WorkerError(
                f"--inputs {path}: no array for model input {name!r} (keys: {', '.join(keys)})"
            )
        arr = npz[key]
        want = tuple(int(x) for x in d["shape"])
        sig = tuple(int(x) for x in d.get("shape_signature", d["shape"]))
        shape_ok = len(arr.shape) == len(sig) and all(
            s in (-1, a) for s, a in zip(sig, arr.shape, strict=True)
        )
        if not shape_ok:
            raise WorkerError(
                f"--inputs {path}: array {key!r} has shape {tuple(arr.shape)}, "
                f"model input {name!r} "
                f"expects {want}"
            )
        if arr.dtype != np.dtype(d["dtype"]):
            raise WorkerError(
                f"--inputs {path}: array {key!r} has dtype {arr.dtype}, "
                f"model input {name!r} expects "
                f"{dtype_name(d['dtype'])}"
            )
        arrays.append(arr)
    return arrays


# --------------------------------------------------------------------------- measuring


MEMORY_METHOD = (
    "VmHWM of the measuring process" if sys.platform.startswith("linux")
    else "ru_maxrss of the measuring process"
)


def _peak_memory_mb() -> float:
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


def interpreter(model: str, delegate: str, threads: int) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if delegate == "cpu"
        else OpResolverType.AUTO
    )
    return Interpreter(
        model_path=model, num_threads=threads, experimental_op_resolver_type=resolver
    )


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


def measure(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """Load, warm up and time the model; returns the result dict."""
    import numpy as np

    settings = job["settings"]
    phases.enter("loading the model")
    t0 = time.perf_counter_ns()
    try:
        interp = interpreter(job["model"], job["delegate"], job["threads"])
        phases.enter("allocating tensors")
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise WorkerError(f"LiteRT could not load the model: {first_lines(str(exc))}") from None
    init_ms = (time.perf_counter_ns() - t0) / 1e6
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
        "first_inference_ms": first_ms,
        "peak_memory_mb": _peak_memory_mb(),
        "memory_method": MEMORY_METHOD,
        "energy": energy,
        "energy_unavailable_reason": reason,
        "placement": where,
    }


def profile(job: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """The per-op profiled phase (same threads and kernel mode as the measurement)."""
    from .litert_profile import ProfileUnavailable, profile_model

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


def first_lines(text: str, n: int = 3) -> str:
    lines = [
        line.strip()
        for line in text.strip().splitlines()
        if line.strip() and not line.startswith("See instructions")
    ]
    return " ".join(lines[:n])


def main(argv: list[str]) -> int:
    """Entry point: read the job JSON, write the result JSON; exit 0 unless the process crashed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    phases = Phases(result_path)
    try:
        mode = job.get("mode")
        if mode in ("numerics", "numerics-prepare"):  # host only: gateways are not sent it
            from .sim_numerics import numerics, numerics_prepare

            out = numerics(job, phases) if mode == "numerics" else numerics_prepare(job, phases)
        else:
            out = profile(job, phases) if mode == "profile" else measure(job, phases)
        out["pid"] = os.getpid()
        out["error"] = None
    except WorkerError as exc:
        out = {"error": str(exc), "pid": os.getpid()}
    result_path.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    # run main() of the importable module, not of __main__: the numerics modes
    # (agents.sim_numerics) raise agents.sim_worker.WorkerError, which a __main__ copy
    # of the class would not catch
    from .sim_worker import main as _main

    sys.exit(_main(sys.argv[1:]))
