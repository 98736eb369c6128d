"""Starting the LiteRT runner (:mod:`quantlab.agents.litert.runner`) on this host: one fresh
process per mode and repeat, registered with :mod:`quantlab.harness.processes` so that Ctrl-C
in the dispatcher ends it, and killed (its whole process group) at the job's deadline.

The controller never loads a model itself: a model that crashes native code ends the runner's
process, and the job fails with where it crashed (the runner's phase file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from quantlab.harness import processes
from quantlab.harness.records import Job, RawOutput

RUNNER_MODULE = f"{__package__}.runner"
"""What ``python -m`` runs: the runner package."""


def litert_version() -> str | None:
    """The installed ai-edge-litert's version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return None


def job_payload(job: Job, tmp: Path, reference: str | None, *,
                rapl_root: str | None = None, rapl_idle_s: float | None = None
                ) -> dict[str, Any]:
    """The runner's job JSON for ``job`` (every mode and repeat adds its own ``mode`` and
    ``seed``): absolute paths, the float ``reference`` model, where numerics outputs and
    input files go under ``tmp``, and the RAPL settings."""
    return {
        "model": str(Path(job.model.path).resolve()),
        "delegate": job.delegate,
        "threads": job.threads,
        "settings": dataclasses.asdict(
            dataclasses.replace(
                job.settings,
                inputs=str(Path(job.settings.inputs).resolve())
                if job.settings.inputs
                else None,
            )
        ),
        "reference_model": reference,
        "outputs_path": str(tmp / "numerics-outputs.npz"),
        "inputs_dir": str(tmp / "numerics-inputs"),
        "rapl_root": rapl_root,
        **({"rapl_idle_s": rapl_idle_s} if rapl_idle_s is not None else {}),
    }


def run_runner(payload: dict[str, Any], mode: str, repeat: int, tmp: Path, deadline: float,
               timeout_s: float, *, python: str | None = None,
               raw: list[RawOutput] | None = None, module: str = RUNNER_MODULE
               ) -> dict[str, Any]:
    """Run one runner process; returns its result dict or one with ``error`` set (a crash,
    a non-zero exit, ``timeout_s`` passed at ``deadline``). ``module``: the runner that
    ``python -m`` starts (another runtime's runner with the same job and result JSON, e.g.
    ExecuTorch's).

    The runner's output (``<name>.log``: stdout and stderr, one stream) and its result JSON
    (``<name>.json``) go to ``raw``, also when it failed.
    """
    result_file = tmp / f"{mode}{repeat}.result.json"
    name = f"{mode}-{repeat + 1}" if mode == "measure" else mode
    try:
        return _run(payload, mode, repeat, tmp, deadline, timeout_s, python or sys.executable,
                    module)
    finally:
        if raw is not None:
            log = tmp / f"{mode}{repeat}.stderr"
            if log.is_file() and log.stat().st_size:
                raw.append(RawOutput.capture(f"{name}.log", "text/plain", log.read_bytes()))
            if result_file.is_file():
                raw.append(RawOutput.capture(f"{name}.json", "application/json",
                                             result_file.read_bytes()))


def _run(payload: dict[str, Any], mode: str, repeat: int, tmp: Path, deadline: float,
         timeout_s: float, python: str, module: str) -> dict[str, Any]:
    job_file, result_file = tmp / f"{mode}{repeat}.json", tmp / f"{mode}{repeat}.result.json"
    job_file.write_text(json.dumps({"mode": mode, **payload, "seed": repeat}))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    root = _package_root()
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    stderr_file = tmp / f"{mode}{repeat}.stderr"
    with stderr_file.open("wb") as err, processes.start(
        [python, "-m", module, str(job_file), str(result_file)],
        stdin=subprocess.DEVNULL,
        stdout=err,
        stderr=err,
        cwd=root,
        env=env,
        start_new_session=True,
    ) as proc:  # quantlab's own: Ctrl-C in the dispatcher ends it (harness.processes)
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            _kill(proc)
            return {"error": f"timed out after {timeout_s:g}s", "timeout": True}
        except BaseException:
            _kill(proc)
            raise
    phase_file = result_file.with_suffix(".phase")
    phase = phase_file.read_text() if phase_file.exists() else "starting"
    if proc.returncode < 0:
        return {"error": f"worker crashed with {_signal_name(proc.returncode)} while {phase}"}
    if proc.returncode != 0 or not result_file.exists():
        tail = stderr_file.read_text(errors="replace").strip().splitlines()[-1:] or [
            "no output"
        ]
        return {"error": f"worker exited with code {proc.returncode} while {phase}: {tail[0]}"}
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def _package_root() -> str:
    """The folder that holds the ``quantlab`` package (a checkout or site-packages): this
    module is ``quantlab/agents/litert/launch.py`` there (the path as imported, not resolved:
    in a checkout ``quantlab/agents`` links to the top-level ``agents/``)."""
    return str(Path(__file__).absolute().parents[3])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"
