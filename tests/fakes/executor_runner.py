"""The loopback phone's stand-in for ExecuTorch's ``executor_runner``: it EXECUTES the
``.pte`` with this host's ExecuTorch runtime (``executorch.extension.pybindings``), ETDump on,
and prints what the real runner prints, in the posix platform layer's log format
(``examples/portable/executor_runner/executor_runner.cpp``, ExecuTorch 1.3 and later):
``Model loaded in … ms.``, one ``Iteration i of n: … ms`` per execution, ``Model executed
successfully n time(s) in … ms.``, then writes the ETDump to ``--etdump_path`` (default
``model.etdump`` in its working folder) and the outputs to ``--output_file``-``i``.bin.
Inputs are all ones, or the raw ``--inputs`` files. It says on stdout what it is
(:data:`STAND_IN_NOTE`). Unknown flags fail as gflags fails them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

FLAGS = ("model_path", "data_path", "inputs", "output_file", "server_mode", "print_output",
         "num_executions", "method_name", "etdump_path", "cpu_threads")
"""executor_runner's flags (v1.3 … main), the ones gflags accepts."""
STAND_IN_NOTE = ("stand-in executor_runner: the .pte ran on this host with ExecuTorch's runtime "
                 "(executorch {version}), not on a phone\n")
_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 6: "float32",
           7: "float64", 11: "bool"}
_LOCK = threading.Lock()  # one runtime in this process: launches take turns
_START = time.monotonic_ns()


def _log(level: str, line: int, message: str) -> str:
    """A line as ExecuTorch's posix ``et_pal_emit_log_message`` prints it."""
    us = (time.monotonic_ns() - _START) // 1000
    s, us = divmod(us, 1_000_000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{level} {h:02d}:{m:02d}:{s:02d}.{us:06d} executorch:executor_runner.cpp:{line}] " \
           f"{message}\n"


def run(args: list[str], host_path: Callable[[str], Path], cwd: str
        ) -> tuple[bytes, bytes, int]:
    """One launch: (stdout, stderr, exit code)."""
    flags: dict[str, str] = {}
    for arg in args:
        name, _, value = arg.lstrip("-").partition("=")
        if name not in FLAGS:
            return b"", f"ERROR: unknown command line flag '{name}'\n".encode(), 1
        flags[name] = value

    def device(path: str) -> Path:
        return host_path(path if path.startswith("/") else f"{cwd.rstrip('/')}/{path}")

    model = device(flags.get("model_path", "model.pte"))
    if not model.is_file():
        err = _log("F", 462, "In function main(), assert failed (file_loader.ok()): "
                   "FileDataLoader::from() failed: 0x22")
        return b"", err.encode(), 134
    import numpy as np
    import torch
    from executorch.extension.pybindings import portable_lib

    err = ""
    with _LOCK:
        threads = int(flags.get("cpu_threads", "-1"))
        if threads > 0:
            portable_lib._unsafe_reset_threadpool(threads)
        t0 = time.perf_counter_ns()
        try:  # the bindings load lazily: the method's metadata is where a bad file shows
            module = portable_lib._load_for_executorch(str(model), enable_etdump=True,
                                                       debug_buffer_size=0)
            meta = module.method_meta("forward")
        except RuntimeError:  # the runner's own words for a file it cannot parse
            path = flags.get("model_path", "model.pte")
            return b"", _log("E", 473, f"Failed to parse model file {path}").encode(), 1
        err += _log("I", 476, f"Model file {flags.get('model_path', 'model.pte')} is loaded.")
        err += _log("I", 626, f"Model loaded in {(time.perf_counter_ns() - t0) / 1e6:f} ms.")
        files = [f for f in flags.get("inputs", "").split(",") if f]
        inputs = []
        for i in range(meta.num_inputs()):
            tm = meta.input_tensor_meta(i)
            dtype = _DTYPES.get(int(tm.dtype()), "float32")
            shape = tuple(int(d) for d in tm.sizes())
            arr = (np.frombuffer(device(files[i]).read_bytes(), dtype=dtype).reshape(shape)
                   if i < len(files) else np.ones(shape, dtype=dtype))
            inputs.append(torch.from_numpy(arr.copy()))
        n, total = int(flags.get("num_executions", "1")), 0.0
        outputs: list[object] = []
        for i in range(n):
            t0 = time.perf_counter_ns()
            outputs = list(module.forward(inputs))
            ms = (time.perf_counter_ns() - t0) / 1e6
            total += ms
            err += _log("I", 781, f"Iteration {i + 1} of {n}: {ms:f} ms")
        err += _log("I", 791, f"Model executed successfully {n} time(s) in {total:f} ms.")
        err += _log("I", 798, f"{len(outputs)} outputs: ")
        if flags.get("output_file"):
            for i, out in enumerate(outputs):
                if isinstance(out, torch.Tensor):
                    device(f"{flags['output_file']}-{i}.bin").write_bytes(
                        out.numpy().tobytes())
        module.write_etdump_result_to_file(str(device(flags.get("etdump_path",
                                                                 "model.etdump"))))
    out = STAND_IN_NOTE.format(version=version("executorch"))
    return out.encode(), err.encode(), 0
