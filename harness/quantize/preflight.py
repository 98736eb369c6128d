"""Load each .tflite once in a separate process before evaluation runs it in this one.

Evaluation feeds thousands of samples through LiteRT in the controller's own process
(:mod:`quantlab.harness.quantize.tflite_runner`), which is fast but puts the controller at the mercy
of native code: a corrupt variant whose weights tensor is marked absent crashes LiteRT's
kernels with SIGSEGV, and ``quantlab evaluate`` died with it, reporting nothing. So every
file is first identified (:func:`quantlab.harness.models.read_tflite`), then loaded, allocated and
invoked once on zeros in a child process, and a file that fails any of this gets a one-line
reason and never loads in the controller.

One child checks every file in turn and a new one goes on past a file that crashed it. On
Linux the child is a fork of this process (LiteRT already imported, so a folder of variants
costs one fork and a few milliseconds per file: evaluation keeps its throughput; the child
touches nothing but LiteRT and a pipe, then leaves with ``os._exit``). Elsewhere (macOS
frameworks do not survive a fork without exec) it is
``python -m quantlab.harness.quantize.preflight``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TIMEOUT_S = 300.0
"""How long one step (loading, allocating, one invoke) may take before it counts as hung."""
USE_FORK = sys.platform.startswith("linux")


def preflight(paths: Sequence[str], timeout_s: float = TIMEOUT_S) -> dict[str, str]:
    """Why each file that cannot be evaluated safely cannot (path → one line); files absent
    from the answer were identified, then loaded, allocated and run once in a child."""
    from quantlab.harness.errors import ModelError
    from quantlab.harness.models import read_tflite

    reasons: dict[str, str] = {}
    todo: list[str] = []
    for path in dict.fromkeys(paths):
        try:
            read_tflite(Path(path))
        except (ModelError, OSError) as exc:
            reasons[path] = (exc.message.removeprefix(f"{path}: ") if isinstance(exc, ModelError)
                             else f"cannot read it ({exc.strerror or exc})")
            continue
        todo.append(path)
    while todo:  # one child checks them all; a new one goes on past a file it ended on
        events, code = (_forked if USE_FORK else _spawned)(todo, timeout_s)
        rest: list[str] = []
        for k, path in enumerate(todo):
            mine = [e for e in events if e["path"] == path]
            why = _verdict(mine, code, timeout_s)
            if why:
                reasons[path] = why
            if not any("ok" in e for e in mine):  # the child ended on this file
                rest = todo[k + 1:]
                break
        todo = rest
    return reasons


def _check(path: str, note: Callable[[str], None]) -> None:
    """Load, allocate and invoke ``path`` once on zeros (in the child)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    note("loading it")
    interp = Interpreter(model_path=path)
    note("allocating its tensors")
    interp.allocate_tensors()
    note("reading its tensors")
    interp.get_tensor_details()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    note("running it once on zeros")
    interp.invoke()
    for d in interp.get_output_details():
        interp.get_tensor(d["index"])


def _outcome(path: str, check: Callable[[str, Callable[[str], None]], None],
             write: Callable[[dict[str, object]], None]) -> None:
    """Run ``check`` on ``path``, writing each phase before it and the outcome after."""
    try:
        check(path, lambda phase: write({"path": path, "phase": phase}))
    except Exception as exc:
        text = " ".join(str(exc).split())[:240] or type(exc).__name__
        write({"path": path, "ok": False, "error": f"LiteRT cannot run it ({text})"})
    else:
        write({"path": path, "ok": True})


def _verdict(events: list[dict[str, object]], code: int | None, timeout_s: float) -> str | None:
    """The reason from a child's events and exit (None: it ran), or the crash and its phase."""
    ends = [e for e in events if "ok" in e]
    if ends:
        return None if ends[-1]["ok"] else str(ends[-1]["error"])
    phases = [str(e["phase"]) for e in events if "phase" in e]
    phase = phases[-1] if phases else "starting"
    if code is None:
        return f"LiteRT did not finish within {timeout_s:g}s while {phase}"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"LiteRT crashed with {name} while {phase}"
    return f"LiteRT stopped with exit code {code} while {phase}"


# --------------------------------------------------------------------------- fork (Linux)


def _forked(paths: list[str], timeout_s: float) -> tuple[list[dict[str, Any]], int | None]:
    """Check ``paths`` in a fork of this process: (its events, its exit code or None when
    it stayed on one step longer than ``timeout_s`` and was killed)."""
    import numpy  # noqa: F401  (imported before the fork: the child imports nothing)
    from ai_edge_litert import interpreter  # noqa: F401

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: LiteRT and the pipe, then out without running any cleanup
        try:
            os.close(read_end)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)

            def write(event: dict[str, object]) -> None:
                os.write(write_end, json.dumps(event).encode() + b"\n")

            for path in paths:
                _outcome(path, _check, write)
        finally:
            os._exit(0)
    os.close(write_end)
    data, code = b"", None
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], timeout_s)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                break
            data += chunk
    except BaseException:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_end)
    return [json.loads(line) for line in data.decode().splitlines() if line.endswith("}")], code


# --------------------------------------------------------------------------- spawn (elsewhere)


def _spawned(paths: list[str], timeout_s: float) -> tuple[list[dict[str, Any]], int | None]:
    """Check ``paths`` in ``python -m quantlab.harness.quantize.preflight``: (its events, its exit
    code or None when it stayed on one step longer than ``timeout_s`` and was killed)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="quantlab-preflight-") as tmp:
        log = Path(tmp) / "preflight.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "quantlab.harness.quantize.preflight",
                                 str(log), *paths], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
                                env=env, start_new_session=True)
        code: int | None = None
        try:
            size, since = -1, time.monotonic()
            while code is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = proc.wait(timeout=0.05)
                    break
                now = log.stat().st_size if log.exists() else 0
                if now != size:
                    size, since = now, time.monotonic()
                elif time.monotonic() - since > timeout_s:
                    _kill(proc)
                    break
        except BaseException:
            _kill(proc)
            raise
        text = log.read_text() if log.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")], code


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main(log_path: str, paths: list[str]) -> None:
    """The spawned worker: check each file in turn, logging every phase and outcome."""
    with open(log_path, "a", buffering=1) as log:

        def write(event: dict[str, object]) -> None:
            log.write(json.dumps(event) + "\n")

        for path in paths:
            _outcome(path, _check, write)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
