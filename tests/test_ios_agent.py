"""IosAgent end to end against the fake iPhone, plus supports() and error mapping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fakes.iphone import FAKE_UDID, FakeIphoneBackend
from pymobiledevice3 import exceptions as pmd3_exc
from pymobiledevice3.remote.userspace_tunnel import UserspaceTunnelUnavailableError

import quantlab.agents.ios.agent as ios
from quantlab.agents.base import no_progress
from quantlab.agents.ios.agent import IosAgent
from quantlab.agents.ios.errors import IosUserError, translate
from quantlab.harness.errors import DeviceDisconnected
from quantlab.harness.models import model_ref
from quantlab.harness.records import DeviceInfo, Job, Settings

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("iosmodels")
    subprocess.run(
        [sys.executable, str(HERE / "fixtures" / "ios" / "make_models.py"), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _job(path: Path, delegate: str, **settings: float) -> Job:
    s = Settings(warmup=2, iterations=5, repeats=2, **settings)  # type: ignore[arg-type]
    return Job(
        model=model_ref(path),
        device_id=FAKE_UDID,
        platform="ios",
        delegate=delegate,
        threads=2,
        settings=s,
    )


def _agent(tmp_path: Path, **kw: object) -> tuple[IosAgent, FakeIphoneBackend]:
    phone = FakeIphoneBackend(tmp_path / "phone", **kw)  # type: ignore[arg-type]
    # the fake app does not cool down: the host waits for the job alone (the cool-down's
    # share of the host timeout is tested in test_ios_pmd3)
    return IosAgent(backend=phone, cooldown_wait_s=0.0), phone


def test_discover_lists_the_fake_with_properties(tmp_path: Path) -> None:
    agent, _ = _agent(tmp_path)
    [dev] = agent.discover()
    assert (dev.id, dev.platform, dev.name, dev.state) == (FAKE_UDID, "ios", "Fake iPhone", "ready")
    assert dev.model == "iPhone15,2" and dev.os_version == "17.5.1"
    assert dev.extra["neural_engine"] and dev.extra["compute_plan"]
    assert "coreml-ane" in dev.delegates


@pytest.mark.parametrize(
    ("values", "failure", "state", "hint"),
    [
        ({"DeveloperModeStatus": False}, None, "unavailable", "Developer Mode is off"),
        ({"ProductVersion": "16.7"}, None, "unavailable", "needs iOS 17"),
        ({}, pmd3_exc.NotPairedError(), "unauthorized", "not paired"),
        ({}, pmd3_exc.PairingDialogResponsePendingError(), "unauthorized", "tap Trust"),
        ({}, pmd3_exc.PasswordRequiredError(), "unauthorized", "locked"),
    ],
)
def test_discover_states_with_hints(
    tmp_path: Path, values: dict, failure: Exception | None, state: str, hint: str
) -> None:
    agent, _ = _agent(tmp_path, values=values, failures={"values": failure} if failure else {})
    [dev] = agent.discover()
    assert dev.state == state
    assert dev.state_hint is not None and hint in dev.state_hint


def test_tflite_cpu_end_to_end(tmp_path: Path, models: Path) -> None:
    agent, phone = _agent(tmp_path)
    [dev] = agent.discover()
    job = _job(models / "tiny.tflite", "tflite-cpu")
    raw = agent.run(dev, job, no_progress)
    assert raw.status == "ok", raw.error
    assert raw.job_id == job.job_id and len(raw.samples_ms[0]) == 5
    assert all(x > 0 for x in raw.samples_ms[0])
    assert len(raw.runner["load_cold_ms"]) == 2 and raw.first_inference_ms is not None
    assert raw.thermal_before["battery_temp_c"] == 31.5
    assert raw.energy is None and raw.energy_unavailable_reason
    assert phone.launches == [["-jobPath", f"jobs/{job.job_id}/job.json"]]
    assert not (phone.container / "Documents" / "jobs" / job.job_id).exists()  # cleaned up


def test_coreml_ane_end_to_end(tmp_path: Path, models: Path) -> None:
    agent, _ = _agent(tmp_path)
    [dev] = agent.discover()
    job = _job(models / "tiny.mlpackage", "coreml-ane")
    raw = agent.run(dev, job, no_progress)
    assert raw.status == "ok", raw.error
    assert raw.runner["compile_ms"] == 412.7 and raw.runner["load_warm_ms"] == [21.4, 20.9]
    assert raw.ops and all(op.detail["anticipated"] for op in raw.ops)
    assert raw.ops[2].detail["preferred"] == "cpu" and raw.ops[2].detail["supported"] == [
        "cpu",
        "gpu",
    ]
    # the app's figure is the process's CPU energy: Neural Engine work is not in it, so an
    # ANE job gets no figure (the CPU share is kept in the runner metadata)
    assert raw.energy is None
    assert (raw.energy_unavailable_reason or "").startswith(
        "coreml-ane: the iPhone's figure is the app's CPU energy estimate and this job runs "
        "partly on the Neural Engine")
    assert raw.runner["cpu_task_energy_mj_per_inference"] == pytest.approx(8.4 / 12)
    assert raw.peak_memory_mb == 32.0
    cpu = agent.run(dev, _job(models / "tiny.mlpackage", "coreml-cpu"), no_progress)
    assert cpu.energy is not None and cpu.energy.method == "ios-task-energy"
    assert cpu.energy.comparability == "process-estimate"  # never ranked against rails/gauge
    assert cpu.energy.label and "process CPU energy estimate" in cpu.energy.label
    assert cpu.energy.mj_per_inference == pytest.approx(8.4 / 12)


def test_coreml_spec_reader_agrees_with_coremltools(models: Path) -> None:
    """quantlab.ios_runner.coreml_spec reads the description of a model coremltools wrote (the
    numerics check matches it with the float .tflite by position, without coremltools)."""
    from quantlab.ios_runner.coreml_spec import read_io

    io = read_io(models / "tiny.mlpackage")
    assert [(f.name, f.kind, f.shape, f.dtype) for f in io.inputs] == [
        ("x", "multiArray", (1, 8), "float32")]
    assert [(f.shape, f.dtype) for f in io.outputs] == [((1, 4), "float32")]


def test_never_done_times_out(
    tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ios, "GRACE_S", 0.0)
    agent, phone = _agent(tmp_path, mode="never-done")
    [dev] = agent.discover()
    raw = agent.run(dev, _job(models / "tiny.tflite", "tflite-cpu", timeout_s=1.0), no_progress)
    assert raw.status == "failed" and raw.error is not None and raw.error.startswith("timeout")
    assert all(p.poll() is not None for p in phone.processes.values())  # app killed


def test_unplug_mid_job_is_reported(tmp_path: Path, models: Path) -> None:
    agent, phone = _agent(tmp_path, mode="unplug")
    [dev] = agent.discover()
    with pytest.raises(DeviceDisconnected, match="disconnected"):
        agent.run(dev, _job(models / "tiny.tflite", "tflite-cpu"), no_progress)
    phone.kill_all()
    assert agent.wait_until_back(dev, 0.1) is False
    phone.attached = True
    assert agent.wait_until_back(dev, 1.0) is True


def test_not_installed_without_app_path(tmp_path: Path, models: Path) -> None:
    agent, phone = _agent(tmp_path, installed=False)
    [dev] = agent.discover()
    with pytest.raises(IosUserError, match="quantlab ios install"):
        agent.run(dev, _job(models / "tiny.tflite", "tflite-cpu"), no_progress)
    ipa = tmp_path / "BenchRunner.ipa"
    ipa.write_bytes(b"PK")
    agent.app_path = str(ipa)
    assert agent.run(dev, _job(models / "tiny.tflite", "tflite-cpu"), no_progress).status == "ok"
    assert phone.installed_from == str(ipa)


@pytest.mark.parametrize(
    ("delegate", "fmt", "extra", "reason"),
    [
        ("coreml-ane", "tflite", {}, "tflite-coreml"),
        ("tflite-cpu", "mlpackage", {}, "coreml-*"),
        ("coreml-ane", "mlpackage", {"neural_engine": False}, "no Neural Engine"),
        ("tflite-coreml", "tflite", {"neural_engine": False}, "no Neural Engine"),
        ("nnapi", "tflite", {}, "not an iOS delegate"),
        ("coreml-gpu", "mlpackage", {}, ""),
    ],
)
def test_supports_reasons(delegate: str, fmt: str, extra: dict, reason: str) -> None:
    from quantlab.harness.records import ModelRef

    dev = DeviceInfo(
        id="u", platform="ios", name="p", model="iPhone9,1", extra={"neural_engine": True, **extra}
    )
    job = Job(
        model=ModelRef(path=f"m.{fmt}", sha256="0" * 64, size_bytes=1, format=fmt),
        device_id="u",
        platform="ios",
        delegate=delegate,
        threads=1,
        settings=Settings(),
    )
    ok, why = IosAgent(backend=FakeIphoneBackend.__new__(FakeIphoneBackend)).supports(dev, job)
    assert ok == (reason == "") and reason in why
    android = DeviceInfo(id="a", platform="android", name="pixel")
    assert IosAgent().supports(android, job) == (False, "not an iPhone")


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (pmd3_exc.ConnectionFailedToUsbmuxdError(), IosUserError, "usbmuxd is not running"),
        (pmd3_exc.NotPairedError(), IosUserError, "not paired"),
        (pmd3_exc.NotTrustedError(), IosUserError, "not trusted"),
        (pmd3_exc.PairingDialogResponsePendingError(), IosUserError, "Trust This Computer"),
        (pmd3_exc.UserDeniedPairingError(), IosUserError, "trust was denied"),
        (pmd3_exc.PasswordRequiredError(), IosUserError, "locked"),
        (pmd3_exc.PasscodeRequiredError("locked", "UDID1", "17.5"), IosUserError, "Passcode off"),
        (pmd3_exc.DeviceHasPasscodeSetError(), IosUserError, "while a passcode is set"),
        (pmd3_exc.DeveloperModeIsNotEnabledError(), IosUserError, "Developer Mode is off"),
        (pmd3_exc.DeveloperDiskImageNotFoundError(), IosUserError, "developer disk image"),
        (pmd3_exc.NoSuchBuildIdentityError("x"), IosUserError, "developer image"),
        (UserspaceTunnelUnavailableError("no tun"), IosUserError, "userspace tunnel failed"),
        (pmd3_exc.TunneldConnectionError(), IosUserError, "remote tunneld"),
        (pmd3_exc.RSDRequiredError("UDID1", "17.5"), IosUserError, "needs a tunnel"),
        (pmd3_exc.AppNotInstalledError(), IosUserError, "quantlab ios install"),
        (pmd3_exc.AppInstallError("bad sig"), IosUserError, "provisioning profile"),
        (pmd3_exc.LaunchingApplicationError("denied"), IosUserError, "VPN & Device Management"),
        (
            pmd3_exc.InvalidServiceError("no svc", "UDID1", "17.5"),
            IosUserError,
            "developer service",
        ),
        (pmd3_exc.ConnectionTerminatedError(), DeviceDisconnected, "disconnected"),
        (pmd3_exc.NoDeviceConnectedError(), DeviceDisconnected, "not connected"),
        (pmd3_exc.DeviceNotFoundError("x"), DeviceDisconnected, "not connected"),
        (BrokenPipeError(), DeviceDisconnected, "dropped"),
    ],
)
def test_each_pmd3_failure_has_its_message(exc: Exception, kind: type, text: str) -> None:
    err = translate(exc, "UDID1")
    assert isinstance(err, kind) and text in str(err) and "UDID1" in str(err)


def test_already_mounted_is_ignored_and_unknown_passes_through() -> None:
    assert translate(pmd3_exc.AlreadyMountedError(), "u") is None
    assert translate(ValueError("x"), "u") is None


def test_run_maps_a_launch_failure(tmp_path: Path, models: Path) -> None:
    agent, _ = _agent(tmp_path, failures={"launch": pmd3_exc.LaunchingApplicationError("locked")})
    [dev] = agent.discover()
    with pytest.raises(IosUserError, match="refused to launch"):
        agent.run(dev, _job(models / "tiny.tflite", "tflite-cpu"), no_progress)


def test_no_usbmuxd_means_no_iphones(tmp_path: Path) -> None:
    agent, phone = _agent(tmp_path)

    async def no_mux() -> list[str]:
        raise pmd3_exc.ConnectionFailedToUsbmuxdError()

    phone.list_udids = no_mux  # type: ignore[method-assign]
    assert agent.discover() == []


def test_fake_and_real_sessions_share_one_interface() -> None:
    import inspect

    from fakes.iphone import FakeSession

    from quantlab.agents.ios.interfaces import IosBackend, IosSession
    from quantlab.agents.ios.pmd3 import Pmd3Backend, Pmd3Session

    for proto, real, fake in [
        (IosSession, Pmd3Session, FakeSession),
        (IosBackend, Pmd3Backend, FakeIphoneBackend),
    ]:
        names = [n for n in vars(proto) if not n.startswith("_")]
        assert names
        for name in names:
            want = list(inspect.signature(getattr(proto, name)).parameters)
            assert list(inspect.signature(getattr(real, name)).parameters) == want, name
            assert list(inspect.signature(getattr(fake, name)).parameters) == want, name
