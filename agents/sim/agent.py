"""The simulator agent: the host CPU through LiteRT (``.tflite``) or ExecuTorch (``.pte``), each
repeat in a fresh runner process.

The controller never loads the model itself: the LiteRT runner
(:mod:`quantlab.agents.litert.runner`, started by :mod:`quantlab.agents.litert.launch`) does,
in a process per process-level repeat (and one more for the per-op profile, one for the
numerics check), so a model that crashes native code fails its job and never this process.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from quantlab.agents.base import Progress
from quantlab.agents.executorch import host as et_host
from quantlab.agents.litert.launch import job_payload, litert_version, run_runner
from quantlab.agents.litert.reference import reference_model
from quantlab.agents.litert.results import (
    measured_result,
    numerics_from,
    pooled_rapl_energy,
    rapl_unavailable_reason,
    startup_record,
    sustained_windows,
)
from quantlab.agents.outputs import OutputsFacts
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


class SimAgent:
    """Runs ``.tflite`` jobs on the host CPU through LiteRT (XNNPACK or builtin kernels) and
    ``.pte`` jobs through ExecuTorch (``et-xnnpack``: the program as lowered)."""

    kind = "sim"
    delegates: tuple[str, ...] = ("xnnpack", "cpu", *et_host.DELEGATES)
    litert_delegates = ("xnnpack", "cpu")

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
            extra={"litert": litert_version(),
                   **({"executorch": et_host.executorch_version()}
                      if et_host.installed() else {})},
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
        """``.tflite`` models on xnnpack/cpu, ``.pte`` on et-xnnpack (XNNPACK delegate calls)
        or et-portable (none), 1 ≤ threads ≤ 2 × logical
        cores."""
        if job.model.format in ("mlpackage", "mlmodel"):
            return False, "Core ML variant: not an iOS device"
        if job.model.format == "pte":
            if job.delegate not in et_host.DELEGATES:
                return False, (f"delegate {job.delegate!r} is LiteRT's: an ExecuTorch program "
                               f"runs on {', '.join(et_host.DELEGATES)}")
            refused = et_host.program_refusal(job.model.path, job.delegate)
            if refused:
                return False, refused
        elif job.model.format != "tflite":
            return False, f"{job.model.format} models do not run on the simulator"
        elif job.delegate not in self.litert_delegates:
            return (
                False,
                f"delegate {job.delegate!r} is not available to a .tflite on the simulator "
                "(xnnpack, cpu)",
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

    def outputs(self, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
        """Every sample of ``inputs`` through ``job`` in one runner process
        (:mod:`quantlab.agents.sim.outputs`; the contract: :mod:`quantlab.agents.outputs`)."""
        from quantlab.agents.sim.outputs import run_outputs

        return run_outputs(device, job, inputs, out, progress, python=self.python)

    # ------------------------------------------------------------------ running

    def _worker(self, job: Job, payload: dict[str, Any], mode: str, repeat: int, tmp: Path,
                deadline: float, raw: list[RawOutput]) -> dict[str, Any]:
        """One runner process (:func:`quantlab.agents.litert.launch.run_runner`)."""
        return run_runner(payload, mode, repeat, tmp, deadline, job.settings.timeout_s,
                          python=self.python, raw=raw)

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Measure ``job``: ``settings.repeats`` worker processes, then the op profile if asked
        (a sustained run: one process for ``sustained_s``, in windows; an ExecuTorch program:
        :meth:`_run_pte`)."""
        if job.model.format == "pte":
            return self._run_pte(job, progress)
        s = job.settings
        if s.sustained_s > 0:
            return self._run_sustained(job, progress)
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
            "runtime": "litert",
            "version": litert_version(),
            "delegate": job.delegate,
            "threads": job.threads,
            "python": platform.python_version(),
            "pids": pids,
        }
        with tempfile.TemporaryDirectory(prefix="quantlab-sim-") as tmp:
            payload = job_payload(job, Path(tmp), reference_model(job.model.path),
                                  rapl_root=self.rapl_root, rapl_idle_s=self.rapl_idle_s)
            for r in range(repeats):
                progress(f"repeat {r + 1}/{repeats}", r / steps)
                out = self._worker(job, payload, "measure", r, Path(tmp), deadline, raw_outputs)
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
                prof = self._worker(job, payload, "profile", 0, Path(tmp), deadline,
                                    raw_outputs)
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
                num = self._worker(job, payload, "numerics", 0, Path(tmp), deadline,
                                   raw_outputs)
                npz = Path(tmp) / "numerics-outputs.npz"
                numerics = numerics_from(num, npz)
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
            startup=startup_record(job, runs),
        )

    def _run_sustained(self, job: Job, progress: Progress) -> RawResult:
        """One runner process in ``sustained`` mode; its windows become
        ``RawResult.sustained``."""
        s = job.settings
        limit = s.timeout_s + s.sustained_s
        raw_outputs: list[RawOutput] = []
        runner: dict[str, Any] = {"name": "litert", "runtime": "litert",
                                  "version": litert_version(),
                                  "delegate": job.delegate, "threads": job.threads,
                                  "python": platform.python_version(), "mode": "sustained"}
        with tempfile.TemporaryDirectory(prefix="quantlab-sim-") as tmp:
            payload = job_payload(job, Path(tmp), None)
            progress(f"sustained run, {s.sustained_s:g}s", None)
            out = run_runner(payload, "sustained", 0, Path(tmp), time.monotonic() + limit,
                             limit, python=self.python, raw=raw_outputs)
        if out.get("error"):
            return RawResult.failure(job.job_id, out["error"], runner=runner,
                                     raw_outputs=tuple(raw_outputs))
        runner["pids"] = [out.get("pid")]
        progress("done", 1.0)
        return measured_result(job, [out], runner=runner, raw_outputs=tuple(raw_outputs),
                               placement=dict(out.get("placement") or {}),
                               sustained=sustained_windows(job, out),
                               startup=startup_record(job, [out]))

    def _run_pte(self, job: Job, progress: Progress) -> RawResult:
        """An ExecuTorch program: ``settings.repeats`` fresh runner processes
        (:mod:`quantlab.agents.executorch.runner`), each warmed up and timed, and one more for
        the per-op profile from ETDump when asked, and one for the numerics check
        (:meth:`_pte_numerics`); energy is not there yet, and the result says so."""
        s = job.settings
        deadline = time.monotonic() + s.timeout_s
        repeats = max(int(s.repeats), 1)
        runs: list[dict[str, Any]] = []
        pids: list[int] = []
        raw_outputs: list[RawOutput] = []
        runner: dict[str, Any] = {"name": "executorch", "runtime": "executorch",
                                  "version": et_host.executorch_version(),
                                  "delegate": job.delegate, "threads": job.threads,
                                  "python": platform.python_version(), "pids": pids}
        warnings = ["energy of an ExecuTorch program is not available on the simulator yet"
                    ] if s.energy else []
        check_numerics = s.numerics or s.profile_ops  # as for a .tflite
        steps = repeats + (1 if s.profile_ops else 0) + (1 if check_numerics else 0)
        numerics: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="quantlab-sim-") as tmp:
            payload = job_payload(job, Path(tmp), None)
            for r in range(repeats):
                progress(f"repeat {r + 1}/{repeats}", r / steps)
                out = run_runner(payload, "measure", r, Path(tmp), deadline, s.timeout_s,
                                 python=self.python, raw=raw_outputs,
                                 module=et_host.RUNNER_MODULE)
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
                prof = run_runner(payload, "profile", 0, Path(tmp), deadline, s.timeout_s,
                                  python=self.python, raw=raw_outputs,
                                  module=et_host.RUNNER_MODULE)
                if prof.get("error"):
                    warnings.append(f"per-op profile unavailable: {prof['error']}")
                else:
                    ops = tuple(OpRecord(**row) for row in prof["ops"])
                    ops_model_ms = prof["ops_model_ms"]
                    runner["profiler"] = prof["profiler"]
                    if prof.get("ops_note"):
                        warnings.append(f"per-op profile: {prof['ops_note']}")
            if check_numerics:
                progress("checking numerics", (steps - 1) / steps)
                numerics = self._pte_numerics(job, payload, Path(tmp), deadline, raw_outputs)
        progress("done", 1.0)
        return measured_result(job, runs, runner=runner, warnings=tuple(warnings),
                               raw_outputs=tuple(raw_outputs), ops=ops,
                               ops_model_ms=ops_model_ms, numerics=numerics)

    def _pte_numerics(self, job: Job, payload: dict[str, Any], tmp: Path, deadline: float,
                      raw_outputs: list[RawOutput]) -> dict[str, Any]:
        """An ExecuTorch program's numerics: its outputs on fixed inputs against its float
        reference (:func:`quantlab.agents.executorch.host.float_reference`: the PyTorch
        source, else the et-fp32 program), the figures and verdicts a .tflite's get; not
        checked, with the reason, where there is no reference."""
        source, why = et_host.float_reference(job.model.path)
        if source is None:
            return {"error": why, "unchecked": True}
        num = run_runner({**payload, "reference_source": source}, "numerics", 0, tmp,
                         deadline, job.settings.timeout_s, python=self.python,
                         raw=raw_outputs, module=et_host.RUNNER_MODULE)
        npz = Path(payload["outputs_path"])
        numerics = numerics_from(num, npz)
        if npz.is_file():
            raw_outputs.append(RawOutput.capture("numerics-outputs.npz", "application/x-npz",
                                                 npz.read_bytes()))
        return numerics
