"""adb errors → quantlab faults: a dropped phone is retried, a refusing one stops its jobs.

:func:`adb_faults` wraps every adb call of the Android agent: a timeout becomes a
:class:`~quantlab.harness.errors.DeviceTimeout`, a lost connection a
:class:`~quantlab.harness.errors.DeviceDisconnected` (the dispatcher waits and retries), and a
phone that refuses this host (unauthorized, no udev permissions) a
:class:`~quantlab.harness.errors.DeviceUnusable` carrying the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from quantlab.harness.errors import DeviceDisconnected, DeviceTimeout, DeviceUnusable, QuantlabError

STATE_HINTS = {
    "unauthorized": "unlock the phone and accept the 'Allow USB debugging?' prompt "
                    "(tick 'Always allow'); if no prompt shows, revoke USB debugging "
                    "authorizations in Developer options and replug",
    "no permissions": "add a udev rule for the phone (see docs/devices.md) and replug",
}
"""What the user does about an adb state that no retry fixes."""


def unusable_adb_state(error: str) -> tuple[str, str] | None:
    """(state, hint) when an adb error says the phone refuses this host (unauthorized, no
    udev permissions): a user error that repeats for every job, not a dropped cable."""
    text = error.lower()
    if "unauthorized" in text:
        return "unauthorized", STATE_HINTS["unauthorized"]
    if "no permissions" in text or "insufficient permissions" in text:
        return "not accessible (no permissions)", STATE_HINTS["no permissions"]
    return None


def adb_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean adb lost (or never reached) the phone."""
    import adbutils

    return (adbutils.AdbError, OSError, EOFError, ConnectionError)


@contextmanager
def adb_faults(device_id: str, doing: str) -> Iterator[None]:
    """Turn adb and socket errors into DeviceDisconnected / DeviceTimeout / DeviceUnusable."""
    import adbutils

    try:
        yield
    except QuantlabError:
        raise
    except adbutils.AdbTimeout as exc:
        raise DeviceTimeout(device_id, f"no answer while {doing} ({exc})",
                            hint="check the cable / Wi-Fi connection") from None
    except adb_errors() as exc:
        unusable = unusable_adb_state(str(exc))
        if unusable is not None:  # every later job would meet it too: stop the device
            raise DeviceUnusable(device_id, f"{device_id} is {unusable[0]} ({doing})",
                                 hint=unusable[1]) from None
        raise DeviceDisconnected(device_id, f"lost the device while {doing} ({exc})",
                                 hint="reconnect it; quantlab retries the job") from None
