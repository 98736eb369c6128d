"""iPhone agent: runs jobs in the BenchRunner app through pymobiledevice3.

Data flow of one job: build ``job.json`` (ios_runner.codec) → push model + job into
the app's container over house_arrest/AFC → launch the app with DVT ProcessControl
→ poll for ``Documents/results/<id>.done`` → pull the result → RawResult.

Every pymobiledevice3 call goes through one seam, an :class:`IosBackend`
(:class:`Pmd3Backend` for real phones). Tests put a fake iPhone behind the same
interface: set ``QUANTLAB_IOS_BACKEND=module:factory`` (e.g.
``tests/fakes/iphone.py:make_backend``) or pass ``backend=`` to :class:`IosAgent`.

MLComputePlan needs iOS 17.4: on iOS 17.0–17.3 jobs still run, without the
per-op placement, and the result carries a warning saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from harness.errors import DeviceDisconnected, QuantlabError, UserError
from harness.records import DeviceInfo, Job, RawResult

from .base import Progress

BUNDLE_ID = os.environ.get("QUANTLAB_IOS_BUNDLE_ID", "dev.quantlab.BenchRunner")
"""Bundle id of the runner app (project.yml's PRODUCT_BUNDLE_IDENTIFIER)."""

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
GRACE_S = 60.0  # on top of the job's timeout: push, launch, compile, cooldown wait

T = TypeVar("T")


class IosSession(Protocol):
    """One connected iPhone (lockdown + tunnel + services), as the agent uses it."""

    async def mount_developer_image(self) -> None:
        """Mount the developer disk image (no-op when already mounted)."""

    async def app_installed(self, bundle_id: str) -> bool:
        """Whether ``bundle_id`` is installed."""

    async def install(self, path: str) -> None:
        """Install an .ipa or .app from the host."""

    async def write(self, remote: str, data: bytes) -> None:
        """Write a file in the app container (parents created)."""

    async def push(self, local: str, remote: str) -> None:
        """Copy a host file or folder (an .mlpackage) into the app container."""

    async def exists(self, remote: str) -> bool:
        """Whether a path exists in the app container."""

    async def read(self, remote: str) -> bytes:
        """Read a file from the app container."""

    async def remove(self, remote: str) -> None:
        """Remove a file or folder from the app container (missing is fine)."""

    async def launch(self, bundle_id: str, arguments: list[str]) -> int:
        """Launch the app in the foreground (killing a running copy); returns the pid."""

    async def kill(self, pid: int) -> None:
        """Kill a process."""

    async def process_sample(self, pid: int) -> dict[str, Any] | None:
        """One CPU %/memory sample of ``pid`` (sysmontap), or None when unavailable."""

    async def battery(self) -> dict[str, Any] | None:
        """Battery registry (DiagnosticsService): temperature, charging state."""


class IosBackend(Protocol):
    """How the agent reaches iPhones: the one seam in front of pymobiledevice3."""

    async def list_udids(self) -> list[str]:
        """UDIDs of the iPhones attached over USB (usbmux)."""

    async def device_values(self, udid: str) -> dict[str, Any]:
        """Lockdown values plus ``DeveloperModeStatus``; raises pymobiledevice3 errors."""

    def session(self, udid: str) -> AbstractAsyncContextManager[IosSession]:
        """Open a session on ``udid`` (tunnel on iOS 17+)."""


# --------------------------------------------------------------------------- errors

_HINTS: list[tuple[str, str, str]] = [
    # (pymobiledevice3 exception name, kind, message); first match wins (subclasses first)
    (
        "ConnectionFailedToUsbmuxdError",
        "user",
        "usbmuxd is not running on this host: install and start it (Linux: `sudo apt install "
        "usbmuxd`), then plug the iPhone in",
    ),
    (
        "PairingDialogResponsePendingError",
        "user",
        "the iPhone shows 'Trust This Computer?': unlock it and tap Trust, then retry",
    ),
    (
        "UserDeniedPairingError",
        "user",
        "trust was denied on the iPhone: unplug, replug, and tap Trust",
    ),
    (
        "PasswordRequiredError",
        "user",
        "the iPhone is locked: unlock it (for unattended runs set Passcode off and Auto-Lock "
        "Never)",
    ),
    (
        "PasscodeRequiredError",
        "user",
        "the iPhone is locked: unlock it (for unattended runs set Passcode off and Auto-Lock "
        "Never)",
    ),
    (
        "NotPairedError",
        "user",
        "the iPhone is not paired with this host: unlock it, replug it and tap Trust",
    ),
    (
        "NotTrustedError",
        "user",
        "this host is not trusted by the iPhone: unlock it, replug it and tap Trust",
    ),
    (
        "DeviceHasPasscodeSetError",
        "user",
        "Developer Mode cannot be enabled automatically while a passcode is set: enable it in "
        "Settings → Privacy & Security → Developer Mode (or remove the passcode)",
    ),
    (
        "DeveloperModeIsNotEnabledError",
        "user",
        "Developer Mode is off: Settings → Privacy & Security → Developer Mode → On, "
        "restart, confirm",
    ),
    (
        "DeveloperModeError",
        "user",
        "Developer Mode is off: Settings → Privacy & Security → Developer Mode → On, "
        "restart, confirm",
    ),
    ("AlreadyMountedError", "ignore", ""),
    (
        "DeveloperDiskImageNotFoundError",
        "user",
        "no developer disk image for this iOS version: run `pymobiledevice3 mounter "
        "auto-mount` once with network access",
    ),
    (
        "NoSuchBuildIdentityError",
        "user",
        "Apple's signing service has no developer image for this iOS build: update "
        "pymobiledevice3 or mount from Xcode",
    ),
    (
        "UserspaceTunnelUnavailableError",
        "user",
        "iOS 17+ needs a tunnel and the userspace tunnel failed: run `sudo pymobiledevice3 "
        "remote tunneld` and retry",
    ),
    (
        "TunneldConnectionError",
        "user",
        "iOS 17+ needs a tunnel: start `sudo pymobiledevice3 remote tunneld` (or let "
        "quantlab use the userspace tunnel)",
    ),
    (
        "RSDRequiredError",
        "user",
        "iOS 17+ needs a tunnel: start `sudo pymobiledevice3 remote tunneld` and retry",
    ),
    (
        "AppNotInstalledError",
        "user",
        "the BenchRunner app is not installed: build it (ios_runner/README.md) and run "
        "`quantlab ios install PATH.ipa`",
    ),
    (
        "AppInstallError",
        "user",
        "installing BenchRunner failed: check that its provisioning profile includes this "
        "iPhone and has not expired "
        "(free teams: 7 days)",
    ),
    (
        "LaunchingApplicationError",
        "user",
        "the iPhone refused to launch BenchRunner: unlock it and trust the developer in "
        "Settings → General → "
        "VPN & Device Management",
    ),
    (
        "InvalidServiceError",
        "user",
        "a developer service is unavailable: enable Developer Mode and let quantlab mount "
        "the developer disk image",
    ),
    (
        "ConnectionTerminatedError",
        "unplugged",
        "the iPhone disconnected (unplugged or rebooted) mid-job",
    ),
    ("NoDeviceConnectedError", "unplugged", "the iPhone is not connected (unplugged?)"),
    ("DeviceNotFoundError", "unplugged", "the iPhone is not connected (unplugged?)"),
    ("MuxException", "unplugged", "the USB connection to the iPhone failed (unplugged?)"),
]
"""pymobiledevice3 exception → what the user should read. Tested one by one."""


class IosUserError(UserError):
    """Something the user fixes on the iPhone or the host (trust, Developer Mode, install)."""


def translate(exc: BaseException, udid: str) -> QuantlabError | None:
    """The quantlab error for a pymobiledevice3 or socket exception; None to ignore or re-raise."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    for name, kind, message in _HINTS:
        if name in names:
            if kind == "ignore":
                return None
            detail = str(exc).strip()
            text = f"iPhone {udid}: {message}" + (
                f" ({detail})" if detail and kind == "user" else ""
            )
            if kind == "unplugged":
                return DeviceDisconnected(udid, message, hint="replug it; quantlab retries")
            return IosUserError(text)
    if isinstance(exc, (ConnectionError, BrokenPipeError, EOFError)):
        return DeviceDisconnected(udid, f"the USB connection to the iPhone dropped mid-job ({exc})")
    return None


# --------------------------------------------------------------------------- helpers


def version_tuple(version: str | None) -> tuple[int, ...]:
    """'17.4.1' → (17, 4, 1); unknown → (0,)."""
    parts = re.findall(r"\d+", version or "")
    return tuple(int(p) for p in parts[:3]) or (0,)


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


def load_backend(spec: str | None = None) -> IosBackend:
    """The backend named by ``spec`` or ``$QUANTLAB_IOS_BACKEND``, else pymobiledevice3.

    The spec is ``module:factory`` or ``path/to/file.py:factory``.
    """
    spec = spec or os.environ.get("QUANTLAB_IOS_BACKEND")
    if not spec:
        return Pmd3Backend()
    module_name, _, attr = spec.rpartition(":") if spec.count(":") else (spec, "", "")
    try:
        if module_name.endswith(".py"):
            import importlib.util

            loader_spec = importlib.util.spec_from_file_location(
                "quantlab_ios_backend", module_name
            )
            if loader_spec is None or loader_spec.loader is None:
                raise ImportError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        factory = getattr(module, attr or "make_backend")
    except (ImportError, AttributeError, OSError) as exc:
        raise UserError(f"QUANTLAB_IOS_BACKEND={spec!r} cannot be loaded: {exc}") from exc
    backend: IosBackend = factory()
    return backend


# --------------------------------------------------------------------------- agent


class IosAgent:
    """iPhones over USB via pymobiledevice3 (see the module docstring)."""

    kind = "ios"
    delegates = DELEGATES

    def __init__(
        self, backend: IosBackend | None = None, app_path: str | None = None, **_: Any
    ) -> None:
        self._backend = backend
        self.app_path = app_path or os.environ.get("QUANTLAB_IOS_APP")

    @property
    def backend(self) -> IosBackend:
        """The connection factory (loaded lazily so `import agents.ios` stays cheap)."""
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
        try:
            return _run_async(self._run(device, job, progress))
        except QuantlabError:
            raise
        except Exception as exc:
            err = translate(exc, device.id)
            if err is None:
                raise
            raise err from exc

    async def _run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        from ios_runner.codec import build_job, model_remote_name, parse_result

        compute_plan = bool(device.extra.get("compute_plan", True))
        payload = build_job(job, compute_plan=compute_plan)
        jid = job.job_id
        job_dir = f"/Documents/jobs/{jid}"
        result_path = f"/Documents/results/{jid}.json"
        done_path = f"/Documents/results/{jid}.done"
        async with self.backend.session(device.id) as s:
            progress("preparing iPhone", None)
            await _ignoring_mounted(s.mount_developer_image())
            if not await s.app_installed(BUNDLE_ID):
                if not self.app_path:
                    raise IosUserError(
                        f"iPhone {device.id}: BenchRunner ({BUNDLE_ID}) is not installed: build it "
                        "(ios_runner/README.md), then run `quantlab ios install PATH.ipa` or "
                        "set QUANTLAB_IOS_APP"
                    )
                progress("installing BenchRunner", None)
                await s.install(self.app_path)
            for stale in (result_path, done_path, job_dir):
                await s.remove(stale)
            progress("pushing model", None)
            await s.push(job.model.path, f"{job_dir}/{model_remote_name(job)}")
            await s.write(f"{job_dir}/job.json", json.dumps(payload, indent=1).encode())
            battery_before = _battery_health(await s.battery())
            progress("running on iPhone", 0.0)
            pid = await s.launch(BUNDLE_ID, ["-jobPath", f"jobs/{jid}/job.json"])
            samples: list[dict[str, Any]] = []
            timeout = job.settings.timeout_s + GRACE_S
            start = time.monotonic()
            while not await s.exists(done_path):
                elapsed = time.monotonic() - start
                if elapsed > timeout:
                    await _quiet(s.kill(pid))
                    return RawResult(
                        job_id=jid,
                        status="failed",
                        error=f"timeout: BenchRunner wrote no results/{jid}.done "
                        f"within {timeout:.0f} s",
                        runner={"name": "BenchRunner (iOS)", "host_samples": samples},
                    )
                sample = await _sample(s, pid)
                if sample:
                    samples.append({"t_s": round(elapsed, 3), **sample})
                progress("running on iPhone", min(elapsed / max(job.settings.timeout_s, 1.0), 0.99))
                await asyncio.sleep(POLL_S)
            data = json.loads(await s.read(result_path))
            await _quiet(s.kill(pid))
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
    except (TimeoutError, OSError, LookupError, ValueError):
        return None


async def _quiet(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except Exception:
        return


# --------------------------------------------------------------------------- real backend


class Pmd3Backend:
    """The real backend: usbmux, lockdown, tunnel (iOS 17+), house_arrest, DVT."""

    async def list_udids(self) -> list[str]:
        """USB-attached devices from usbmuxd."""
        from pymobiledevice3 import usbmux

        return [d.serial for d in await usbmux.list_devices() if d.connection_type == "USB"]

    async def device_values(self, udid: str) -> dict[str, Any]:
        """All lockdown values plus Developer Mode state."""
        from pymobiledevice3.lockdown import create_using_usbmux

        lockdown = await create_using_usbmux(serial=udid, autopair=False)
        try:
            values = dict(lockdown.all_values)
            try:
                values["DeveloperModeStatus"] = await lockdown.get_developer_mode_status()
            except Exception:
                values["DeveloperModeStatus"] = None
            return values
        finally:
            await lockdown.close()

    @asynccontextmanager
    async def session(self, udid: str) -> AsyncIterator[IosSession]:
        """Lockdown, then a tunnel on iOS 17+ (tunneld if running, else the userspace tunnel)."""
        from contextlib import AsyncExitStack

        from pymobiledevice3.lockdown import create_using_usbmux

        async with AsyncExitStack() as stack:
            lockdown = await create_using_usbmux(serial=udid)
            stack.push_async_callback(lockdown.close)
            dvt_provider: Any = lockdown
            if version_tuple(lockdown.product_version) >= (17, 0):
                dvt_provider = await _open_tunnel(udid, stack)
            yield Pmd3Session(lockdown, dvt_provider, stack)


async def _open_tunnel(udid: str, stack: Any) -> Any:
    from pymobiledevice3.tunneld.api import get_tunneld_device_by_udid

    try:
        rsd = await get_tunneld_device_by_udid(udid)
    except Exception:
        rsd = None
    if rsd is not None:
        return rsd
    from pymobiledevice3.remote.userspace_tunnel import UserspaceRsdTunnel

    return await stack.enter_async_context(UserspaceRsdTunnel(serial=udid))


class Pmd3Session:
    """IosSession on pymobiledevice3 services."""

    def __init__(self, lockdown: Any, dvt_provider: Any, stack: Any) -> None:
        self.lockdown = lockdown
        self.dvt_provider = dvt_provider
        self.stack = stack
        self._afc: Any = None
        self._dvt: Any = None

    async def mount_developer_image(self) -> None:
        """auto_mount picks the personalized image on iOS 17+."""
        from pymobiledevice3.services.mobile_image_mounter import auto_mount

        await auto_mount(self.lockdown)

    async def app_installed(self, bundle_id: str) -> bool:
        """installation_proxy lookup."""
        from pymobiledevice3.services.installation_proxy import InstallationProxyService

        async with InstallationProxyService(lockdown=self.lockdown) as ip:
            return bundle_id in await ip.get_apps(bundle_identifiers=[bundle_id])

    async def install(self, path: str) -> None:
        """installation_proxy install from a local .ipa/.app."""
        from pymobiledevice3.services.installation_proxy import InstallationProxyService

        async with InstallationProxyService(lockdown=self.lockdown) as ip:
            await ip.install_from_local(Path(path), developer=True)

    async def _house_arrest(self) -> Any:
        if self._afc is None:
            from pymobiledevice3.services.house_arrest import HouseArrestService

            self._afc = await self.stack.enter_async_context(
                await HouseArrestService.create(self.lockdown, BUNDLE_ID)
            )
        return self._afc

    async def write(self, remote: str, data: bytes) -> None:
        """AFC write (parents created)."""
        afc = await self._house_arrest()
        await afc.makedirs(str(Path(remote).parent))
        await afc.set_file_contents(remote, data)

    async def push(self, local: str, remote: str) -> None:
        """AFC push of a file or a folder."""
        afc = await self._house_arrest()
        src = Path(local)
        await afc.makedirs(str(Path(remote).parent))
        if not src.is_dir():
            await afc.push(str(src), remote, progress_bar=False)
            return
        # AfcService.push puts a folder under remote/<basename>; copy file by file so that the
        # folder lands exactly at ``remote`` (e.g. jobs/<id>/model.mlpackage).
        for file in sorted(p for p in src.rglob("*") if p.is_file()):
            target = f"{remote}/{file.relative_to(src).as_posix()}"
            await afc.makedirs(str(Path(target).parent))
            await afc.push(str(file), target, progress_bar=False)

    async def exists(self, remote: str) -> bool:
        """AFC exists."""
        return bool(await (await self._house_arrest()).exists(remote))

    async def read(self, remote: str) -> bytes:
        """AFC read."""
        data: bytes = await (await self._house_arrest()).get_file_contents(remote)
        return data

    async def remove(self, remote: str) -> None:
        """AFC rm (recursive, missing ok)."""
        afc = await self._house_arrest()
        if await afc.exists(remote):
            await afc.rm(remote, force=True)

    async def _dvt_provider(self) -> Any:
        if self._dvt is None:
            from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider

            self._dvt = await self.stack.enter_async_context(DvtProvider(self.dvt_provider))
        return self._dvt

    async def launch(self, bundle_id: str, arguments: list[str]) -> int:
        """DVT ProcessControl launch (foreground, kills a running copy)."""
        from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl

        async with ProcessControl(await self._dvt_provider()) as pc:
            return int(await pc.launch(bundle_id, arguments=arguments, kill_existing=True))

    async def kill(self, pid: int) -> None:
        """DVT ProcessControl kill."""
        from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl

        async with ProcessControl(await self._dvt_provider()) as pc:
            await pc.kill(pid)

    async def process_sample(self, pid: int) -> dict[str, Any] | None:
        """One sysmontap sample of ``pid``: cpuUsage %, physFootprint bytes."""
        from pymobiledevice3.services.dvt.instruments.sysmontap import Sysmontap

        tap = Sysmontap(
            await self._dvt_provider(),
            ["pid", "cpuUsage", "physFootprint"],
            ["vmCompressorPageCount"],
        )
        async with tap:
            async for processes in tap.iter_processes():
                for proc in processes:
                    if proc.get("pid") == pid:
                        return {
                            "cpu_pct": proc.get("cpuUsage"),
                            "phys_footprint": proc.get("physFootprint"),
                        }
                return None
        return None

    async def battery(self) -> dict[str, Any] | None:
        """DiagnosticsService IOPMPowerSource registry."""
        from pymobiledevice3.services.diagnostics import DiagnosticsService

        async with DiagnosticsService(lockdown=self.lockdown) as diag:
            battery: dict[str, Any] | None = await diag.get_battery()
            return battery
