"""What an iPhone user reads when pymobiledevice3 raises: the error-hint table and its use.

:func:`translate` turns a pymobiledevice3 (or socket) exception into a quantlab error:
an :class:`IosUserError` with the fix, an :class:`IosDeviceUnusable` when every later job
on that iPhone would meet it too, or a :class:`~quantlab.harness.errors.DeviceDisconnected` that
the dispatcher retries. Exceptions are matched by class name, so this module imports
nothing from pymobiledevice3.
"""

from __future__ import annotations

from quantlab.harness.errors import DeviceDisconnected, DeviceUnusable, QuantlabError, UserError

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
        # what DVT ProcessControl.launch really raises when iOS refuses (an NSError from
        # FBSOpenApplicationService: locked, untrusted developer, app missing)
        "DTXNsError",
        "user",
        "the iPhone refused to launch BenchRunner: unlock it, trust the developer in Settings → "
        "General → VPN & Device Management, and check that BenchRunner is installed",
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


class IosDeviceUnusable(IosUserError, DeviceUnusable):
    """An iOS user error that every later job on this iPhone would meet too."""


_DEVICE_SCOPED = frozenset({
    "PairingDialogResponsePendingError", "UserDeniedPairingError", "NotPairedError",
    "NotTrustedError", "DeviceHasPasscodeSetError", "DeveloperModeIsNotEnabledError",
    "DeveloperModeError", "DeveloperDiskImageNotFoundError", "NoSuchBuildIdentityError",
    "UserspaceTunnelUnavailableError", "TunneldConnectionError", "RSDRequiredError",
    "AppNotInstalledError", "AppInstallError", "LaunchingApplicationError",
    "InvalidServiceError",
})
"""pymobiledevice3 errors (names in _HINTS) that stop the iPhone's remaining jobs."""


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
            if name in _DEVICE_SCOPED:
                return IosDeviceUnusable(udid, text)
            return IosUserError(text)
    if isinstance(exc, (ConnectionError, BrokenPipeError, EOFError)):
        return DeviceDisconnected(udid, f"the USB connection to the iPhone dropped mid-job ({exc})")
    return None
