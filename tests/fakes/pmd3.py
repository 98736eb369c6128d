"""Fakes of pymobiledevice3's own classes, so that ``quantlab.agents.ios.pmd3.Pmd3Backend``
runs for real.

The fake iPhone in ``iphone.py`` sits behind quantlab's ``IosBackend`` seam and so never runs
``Pmd3Backend``/``Pmd3Session``. These fakes sit one layer lower, in place of the pymobiledevice3
objects that code calls: ``usbmux.list_devices``, ``lockdown.create_using_usbmux`` and its
lockdown client, ``mobile_image_mounter.auto_mount``, ``InstallationProxyService``,
``HouseArrestService`` (AFC over a host folder that is the app container), ``DvtProvider``,
``ProcessControl`` (launch starts the fake BenchRunner app of ``iphone.py`` as a host process),
``Sysmontap``, ``DiagnosticsService``, tunneld's ``get_tunneld_device_by_udid`` and
``UserspaceRsdTunnel``. :func:`install` puts them at the module attributes of the installed,
pinned pymobiledevice3 (``monkeypatch.setattr`` fails if an attribute is gone) after
:func:`check_fakes_match_pymobiledevice3` has compared every faked method with the real one:
same name, parameters (names, kinds, defaults), async-ness, properties and instance attributes.
A rename or a changed signature upstream therefore fails the tests instead of passing on a fake.

Return values follow the real shapes: ``MuxDevice`` is the real dataclass, ``get_apps`` maps
bundle id → info dict, ``ProcessControl.launch`` returns an int pid, ``Sysmontap.iter_processes``
yields lists of dicts keyed by the requested attributes, ``get_battery`` is an IOPMPowerSource
registry. Errors are the real pymobiledevice3 (and DTX) exception classes, raised where the real
code raises them (e.g. ``auto_mount`` over plain lockdown on iOS 27+ is ``RSDRequiredError``).

What stays fake: the bytes on the wire (no plist/DTX/AFC framing), usbmuxd, the tunnel, and the
app, which is a host process following the BenchRunner contract.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from pymobiledevice3 import exceptions as exc
from pymobiledevice3.dtx.exceptions import DTXNsError
from pymobiledevice3.dtx.ns_types import NSError
from pymobiledevice3.lockdown import DEFAULT_LABEL, SERVICE_PORT
from pymobiledevice3.remote.userspace_tunnel import UserspaceTunnelUnavailableError
from pymobiledevice3.services.mobile_image_mounter import PersonalizedDdi
from pymobiledevice3.tunneld.api import TUNNELD_DEFAULT_ADDRESS, TunneldAddress
from pymobiledevice3.usbmux import MuxDevice

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUNDLE_ID = "dev.quantlab.BenchRunner"
UDID = "00008110-001A2B3C4D5E6F70"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3])


class Phone:
    """State of one fake iPhone, shared by every fake service that reaches it."""

    def __init__(
        self,
        root: Path,
        *,
        udid: str = UDID,
        product_version: str = "17.5.1",
        paired: bool = True,
        developer_mode: bool = True,
        installed: bool = True,
        locked: bool = False,
        tunneld: bool = False,
        app_mode: str = "ok",
    ) -> None:
        self.udid = udid
        self.container = root / "container"
        (self.container / "Documents").mkdir(parents=True, exist_ok=True)
        self.values: dict[str, Any] = {
            "UniqueDeviceID": udid,
            "DeviceName": "Pmd3 Fake iPhone",
            "DeviceClass": "iPhone",
            "ProductType": "iPhone15,2",
            "ProductVersion": product_version,
            "BuildVersion": "21F90",
            "HardwarePlatform": "t8120",
            "CPUArchitecture": "arm64e",
        }
        self.paired = paired
        self.developer_mode = developer_mode
        self.mounted = False
        self.locked = locked
        self.apps: dict[str, dict[str, Any]] = {}
        if installed:
            self.apps[BUNDLE_ID] = _app_info(BUNDLE_ID)
        self.tunneld = tunneld  # a running `pymobiledevice3 remote tunneld` that knows this phone
        self.app_mode = app_mode
        self.attached = True
        self.failures: dict[str, BaseException] = {}  # "Class.method" → raised on call
        self.calls: list[str] = []  # "Class.method" in call order
        self.afc_writes: list[str] = []  # container paths written through AFC
        self.pair_timeouts: list[float | None] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.launches: list[dict[str, Any]] = []
        self.killed: list[int] = []
        self.open: dict[str, int] = {}  # open connections per fake class (must end at 0)

    @property
    def product_version(self) -> str:
        return str(self.values["ProductVersion"])

    def call(self, name: str) -> None:
        """Record a call; raise the injected failure or a disconnect."""
        self.calls.append(name)
        if name in self.failures:
            raise self.failures[name]
        if not self.attached:
            raise exc.ConnectionTerminatedError()

    def opened(self, name: str, delta: int) -> None:
        self.open[name] = self.open.get(name, 0) + delta

    def kill_all(self) -> None:
        """Stop every fake app process still running."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _app_info(bundle_id: str) -> dict[str, Any]:
    return {
        "CFBundleIdentifier": bundle_id,
        "CFBundleShortVersionString": "1.0",
        "CFBundleVersion": "1",
        "ApplicationType": "User",
        "Path": f"/private/var/containers/Bundle/Application/0000/{bundle_id}.app",
    }


ATTACHED: dict[str, Phone] = {}
"""What the fake usbmuxd lists (filled by :func:`install`)."""


def _phone(udid: str | None) -> Phone:
    if udid is None:
        if not ATTACHED:
            raise exc.NoDeviceConnectedError()
        return next(iter(ATTACHED.values()))
    phone = ATTACHED.get(udid)
    if phone is None or not phone.attached:
        raise exc.DeviceNotFoundError(udid, f"Device not found: usbmux has no device {udid}")
    return phone


# --------------------------------------------------------------------------- usbmux / lockdown


async def list_devices(usbmux_address: str | None = None) -> list[MuxDevice]:
    """usbmux.list_devices: real MuxDevice records, plus a Wi-Fi entry the agent must skip."""
    out = [MuxDevice(i + 1, p.udid, "USB") for i, p in enumerate(ATTACHED.values()) if p.attached]
    out += [MuxDevice(99, "00008030-00AA00BB00CC00DD", "Network")]
    return out


class FakeLockdownClient:
    """What create_using_usbmux returns (a UsbmuxLockdownClient)."""

    REAL = "pymobiledevice3.lockdown:UsbmuxLockdownClient"
    INSTANCE_ATTRS = ("all_values", "paired", "udid")

    def __init__(self, phone: Phone) -> None:
        self.phone = phone
        self.udid = phone.udid
        self.paired = phone.paired
        public = ("UniqueDeviceID", "ProductType", "ProductVersion", "BuildVersion", "DeviceClass")
        self.all_values: dict[str, Any] = (
            dict(phone.values) if phone.paired else {k: phone.values[k] for k in public}
        )
        phone.opened("lockdown", +1)

    @property
    def product_version(self) -> str:
        return self.all_values.get("ProductVersion") or "1.0"

    async def get_developer_mode_status(self) -> bool:
        self.phone.call("LockdownClient.get_developer_mode_status")
        if not self.paired:
            raise exc.NotPairedError()
        return self.phone.developer_mode

    async def close(self) -> None:
        self.phone.opened("lockdown", -1)


async def create_using_usbmux(
    serial: str | None = None,
    identifier: str | None = None,
    label: str = DEFAULT_LABEL,
    autopair: bool = True,
    connection_type: str | None = None,
    pair_timeout: float | None = None,
    local_hostname: str | None = None,
    pair_record: dict[str, Any] | None = None,
    pairing_records_cache_folder: Path | None = None,
    port: int = SERVICE_PORT,
    usbmux_address: str | None = None,
) -> FakeLockdownClient:
    """lockdown.create_using_usbmux: pairs when asked, like the real one (the dialog never
    gets an answer here, so pairing ends in PairingDialogResponsePendingError)."""
    phone = _phone(serial)
    phone.call("create_using_usbmux")
    if not phone.paired and autopair:
        phone.pair_timeouts.append(pair_timeout)
        if phone.locked:
            raise exc.PasswordRequiredError()
        raise exc.PairingDialogResponsePendingError()
    return FakeLockdownClient(phone)


# --------------------------------------------------------------------------- tunnel (iOS 17+)


class FakeRsd:
    """A RemoteServiceDiscoveryService reached through a tunnel."""

    REAL = "pymobiledevice3.remote.remote_service_discovery:RemoteServiceDiscoveryService"
    INSTANCE_ATTRS = ("udid",)

    def __init__(self, phone: Phone, via: str) -> None:
        self.phone = phone
        self.udid = phone.udid
        self.via = via
        phone.opened(f"rsd/{via}", +1)

    @property
    def product_version(self) -> str:
        return self.phone.product_version

    async def close(self) -> None:
        self.phone.opened(f"rsd/{self.via}", -1)


async def get_tunneld_device_by_udid(
    udid: str, tunneld_address: TunneldAddress = TUNNELD_DEFAULT_ADDRESS, bridge: bool | None = None
) -> FakeRsd | None:
    """tunneld.api.get_tunneld_device_by_udid: TunneldConnectionError when none is running."""
    phone = _phone(udid)
    phone.call("get_tunneld_device_by_udid")
    if not phone.tunneld:
        raise exc.TunneldConnectionError()
    return FakeRsd(phone, "tunneld")


class FakeUserspaceRsdTunnel:
    """remote.userspace_tunnel.UserspaceRsdTunnel: the no-root tunnel as a context manager."""

    REAL = "pymobiledevice3.remote.userspace_tunnel:UserspaceRsdTunnel"

    def __init__(
        self, serial: str | None = None, autopair: bool = True, remotepairing_fallback: bool = True
    ) -> None:
        self.serial = serial
        self.rsd: FakeRsd | None = None

    async def __aenter__(self) -> FakeRsd:
        phone = _phone(self.serial)
        phone.call("UserspaceRsdTunnel.__aenter__")
        self.rsd = FakeRsd(phone, "userspace")
        return self.rsd

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if self.rsd is not None:
            await self.rsd.close()


def _provider_phone(provider: Any) -> Phone:
    phone = provider.phone
    assert isinstance(phone, Phone), provider
    return phone


# --------------------------------------------------------------------------- image mounter


async def auto_mount(
    lockdown: Any,
    xcode: str | None = None,
    version: str | None = None,
    image: PersonalizedDdi | None = None,
) -> None:
    """mobile_image_mounter.auto_mount with the real preconditions: from iOS 27 only over an RSD
    tunnel, AlreadyMountedError once mounted, DeveloperModeIsNotEnabledError when it is off."""
    phone = _provider_phone(lockdown)
    phone.call("auto_mount")
    if _version(lockdown.product_version) >= (27, 0) and not isinstance(lockdown, FakeRsd):
        raise exc.RSDRequiredError(phone.udid, lockdown.product_version)
    if phone.mounted:
        raise exc.AlreadyMountedError()
    if not phone.developer_mode:
        raise exc.DeveloperModeIsNotEnabledError()
    phone.mounted = True


# --------------------------------------------------------------------------- lockdown services


class _FakeLockdownService:
    """The LockdownService base: constructed with a provider, used as an async context."""

    def __init__(
        self,
        lockdown: Any,
        service_name: str | None = None,
        is_developer_service: bool = False,
        service: Any = None,
        include_escrow_bag: bool = False,
    ) -> None:
        self.lockdown = lockdown
        self.phone = _provider_phone(lockdown)
        self.connected = False

    async def __aenter__(self) -> Any:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        if self.connected:  # like the real one: connecting twice is a no-op
            return
        self.phone.call(f"{type(self).__name__}.connect")
        self.phone.opened(type(self).__name__, +1)
        self.connected = True

    async def close(self) -> None:
        if self.connected:
            self.phone.opened(type(self).__name__, -1)
            self.connected = False


class FakeInstallationProxyService(_FakeLockdownService):
    """services.installation_proxy.InstallationProxyService."""

    REAL = "pymobiledevice3.services.installation_proxy:InstallationProxyService"

    async def get_apps(
        self,
        application_type: str = "Any",
        calculate_sizes: bool = False,
        bundle_identifiers: list[str] | None = None,
        show_placeholders: bool = False,
    ) -> dict[str, dict[str, Any]]:
        self.phone.call("InstallationProxyService.get_apps")
        return {
            bid: dict(info)
            for bid, info in self.phone.apps.items()
            if bundle_identifiers is None or bid in bundle_identifiers
        }

    async def install_from_local(
        self,
        package_path: Path,
        cmd: str = "Install",
        options: dict[str, Any] | None = None,
        handler: Callable[..., Any] | None = None,
        developer: bool = False,
        *args: Any,
    ) -> None:
        self.phone.call("InstallationProxyService.install_from_local")
        # like the real one: a Path (it reads .suffix), an .ipa's bytes or an .app folder
        if not package_path.is_dir():
            data = package_path.read_bytes()
            if not data.startswith(b"PK"):
                raise exc.AppInstallError("ApplicationVerificationFailed: not a zip archive")
        self.phone.apps[BUNDLE_ID] = _app_info(BUNDLE_ID)


class FakeDiagnosticsService(_FakeLockdownService):
    """services.diagnostics.DiagnosticsService."""

    REAL = "pymobiledevice3.services.diagnostics:DiagnosticsService"

    async def get_battery(self) -> dict[str, Any] | None:
        self.phone.call("DiagnosticsService.get_battery")
        return {  # an IOPMPowerSource registry entry, as the real IORegistry query returns it
            "AppleRawCurrentCapacity": 3012,
            "CurrentCapacity": 87,
            "MaxCapacity": 100,
            "Temperature": 3150,  # hundredths of °C
            "Voltage": 4102,
            "InstantAmperage": 412,
            "IsCharging": True,
            "ExternalConnected": True,
            "FullyCharged": False,
        }


class FakeHouseArrestService(_FakeLockdownService):
    """services.house_arrest.HouseArrestService: AFC rooted at the app container (a host folder)."""

    REAL = "pymobiledevice3.services.house_arrest:HouseArrestService"

    def __init__(self, lockdown: Any, documents_only: bool = False) -> None:
        super().__init__(lockdown)
        self.documents_only = documents_only
        self.vended = False

    @classmethod
    async def create(
        cls, lockdown: Any, bundle_id: str, documents_only: bool = False
    ) -> FakeHouseArrestService:
        service = cls(lockdown, documents_only=documents_only)
        await service.connect()
        try:
            await service.send_command(
                bundle_id, "VendDocuments" if documents_only else "VendContainer"
            )
        except exc.PyMobileDevice3Exception:
            await service.close()
            raise
        return service

    async def send_command(self, bundle_id: str, cmd: str = "VendContainer") -> None:
        self.phone.call("HouseArrestService.send_command")
        if bundle_id not in self.phone.apps:
            raise exc.AppNotInstalledError(f"No app with bundle ID {bundle_id} is installed.")
        self.vended = True

    def _host(self, filename: str) -> Path:
        assert self.vended, "AFC used before VendContainer"
        root = self.phone.container.resolve()
        path = (root / filename.lstrip("/")).resolve()
        if path != root and root not in path.parents:
            raise exc.AfcException(f"path escapes the container: {filename}", 7, filename)
        return path

    async def exists(self, filename: str) -> bool:
        self.phone.call("AfcService.exists")
        return self._host(filename).exists()

    async def makedirs(self, filename: str) -> bytes:
        self.phone.call("AfcService.makedirs")
        self._host(filename).mkdir(parents=True, exist_ok=True)
        return b""

    async def set_file_contents(self, filename: str, data: bytes, progress: Any = None) -> None:
        self.phone.call("AfcService.set_file_contents")
        path = self._host(filename)
        if not path.parent.is_dir():
            raise exc.AfcFileNotFoundError("open failed: no such directory", 8, filename)
        if not isinstance(data, bytes):
            raise TypeError(f"AFC writes bytes, got {type(data).__name__}")
        path.write_bytes(data)
        self.phone.afc_writes.append(
            "/" + path.relative_to(self.phone.container.resolve()).as_posix()
        )

    async def get_file_contents(self, filename: str) -> bytes:
        self.phone.call("AfcService.get_file_contents")
        path = self._host(filename)
        if not path.exists():
            raise exc.AfcFileNotFoundError("file not found", 8, filename)
        if not path.is_file():
            raise exc.AfcException(f"Not a regular file: {filename}", 7, filename)
        return path.read_bytes()

    async def push(
        self,
        local_path: str,
        remote_path: str,
        callback: Callable[[str, str], Any] | None = None,
        progress_bar: bool = True,
    ) -> None:
        """AFC push with the real placement rules: a folder lands at remote/<basename>; a file
        given an existing remote folder lands inside it under its own name."""
        self.phone.call("AfcService.push")
        if os.path.isdir(local_path):
            remote_path = f"{remote_path.rstrip('/')}/{os.path.basename(local_path)}"
        await self._push_one(local_path, remote_path)

    async def _push_one(self, local_path: str, remote_path: str) -> None:
        if os.path.isdir(local_path):
            if not self._host(remote_path).exists():
                self._host(remote_path).mkdir()
            for name in os.listdir(local_path):
                await self._push_one(os.path.join(local_path, name), f"{remote_path}/{name}")
            return
        if self._host(remote_path).is_dir():
            remote_path = f"{remote_path}/{os.path.basename(local_path)}"
        with open(local_path, "rb") as f:
            data = f.read()
        self.phone.calls.append("AfcService.push:file")
        path = self._host(remote_path)
        if not path.parent.is_dir():
            raise exc.AfcFileNotFoundError("open failed: no such directory", 8, remote_path)
        path.write_bytes(data)
        self.phone.afc_writes.append(
            "/" + path.relative_to(self.phone.container.resolve()).as_posix()
        )

    async def rm(self, filename: str, match: Any = None, force: bool = False) -> list[str]:
        self.phone.call("AfcService.rm")
        path = self._host(filename)
        if not path.exists():
            if force:
                return [filename]
            raise exc.AfcFileNotFoundError("file not found", 8, filename)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        return []


# --------------------------------------------------------------------------- DVT


class FakeDvtProvider:
    """services.dvt.instruments.dvt_provider.DvtProvider: needs the tunnel on iOS 17+, the
    mounted developer image and Developer Mode, like the real instruments service."""

    REAL = "pymobiledevice3.services.dvt.instruments.dvt_provider:DvtProvider"

    def __init__(self, lockdown: Any, strip_ssl: bool | None = None, dtx: Any = None) -> None:
        self.lockdown = lockdown
        self.phone = _provider_phone(lockdown)

    async def connect(self) -> None:
        phone = self.phone
        phone.call("DvtProvider.connect")
        version = _version(phone.product_version)
        if version >= (17, 0) and not isinstance(self.lockdown, FakeRsd):
            raise exc.InvalidServiceError(
                "The device does not offer the instruments service over lockdown.",
                phone.udid,
                phone.product_version,
            )
        if not phone.developer_mode:
            raise exc.DeveloperModeIsNotEnabledError()
        if not phone.mounted:
            raise exc.InvalidServiceError(
                "The developer disk image is not mounted.", phone.udid, phone.product_version
            )
        phone.opened("DvtProvider", +1)

    async def close(self) -> None:
        self.phone.opened("DvtProvider", -1)

    async def __aenter__(self) -> FakeDvtProvider:
        await self.connect()
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.close()


class _FakeDtxService:
    """The DtxService base: constructed with a connected provider."""

    def __init__(self, provider: Any, service: Any = None) -> None:
        assert isinstance(provider, FakeDvtProvider), provider
        self.phone = _provider_phone(provider)

    async def connect(self) -> None:
        self.phone.call(f"{type(self).__name__}.connect")

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Any:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()


def _launch_refused(reason: str, description: str) -> DTXNsError:
    """The NSError iOS answers a refused launch with, as DTX raises it."""
    return DTXNsError(
        NSError(
            1,
            "FBSOpenApplicationServiceErrorDomain",
            {"BSErrorCodeDescription": reason, "NSLocalizedDescription": description},
        )
    )


class FakeProcessControl(_FakeDtxService):
    """services.dvt.instruments.process_control.ProcessControl; the launched app is the fake
    BenchRunner of ``iphone.py``, a host process working in the container folder."""

    REAL = "pymobiledevice3.services.dvt.instruments.process_control:ProcessControl"

    async def launch(
        self,
        bundle_id: str,
        arguments: list[str] | None = None,
        kill_existing: bool = True,
        start_suspended: bool = False,
        environment: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
    ) -> int:
        phone = self.phone
        phone.call("ProcessControl.launch")
        if bundle_id not in phone.apps:
            raise _launch_refused("NotFound", f"The request to open {bundle_id!r} failed.")
        if phone.locked:
            raise _launch_refused(
                "Locked", f"Unable to launch {bundle_id} because the device was locked."
            )
        if kill_existing:
            phone.kill_all()
        arguments = list(arguments or [])
        phone.launches.append(
            {
                "bundle_id": bundle_id,
                "arguments": arguments,
                "kill_existing": kill_existing,
                "start_suspended": start_suspended,
            }
        )
        job_rel = arguments[arguments.index("-jobPath") + 1]
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "iphone.py"),
                str(phone.container / "Documents"),
                job_rel,
                phone.app_mode,
                phone.values["ProductType"],
                phone.product_version,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        phone.processes[proc.pid] = proc
        return proc.pid

    async def kill(self, pid: int) -> None:
        self.phone.call("ProcessControl.kill")
        self.phone.killed.append(pid)
        proc = self.phone.processes.get(pid)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


class FakeSysmontap:
    """services.dvt.instruments.sysmontap.Sysmontap (a Tap): samples of the app processes (and
    launchd), each a dict keyed by the requested process attributes."""

    REAL = "pymobiledevice3.services.dvt.instruments.sysmontap:Sysmontap"

    def __init__(
        self,
        dvt: Any,
        process_attributes: list[str],
        system_attributes: list[str],
        interval_ms: int = 500,
    ) -> None:
        assert isinstance(dvt, FakeDvtProvider), dvt
        self.phone = _provider_phone(dvt)
        self.process_attributes = list(process_attributes)
        self.system_attributes = list(system_attributes)
        self.interval_ms = interval_ms

    async def __aenter__(self) -> FakeSysmontap:
        self.phone.call("Sysmontap.__aenter__")
        self.phone.opened("Sysmontap", +1)
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.phone.opened("Sysmontap", -1)

    async def iter_processes(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        self.phone.call("Sysmontap.iter_processes")
        while True:
            await asyncio.sleep(0)
            rows = [{"pid": 1, "name": "launchd", "cpuUsage": 0.1, "physFootprint": 4 << 20}]
            for pid, proc in self.phone.processes.items():
                if proc.poll() is None:
                    rows.append(
                        {
                            "pid": pid,
                            "name": "BenchRunner",
                            "cpuUsage": 97.5,
                            "physFootprint": 48 << 20,
                        }
                    )
            yield [{attr: row.get(attr) for attr in self.process_attributes} for row in rows]


# --------------------------------------------------------------------------- checking, installing

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "pymobiledevice3.usbmux:list_devices": list_devices,
    "pymobiledevice3.lockdown:create_using_usbmux": create_using_usbmux,
    "pymobiledevice3.services.mobile_image_mounter:auto_mount": auto_mount,
    "pymobiledevice3.tunneld.api:get_tunneld_device_by_udid": get_tunneld_device_by_udid,
}
"""Fake functions, by the real module attribute they replace."""

CLASSES: dict[str, type] = {
    "pymobiledevice3.services.installation_proxy:InstallationProxyService": (
        FakeInstallationProxyService
    ),
    "pymobiledevice3.services.house_arrest:HouseArrestService": FakeHouseArrestService,
    "pymobiledevice3.services.diagnostics:DiagnosticsService": FakeDiagnosticsService,
    "pymobiledevice3.services.dvt.instruments.dvt_provider:DvtProvider": FakeDvtProvider,
    "pymobiledevice3.services.dvt.instruments.process_control:ProcessControl": FakeProcessControl,
    "pymobiledevice3.services.dvt.instruments.sysmontap:Sysmontap": FakeSysmontap,
    "pymobiledevice3.remote.userspace_tunnel:UserspaceRsdTunnel": FakeUserspaceRsdTunnel,
}
"""Fake classes, by the real module attribute they replace."""

RETURNED: tuple[type, ...] = (FakeLockdownClient, FakeRsd)
"""Fakes of objects the real code returns rather than the backend constructs (checked too)."""


def _real(target: str) -> Any:
    import importlib

    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def _kind(fn: Any) -> str:
    fn = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(fn):
        return "async generator"
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    return "function"


def _assigned_attributes(cls: type) -> set[str]:
    """``self.X = …`` targets anywhere in the class bodies of ``cls`` and its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or not klass.__module__.startswith("pymobiledevice3"):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        for node in ast.walk(tree):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            for t in targets:
                if (
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                ):
                    names.add(t.attr)
    return names


def mismatches(fake: Any, real: Any) -> list[str]:
    """How ``fake`` differs from the real pymobiledevice3 function or class (empty: none)."""
    where = f"{getattr(real, '__module__', '?')}.{getattr(real, '__qualname__', real)}"
    if not inspect.isclass(fake):
        if _params(fake) != _params(real):
            return [f"{where}{inspect.signature(real)} != fake {inspect.signature(fake)}"]
        if _kind(fake) != _kind(real):
            return [f"{where} is a {_kind(real)}, the fake a {_kind(fake)}"]
        return []
    problems: list[str] = []
    names = {
        n
        for klass in fake.__mro__
        if klass is not object and not klass.__module__.startswith("pymobiledevice3")
        for n in vars(klass)
        if not n.startswith("_") or n in ("__init__", "__aenter__", "__aexit__")
    } - {"REAL", "INSTANCE_ATTRS", "phone"}
    if fake in RETURNED:
        names.discard("__init__")  # built by the fake factory, never by the backend
    for name in sorted(names):
        mine = inspect.getattr_static(fake, name)
        try:
            theirs = inspect.getattr_static(real, name)
        except AttributeError:
            problems.append(f"{where} has no {name}")
            continue
        if isinstance(mine, property):
            if not isinstance(theirs, property):
                problems.append(f"{where}.{name} is not a property")
            continue
        if isinstance(mine, classmethod) != isinstance(theirs, classmethod):
            problems.append(f"{where}.{name}: classmethod on one side only")
            continue
        mine_fn, theirs_fn = getattr(fake, name), getattr(real, name)
        if not callable(theirs_fn):
            problems.append(f"{where}.{name} is not callable")
            continue
        if _params(mine_fn) != _params(theirs_fn):
            problems.append(
                f"{where}.{name}{inspect.signature(theirs_fn)} != fake {inspect.signature(mine_fn)}"
            )
        elif _kind(mine_fn) != _kind(theirs_fn):
            problems.append(f"{where}.{name} is a {_kind(theirs_fn)}, the fake a {_kind(mine_fn)}")
    missing = set(getattr(fake, "INSTANCE_ATTRS", ())) - _assigned_attributes(real)
    problems += [f"{where} no longer sets self.{n}" for n in sorted(missing)]
    return problems


def check_fakes_match_pymobiledevice3() -> None:
    """Fail (pytest.fail) when any fake differs from the installed pymobiledevice3."""
    problems: list[str] = []
    for target, fake in {**FUNCTIONS, **CLASSES}.items():
        problems += mismatches(fake, _real(target))
    for returned in RETURNED:
        problems += mismatches(returned, _real(returned.REAL))  # type: ignore[attr-defined]
    # shapes the fakes return, checked against the real definitions
    fields = [f.name for f in dataclasses.fields(MuxDevice)]
    if fields[:3] != ["devid", "serial", "connection_type"]:
        problems.append(f"usbmux.MuxDevice fields changed: {fields}")
    if problems:
        pytest.fail("pymobiledevice3 changed under the fakes:\n  " + "\n  ".join(problems))


def install(monkeypatch: pytest.MonkeyPatch, *phones: Phone) -> None:
    """Check the fakes against the pinned pymobiledevice3, then put them in its place."""
    check_fakes_match_pymobiledevice3()
    monkeypatch.setattr(sys.modules[__name__], "ATTACHED", {p.udid: p for p in phones})
    for target, fake in {**FUNCTIONS, **CLASSES}.items():
        module_name, _, attr = target.partition(":")
        _real(target)  # import the module, so that setattr finds it
        monkeypatch.setattr(sys.modules[module_name], attr, fake)  # raising=True: must exist


__all__ = [
    "BUNDLE_ID",
    "UDID",
    "Phone",
    "UserspaceTunnelUnavailableError",
    "check_fakes_match_pymobiledevice3",
    "install",
    "mismatches",
]
