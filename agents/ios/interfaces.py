"""The seam in front of pymobiledevice3: what the iPhone agent needs from a connected phone.

:class:`IosBackend` reaches iPhones and opens an :class:`IosSession` on one; the agent
(:mod:`quantlab.agents.ios.agent`) uses nothing else.
:class:`quantlab.agents.ios.pmd3.Pmd3Backend` is the real backend, named like any other by
``module:factory`` (:data:`DEFAULT_BACKEND`, so this module never imports it: the backend
imports this seam, not the other way round); tests put a fake iPhone behind the same
interface (``tests/fakes/iphone.py``), named by ``QUANTLAB_IOS_BACKEND=module:factory``
(:func:`load_backend`).
"""

from __future__ import annotations

import importlib
import os
import re
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from quantlab.harness.errors import UserError

BUNDLE_ID = os.environ.get("QUANTLAB_IOS_BUNDLE_ID", "dev.quantlab.BenchRunner")
"""Bundle id of the runner app (project.yml's PRODUCT_BUNDLE_IDENTIFIER)."""


def version_tuple(version: str | None) -> tuple[int, ...]:
    """'17.4.1' → (17, 4, 1); unknown → (0,)."""
    parts = re.findall(r"\d+", version or "")
    return tuple(int(p) for p in parts[:3]) or (0,)


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


_BACKEND_SPEC = re.compile(
    r"(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?::(?P<factory>[A-Za-z_]\w*))?"
)
BACKEND_ENV = "QUANTLAB_IOS_BACKEND"
DEFAULT_BACKEND = "quantlab.agents.ios.pmd3:Pmd3Backend"
"""The backend when ``$QUANTLAB_IOS_BACKEND`` names none: pymobiledevice3."""


def load_backend(spec: str | None = None) -> IosBackend:
    """The backend named by ``spec`` or ``$QUANTLAB_IOS_BACKEND``, else pymobiledevice3's
    (:data:`DEFAULT_BACKEND`).

    The spec is a Python module name with an optional factory, ``package.module[:factory]``
    (default factory ``make_backend``), imported with importlib. File paths are refused: the
    variable names code to import, never a file to execute.
    """
    spec = spec or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    want = f"give a Python module name such as {BACKEND_ENV}=tests.fakes.iphone:make_backend"
    match = _BACKEND_SPEC.fullmatch(spec.strip())
    looks_like_path = "/" in spec or "\\" in spec or spec.split(":")[0].endswith((".py", ".pyc"))
    if match is None or looks_like_path:
        what = "a file path" if looks_like_path else "not a module name"
        raise UserError(f"{BACKEND_ENV}={spec!r} is {what}", hint=f"{want} (module[:factory])")
    module_name, attr = match["module"], match["factory"] or "make_backend"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"{BACKEND_ENV}={spec!r}: module {module_name} cannot be imported ({exc})",
            hint=f"{want}, importable from the current directory or PYTHONPATH",
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(
            f"{BACKEND_ENV}={spec!r}: module {module_name} has no factory {attr}()",
            hint=want,
        )
    backend: IosBackend = factory()
    return backend

