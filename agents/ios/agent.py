"""iPhone agent: runs jobs in the BenchRunner app through pymobiledevice3.

Data flow of one job: build ``job.json`` (ios_runner.codec) → push model + job into
the app's container over house_arrest/AFC → launch the app with DVT ProcessControl
→ poll for ``Documents/results/<id>.done`` → pull the result → RawResult. With
``--numerics`` (or ``--profile-ops``) or ``--inputs``, fixed input files go beside the
model and the app's output tensors come back for the comparison on the host
(:mod:`quantlab.agents.ios.numerics`).

Every pymobiledevice3 call goes through one seam, an
:class:`~quantlab.agents.ios.interfaces.IosBackend`
(:mod:`quantlab.agents.ios.pmd3` for real phones);
:mod:`quantlab.agents.ios.errors` says what each pymobiledevice3 error means to the user. Tests
put a fake iPhone behind the same interface: set ``QUANTLAB_IOS_BACKEND=module:factory``,
a Python module name (e.g. ``tests.fakes.iphone:make_backend``), or pass ``backend=`` to
:class:`IosAgent`. The pymobiledevice3 layer itself is tested against fakes of
pymobiledevice3's own service classes (``tests/fakes/pmd3.py``).

MLComputePlan needs iOS 17.4: on iOS 17.0–17.3 jobs still run, without the
per-op placement, and the result carries a warning saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from quantlab.agents.base import Progress
from quantlab.agents.ios.errors import IosDeviceUnusable, IosUserError, translate
from quantlab.agents.ios.interfaces import (
    BUNDLE_ID,
    IosBackend,
    IosSession,
    load_backend,
    version_tuple,
)
from quantlab.harness.errors import DeviceDisconnected, QuantlabError
from quantlab.harness.records import DeviceInfo, Job, RawOutput, RawResult

if TYPE_CHECKING:  # numpy comes with it: imported when a job runs, not for `devices`
    from quantlab.agents.ios import numerics as ios_numerics
    from quantlab.agents.outputs import OutputsFacts

DELEGATES: tuple[str, ...] = (
    "coreml-cpu",
    "coreml-gpu",
    "coreml-ane",
    "coreml-all",
    "tflite-cpu",
    "tflite-metal",
    "tflite-coreml",
)
MIN_IOS = (17, 0)
COMPUTE_PLAN_IOS = (17, 4)
POLL_S = 0.5
GRACE_S = 60.0  # on top of the cool-down wait and the job's timeout: push, launch, polling
COOLDOWN_WAIT_S = 300.0
"""How long the app waits for the phone to cool to ``nominal`` before it refuses to start
(``$QUANTLAB_COOLDOWN_S`` overrides it); the host waits this long on top of the job's timeout."""

T = TypeVar("T")


def has_neural_engine(product_type: str | None) -> bool:
    """Whether a product type (``iPhone15,2``) has a Neural Engine Core ML uses (A12+)."""
    m = re.match(r"(iPhone|iPad)(\d+),", product_type or "")
    if not m:
        return False
    family, major = m.group(1), int(m.group(2))
    return major >= 11 if family == "iPhone" else major >= 8


def _run_async(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


# --------------------------------------------------------------------------- agent


class IosAgent:
    """iPhones over USB via pymobiledevice3 (see the module docstring)."""

    kind = "ios"
    delegates = DELEGATES

    def __init__(
        self,
        backend: IosBackend | None = None,
        app_path: str | None = None,
        cooldown_wait_s: float | None = None,
        **_: Any,
    ) -> None:
        self._backend = backend
        self.app_path = app_path or os.environ.get("QUANTLAB_IOS_APP")
        if cooldown_wait_s is None:
            cooldown_wait_s = float(os.environ.get("QUANTLAB_COOLDOWN_S", COOLDOWN_WAIT_S))
        self.cooldown_wait_s = cooldown_wait_s

    @property
    def backend(self) -> IosBackend:
        """The connection factory (loaded lazily so importing this module stays cheap)."""
        if self._backend is None:
            self._backend = load_backend()
        return self._backend

    # ---------------------------------------------------------------- discover

    def discover(self) -> list[DeviceInfo]:
        """Every iPhone on usbmux, with its problems as ``state``/``state_hint``."""
        return _run_async(self._discover())

    async def _discover(self) -> list[DeviceInfo]:
        try:
            udids = await self.backend.list_udids()
        except Exception as exc:
            if type(exc).__name__ in ("ConnectionFailedToUsbmuxdError", "ConnectionFailedError"):
                return []
            raise
        return [await self._describe(udid) for udid in udids]

    async def _describe(self, udid: str) -> DeviceInfo:
        try:
            values = await self.backend.device_values(udid)
        except Exception as exc:
            err = translate(exc, udid)
            if err is None:
                raise
            state = "offline" if isinstance(err, DeviceDisconnected) else "unauthorized"
            return DeviceInfo(
                id=udid,
                platform="ios",
                name=f"iPhone {udid[:8]}",
                state=state,
                state_hint=err.message if hasattr(err, "message") else str(err),
                manufacturer="Apple",
            )
        product = values.get("ProductType")
        version = values.get("ProductVersion")
        ane = has_neural_engine(product)
        state, hint = "ready", None
        if version_tuple(version) < MIN_IOS:
            state, hint = (
                "unavailable",
                f"iOS {version} is too old: BenchRunner needs iOS 17 or later",
            )
        elif values.get("DeveloperModeStatus") is False:
            state, hint = (
                "unavailable",
                (
                    "Developer Mode is off: Settings → Privacy & Security → Developer Mode → "
                    "On, restart, confirm"
                ),
            )
        delegates = tuple(d for d in DELEGATES if ane or d not in ("coreml-ane", "tflite-coreml"))
        return DeviceInfo(
            id=udid,
            platform="ios",
            name=values.get("DeviceName") or product or udid,
            state=state,
            state_hint=hint,
            model=product,
            manufacturer="Apple",
            soc=values.get("HardwarePlatform") or values.get("CPUArchitecture"),
            os_version=version,
            abi="arm64",
            host="usb",
            delegates=delegates,
            extra={
                "product_type": product,
                "build": values.get("BuildVersion"),
                "neural_engine": ane,
                "developer_mode": values.get("DeveloperModeStatus"),
                "compute_plan": version_tuple(version) >= COMPUTE_PLAN_IOS,
            },
        )

    # ---------------------------------------------------------------- install / status

    def install(self, path: str, udid: str | None = None) -> str:
        """Install the runner (.ipa/.app) on ``udid`` or the only iPhone; returns the UDID."""
        if not (path.endswith(".ipa") or path.rstrip("/").endswith(".app")):
            raise IosUserError(
                f"{path}: expected a BenchRunner .ipa or .app (see ios_runner/README.md)"
            )
        if not Path(path).exists():
            raise IosUserError(
                f"{path}: no such file; build BenchRunner first (ios_runner/README.md)"
            )
        target = udid or self._only_device()

        async def go() -> None:
            async with self.backend.session(target) as s:
                await s.install(str(Path(path).resolve()))

        self._call(target, go)
        return target

    def app_installed(self, udid: str) -> bool:
        """Whether BenchRunner is installed on ``udid``."""

        async def go() -> bool:
            async with self.backend.session(udid) as s:
                return await s.app_installed(BUNDLE_ID)

        return self._call(udid, go)

    def _only_device(self) -> str:
        udids = _run_async(self.backend.list_udids())
        if len(udids) != 1:
            found = ", ".join(udids) or "none"
            raise IosUserError(f"pass --device UDID: {len(udids)} iPhones attached ({found})")
        return udids[0]

    def _call(self, udid: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return _run_async(fn())
        except QuantlabError:
            raise
        except Exception as exc:
            err = translate(exc, udid)
            if err is None:
                raise
            raise err from exc

    # ---------------------------------------------------------------- health

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """Battery %, temperature °C and charging state from DiagnosticsService."""

        async def go() -> dict[str, Any]:
            async with self.backend.session(device.id) as s:
                return _battery_health(await s.battery())

        return self._call(device.id, go)

    # ---------------------------------------------------------------- supports

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """Whether ``device`` can run ``job``, and why not."""
        if device.platform != "ios":
            return False, "not an iPhone"
        if job.settings.sustained_s > 0:
            return False, "sustained runs are not measured on iPhones yet (sim and android are)"
        if job.delegate not in DELEGATES:
            return (
                False,
                f"{job.delegate} is not an iOS delegate (use one of {', '.join(DELEGATES)})",
            )
        if device.state != "ready":
            return False, device.state_hint or f"device is {device.state}"
        fmt = job.model.format
        if fmt == "tflite" and job.delegate.startswith("coreml-"):
            return (
                False,
                "a .tflite runs through TFLite on iOS: use tflite-coreml for its Core ML delegate",
            )
        if fmt in ("mlpackage", "mlmodel") and job.delegate.startswith("tflite-"):
            return False, f"an .{fmt} is a Core ML model: use a coreml-* delegate"
        if fmt not in ("tflite", "mlpackage", "mlmodel"):
            return False, f"iOS runs .tflite, .mlpackage and .mlmodel, not .{fmt}"
        if job.delegate in ("coreml-ane", "tflite-coreml") and not device.extra.get(
            "neural_engine", False
        ):
            return False, f"{device.model or device.name} has no Neural Engine"
        return True, ""

    # ---------------------------------------------------------------- run

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Push, launch, wait for ``.done``, pull; see the module docstring."""
        return self._guarded(device, self._run(device, job, progress))

    def _guarded(self, device: DeviceInfo, call: Awaitable[RawResult]) -> RawResult:
        """``call`` run, pymobiledevice3's errors translated (:mod:`.errors`)."""
        try:
            return _run_async(call)
        except QuantlabError:
            raise
        except Exception as exc:
            err = translate(exc, device.id)
            if err is None:
                raise
            raise err from exc

    def outputs(self, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
        """Every sample of ``inputs`` through ``job`` in one BenchRunner batch job
        (:mod:`quantlab.agents.ios.outputs`; the contract: :mod:`quantlab.agents.outputs`)."""
        from quantlab.agents.ios.outputs import run_outputs

        return run_outputs(self, device, job, inputs, out, progress, lambda *a: self._guarded(
            device, self._run_job(*a)))

    async def _run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        from quantlab.agents.ios import numerics as ios_numerics

        with tempfile.TemporaryDirectory(prefix="quantlab-ios-") as tmp:
            fixed = ios_numerics.setup(job, Path(tmp), progress)
            if fixed.failure:  # --inputs that the app cannot use
                return RawResult.failure(job.job_id, fixed.failure)
            return await self._run_job(device, job, progress, fixed)

    async def _run_job(self, device: DeviceInfo, job: Job, progress: Progress,
                       fixed: ios_numerics.IosFixedInputs) -> RawResult:
        from quantlab.agents.ios import numerics as ios_numerics
        from quantlab.ios_runner.codec import build_job, model_remote_name, parse_result

        compute_plan = bool(device.extra.get("compute_plan", True))
        payload = build_job(job, compute_plan=compute_plan, cooldown_wait_s=self.cooldown_wait_s,
                            input_files=fixed.files, outputs_file=fixed.outputs_file(job),
                            outputs_samples=fixed.samples)
        jid = job.job_id
        job_dir = f"/Documents/jobs/{jid}"
        result_path = f"/Documents/results/{jid}.json"
        done_path = f"/Documents/results/{jid}.done"
        log_path = f"/Documents/results/{jid}.log"  # kept raw if a BenchRunner build writes one
        async with self.backend.session(device.id) as s:
            progress("preparing iPhone", None)
            await _ignoring_mounted(s.mount_developer_image())
            if not await s.app_installed(BUNDLE_ID):
                if not self.app_path:
                    raise IosDeviceUnusable(
                        device.id,
                        f"iPhone {device.id}: BenchRunner ({BUNDLE_ID}) is not installed: build it "
                        "(ios_runner/README.md), then run `quantlab ios install PATH.ipa` or "
                        "set QUANTLAB_IOS_APP"
                    )
                progress("installing BenchRunner", None)
                await s.install(self.app_path)
            for stale in (result_path, done_path, log_path, job_dir):
                await s.remove(stale)
            progress("pushing model", None)
            await s.push(job.model.path, f"{job_dir}/{model_remote_name(job)}")
            await ios_numerics.push(s, fixed)
            await s.write(f"{job_dir}/job.json", json.dumps(payload, indent=1).encode())
            battery_before = _battery_health(await s.battery())
            progress("running on iPhone", 0.0)
            pid = await s.launch(BUNDLE_ID, ["-jobPath", f"jobs/{jid}/job.json"])
            samples: list[dict[str, Any]] = []
            # the app may first wait for the phone to cool down, then runs under the job's timeout
            cooldown_s = float(payload["preconditions"]["cooldown_wait_s"])
            timeout = cooldown_s + job.settings.timeout_s + GRACE_S
            start = time.monotonic()
            while not await s.exists(done_path):
                elapsed = time.monotonic() - start
                if elapsed > timeout:
                    await _quiet(s.kill(pid))
                    return RawResult(
                        job_id=jid,
                        status="failed",
                        error=f"timeout: BenchRunner wrote no results/{jid}.done "
                        f"within {timeout:g} s (cool-down wait {cooldown_s:g} s + job "
                        f"timeout {job.settings.timeout_s:g} s + {GRACE_S:g} s)",
                        runner={"name": "BenchRunner (iOS)", "host_samples": samples},
                    )
                sample = await _sample(s, pid)
                if sample:
                    samples.append({"t_s": round(elapsed, 3), **sample})
                progress("running on iPhone", min(elapsed / max(job.settings.timeout_s, 1.0), 0.99))
                await asyncio.sleep(POLL_S)
            result_bytes = await s.read(result_path)
            raw_outputs = [RawOutput.capture("result.json", "application/json", result_bytes)]
            if await s.exists(log_path):
                raw_outputs.append(RawOutput.capture("runner.log", "text/plain",
                                                     await s.read(log_path)))
            data = json.loads(result_bytes)
            await _quiet(s.kill(pid))
            if fixed.check:
                progress("checking numerics", None)
            numerics = await ios_numerics.collect(s, fixed, data, raw_outputs)
            battery_after = _battery_health(await s.battery())
            await s.remove(job_dir)
        raw = parse_result(data, job)
        warnings = list(raw.warnings)
        if not compute_plan and job.delegate.startswith("coreml-"):
            warnings.append(
                f"iOS {device.os_version} < 17.4: no MLComputePlan, per-op placement not recorded"
            )
        runner = {
            **raw.runner,
            "host_samples": samples,
            "battery_before": battery_before,
            "battery_after": battery_after,
        }
        return _replace(
            raw,
            runner=runner,
            warnings=tuple(warnings),
            thermal_before={**raw.thermal_before, **battery_before},
            thermal_after={**raw.thermal_after, **battery_after},
            raw_outputs=tuple(raw_outputs),
            numerics=numerics if raw.status == "ok" else fixed.numerics,
        )

    # ---------------------------------------------------------------- recovery

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """Poll usbmux until the iPhone is listed and answers lockdown again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                info = _run_async(self._describe_if_listed(device.id))
            except Exception:
                info = None
            if info is not None and info.state == "ready":
                return True
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        return False

    async def _describe_if_listed(self, udid: str) -> DeviceInfo | None:
        if udid not in await self.backend.list_udids():
            return None
        return await self._describe(udid)


def _replace(raw: RawResult, **changes: Any) -> RawResult:
    import dataclasses

    return dataclasses.replace(raw, **changes)


def _battery_health(battery: dict[str, Any] | None) -> dict[str, Any]:
    """Battery registry → battery_pct, battery_temp_c, charging, power_source (context only)."""
    if not battery:
        return {}
    out: dict[str, Any] = {}
    if "CurrentCapacity" in battery:
        out["battery_pct"] = battery["CurrentCapacity"]
    if "Temperature" in battery:
        out["battery_temp_c"] = round(float(battery["Temperature"]) / 100.0, 1)
    if "IsCharging" in battery:
        out["charging"] = bool(battery["IsCharging"])
    if "ExternalConnected" in battery:
        out["power_source"] = "usb" if battery["ExternalConnected"] else "battery"
    return out


async def _ignoring_mounted(coro: Awaitable[None]) -> None:
    try:
        await coro
    except Exception as exc:
        if type(exc).__name__ != "AlreadyMountedError":
            raise


async def _sample(session: IosSession, pid: int) -> dict[str, Any] | None:
    """One host-side sample of the runner; never lets sampling stall or fail the job."""
    try:
        return await asyncio.wait_for(session.process_sample(pid), timeout=3.0)
    except Exception:  # e.g. a DTXNsError from sysmontap; a real unplug shows in the next poll
        return None


async def _quiet(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except Exception:
        return
