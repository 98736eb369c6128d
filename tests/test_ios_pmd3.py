"""Pmd3Backend/Pmd3Session run for real, on fakes of pymobiledevice3's own service classes.

``fakes/pmd3.py`` replaces pymobiledevice3's functions and service classes at their module
attributes after checking each one against the installed, pinned pymobiledevice3 (names,
parameters, async-ness), so everything from ``IosAgent`` down to the pymobiledevice3 calls is
quantlab's real code. Also here: the host timeout that covers the app's cool-down wait, and
``QUANTLAB_IOS_BACKEND`` accepting module names only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import pmd3
from fakes.pmd3 import BUNDLE_ID, UDID, Phone
from pymobiledevice3 import exceptions as pmd3_exc
from pymobiledevice3.dtx.exceptions import DTXNsError
from pymobiledevice3.dtx.ns_types import NSError
from pymobiledevice3.remote.userspace_tunnel import UserspaceTunnelUnavailableError

import quantlab.agents.ios.agent as ios
import quantlab.agents.ios.pmd3 as ios_pmd3
from quantlab.agents.base import no_progress
from quantlab.agents.ios.agent import IosAgent
from quantlab.agents.ios.errors import IosUserError
from quantlab.agents.ios.interfaces import load_backend
from quantlab.agents.ios.pmd3 import Pmd3Backend
from quantlab.harness.errors import DeviceDisconnected, UserError
from quantlab.harness.models import model_ref
from quantlab.harness.records import DeviceInfo, Job, Settings


@pytest.fixture
def mlpackage(tmp_path: Path) -> Path:
    """A small .mlpackage folder (nested, like coremltools writes); the fake app answers Core ML
    jobs with the recorded result fixture, so the model is only pushed, never run."""
    pkg = tmp_path / "tiny.mlpackage"
    (pkg / "Data" / "com.apple.CoreML" / "weights").mkdir(parents=True)
    (pkg / "Manifest.json").write_text(json.dumps({"fileFormatVersion": "1.0.0"}))
    (pkg / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x08\x08" * 64)
    (pkg / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").write_bytes(bytes(256))
    return pkg


def _job(path: Path, delegate: str = "coreml-ane", **settings: Any) -> Job:
    return Job(
        model=model_ref(path),
        device_id=UDID,
        platform="ios",
        delegate=delegate,
        threads=2,
        settings=Settings(warmup=2, iterations=5, repeats=2, **settings),
    )


@pytest.fixture
def make_phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Attach fake phones (see fakes/pmd3.Phone) and put the fakes in pymobiledevice3's place."""
    phones: list[Phone] = []

    def make(**kw: Any) -> Phone:
        phone = Phone(tmp_path / f"phone{len(phones)}", **kw)
        phones.append(phone)
        pmd3.install(monkeypatch, *phones)
        return phone

    yield make
    for phone in phones:
        phone.kill_all()


def _agent(**kw: Any) -> IosAgent:
    return IosAgent(backend=Pmd3Backend(), cooldown_wait_s=kw.pop("cooldown_wait_s", 0.0), **kw)


def _ready(phone: Phone) -> DeviceInfo:
    [dev] = _agent().discover()
    assert dev.id == phone.udid
    return dev


def _all_closed(phone: Phone) -> None:
    assert all(n == 0 for n in phone.open.values()), phone.open


# --------------------------------------------------------------------------- the fakes themselves


def test_fakes_match_the_pinned_pymobiledevice3() -> None:
    pmd3.check_fakes_match_pymobiledevice3()


def test_signature_drift_is_caught() -> None:
    """A renamed method, a changed parameter or a sync/async swap upstream fails the check."""

    class Drifted(pmd3.FakeProcessControl):
        async def launch(self, bundle_id: str, args: list[str] | None = None) -> int:  # type: ignore[override]
            return 1

    class Renamed(pmd3.FakeInstallationProxyService):
        async def get_applications(self) -> dict[str, Any]:
            return {}

    class Synced(pmd3.FakeHouseArrestService):
        def exists(self, filename: str) -> bool:  # type: ignore[override]
            return True

    real_pc = pmd3._real("pymobiledevice3.services.dvt.instruments.process_control:ProcessControl")
    real_ip = pmd3._real("pymobiledevice3.services.installation_proxy:InstallationProxyService")
    real_ha = pmd3._real("pymobiledevice3.services.house_arrest:HouseArrestService")
    assert any("launch" in p for p in pmd3.mismatches(Drifted, real_pc))
    assert any("has no get_applications" in p for p in pmd3.mismatches(Renamed, real_ip))
    assert any("exists is a coroutine" in p for p in pmd3.mismatches(Synced, real_ha))

    class Gone:  # upstream dropped a method the backend calls
        pass

    assert any(
        "has no get_apps" in p for p in pmd3.mismatches(pmd3.FakeInstallationProxyService, Gone)
    )


# --------------------------------------------------------------------------- discover


def test_discover_goes_through_usbmux_and_lockdown(make_phone: Any) -> None:
    phone = make_phone()
    dev = _ready(phone)  # the Wi-Fi entry usbmux also lists is skipped
    assert (dev.state, dev.name, dev.model, dev.os_version) == (
        "ready",
        "Pmd3 Fake iPhone",
        "iPhone15,2",
        "17.5.1",
    )
    assert dev.extra["developer_mode"] is True and dev.extra["build"] == "21F90"
    assert "coreml-ane" in dev.delegates
    _all_closed(phone)


def test_discover_an_untrusted_phone_is_unauthorized(make_phone: Any) -> None:
    """Lockdown without autopair answers an unpaired phone with its public values; that phone
    was listed as ready (bug), and a job on it then waited on the Trust dialog."""
    phone = make_phone(paired=False)
    dev = _ready(phone)
    assert dev.state == "unauthorized"
    assert dev.state_hint and "not paired" in dev.state_hint and "Trust" in dev.state_hint
    _all_closed(phone)


def test_discover_developer_mode_off(make_phone: Any) -> None:
    dev = _ready(make_phone(developer_mode=False))
    assert dev.state == "unavailable" and "Developer Mode is off" in (dev.state_hint or "")


# --------------------------------------------------------------------------- a full job


def test_full_job_push_launch_pull(make_phone: Any, mlpackage: Path) -> None:
    phone = make_phone()
    dev = _ready(phone)
    job = _job(mlpackage)
    raw = _agent().run(dev, job, no_progress)

    assert raw.status == "ok", raw.error
    assert raw.job_id == job.job_id and raw.runner["compile_ms"] == 412.7
    assert raw.ops and all(op.detail["anticipated"] for op in raw.ops)
    assert raw.thermal_before["battery_temp_c"] == 31.5 and raw.thermal_before["charging"]
    assert raw.thermal_before["power_source"] == "usb"
    # the folder landed exactly at jobs/<id>/model.mlpackage (not one level deeper)
    jobdir = f"/Documents/jobs/{job.job_id}"
    assert {
        f"{jobdir}/model.mlpackage/Manifest.json",
        f"{jobdir}/model.mlpackage/Data/com.apple.CoreML/model.mlmodel",
        f"{jobdir}/model.mlpackage/Data/com.apple.CoreML/weights/weight.bin",
        f"{jobdir}/job.json",
    } <= set(phone.afc_writes)
    [launch] = phone.launches
    assert launch["bundle_id"] == BUNDLE_ID and launch["kill_existing"] is True
    assert launch["arguments"] == ["-jobPath", f"jobs/{job.job_id}/job.json"]
    assert phone.killed == list(phone.processes)  # the app is killed after the pull
    assert phone.mounted and "UserspaceRsdTunnel.__aenter__" in phone.calls
    assert not (phone.container / "Documents" / "jobs" / job.job_id).exists()  # cleaned up
    _all_closed(phone)  # lockdown, tunnel, AFC, DVT, services: all closed

    again = _agent().run(dev, job, no_progress)  # image already mounted: AlreadyMountedError
    assert again.status == "ok", again.error
    _all_closed(phone)


def test_ios27_mounts_the_image_through_tunneld(make_phone: Any, mlpackage: Path) -> None:
    """From iOS 27 the developer image is a cryptex that plain lockdown cannot install: mounting
    over lockdown raised RSDRequiredError (bug); the tunneld RSD was also never closed (bug)."""
    phone = make_phone(product_version="27.0", tunneld=True)
    raw = _agent().run(_ready(phone), _job(mlpackage), no_progress)
    assert raw.status == "ok", raw.error
    assert phone.mounted and "UserspaceRsdTunnel.__aenter__" not in phone.calls
    assert phone.open.get("rsd/tunneld") == 0
    _all_closed(phone)


def test_install_through_installation_proxy(make_phone: Any, tmp_path: Path) -> None:
    phone = make_phone(installed=False)
    agent = _agent()
    assert agent.app_installed(UDID) is False
    bad = tmp_path / "bad.ipa"
    bad.write_bytes(b"not a zip")
    with pytest.raises(IosUserError, match="provisioning profile"):
        agent.install(str(bad))
    ipa = tmp_path / "BenchRunner.ipa"
    ipa.write_bytes(b"PK\x03\x04")
    assert agent.install(str(ipa)) == UDID
    assert agent.app_installed(UDID) is True and BUNDLE_ID in phone.apps
    _all_closed(phone)


def test_health_reads_the_battery_registry(make_phone: Any) -> None:
    phone = make_phone()
    health = _agent().health(_ready(phone))
    assert health == {
        "battery_pct": 87,
        "battery_temp_c": 31.5,
        "charging": True,
        "power_source": "usb",
    }


def test_a_failing_sysmontap_does_not_fail_the_job(make_phone: Any, mlpackage: Path) -> None:
    phone = make_phone(app_mode="hot")
    phone.failures["Sysmontap.__aenter__"] = DTXNsError(NSError(2, "DTXServiceErrorDomain", None))
    raw = _agent(cooldown_wait_s=0.6).run(_ready(phone), _job(mlpackage), no_progress)
    assert raw.status == "ok", raw.error
    assert raw.runner["host_samples"] == []


def test_sysmontap_samples_the_app(make_phone: Any, mlpackage: Path) -> None:
    phone = make_phone(app_mode="hot")
    raw = _agent(cooldown_wait_s=0.8).run(_ready(phone), _job(mlpackage), no_progress)
    assert raw.status == "ok", raw.error
    samples = raw.runner["host_samples"]
    assert samples and samples[0]["cpu_pct"] == 97.5
    assert samples[0]["phys_footprint"] == 48 << 20
    _all_closed(phone)


# --------------------------------------------------------------------------- errors


def _launch_refused() -> DTXNsError:
    return DTXNsError(
        NSError(1, "FBSOpenApplicationServiceErrorDomain", {"BSErrorCodeDescription": "Security"})
    )


@pytest.mark.parametrize(
    ("phone_kw", "failures", "kind", "text"),
    [
        ({"paired": False, "locked": True}, {}, IosUserError, "the iPhone is locked"),
        ({"paired": False}, {}, IosUserError, "tap Trust"),
        ({"developer_mode": False}, {}, IosUserError, "Developer Mode is off"),
        ({"installed": False}, {}, IosUserError, "quantlab ios install"),
        (
            {},
            {"HouseArrestService.send_command": pmd3_exc.AppNotInstalledError("gone")},
            IosUserError,
            "quantlab ios install",
        ),
        ({"locked": True}, {}, IosUserError, "refused to launch"),
        ({}, {"ProcessControl.launch": _launch_refused()}, IosUserError, "VPN & Device Management"),
        (
            {},
            {"UserspaceRsdTunnel.__aenter__": UserspaceTunnelUnavailableError("no tun")},
            IosUserError,
            "userspace tunnel failed",
        ),
        (
            {},
            {"AfcService.get_file_contents": pmd3_exc.ConnectionTerminatedError()},
            DeviceDisconnected,
            "disconnected",
        ),
    ],
)
def test_pmd3_errors_become_clear_messages(
    make_phone: Any,
    mlpackage: Path,
    phone_kw: dict[str, Any],
    failures: dict[str, BaseException],
    kind: type,
    text: str,
) -> None:
    phone = make_phone(**phone_kw)
    phone.failures.update(failures)
    dev = DeviceInfo(  # as discover would list a ready phone, so that the job reaches the phone
        id=UDID,
        platform="ios",
        name="p",
        model="iPhone15,2",
        os_version=phone.product_version,
        extra={"neural_engine": True, "compute_plan": True},
    )
    with pytest.raises(kind) as info:
        _agent().run(dev, _job(mlpackage), no_progress)
    message = str(info.value)
    assert text in message and UDID in message and "\n" not in message
    if not phone_kw.get("paired", True):
        assert phone.pair_timeouts == [ios_pmd3.PAIR_TIMEOUT_S]  # never an endless wait on Trust
    _all_closed(phone)


# --------------------------------------------------------------------------- cool-down timeout


def test_host_waits_for_the_apps_cool_down(
    make_phone: Any, mlpackage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app may spend the whole cool-down wait before it starts its own timeout; the host
    used to allow only timeout + 60 s, so a phone that cooled slowly was failed as a timeout."""
    monkeypatch.setattr(ios, "GRACE_S", 0.5)
    phone = make_phone(app_mode="hot")  # the app sleeps cooldown_wait_s, then answers
    raw = _agent(cooldown_wait_s=1.5).run(
        _ready(phone), _job(mlpackage, timeout_s=0.5), no_progress
    )
    assert raw.status == "ok", raw.error  # 1.5 s cool-down > 0.5 s timeout + 0.5 s grace


def test_job_json_and_timeout_message_carry_the_cool_down(
    make_phone: Any, mlpackage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ios, "GRACE_S", 0.2)
    monkeypatch.setenv("QUANTLAB_COOLDOWN_S", "0.4")
    phone = make_phone(app_mode="never-done")
    job = _job(mlpackage, timeout_s=0.3)
    raw = IosAgent(backend=Pmd3Backend()).run(_ready(phone), job, no_progress)
    assert raw.status == "failed" and raw.error is not None
    assert raw.error.startswith("timeout")
    assert "within 0.9 s (cool-down wait 0.4 s + job timeout 0.3 s + 0.2 s)" in raw.error
    sent = json.loads(
        (phone.container / "Documents" / "jobs" / job.job_id / "job.json").read_text()
    )
    assert sent["preconditions"]["cooldown_wait_s"] == 0.4
    assert all(p.poll() is not None for p in phone.processes.values())  # app killed


# --------------------------------------------------------------------------- QUANTLAB_IOS_BACKEND


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("tests/fakes/iphone.py:make_backend", "is a file path"),
        ("/tmp/backend.py", "is a file path"),
        ("fakes/iphone:make_backend", "is a file path"),
        ("fakes.iphone.py", "is a file path"),
        ("os; rm -rf ~", "is not a module name"),
        ("fakes.iphone:make backend", "is not a module name"),
        ("no_such_quantlab_backend_mod", "cannot be imported"),
        ("fakes.iphone:no_such_factory", "has no factory no_such_factory()"),
    ],
)
def test_backend_variable_takes_module_names_only(
    spec: str, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUANTLAB_IOS_BACKEND", spec)
    with pytest.raises(UserError) as info:
        load_backend()
    line = info.value.one_line()
    assert "QUANTLAB_IOS_BACKEND" in line and text in line and "\n" not in line
    assert "module name" in line  # says what to give


def test_a_backend_file_path_is_never_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\ndef make_backend():\n    return 1\n")
    monkeypatch.setenv("QUANTLAB_IOS_BACKEND", f"{evil}:make_backend")
    with pytest.raises(UserError, match="file path"):
        load_backend()
    assert not marker.exists()


def test_a_module_name_loads_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakes.iphone import FakeIphoneBackend

    monkeypatch.setenv("QUANTLAB_FAKE_IPHONE_DIR", str(tmp_path / "phone"))
    for spec in ("fakes.iphone:make_backend", "fakes.iphone"):
        monkeypatch.setenv("QUANTLAB_IOS_BACKEND", spec)
        assert type(load_backend()).__name__ == FakeIphoneBackend.__name__
    monkeypatch.delenv("QUANTLAB_IOS_BACKEND")
    assert isinstance(load_backend(), Pmd3Backend)


def test_a_sustained_job_runs_in_windows_with_the_thermal_state(make_phone: Any,
                                                                 mlpackage: Path) -> None:
    """bench --sustained on an iPhone: the job JSON asks the app for windows, the app times
    every prediction in them and reads its thermal state at each window's end; the agent no
    longer refuses the job."""
    phone = make_phone()
    dev = _ready(phone)
    job = _job(mlpackage, sustained_s=0.6, window_s=0.2, window_samples=4)
    assert _agent().supports(dev, job) == (True, "")
    raw = _agent().run(dev, job, no_progress)
    assert raw.status == "ok", raw.error
    windows = raw.sustained["windows"]
    assert len(windows) >= 3 and all(w["count"] > 4 for w in windows)
    assert all(w["thermal_state"] in ("nominal", "fair") for w in windows)
    assert raw.sustained["samples"]["kept"] == 4 * len(windows) == len(raw.samples_ms[0])
    assert "thermal state only" in raw.sustained["sensors_note"]
    _all_closed(phone)


def test_a_pte_job_runs_through_executorch_on_the_fake_phone(make_phone: Any,
                                                               small_pte: Path) -> None:
    """An et-xnnpack job through the real pymobiledevice3 backend: the job JSON names engine
    executorch and the .pte, the fake app EXECUTES it with the host's ExecuTorch runtime (and
    says so), and its result becomes samples with the runtime recorded; a .tflite on
    et-xnnpack, or a .pte on a TFLite delegate, is refused with the reason."""
    pte = small_pte
    phone = make_phone()
    dev = _ready(phone)
    assert "et-xnnpack" in dev.delegates
    job = _job(pte, "et-xnnpack", profile_ops=True)
    assert _agent().supports(dev, job) == (True, "")
    assert "an ExecuTorch .pte runs on et-xnnpack" in _agent().supports(
        dev, _job(pte, "tflite-cpu"))[1]
    raw = _agent().run(dev, job, no_progress)
    assert raw.status == "ok", raw.error
    assert [len(s) for s in raw.samples_ms] == [5]
    assert (raw.runner["runtime"], raw.runner["engine"]) == ("executorch", "executorch")
    assert raw.runner["version"] == "1.5.1"
    assert "ran with the host's ExecuTorch runtime" in raw.runner["engine_detail"]
    assert "no event tracer" in raw.runner["engine_detail"]  # no per-op profile, said
    assert f"/Documents/jobs/{job.job_id}/model.pte" in phone.afc_writes
    _all_closed(phone)
