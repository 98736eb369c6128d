"""Energy per inference on an Android phone, for
:class:`quantlab.agents.android.agent.AndroidAgent`.

The sampler (:mod:`quantlab.android_runner.energy`, ``sampler.sh``) is pushed next to the runner;
it samples an idle baseline, then runs beside one sustained benchmark_model launch whose
output goes to a file on the phone, noting that file's size with each reading; the host
keeps the readings taken inside the launch's timed loop
(:func:`quantlab.android_runner.energy.timed_loop_span`) and computes the figure
(:func:`quantlab.android_runner.energy.compute_energy`). The agent passes itself in: its shell,
launch and command builder are the ones every launch uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import threading
from typing import Any, Protocol

from quantlab.agents.android.faults import adb_errors
from quantlab.android_runner import command as cmdmod
from quantlab.android_runner import energy as energymod
from quantlab.android_runner import provision
from quantlab.android_runner.parser import BenchmarkOutput
from quantlab.harness.models import file_sha256
from quantlab.harness.records import DeviceInfo, Job, RawOutput


class EnergyHost(Protocol):
    """What the measurement uses of the agent."""

    energy_baseline_s: int
    energy_load_s: int

    def _device(self, serial: str) -> Any: ...

    def _shell(self, d: Any, cmd: str, timeout: float = 60) -> Any: ...

    def _command(self, job: Job, model: str, profile_file: str | None = None,
                 extra_flags: tuple[str, ...] = (), **overrides: Any
                 ) -> cmdmod.BenchmarkCommand: ...

    def _launch(self, d: Any, device: DeviceInfo, cmd: cmdmod.BenchmarkCommand,
                profile_text: str | None = None, raw: list[RawOutput] | None = None,
                raw_name: str = "launch") -> tuple[BenchmarkOutput, str]: ...


def measure(agent: EnergyHost, d: Any, device: DeviceInfo, job: Job, model: str,
            thermal_before: dict[str, Any], raw: list[RawOutput] | None = None,
            inputs: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """The result's energy fields (``energy``, ``energy_samples``,
    ``energy_unavailable_reason``) and warnings for one job.

    An idle baseline first; then one energy launch whose output goes to a file on the phone
    while the sampler reads the sensors and that file's size; only readings taken inside the
    launch's timed loop count, and the latency divided by is that launch's own. A failed
    energy launch gives no figure, with its error.
    """
    out_dir = f"{cmdmod.DEVICE_DIR}/out"
    sampler, log, stop = (f"{cmdmod.DEVICE_DIR}/sampler.sh", f"{out_dir}/{job.job_id}.energy.log",
                          f"{out_dir}/{job.job_id}.energy.stop")
    provision.ensure_file(d, energymod.SAMPLER, sampler, file_sha256(energymod.SAMPLER))
    agent._shell(d, f"mkdir -p {shlex.quote(out_dir)} && rm -f {shlex.quote(log)} "
                    f"{shlex.quote(stop)}", timeout=30)
    base = agent._shell(d, f"sh {sampler} baseline {agent.energy_baseline_s} 0.1",
                        timeout=agent.energy_baseline_s + 60)
    baseline = energymod.parse_sampler(base.stdout, base.stderr, base.returncode, "baseline")
    cmd = dataclasses.replace(agent._command(job, model, num_runs=1, min_secs=agent.energy_load_s,
                                             warmup_runs=1, extra_flags=inputs), log_file=log)
    limit = cmd.timeout_s + 30  # the sampler's own end, should the stop file never come
    load_res: list[Any] = []  # the load sampler's shell result, or the exception that ended it

    def sample_load() -> None:
        try:
            load_res.append(agent._shell(
                agent._device(device.id), f"sh {sampler} load {limit} 0.1 {shlex.quote(log)} "
                f"{shlex.quote(stop)}", timeout=limit + 60))
        except Exception as exc:  # the thread's own error becomes the reason
            load_res.append(exc)

    th = threading.Thread(target=sample_load, daemon=True)
    th.start()
    output = b""
    try:
        loop, _ = agent._launch(d, device, cmd, raw=raw, raw_name="energy-launch")
        with contextlib.suppress(*adb_errors()):
            output = d.sync.read_bytes(log)  # exact bytes: the sampler counted them
    finally:  # the runner has exited: the sampler stops
        with contextlib.suppress(*adb_errors()):
            agent._shell(d, f"echo stop > {shlex.quote(stop)}", timeout=30)
    th.join(60)
    res = load_res[0] if load_res else None
    if raw is not None:
        raw.append(RawOutput.capture("energy-baseline.txt", "text/plain", base.stdout))
        if res is not None and not isinstance(res, BaseException):
            raw.append(RawOutput.capture("energy-load.txt", "text/plain", res.stdout))
    fields: dict[str, Any] = {"energy": None, "energy_samples": baseline.samples}
    if not loop.ok:
        fields["energy_unavailable_reason"] = (
            f"the energy launch failed: {loop.error}; no figure (the power sampled cannot be "
            "paired with a latency from another launch)")
        return fields, []
    span = energymod.timed_loop_span(output)
    if span is None:
        fields["energy_unavailable_reason"] = (
            f"the energy launch printed no '{energymod.MEASURED_RUN_LINE} …' line with results "
            "after it: its timed loop cannot be told from start-up and warm-up; no figure")
        return fields, []
    if res is None:  # still running after the join's timeout
        load = energymod.parse_sampler("", returncode=None, phase="load")
    elif isinstance(res, BaseException):
        load = energymod.sampler_failed("load", res)
    else:
        load = energymod.parse_sampler(res.stdout, res.stderr, res.returncode, "load", span)
    powered = thermal_before.get("powered_by") or (
        ["USB"] if thermal_before.get("usb_powered") else [])
    outcome = energymod.compute_energy(baseline, load, loop.inference_avg_ms, bool(powered),
                                       power_source="/".join(powered) or None,
                                       keep_on_usb=job.settings.energy_on_usb)
    fields.update(energy=outcome.energy, energy_samples=outcome.samples,
                  energy_unavailable_reason=outcome.reason)
    return fields, list(outcome.warnings)
