"""Energy per inference on an Android phone, for :class:`agents.android.AndroidAgent`.

The sampler (:mod:`android_runner.energy`, ``sampler.sh``) is pushed next to the runner;
it samples an idle baseline, then runs beside one sustained benchmark_model launch; the
figure is computed on the host (:func:`android_runner.energy.compute_energy`). The agent
passes itself in: its shell, launch and command builder are the ones every launch uses.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from android_runner import command as cmdmod
from android_runner import energy as energymod
from android_runner import provision
from android_runner.parser import BenchmarkOutput
from harness.models import file_sha256
from harness.records import DeviceInfo, Job, RawOutput


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
            launches: list[BenchmarkOutput], thermal_before: dict[str, Any],
            raw: list[RawOutput] | None = None, inputs: tuple[str, ...] = ()
            ) -> tuple[dict[str, Any], list[str]]:
    """The result's energy fields (``energy``, ``energy_samples``,
    ``energy_unavailable_reason``) and warnings for one job."""
    sampler = f"{cmdmod.DEVICE_DIR}/sampler.sh"
    provision.ensure_file(d, energymod.SAMPLER, sampler, file_sha256(energymod.SAMPLER))
    base = agent._shell(d, f"sh {sampler} baseline {agent.energy_baseline_s} 0.1",
                        timeout=agent.energy_baseline_s + 60)
    baseline = energymod.parse_sampler(base.stdout, base.stderr, base.returncode, "baseline")
    result: dict[str, Any] = {}
    load_out: list[energymod.SamplerOutput] = []
    load_raw: list[str] = []  # the load sampler's own output, kept raw

    def sample_load() -> None:
        try:
            client = agent._device(device.id)
            res = agent._shell(client, f"sh {sampler} load {agent.energy_load_s} 0.1",
                               timeout=agent.energy_load_s + 60)
            load_raw.append(res.stdout)
            load_out.append(energymod.parse_sampler(res.stdout, res.stderr, res.returncode,
                                                    "load"))
        except Exception as exc:  # the thread's own error becomes the reason
            load_out.append(energymod.sampler_failed("load", exc))

    th = threading.Thread(target=sample_load, daemon=True)
    th.start()
    cmd = agent._command(job, model, num_runs=1, min_secs=agent.energy_load_s + 1,
                         warmup_runs=1, extra_flags=inputs)
    loop, _ = agent._launch(d, device, cmd, raw=raw, raw_name="energy-launch")
    th.join(agent.energy_load_s + 90)
    if raw is not None:
        raw.append(RawOutput.capture("energy-baseline.txt", "text/plain", base.stdout))
        if load_raw:
            raw.append(RawOutput.capture("energy-load.txt", "text/plain", load_raw[0]))
    load = load_out[0] if load_out else energymod.parse_sampler(
        "", returncode=None, phase="load")  # still running after the join's timeout
    latency = loop.inference_avg_ms if loop.ok else None
    if latency is None:
        latency = launches[-1].inference_avg_ms
    powered = thermal_before.get("powered_by") or (
        ["USB"] if thermal_before.get("usb_powered") else [])
    outcome = energymod.compute_energy(baseline, load, latency, bool(powered),
                                       power_source="/".join(powered) or None,
                                       keep_on_usb=job.settings.energy_on_usb)
    result["energy"] = outcome.energy
    result["energy_samples"] = outcome.samples
    result["energy_unavailable_reason"] = outcome.reason
    return result, list(outcome.warnings)
