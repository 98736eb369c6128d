"""A real Android phone on this host's adb server (tests/device/: run with --device-tests).

Attach a phone with USB debugging allowed; the test uses the default adb server
(ANDROID_ADB_SERVER_PORT, else 5037) and starts it when it is not running.
"""

from __future__ import annotations

import shutil
import subprocess

from conftest import require_tool

from quantlab.agents.android.agent import AndroidAgent


def test_a_real_android_phone_is_ready_and_described() -> None:
    require_tool("adb", "install the Debian 'adb' package or Android platform-tools")
    subprocess.run([shutil.which("adb") or "adb", "start-server"], check=True, timeout=60)
    devices = AndroidAgent().discover()
    ready = [d for d in devices if d.state == "ready"]
    listed = "; ".join(f"{d.id} {d.state}: {d.state_hint}" for d in devices)
    assert ready, f"no ready Android phone on the adb server (listed: {listed or 'none'})"
    for d in ready:
        assert d.platform == "android" and d.model and d.abi and d.sdk, d
        assert "cpu" in d.delegates, d
