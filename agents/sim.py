"""The simulator agent: the host CPU through LiteRT, each repeat in a fresh worker process.

The controller never loads the model itself: :mod:`quantlab.agents.sim_worker` does, in a
subprocess per process-level repeat (and one more for the per-op profile), so a
model that crashes native code fails its job and never this process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from quantlab.agents.base import Progress
from quantlab.agents.worker_results import (
    measured_result,
    pooled_rapl_energy,
    rapl_unavailable_reason,
)
from quantlab.harness import processes
from quantlab.harness.records import DeviceInfo, Job, OpRecord, RawOutput, RawResult

SIM_ID = "sim"
MAX_THREADS_FACTOR = 2
"""Threads beyond 2× the logical cores only measure oversubscription, so they are refused."""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _litert_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return None


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def reference_model(path: str) -> str | None:
    """The float model a variant's numerics are compared with: the ``fp32`` variant of the
    variants folder the file lies in (``manifest.json``); None (the file itself) otherwise."""
    folder = Path(path).resolve().parent
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    for v in manifest.get("variants", []):
        if v.get("scheme") == "fp32" and v.get("status") == "ok" and v.get("file") \
                and str(v["file"]).endswith(".tflite") and (folder / v["file"]).is_file():
            return str(folder / v["file"])
    return None


class SimAgent:
    """Runs ``.tflite`` jobs on the host CPU through LiteRT (XNNPACK or builtin kernels)."""

    kind = "sim"
    delegates: tuple[str, ...] = ("xnnpack", "cpu")

    def __init__(self, rapl_root: str | None = None, python: str | None = None,
                 rapl_idle_s: float | None = None) -> None:
        self.rapl_root = rapl_root
        self.rapl_idle_s = rapl_idle_s  # idle-baseline window (None: the worker's default)
        self.python = python or sys.executable

    # ------------------------------------------------------------------ discovery

    def discover(self) -> list[DeviceInfo]:
        """The one simulator device: this host's CPU."""
        device = DeviceInfo(
            id=SIM_ID,
            platform="sim",
            name=f"host CPU ({_cpu_model()})",
            cores=os.cpu_count(),
            abi=platform.machine(),
            os_version=f"{platform.system()} {platform.release()}",
            host=platform.node(),
            delegates=self.delegates,
            extra={"litert": _litert_version()},
        )
        return [dataclasses.replace(device, health=self.health(device))]

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """CPU temperature (°C) where psutil can read it."""
        out: dict[str, Any] = {}
        try:
            import psutil

            temps: dict[str, Any] = getattr(psutil, "sensors_temperatures", lambda: {})()
        except Exception:
            return out
        for key in ("coretemp", "k10temp", "cpu_thermal", "acpitz"):
            if temps.get(key):
                out["temperature_c"] = max(t.current for t in temps[key])
                break
        return out

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """Only ``.tflite`` models, delegates xnnpack/cpu, 1 ≤ threads ≤ 2 × logical cores."""
        if job.model.format in ("mlpackage", "mlmodel"):
            return False, "Core ML variant: not an iOS device"
        if job.model.format != "tflite":
            return False, f"{job.model.format} models do not run on the simulator"
        if job.delegate not in self.delegates:
            return (
                False,
                f"delegate {job.delegate!r} is not available on the simulator (xnnpack, cpu)",
            )
        cores = os.cpu_count() or 1
        if not 1 <= job.threads <= MAX_THREADS_FACTOR * cores:
            return False, (
                f"{job.threads} threads: the host has {cores} logical cores; more than "
                f"{MAX_THREADS_FACTOR}× that only measures oversubscription"
            )
        return True, ""

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """The host CPU never goes away."""
        return True

    # ------------------------------------------------------------------ running

    def _worker(
        self, job: Job, mode: str, repeat: int, tmp: Path, deadline: float,
        raw: list[RawOutput] | None = None,
    ) -> dict[str, Any]:
        """Run one worker process; returns its result dict or one with ``error`` set.

        The worker's output (``<name>.log``: stdout and stderr, one stream) and its result
        JSON (``<name>.json``) go to ``raw``, also when it failed.
        """
        job_file, result_file = tmp / f"{mode}{repeat}.json", tmp / f"{mode}{repeat}.result.json"
        name = f"{mode}-{repeat + 1}" if mode == "measure" else mode
        try:
            return self._run_worker(job, mode, repeat, tmp, deadline, job_file, result_file)
        finally:
            if raw is not None:
                log = tmp / f"{mode}{repeat}.stderr"
                if log.is_file() and log.stat().st_size:
                    raw.append(RawOutput.capture(f"{name}.log", "text/plain", log.read_bytes()))
                if result_file.is_file():
                    raw.append(RawOutput.capture(f"{name}.json", "application/json",
                                                 result_file.read_bytes()))

    def _run_worker(self, job: Job, mode: str, repeat: int, tmp: Path, deadline: float,
                    job_file: Path, result_file: Path) -> dict[str, Any]:
        payload = {
            "mode": mode,
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
            "seed": repeat,
            "reference_model": reference_model(job.model.path),
            "outputs_path": str(tmp / "numerics-outputs.npz"),
            "inputs_dir": str(tmp / "numerics-inputs"),
            "rapl_root": self.rapl_root,
            **({"rapl_idle_s": self.rapl_idle_s} if self.rapl_idle_s is not None else {}),
        }
        job_file.write_text(json.dumps(payload))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        stderr_file = tmp / f"{mode}{repeat}.stderr"
        with stderr_file.open("wb") as err, processes.start(
            [self.python, "-m", "quantlab.agents.sim_worker", str(job_file), str(result_file)],
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
                self._kill(proc)
                return {"error": f"timed out after {job.settings.timeout_s:g}s", "timeout": True}
            except BaseException:
                self._kill(proc)
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

    def prepare_numerics(self, job: Job, tmp: Path, deadline: float,
                         raw: list[RawOutput] | None = None) -> dict[str, Any]:
        """The host half of a device's numerics check, in a worker process (LiteRT never
        loads in the controller): ``tmp/numerics-inputs/input<i>.bin`` (the fixed inputs
        as raw tensor bytes), ``tmp/numerics-outputs.npz`` (the inputs and the float
        reference's outputs) and, under ``prepared``, the model's input and output tensors.
        A failure comes back as ``{"error": reason}``."""
        return self._worker(job, "numerics-prepare", 0, tmp, deadline, raw)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Measure ``job``: ``settings.repeats`` worker processes, then the op profile if asked."""
        s = job.settings
        deadline = time.monotonic() + s.timeout_s
        repeats = max(int(s.repeats), 1)
        check_numerics = s.numerics or s.profile_ops  # a profiled run also checks numerics
        steps = repeats + (1 if s.profile_ops else 0) + (1 if check_numerics else 0)
        runs: list[dict[str, Any]] = []
        warnings: list[str] = []
        pids: list[int] = []
        raw_outputs: list[RawOutput] = []  # each worker's output and result JSON, kept raw
        runner: dict[str, Any] = {
            "name": "litert",
            "version": _litert_version(),
            "delegate": job.delegate,
            "threads": job.threads,
            "python": platform.python_version(),
            "pids": pids,
        }
        with tempfile.TemporaryDirectory(prefix="quantlab-sim-") as tmp:
            for r in range(repeats):
                progress(f"repeat {r + 1}/{repeats}", r / steps)
                out = self._worker(job, "measure", r, Path(tmp), deadline, raw_outputs)
                if out.get("pid"):
                    pids.append(out["pid"])
                if out.get("error"):
                    return RawResult.failure(job.job_id, out["error"], runner=runner,
                                             raw_outputs=tuple(raw_outputs))
                runs.append(out)
            ops: tuple[OpRecord, ...] = ()
            ops_model_ms = None
            if s.profile_ops:
                progress("profiling ops", repeats / steps)
                prof = self._worker(job, "profile", 0, Path(tmp), deadline, raw_outputs)
                if prof.get("pid"):
                    runner["profile_pid"] = prof["pid"]
                if prof.get("error"):
                    warnings.append(f"per-op profile unavailable: {prof['error']}")
                else:
                    ops = tuple(OpRecord(**row) for row in prof["ops"])
                    ops_model_ms = prof["ops_model_ms"]
                    if prof.get("ops_note"):
                        warnings.append(f"per-op profile: {prof['ops_note']}")
            numerics: dict[str, Any] = {}
            if check_numerics:
                progress("checking numerics", (steps - 1) / steps)
                num = self._worker(job, "numerics", 0, Path(tmp), deadline, raw_outputs)
                numerics = ({"error": num["error"]} if num.get("error")
                            else dict(num["numerics"]))
                npz = Path(tmp) / "numerics-outputs.npz"
                if npz.is_file():
                    raw_outputs.append(RawOutput.capture(
                        "numerics-outputs.npz", "application/x-npz", npz.read_bytes()))
            progress("done", 1.0)
        energy = pooled_rapl_energy(runs)
        return measured_result(
            job, runs,
            ops=ops,
            ops_model_ms=ops_model_ms,
            energy=energy,
            energy_unavailable_reason=None if energy or not s.energy else (
                rapl_unavailable_reason(runs) or "RAPL energy not measured"),
            runner=runner,
            warnings=tuple(warnings),
            raw_outputs=tuple(raw_outputs),
            placement=dict(runs[0].get("placement") or {}),
            numerics=numerics,
        )
