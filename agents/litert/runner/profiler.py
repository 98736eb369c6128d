"""Per-operator latency of a .tflite through the LiteRT C API profiler (libLiteRt, via ctypes).

The C library ships inside the ai-edge-litert wheel: ``libLiteRt.so`` on Linux,
``libLiteRt.dylib`` on macOS (:data:`LIBRARY_NAMES`). ``QUANTLAB_LITERT_LIB`` points
the lookup elsewhere (a folder holding it, or the file itself); when the library
cannot be found or loaded the profiler raises :class:`ProfileUnavailable` saying why.

The C API and its struct layouts change between LiteRT releases, so this module
is pinned to the ai-edge-litert version whose layout was verified
(:data:`VERIFIED_VERSIONS`); any other version raises :class:`ProfileUnavailable`
and the caller keeps the benchmark while dropping the profile.

Op types: builtin kernels (event type 2) carry the node index in ``metadata1``;
the caller maps it to the TFLite op type with the interpreter's ops details.
XNNPACK kernels (event type 8) carry only the kernel name; they are mapped to the
delegated nodes by their order within the partition (XNNPACK runs the nodes it
took in model order, one kernel per node), which only holds when the partition
ran as many kernels as it took nodes — otherwise the op type stays unknown.

Runs are delimited by the primary subgraph's ``Invoke`` event (subgraph index 0 in
``metadata2``): the subgraphs that control flow (WHILE, IF, CALL_ONCE) runs open ``Invoke``
events of their own, and their ops are kept as ops of that subgraph. What the rows cannot
cover is measured too (:attr:`Profile.accounting`): every non-op event the profiler opens
(an ``Invoke``, ``AllocateTensors``, ``LiteRT::Run[...]``) reads the process's memory usage
(TFLite ``memory::GetMemoryUsage``, which parses /proc/self/status) inside the time it
measures, and XNNPACK reports each kernel's time in whole microseconds, so kernels that
run under 1 µs report 0.
"""

from __future__ import annotations

import ctypes as C
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

VERIFIED_VERSIONS = ("2.3.0",)
"""ai-edge-litert versions whose ProfiledEventData layout (104 bytes) was verified."""

EVENT_STRUCT_SIZE = 104
EVENT_DEFAULT = 1
EVENT_OPERATOR = 2
EVENT_DELEGATE_OPERATOR = 4
EVENT_DELEGATE_PROFILED_OPERATOR = 8
_OP_EVENTS = (EVENT_OPERATOR, EVENT_DELEGATE_OPERATOR, EVENT_DELEGATE_PROFILED_OPERATOR)

LIBRARY_ENV = "QUANTLAB_LITERT_LIB"
"""A folder holding the LiteRT C library, or its path (default: the ai-edge-litert package)."""

LIBRARY_NAMES = {"linux": "libLiteRt.so", "darwin": "libLiteRt.dylib"}
"""The LiteRT C library's file name in the ai-edge-litert wheel, by ``sys.platform``."""

_P = C.c_void_p


class ProfileUnavailable(RuntimeError):
    """The per-op profiler cannot run here (version mismatch, C API error)."""


class _Mem(C.Structure):
    _fields_ = [("total", C.c_size_t), ("in_use", C.c_size_t), ("private", C.c_size_t)]


class _Event(C.Structure):
    """ProfiledEventData (litert/c/litert_profiler_event.h) as in ai-edge-litert 2.3.0."""

    _fields_ = [
        ("tag", C.c_char_p),
        ("type", C.c_int),
        ("start_us", C.c_uint64),
        ("elapsed_us", C.c_uint64),
        ("begin_mem", _Mem),
        ("end_mem", _Mem),
        ("md1", C.c_uint64),
        ("md2", C.c_uint64),
        ("source", C.c_int),
    ]


@dataclass(frozen=True)
class ProfiledOp:
    """One operator of the profile in execution order (times averaged over the profiled runs)."""

    index: int
    kernel: str
    event_type: int
    node_index: int | None  # builtin kernels only: the node's index in its subgraph
    avg_ms: float
    subgraph: int = 0  # 0: the model's main subgraph; else one that control flow ran
    untimed: bool = False  # a delegate kernel that reported 0 µs in every profiled run


@dataclass(frozen=True)
class Profile:
    """What the profiler measured: ops in execution order, the mean whole-model Invoke time,
    and what the op rows cannot cover (:func:`account_events`)."""

    ops: tuple[ProfiledOp, ...]
    invoke_ms: float
    runs: int
    accounting: dict[str, Any] = field(default_factory=dict)


def find_library(where: str, platform: str | None = None) -> str:
    """The LiteRT C library's path in folder ``where`` (or ``where`` itself when it is a file).

    Raises :class:`ProfileUnavailable` with the reason when there is none for ``platform``
    (default: this one).
    """
    if os.path.isfile(where):
        return where
    platform = platform or sys.platform
    name = LIBRARY_NAMES.get("linux" if platform.startswith("linux") else platform)
    if name is None:
        raise ProfileUnavailable(
            f"no LiteRT C library known for platform {platform!r} "
            f"(known: {', '.join(sorted(LIBRARY_NAMES))})"
        )
    path = os.path.join(where, name)
    if not os.path.isfile(path):
        raise ProfileUnavailable(f"LiteRT C library {name} not found in {where}")
    return path


def _lib() -> tuple[C.CDLL, C.CDLL]:
    import ai_edge_litert

    version = getattr(ai_edge_litert, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("ai-edge-litert")
    if version not in VERIFIED_VERSIONS:
        raise ProfileUnavailable(
            f"per-op profiler verified only with ai-edge-litert {', '.join(VERIFIED_VERSIONS)}; "
            f"installed {version} (C API struct layout may differ)"
        )
    if C.sizeof(_Event) != EVENT_STRUCT_SIZE:
        raise ProfileUnavailable(
            f"ProfiledEventData is {C.sizeof(_Event)} bytes, expected {EVENT_STRUCT_SIZE}"
        )
    path = find_library(os.environ.get(LIBRARY_ENV) or os.path.dirname(ai_edge_litert.__file__))
    try:
        lib = C.CDLL(path)
        libc = C.CDLL(None)
    except OSError as exc:
        raise ProfileUnavailable(f"cannot load the LiteRT C library {path}: {exc}") from None
    libc.strdup.restype = C.c_void_p
    libc.strdup.argtypes = [C.c_char_p]
    libc.free.argtypes = [C.c_void_p]
    return lib, libc


class _CompiledModel:
    """A LiteRT compiled model on CPU with profiling, its buffers and a run() call."""

    def __init__(
        self,
        path: str,
        threads: int,
        kernel_mode: str | None,
        seed: int = 0,
        profiling: bool = True,
    ) -> None:
        import numpy as np

        self.lib, self.libc = _lib()
        self.env, self.model, self.opts, self.cm = _P(), _P(), _P(), _P()
        self.bufs: list[_P] = []
        L = self.lib
        self._ok(L.LiteRtCreateEnvironment(0, None, C.byref(self.env)), "create environment")
        self._ok(
            L.LiteRtCreateModelFromFile(self.env, path.encode(), C.byref(self.model)), "load model"
        )
        self._ok(L.LiteRtCreateOptions(C.byref(self.opts)), "create options")
        self._ok(L.LiteRtSetOptionsHardwareAccelerators(self.opts, 1), "select CPU")
        if profiling:
            self._opaque(b"runtime_options_string", b"enable_profiling = true\n")
        cpu = f"num_threads = {threads}\n" + (
            f'kernel_mode = "{kernel_mode}"\n' if kernel_mode else ""
        )
        self._opaque(b"xnnpack", cpu.encode())
        self._ok(
            L.LiteRtCreateCompiledModel(self.env, self.model, self.opts, C.byref(self.cm)),
            "compile model",
        )
        sig = _P()
        self._ok(L.LiteRtGetModelSignature(self.model, C.c_size_t(0), C.byref(sig)), "signature")
        rng = np.random.default_rng(seed)
        ins = self._buffers(sig, "Input", rng)
        outs = self._buffers(sig, "Output", rng)
        self.n_in, self.n_out = len(ins), len(outs)
        self.ins, self.outs = (_P * len(ins))(*ins), (_P * len(outs))(*outs)

    @staticmethod
    def _ok(status: int, what: str) -> None:
        if status:
            raise ProfileUnavailable(f"LiteRT C API failed to {what} (LiteRtStatus {status})")

    def _opaque(self, ident: bytes, toml: bytes) -> None:
        o = _P()
        payload = _P(self.libc.strdup(toml))  # the runtime frees it with free()
        self._ok(
            self.lib.LiteRtCreateOpaqueOptions(
                ident, payload, C.cast(self.libc.free, _P), C.byref(o)
            ),
            f"create {ident.decode()} options",
        )
        self._ok(self.lib.LiteRtAddOpaqueOptions(self.opts, o), f"add {ident.decode()} options")

    def _buffers(self, sig: _P, kind: str, rng: Any) -> list[_P]:
        import numpy as np

        L = self.lib
        n = C.c_size_t()
        self._ok(getattr(L, f"LiteRtGetNumSignature{kind}s")(sig, C.byref(n)), f"count {kind}s")
        out: list[_P] = []
        for i in range(n.value):
            t, req, b, addr, size = _P(), _P(), _P(), _P(), C.c_size_t()
            tt = (C.c_int32 * 18)()  # LiteRtRankedTensorType: element type, layout (rank + dims …)
            self._ok(
                getattr(L, f"LiteRtGetSignature{kind}TensorByIndex")(
                    sig, C.c_size_t(i), C.byref(t)
                ),
                "tensor",
            )
            self._ok(L.LiteRtGetRankedTensorType(t, tt), "tensor type")
            for d in range(tt[1] & 0x7F):
                tt[2 + d] = max(tt[2 + d], 1)  # dynamic dims (-1) -> 1
            req_fn = getattr(L, f"LiteRtGetCompiledModel{kind}BufferRequirements")
            self._ok(
                req_fn(self.cm, C.c_size_t(0), C.c_size_t(i), C.byref(req)), "buffer requirements"
            )
            self._ok(
                L.LiteRtCreateManagedTensorBufferFromRequirements(self.env, tt, req, C.byref(b)),
                "buffer",
            )
            self.bufs.append(b)
            if kind == "Input":
                self._ok(L.LiteRtLockTensorBuffer(b, C.byref(addr), 1), "lock buffer")
                self._ok(L.LiteRtGetTensorBufferPackedSize(b, C.byref(size)), "buffer size")
                dst = np.ctypeslib.as_array((C.c_uint8 * size.value).from_address(addr.value or 0))
                if tt[0] == 1:  # float32
                    dst[:] = rng.uniform(-1, 1, size.value // 4).astype(np.float32).view(np.uint8)
                else:
                    dst[:] = rng.integers(0, 256, size.value, dtype=np.uint8)
                self._ok(L.LiteRtUnlockTensorBuffer(b), "unlock buffer")
            out.append(b)
        return out

    def run(self) -> None:
        self._ok(
            self.lib.LiteRtRunCompiledModel(
                self.cm,
                C.c_size_t(0),
                C.c_size_t(self.n_in),
                self.ins,
                C.c_size_t(self.n_out),
                self.outs,
            ),
            "run",
        )

    def profiler(self) -> _P:
        prof = _P()  # owned by the compiled model: never destroyed here
        self._ok(self.lib.LiteRtCompiledModelGetProfiler(self.cm, C.byref(prof)), "get profiler")
        return prof

    def close(self) -> None:
        L = self.lib
        for b in self.bufs:
            L.LiteRtDestroyTensorBuffer(b)
        self.bufs = []
        for name, handle in (
            ("CompiledModel", self.cm),
            ("Options", self.opts),
            ("Model", self.model),
            ("Environment", self.env),
        ):
            if handle.value:
                getattr(L, f"LiteRtDestroy{name}")(handle)
                handle.value = None


def profile_model(
    path: str,
    threads: int = 1,
    builtin_kernels: bool = False,
    warmup: int = 5,
    runs: int = 20,
    min_time_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> Profile:
    """Profile ``path`` on CPU: XNNPACK kernels, or TFLite builtin kernels when ``builtin_kernels``.

    Raises :class:`ProfileUnavailable` when the profiler cannot run.
    """
    cm = _CompiledModel(path, threads, "builtin" if builtin_kernels else None)
    try:
        for _ in range(warmup):
            cm.run()
        prof = cm.profiler()
        L = cm.lib
        cm._ok(L.LiteRtResetProfiler(prof), "reset profiler")
        cm._ok(L.LiteRtStartProfiler(prof), "start profiler")
        t0 = clock()
        done = 0
        while done < runs or clock() - t0 < min_time_s:
            cm.run()
            done += 1
        cm._ok(L.LiteRtStopProfiler(prof), "stop profiler")
        n = C.c_int()
        cm._ok(L.LiteRtGetNumProfilerEvents(prof, C.byref(n)), "count profiler events")
        events = (_Event * n.value)()
        cm._ok(L.LiteRtGetProfilerEvents(prof, n.value, events), "read profiler events")
        return _summarise(events)
    finally:
        cm.close()


def run_times_ms(
    path: str,
    threads: int = 1,
    builtin_kernels: bool = False,
    warmup: int = 10,
    runs: int = 100,
    profiling: bool = False,
) -> list[float]:
    """Wall time of each ``Run`` of the compiled model, with or without the profiler recording.

    Used to measure what profiling costs (benchmarks/sim_overhead.py).
    """
    cm = _CompiledModel(path, threads, "builtin" if builtin_kernels else None, profiling=profiling)
    try:
        for _ in range(warmup):
            cm.run()
        if profiling:
            prof = cm.profiler()
            cm._ok(cm.lib.LiteRtStartProfiler(prof), "start profiler")
        times = []
        for _ in range(runs):
            t = time.perf_counter_ns()
            cm.run()
            times.append((time.perf_counter_ns() - t) / 1e6)
        return times
    finally:
        cm.close()


def _summarise(events: Any) -> Profile:
    evs = list(events)
    runs: list[dict[str, Any]] = []
    gaps: list[int] = []  # µs from a non-op event's start to its first child's start
    syncs: list[int] = []  # "LiteRT::Run[Buffer sync]" events (CPU buffers: no work inside)
    for k, e in enumerate(evs):
        tag = (e.tag or b"?").decode(errors="replace")
        opened = e.type not in _OP_EVENTS and e.start_us > 0  # BeginEvent: memory read
        if opened and k + 1 < len(evs):
            nxt = evs[k + 1]
            if e.start_us <= nxt.start_us <= e.start_us + e.elapsed_us:
                gaps.append(int(nxt.start_us - e.start_us))
        if e.type == EVENT_DEFAULT and tag == "LiteRT::Run[Buffer sync]":
            syncs.append(int(e.elapsed_us))
        if e.type == EVENT_DEFAULT and tag == "Invoke" and int(e.md2) == 0:
            runs.append({"start": int(e.start_us), "end": int(e.start_us + e.elapsed_us),
                         "us": int(e.elapsed_us), "ops": [], "opened": 0})
            continue
        if not runs:
            continue
        run = runs[-1]
        if e.type in _OP_EVENTS:
            if e.start_us == 0 or run["start"] <= e.start_us <= run["end"]:
                run["ops"].append((tag, int(e.type), int(e.md1), int(e.md2), int(e.elapsed_us),
                                   int(e.start_us)))
        elif opened and run["start"] < e.start_us <= run["end"]:
            run["opened"] += 1  # a subgraph's Invoke, its AllocateTensors, …
    if not runs:
        raise ProfileUnavailable("the profiler recorded no Invoke events")
    shape = [(t, ty, sg) for t, ty, _, sg, _, _ in runs[0]["ops"]]
    if any([(t, ty, sg) for t, ty, _, sg, _, _ in r["ops"]] != shape for r in runs):
        raise ProfileUnavailable("profiled runs executed different numbers of kernels")
    ops = []
    for k, (tag, etype, sg) in enumerate(shape):
        times = [r["ops"][k][4] for r in runs]
        node = runs[0]["ops"][k][2] if etype == EVENT_OPERATOR else None
        ops.append(ProfiledOp(index=k, kernel=tag, event_type=etype, node_index=node,
                              avg_ms=sum(times) / len(times) / 1e3, subgraph=sg,
                              untimed=etype != EVENT_OPERATOR and not any(times)))
    invoke_ms = sum(r["us"] for r in runs) / len(runs) / 1e3
    return Profile(ops=tuple(ops), invoke_ms=invoke_ms, runs=len(runs),
                   accounting=account_events(ops, runs, gaps, syncs))


def account_events(ops: list[ProfiledOp], runs: list[dict[str, Any]], gaps: list[int],
                   syncs: list[int]) -> dict[str, Any]:
    """What the op rows of one Invoke cannot cover, measured in the same profile.

    * ``profiler_overhead_ms``: the profiler's own time inside one Invoke. Each non-op
      event reads the process's memory usage when it opens (inside its span) and when it
      closes: the Invoke itself once, every event opened inside it (a subgraph's Invoke,
      its AllocateTensors) twice. One read costs ``event_cost_ms``: the median gap
      between a non-op event's start and its first child's, else the median
      ``LiteRT::Run[Buffer sync]`` event (no work of its own on CPU buffers).
    * ``between_ops_ms``: time between consecutive builtin op events of a subgraph (the
      interpreter's loop and the profiler's bookkeeping between ops); kernels of a
      delegate carry no timestamps, so the time next to them is not counted.
    * ``untimed_kernels``: delegate kernels that reported 0 µs in every run (XNNPACK
      reports whole microseconds).
    """
    import statistics

    cost_us: float | None = None
    source = None
    if gaps:
        cost_us, source = statistics.median(gaps), "gap before the first event inside an Invoke"
    elif syncs:
        cost_us, source = statistics.median(syncs), "LiteRT::Run[Buffer sync] events"
    reads = 1 + 2 * sum(r["opened"] for r in runs) / len(runs)
    delegate = [op for op in ops if op.event_type != EVENT_OPERATOR]
    between = 0
    for r in runs:
        for a, b in zip(r["ops"], r["ops"][1:], strict=False):
            if a[1] == b[1] == EVENT_OPERATOR and a[3] == b[3] and a[5] and b[5]:
                between += max(0, b[5] - a[5] - a[4])
    return {
        "event_cost_ms": cost_us / 1e3 if cost_us is not None else None,
        "event_cost_source": source,
        "memory_reads_per_invoke": reads,
        "profiler_overhead_ms": cost_us * reads / 1e3 if cost_us is not None else None,
        "between_ops_ms": between / len(runs) / 1e3,
        "untimed_kernels": sum(op.untimed for op in delegate),
        "delegate_kernels": len(delegate),
        "subgraphs": sorted({op.subgraph for op in ops} | {0}),
    }
