"""The real iOS backend: pymobiledevice3's usbmux, lockdown, tunnel, house_arrest and DVT.

:class:`Pmd3Backend` and :class:`Pmd3Session` implement the
:class:`~quantlab.agents.ios.interfaces.IosBackend` /
:class:`~quantlab.agents.ios.interfaces.IosSession`
seam. pymobiledevice3 is imported inside each call, so importing this module is cheap.
Tested against fakes of pymobiledevice3's own service classes (``tests/fakes/pmd3.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from quantlab.agents.ios.interfaces import BUNDLE_ID, IosSession, version_tuple

PAIR_TIMEOUT_S = 30.0  # an untrusted phone: how long a session waits for a tap on Trust


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
            if not lockdown.paired:
                # without autopair an untrusted phone still answers with its public values;
                # say so instead of listing it as ready (a session would then wait on Trust)
                from pymobiledevice3.exceptions import NotPairedError

                raise NotPairedError()
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
            lockdown = await create_using_usbmux(serial=udid, pair_timeout=PAIR_TIMEOUT_S)
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
        stack.push_async_callback(rsd.close)  # tunneld hands over a connected RSD: ours to close
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
        """auto_mount picks the personalized image on iOS 17+ (through the tunnel: from iOS 27
        the image is a cryptex that plain lockdown cannot install)."""
        from pymobiledevice3.services.mobile_image_mounter import auto_mount

        await auto_mount(self.dvt_provider)

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
