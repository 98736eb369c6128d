"""Plan before acting: devices × delegates × threads × models → jobs, plus what was left out
and why.

Planning touches no runtime: ``quantlab plan`` is a free dry run, and a plan stored
with a run lets an interrupted run resume.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quantlab.agents.base import Agent, load_agent
from quantlab.harness import kinds as registry
from quantlab.harness.errors import QuantlabError, UnknownDeviceError, UserError
from quantlab.harness.records import DeviceInfo, Job, ModelRef, Plan, Settings, Skipped


@dataclass(frozen=True)
class Fleet:
    """Every device found, with the agent that drives it, plus notes on agents that failed."""

    devices: tuple[DeviceInfo, ...]
    agents: dict[str, Agent]  # device id → agent
    notes: tuple[str, ...] = ()

    def agent_for(self, device_id: str) -> Agent:
        """The agent of a device in this fleet."""
        return self.agents[device_id]

    def get(self, device_id: str) -> DeviceInfo:
        """A device by id."""
        for d in self.devices:
            if d.id == device_id:
                return d
        raise UnknownDeviceError(f"device {device_id}: not attached")


def discover(kinds: Sequence[str] | None = None, agents: Sequence[Agent] | None = None) -> Fleet:
    """Ask the agent of every registered kind (:mod:`quantlab.harness.kinds`), of the given
    ``kinds``, or the given ``agents`` for their devices.

    An agent whose library or server is missing contributes a note instead of
    failing discovery for the others.
    """
    found: list[DeviceInfo] = []
    by_id: dict[str, Agent] = {}
    notes: list[str] = []
    if agents is None:
        agents = []
        for kind in kinds or registry.names():
            try:
                agents.append(load_agent(kind))
            except ImportError as exc:
                notes.append(f"{kind}: agent not available ({exc})")
    for agent in agents:
        try:
            devices = agent.discover()
        except QuantlabError as exc:
            notes.append(f"{agent.kind}: {exc.one_line()}")
            continue
        for d in devices:
            found.append(d)
            by_id[d.id] = agent
    return Fleet(tuple(found), by_id, tuple(notes))


def select_devices(fleet: Fleet, requested: Sequence[str]) -> list[DeviceInfo]:
    """Resolve ``--device``: ids, ``all`` (every device, the simulator included), or
    nothing (every ready phone, else the simulator)."""
    if not requested:
        phones = [d for d in fleet.devices if d.platform != "sim" and d.state == "ready"]
        return phones or [d for d in fleet.devices if d.platform == "sim"]
    if "all" in requested:
        return list(fleet.devices)
    chosen: list[DeviceInfo] = []
    for want in requested:
        matches = [d for d in fleet.devices if d.id == want or d.name == want]
        if not matches:
            known = ", ".join(d.id for d in fleet.devices) or "none"
            raise UnknownDeviceError(
                f"--device {want}: no such device",
                hint=f"attached devices: {known} (see quantlab devices)",
            )
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def _default_delegate(offered: Sequence[str], model: ModelRef) -> str:
    """The agent's first delegate, or for an ExecuTorch program its first ExecuTorch one."""
    if model.format == "pte":
        return next((d for d in offered if d.startswith("et-")), offered[0])
    return offered[0]


def known_delegates(fleet: Fleet) -> set[str]:
    """Every delegate any agent of the fleet (or registry) knows."""
    names: set[str] = set()
    for agent in set(fleet.agents.values()):
        names.update(agent.delegates)
    return names


def expand_models(paths: Sequence[str]) -> list[ModelRef]:
    """Model files from the command line; a variants folder expands to its variants."""
    from quantlab.harness.models import model_ref

    refs: list[ModelRef] = []
    for p in paths:
        path = Path(p)
        manifest = path / "manifest.json"
        if path.is_dir() and manifest.exists():
            try:
                data = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise UserError(f"{manifest}: unreadable manifest ({exc})") from None
            for v in data.get("variants", []):
                if v.get("status", "ok") != "ok" or not (v.get("file") or v.get("path")):
                    continue
                file = path / Path(v.get("file") or v.get("path")).name
                ref = model_ref(file)
                refs.append(ModelRef(ref.path, ref.sha256, ref.size_bytes, ref.format,
                                     v.get("scheme")))
            continue
        refs.append(model_ref(path))
    if not refs:
        raise UserError("no models to benchmark", hint="give .tflite/.mlpackage files or a "
                        "variants folder made by quantlab quantize")
    return refs


def build_plan(
    models: Sequence[ModelRef],
    devices: Sequence[DeviceInfo],
    fleet: Fleet,
    delegates: Sequence[str],
    threads: Sequence[int],
    settings: Settings,
) -> Plan:
    """The cross product of models, devices, delegates and threads minus what a device
    does not support (kept in ``skipped`` with the reason).

    Jobs of a device that is ``offline`` right now stay planned: the dispatcher waits
    for it (``--retry-timeout``) and asks ``supports()`` once it can describe it.
    """
    known = known_delegates(fleet)
    for name in delegates:
        if name not in known:
            raise UnknownDeviceError(
                f"--delegate {name}: unknown delegate",
                hint=f"known delegates: {', '.join(sorted(known))}",
            )
    for n in threads:
        if n < 1:
            raise UserError(f"--threads {n}: must be 1 or more")
    jobs: list[Job] = []
    skipped: list[Skipped] = []
    for model in models:
        for device in devices:
            agent = fleet.agent_for(device.id)
            wanted = list(delegates) or [_default_delegate(agent.delegates, model)]
            for delegate in wanted:
                for n in threads:
                    job = Job(model=model, device_id=device.id, platform=device.platform,
                              delegate=delegate, threads=n, settings=settings)
                    if device.state == "offline" and delegate in agent.delegates:
                        # offline now (hub reset, reboot) is often back in seconds: the
                        # dispatcher waits up to --retry-timeout, then checks supports()
                        jobs.append(job)
                        continue
                    if device.state != "ready":
                        hint = f": {device.state_hint}" if device.state_hint else ""
                        skipped.append(Skipped(job, f"{device.id} is {device.state}{hint}"))
                        continue
                    if delegate not in agent.delegates:
                        skipped.append(Skipped(job, (
                            f"{delegate}: not a delegate of {device.platform} devices "
                            f"({device.platform} has {', '.join(agent.delegates)})")))
                        continue
                    ok, reason = agent.supports(device, job)
                    if ok:
                        jobs.append(job)
                    else:
                        skipped.append(Skipped(job, reason))
    return Plan(jobs=tuple(dict.fromkeys(jobs)), skipped=tuple(skipped))
