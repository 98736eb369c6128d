"""Linux edge gateways over SSH: the simulator's measuring worker, run on a remote box.

Gateways (Raspberry Pi, Jetson-class and industrial boxes) come from a hosts file
in TOML that a team keeps in version control, named by ``QUANTLAB_HOSTS``
(default ``~/.config/quantlab/hosts.toml``)::

    [[gateway]]
    name = "pi-kitchen"
    address = "pi@10.0.0.7:22"
    identity = "~/.ssh/id_ed25519"      # optional: ssh-agent and ~/.ssh/config are honoured
    known_hosts = "~/.ssh/known_hosts"  # optional: host keys are always verified
    python = "/usr/bin/python3"         # optional: the interpreter that runs the worker

Each gateway is the device ``ssh:NAME`` of the kind ``linux``. A job connects once, pushes
the measuring code (the LiteRT runner package, :mod:`quantlab.agents.litert.runner`, plus the
gateway-side :mod:`quantlab.agents.linux.remote`) and the model over SFTP into content-addressed
caches under the gateway's work folder (every upload checksum-verified on the gateway),
then runs ``remote.py run`` with the gateway's Python. That starts one fresh runner
process per process-level repeat, exactly as the simulator does, and streams the runner's
raw results back as JSON lines; this module builds the same
:class:`~quantlab.harness.records.RawResult` from them, and the host's statistics do the rest.

SSH runs commands through the remote user's shell, so no name or path ever reaches
a command line: the model's path, its name and every setting travel inside the job
JSON pushed by SFTP; the command line holds only the interpreter, the cached
script's path and a job folder named by hex digests, each quoted.

Library: asyncssh (see docs/devices.md, "Linux gateways"): host keys are checked
against known_hosts with no auto-accept path, OpenSSH config and ssh-agent are
honoured, SFTP transfers are pipelined, a killed remote process reports its exit
signal, and one event loop probes every gateway of a fleet concurrently.

The pieces, in the order a job meets them: :mod:`quantlab.agents.linux.hosts` (the hosts file),
:mod:`quantlab.agents.linux.session` (one connection: SFTP, probe, content-addressed caches),
:mod:`quantlab.agents.linux.remote` (the gateway-side helper),
:mod:`quantlab.agents.linux.results` (events →
RawResult) and :mod:`quantlab.agents.linux.provision` (``quantlab gateway provision``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import shlex
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from quantlab.agents.base import Progress
from quantlab.agents.executorch import host as et_host
from quantlab.agents.linux.hosts import Gateway, hosts_path, load_hosts
from quantlab.agents.linux.provision import provision_gateway
from quantlab.agents.linux.remote import ET_RUNNER_PACKAGE
from quantlab.agents.linux.results import gateway_result, health_from, missing_deps
from quantlab.agents.linux.session import (
    HELPER,
    AuthRefused,
    GatewayUnreachable,
    HostKeyRefused,
    PythonMissing,
    Session,
    run_sync,
    ssh_errors,
    summarize_error,
)
from quantlab.agents.outputs import OutputsFacts
from quantlab.harness.errors import (
    DeviceDisconnected,
    DeviceTimeout,
    JobFailed,
    QuantlabError,
    UserError,
)
from quantlab.harness.models import file_sha256
from quantlab.harness.records import DeviceInfo, Job, RawResult

NUMERICS_REASON = ("numerics are not checked on SSH gateways yet: the gateway's worker "
                   "measures latency, memory and energy only; check numerics on the simulator "
                   "(same .tflite, host LiteRT) or on a phone")

MAX_THREADS_FACTOR = 2


class SshAgent:
    """Linux gateways from the hosts file; jobs run the LiteRT runner (a ``.pte``: ExecuTorch's,
    where the gateway's Python has ExecuTorch) over SSH."""

    kind = "linux"
    litert_delegates: tuple[str, ...] = ("xnnpack", "cpu")
    delegates: tuple[str, ...] = (*litert_delegates, *et_host.DELEGATES)

    def __init__(self, hosts_file: str | Path | None = None,
                 sysfs_roots: dict[str, str] | None = None) -> None:
        self.hosts_file = Path(hosts_file).expanduser() if hosts_file else None
        self.sysfs_roots = dict(sysfs_roots or {})  # tests: fake hwmon/thermal/cpu trees
        self._gateways: dict[str, Gateway] | None = None

    # ------------------------------------------------------------------ hosts

    def gateways(self) -> dict[str, Gateway]:
        """device id → gateway, from the hosts file (read once)."""
        if self._gateways is None:
            self._gateways = {g.device_id: g for g in load_hosts(self.hosts_file)}
        return self._gateways

    def gateway(self, name: str) -> Gateway:
        """A gateway by name or ``ssh:NAME``; a UserError listing the known ones otherwise."""
        found = self.gateways()
        key = name if name.startswith("ssh:") else f"ssh:{name}"
        if key not in found:
            from quantlab.harness.errors import UnknownDeviceError

            path = self.hosts_file or hosts_path()[0]
            known = ", ".join(g.name for g in found.values()) or "none"
            raise UnknownDeviceError(f"gateway {name}: not in {path}",
                                     hint=f"gateways there: {known}")
        return found[key]

    # ------------------------------------------------------------------ discovery

    def discover(self) -> list[DeviceInfo]:
        """Every gateway of the hosts file, probed concurrently, ready or not."""
        gateways = list(self.gateways().values())
        if not gateways:
            return []

        async def all_of() -> list[DeviceInfo]:
            return list(await asyncio.gather(*(self._describe(g) for g in gateways)))

        return run_sync(all_of)

    async def _describe(self, gw: Gateway) -> DeviceInfo:
        base = DeviceInfo(id=gw.device_id, platform="linux", name=gw.name, host=gw.host,
                          delegates=self.delegates,
                          extra={"address": gw.address, "gateway": gw.name})
        t0 = time.perf_counter()
        try:
            session = await Session.open(gw)
        except GatewayUnreachable as exc:
            return dataclasses.replace(base, state="offline", state_hint=exc.one_line(),
                                       health={"reachable": False, "error": exc.message})
        except (HostKeyRefused, AuthRefused) as exc:
            return dataclasses.replace(base, state="unauthorized", state_hint=exc.one_line(),
                                       health={"reachable": True, "auth": exc.message})
        except QuantlabError as exc:
            return dataclasses.replace(base, state="unavailable", state_hint=exc.one_line(),
                                       health={"reachable": True, "error": exc.message})
        try:
            facts = await session.probe()
        except PythonMissing as exc:
            return dataclasses.replace(base, state="unavailable", state_hint=exc.one_line(),
                                       health={"reachable": True, "auth": "ok",
                                               "python": None, "error": exc.message})
        except ssh_errors() as exc:
            return dataclasses.replace(base, state="offline",
                                       state_hint=f"probe failed: {summarize_error(exc)}",
                                       health={"reachable": False})
        finally:
            await session.close()
        health = health_from(facts)
        health["probe_ms"] = round((time.perf_counter() - t0) * 1000)
        missing = missing_deps(facts)
        state, hint = "ready", None
        if missing:
            state = "unavailable"
            hint = (f"{', '.join(missing)} missing for {facts['python_path']}: run quantlab "
                    f"gateway provision {gw.name} --install")
        board = facts.get("board")
        return dataclasses.replace(
            base, state=state, state_hint=hint,
            name=f"{gw.name} ({board or facts.get('hostname') or facts.get('arch')})",
            model=board, soc=facts.get("cpu_model"),
            os_version=f"{facts.get('os')} (Linux {facts.get('kernel')})",
            abi=facts.get("arch"), cores=facts.get("cores"), health=health,
            extra={**base.extra, "python": facts.get("python_path"),
                   "python_version": facts.get("python"),
                   "litert": (facts.get("deps") or {}).get("ai-edge-litert"),
                   "executorch": facts.get("executorch"),
                   "workdir": session.workdir})

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """Re-probe one gateway: reachability, auth, temperatures, memory, dependencies."""
        gw = self.gateway(device.id)
        return run_sync(lambda: self._describe(gw)).health

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """``.tflite`` on xnnpack/cpu, ``.pte`` on et-xnnpack where the gateway has ExecuTorch,
        threads up to 2× the gateway's cores, worker deps."""
        if job.model.format in ("mlpackage", "mlmodel"):
            return False, "Core ML variant: not an iOS device"
        if job.model.format == "pte":
            ok, why = _supports_pte(device, job)
            if not ok:
                return ok, why
        elif job.model.format != "tflite":
            return False, f"{job.model.format} models do not run on Linux gateways"
        elif job.delegate not in self.litert_delegates:
            return False, (f"delegate {job.delegate!r} is not available on Linux gateways "
                           f"(xnnpack, cpu)")
        cores = device.cores or 1
        if not 1 <= job.threads <= MAX_THREADS_FACTOR * cores:
            return False, (f"{job.threads} threads: {device.id} has {cores} cores; more than "
                           f"{MAX_THREADS_FACTOR}× that only measures oversubscription")
        missing = device.health.get("missing") or []
        if missing:
            return False, (f"{', '.join(missing)} missing on {device.id}: run quantlab "
                           f"gateway provision {device.id.removeprefix('ssh:')} --install")
        return True, ""

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """Reconnect until the gateway answers SSH and SFTP again, or ``timeout_s`` passes."""
        gw = self.gateway(device.id)
        deadline = time.monotonic() + timeout_s

        async def once() -> bool:
            session = await Session.open(gw)
            await session.close()
            return True

        while True:
            try:
                return run_sync(once)
            except GatewayUnreachable:
                pass
            except ssh_errors():
                pass
            except QuantlabError:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------------ running

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Measure ``job`` on the gateway (see the module docstring)."""
        gw = self.gateway(device.id)
        if not Path(job.model.path).is_file():
            raise JobFailed(f"{job.model.path}: model file not found on this host",
                            hint="the variant was moved or deleted after planning")
        return run_sync(lambda: self._run(gw, device, job, progress))

    async def _run(self, gw: Gateway, device: DeviceInfo, job: Job,
                   progress: Progress) -> RawResult:
        import asyncssh

        t0 = time.perf_counter()
        progress("connecting", None)
        session = await Session.open(gw)
        phase = "pushing files"
        try:
            progress("pushing", None)
            code_dir = await session.ensure_code()
            model = await session.ensure_file(Path(job.model.path), job.model.sha256, "models",
                                              code_dir)
            inputs = None
            if job.settings.inputs:
                ipath = Path(job.settings.inputs)
                isha = job.settings.inputs_sha256 or file_sha256(ipath)
                inputs = await session.ensure_file(ipath, isha, "inputs", code_dir)
            jobdir = f"{session.workdir}/jobs/{job.job_id}-{secrets.token_hex(4)}"
            await session.sftp.makedirs(jobdir, exist_ok=True)
            spec = self._job_spec(gw, job, model, inputs)
            async with session.sftp.open(f"{jobdir}/job.json", "w") as f:
                await f.write(json.dumps(spec))
            setup_ms = (time.perf_counter() - t0) * 1000
            phase = "measuring"
            events, status, stderr = await self._stream(session, code_dir, jobdir, job, progress)
        except TimeoutError:
            raise DeviceTimeout(gw.device_id, f"no answer within {job.settings.timeout_s:g}s "
                                f"(+60s) while {phase}") from None
        except QuantlabError:
            raise
        except asyncssh.SFTPError as exc:
            raise JobFailed(f"{gw.device_id}: SFTP failed while {phase}: "
                            f"{summarize_error(exc)}") from None
        except ssh_errors() as exc:
            raise DeviceDisconnected(gw.device_id, f"connection dropped while {phase} "
                                     f"({summarize_error(exc)})",
                                     hint="the job is retried when the gateway is back"
                                     ) from None
        finally:
            await session.close()
        raw = gateway_result(gw, job, events, status, stderr, session.python, code_dir,
                             {"setup_ms": round(setup_ms, 1),
                              "wall_ms": round((time.perf_counter() - t0) * 1000, 1)})
        if job.settings.numerics and raw.status == "ok":  # said, not silently dropped
            raw = dataclasses.replace(raw, numerics={"error": NUMERICS_REASON, "unchecked": True})
        return raw

    def outputs_supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """Outputs come back from the LiteRT runner (a ``.pte``'s: not yet)."""
        if job.model.format == "pte":
            return False, "outputs of a .pte job on a gateway are not available yet"
        return True, ""

    def outputs(self, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
        """Every sample of ``inputs`` through ``job`` on the gateway
        (:mod:`quantlab.agents.linux.outputs`; the contract: :mod:`quantlab.agents.outputs`)."""
        from quantlab.agents.linux.outputs import run_outputs

        gw = self.gateway(device.id)
        if not Path(job.model.path).is_file():
            raise JobFailed(f"{job.model.path}: model file not found on this host")
        return run_sync(lambda: self._guarded(gw, job, run_outputs(self, gw, job, inputs, out,
                                                                   progress)))

    async def _guarded(self, gw: Gateway, job: Job,
                       call: Awaitable[OutputsFacts]) -> OutputsFacts:
        """``call`` with SSH failures mapped as for a measuring job (a dropped connection
        is a retried fault)."""
        import asyncssh

        try:
            return await call
        except TimeoutError:
            raise DeviceTimeout(gw.device_id, f"no answer within {job.settings.timeout_s:g}s "
                                "(+60s) while running the samples") from None
        except asyncssh.SFTPError as exc:
            raise JobFailed(f"{gw.device_id}: SFTP failed: {summarize_error(exc)}") from None
        except ssh_errors() as exc:
            raise DeviceDisconnected(gw.device_id, f"connection dropped "
                                     f"({summarize_error(exc)})") from None

    def _job_spec(self, gw: Gateway, job: Job, model: str, inputs: str | None
                  ) -> dict[str, Any]:
        settings = dataclasses.asdict(dataclasses.replace(job.settings, inputs=inputs))
        return {
            "payload": {"model": model, "delegate": job.delegate, "threads": job.threads,
                        "settings": settings, "rapl_root": self.sysfs_roots.get("rapl"),
                        "thermal_root": self.sysfs_roots.get("thermal"),
                        "cpu_root": self.sysfs_roots.get("cpu"),
                        "gpu_root": self.sysfs_roots.get("gpu")},
            "repeats": max(int(job.settings.repeats), 1),
            "sustained": job.settings.sustained_s > 0,
            "profile": job.settings.profile_ops,
            "timeout_s": job.settings.timeout_s + job.settings.sustained_s,
            "energy": job.settings.energy,
            "energy_baseline_s": gw.energy_baseline_s,
            "hot_c": gw.hot_c, "cooldown_s": gw.cooldown_s,
            "roots": self.sysfs_roots,
            **({"runner_module": f"{ET_RUNNER_PACKAGE}.runner"}
               if job.model.format == "pte" else {}),
        }

    async def _stream(self, session: Session, code_dir: str, jobdir: str, job: Job,
                      progress: Progress) -> tuple[list[dict[str, Any]], Any, str]:
        """Run ``remote.py run`` and collect its JSON-line events."""
        argv = [session.python, f"{code_dir}/{HELPER}", "run", jobdir]
        if session.gw.sudo:
            argv = ["sudo", "-n", *argv]
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + job.settings.timeout_s + job.settings.sustained_s + 60
        async with session.conn.create_process(shlex.join(argv), encoding="utf-8") as proc:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                line = await asyncio.wait_for(proc.stdout.readline(), remaining)
                if not line:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                events.append(event)
                if event.get("event") == "progress":
                    progress(event.get("phase", ""), event.get("fraction"))
                if event.get("event") == "done":
                    break
            stderr = await _read_all(proc.stderr.read(), 5.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait_closed(), 10.0)
            status = (proc.exit_status, proc.exit_signal)
        return events, status, stderr

    # ------------------------------------------------------------------ provisioning

    def provision(self, name: str, *, install: bool = False, wheels: Path | None = None,
                  index_url: str | None = None,
                  progress: Callable[[str], None] = lambda _msg: None,
                  executorch: bool = False) -> dict[str, Any]:
        """Check (and with ``install`` pip-install into ``WORKDIR/venv``) the worker's
        Python dependencies on a gateway (``executorch``: also torch and ExecuTorch, for
        ``.pte`` jobs); returns what is present and what is missing."""
        gw = self.gateway(name)
        if wheels is not None and not wheels.is_dir():
            raise UserError(f"--wheels {wheels}: no such folder")
        return run_sync(lambda: provision_gateway(gw, install, wheels, index_url, progress,
                                                  executorch))


def _supports_pte(device: DeviceInfo, job: Job) -> tuple[bool, str]:
    """A ``.pte`` job: on ExecuTorch's delegates, where the gateway's Python has ExecuTorch."""
    if job.delegate not in et_host.DELEGATES:
        return False, (f"delegate {job.delegate!r} is LiteRT's: an ExecuTorch program runs on "
                       f"{', '.join(et_host.DELEGATES)}")
    refused = et_host.program_refusal(job.model.path, job.delegate)
    if refused:
        return False, refused
    if not device.extra.get("executorch"):
        python = device.extra.get("python") or "the gateway's Python"
        return False, (f"ExecuTorch is not installed for {python} on {device.id}: install the "
                       "torch extra's pins there (pip install torch==2.13.0 executorch==1.5.1) "
                       "to run .pte jobs")
    if job.settings.sustained_s > 0:
        return False, "--sustained: not available for a .pte job on a gateway yet"
    return True, ""


async def _read_all(awaitable: Awaitable[str], timeout: float) -> str:
    try:
        return str(await asyncio.wait_for(awaitable, timeout))
    except TimeoutError:
        return ""
    except ssh_errors():
        return ""
