"""The Android agent end to end: a REAL adb server and two loopback adbd devices.

Each test module starts its own adb server on a free port (ANDROID_ADB_SERVER_PORT)
and kills only that server at the end, never the user's default one. Without the
``adb`` binary these tests skip (and fail under CI=true: .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from fakes.adbd import FakeAndroidDevice

from quantlab.agents.android.agent import AndroidAgent, ThermalPolicy
from quantlab.android_runner import provision
from quantlab.harness.records import DeviceInfo, Job, ModelRef, Settings

ADB = shutil.which("adb")


@pytest.fixture(scope="module", autouse=True)
def _adb_installed() -> None:
    require_tool("adb", "install the Debian 'adb' package (.ci/run does) to run the Android "
                 "adb-server tests", found=ADB is not None)

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def adb(port: int, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    assert ADB
    return subprocess.run([ADB, "-P", str(port), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def adb_port() -> Iterator[int]:
    port = free_port()
    old = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    started = adb(port, "start-server")
    assert started.returncode == 0, started.stderr
    try:
        yield port
    finally:
        adb(port, "kill-server")
        if old is None:
            os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
        else:
            os.environ["ANDROID_ADB_SERVER_PORT"] = old


def elf_aarch64(path: Path) -> Path:
    """A minimal ELF header for aarch64: enough for provisioning's checks."""
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little")
                     + bytes(44))
    return path


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "cache"))
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "libhexagon_interface.so").write_bytes(b"hexagon interface")
    (libs / "libhexagon_nn_skel_v66.so").write_bytes(b"skel")
    provision.provision_binary(elf_aarch64(tmp_path / "benchmark_model"), "arm64-v8a", libs)
    return tmp_path / "cache"


@contextlib.contextmanager
def connected_phone(port: int, profile: str | dict[str, Any], folder: Path
                    ) -> Iterator[FakeAndroidDevice]:
    """A loopback phone of ``profile`` (a profile's name, or a profile changed by the test)
    serving from ``folder``, connected to the adb server on ``port``; disconnected and closed
    after."""
    dev = FakeAndroidDevice(profile, folder)
    try:
        out = adb(port, "connect", dev.serial)
        assert "connected" in out.stdout, out.stdout + out.stderr
        yield dev
    finally:
        adb(port, "disconnect", dev.serial)
        dev.close()


@pytest.fixture()
def phone(adb_port: int, tmp_path: Path) -> Iterator[FakeAndroidDevice]:
    """The Pixel 5 loopback phone, connected."""
    with connected_phone(adb_port, "pixel5_snapdragon", tmp_path / "qcom") as dev:
        yield dev


@pytest.fixture()
def phones(adb_port: int, tmp_path: Path) -> Iterator[tuple[FakeAndroidDevice, FakeAndroidDevice]]:
    with connected_phone(adb_port, "pixel5_snapdragon", tmp_path / "qcom") as qcom, \
            connected_phone(adb_port, "galaxy_s21_exynos", tmp_path / "exynos") as exynos:
        yield qcom, exynos


@pytest.fixture()
def model(tmp_path: Path) -> ModelRef:
    path = tmp_path / "m.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4)
    return ModelRef(str(path), hashlib.sha256(path.read_bytes()).hexdigest(),
                    path.stat().st_size, "tflite")


def agent() -> AndroidAgent:
    return AndroidAgent(thermal=ThermalPolicy(max_status=1, max_battery_c=45.0, cooldown_s=0),
                        energy_baseline_s=1, energy_load_s=1)


def by_id(devices: list[DeviceInfo], serial: str) -> DeviceInfo:
    return next(d for d in devices if d.id == serial)


# ----------------------------------------------------------------------------- discovery


def test_discover_two_phones_with_properties_and_health(phones: Any, cache: Path) -> None:
    qcom, exynos = phones
    found = agent().discover()
    q, e = by_id(found, qcom.serial), by_id(found, exynos.serial)
    assert (q.state, q.model, q.manufacturer, q.soc, q.abi, q.os_version, q.sdk) == (
        "ready", "Pixel 5", "Google", "SM7250", "arm64-v8a", "13", 33)
    assert q.extra["qualcomm"] is True and "hexagon" in q.delegates
    assert (e.soc, e.sdk, e.extra["qualcomm"]) == ("Exynos 2100", 34, False)
    assert "hexagon" not in e.delegates and "qnn" not in e.delegates
    assert q.health["battery_pct"] == 87 and q.health["usb_powered"] is True
    assert q.health["thermal_status"] == 0 and q.health["temperatures_c"]["gpu"] == 33.0
    assert e.health["thermal_status_name"] == "light" and e.health["battery_temp_c"] == 31.8


@pytest.mark.parametrize(("kind", "state", "hint"), [
    ("auth_required", "unauthorized", "Allow USB debugging"),
    ("silent", "offline", "adb connect 127.0.0.1:"),
])
def test_phone_not_ready_says_what_to_do(adb_port: int, tmp_path: Path, kind: str, state: str,
                                         hint: str) -> None:
    locked = FakeAndroidDevice("pixel5_snapdragon", tmp_path / "locked", **{kind: True})
    assert ADB
    # `adb connect` waits for the handshake that a hung phone never sends: don't wait for it
    connect = subprocess.Popen([ADB, "-P", str(adb_port), "connect", locked.serial],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        info = None
        while time.monotonic() < deadline:
            info = next((d for d in agent().discover() if d.id == locked.serial), None)
            if info and info.state == state:
                break
            time.sleep(0.2)
        assert info is not None and info.state == state
        assert info.state_hint and hint in info.state_hint
    finally:
        connect.kill()
        connect.wait()
        adb(adb_port, "disconnect", locked.serial)
        locked.close()


def test_supports_gives_reasons(phones: Any, cache: Path, model: ModelRef,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    qcom, exynos = phones
    ag = agent()
    found = ag.discover()
    q, e = by_id(found, qcom.serial), by_id(found, exynos.serial)

    def job(dev: DeviceInfo, delegate: str, ref: ModelRef = model) -> Job:
        return Job(ref, dev.id, "android", delegate, 1, Settings())

    assert ag.supports(q, job(q, "hexagon")) == (True, "")
    ok, reason = ag.supports(e, job(e, "hexagon"))
    assert not ok and "needs a Qualcomm SoC" in reason and "Exynos 2100" in reason
    assert "QNN" in ag.supports(q, job(q, "qnn"))[1] or "libQnn" in ag.supports(q, job(q, "qnn"))[1]
    mlpkg = ModelRef("/x/m.mlpackage", "cd" * 32, 1, "mlpackage")
    assert ag.supports(q, job(q, "gpu", mlpkg)) == (False, "Core ML variant: not an iOS device")
    old = DeviceInfo(**{**q.__dict__, "sdk": 26})
    assert "SDK 27" in ag.supports(old, job(old, "nnapi"))[1]
    other_abi = DeviceInfo(**{**q.__dict__, "abi": "armeabi-v7a"})
    ok, reason = ag.supports(other_abi, job(other_abi, "cpu"))
    assert not ok and "--abi armeabi-v7a" in reason


# ----------------------------------------------------------------------------- runs


def test_run_pushes_once_and_records_flags(phones: Any, cache: Path, model: ModelRef) -> None:
    qcom, _ = phones
    ag = agent()
    dev = by_id(ag.discover(), qcom.serial)
    settings = Settings(warmup=2, iterations=7, repeats=2, profile_ops=True)
    raw = ag.run(dev, Job(model, dev.id, "android", "gpu", 2, settings), lambda p, f: None)
    assert raw.status == "ok", raw.error
    assert raw.aggregates_ms["avg"] == pytest.approx(119.375)
    assert raw.aggregates_ms["repeats"] == 2 and raw.init_ms == pytest.approx(870.557)
    assert raw.thermal_before["thermal_status"] == 0 and "temperatures_c" in raw.thermal_after
    assert raw.runner["name"] == "benchmark_model" and "--use_gpu=true" in raw.runner["argv"]
    assert raw.runner["runtime"] == "litert"  # every job names its runtime
    # two measured launches plus one profiling launch, each with the job's flags, then the
    # cold and the warm start through the GPU delegate's cache
    calls = qcom.benchmark_calls
    assert len(calls) == 5
    for argv in calls:
        assert "--use_gpu=true" in argv and "--num_threads=2" in argv
    assert all("--num_runs=7" in argv for argv in calls[:3])
    assert all(any(a.startswith("--delegate_serialize_dir=") for a in argv)
               for argv in calls[3:])
    assert "--enable_op_profiling=true" not in calls[0]
    assert "--op_profiling_output_mode=csv" in calls[2]
    # the pulled profile file (a real Summary-by-node-type table) became op rows
    assert [o.kernel for o in raw.ops][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert raw.ops[0].detail["aggregated_by_type"] is True
    pushed_before = list(qcom.pushed)
    assert sum(p.endswith("/benchmark_model") for p in pushed_before) == 1
    raw2 = ag.run(dev, Job(model, dev.id, "android", "cpu", 1, Settings(iterations=3,
                                                                         repeats=1)),
                  lambda p, f: None)
    assert raw2.status == "ok"
    assert qcom.pushed == pushed_before, "unchanged runner and model must not be pushed again"
    assert "--use_xnnpack=false" in qcom.benchmark_calls[-1]


def test_hexagon_that_falls_back_to_cpu_is_failed(phones: Any, cache: Path,
                                                  model: ModelRef) -> None:
    qcom, _ = phones
    ag = agent()
    dev = by_id(ag.discover(), qcom.serial)
    raw = ag.run(dev, Job(model, dev.id, "android", "hexagon", 1, Settings(repeats=1)),
                 lambda p, f: None)
    assert raw.status == "failed"
    assert "Could not create Hexagon delegate" in (raw.error or "")
    argv = qcom.benchmark_calls[-1]
    assert "--use_hexagon=true" in argv and any(a.startswith("--hexagon_lib_path=") for a in argv)
    assert any(p.endswith("/lib/libhexagon_interface.so") for p in qcom.pushed)


def test_device_paths_are_quoted(phones: Any, tmp_path: Path, model: ModelRef,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Library names with a space or ``$(…)`` are pushed, checked and marked literally."""
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "odd-cache"))
    libs = tmp_path / "odd libs"
    libs.mkdir()
    odd = ["libhexagon_interface.so", "libhexagon nn skel v66.so",
           "libhexagon$(touch PWNED)`id`.so"]
    for name in odd:
        (libs / name).write_bytes(name.encode())
    provision.provision_binary(elf_aarch64(tmp_path / "benchmark_model"), "arm64-v8a", libs)
    qcom, _ = phones
    ag = agent()
    dev = by_id(ag.discover(), qcom.serial)
    job = Job(model, dev.id, "android", "hexagon", 1, Settings(repeats=1))
    ag.run(dev, job, lambda p, f: None)
    assert qcom.substitutions == []
    lib_dir = qcom.sandbox / "data/local/tmp/quantlab/lib"
    for name in odd:
        assert (lib_dir / name).read_bytes() == name.encode()
        assert (lib_dir / f"{name}.sha256").read_text().strip() == \
            hashlib.sha256(name.encode()).hexdigest()
    assert not list(qcom.sandbox.rglob("PWNED"))
    pushed = list(qcom.pushed)
    ag.run(dev, job, lambda p, f: None)
    assert qcom.pushed == pushed, "the device's sha256sum of each quoted path matched"


def test_device_side_time_limit(phones: Any, cache: Path, model: ModelRef) -> None:
    _, exynos = phones
    exynos.benchmark_seconds = 3.0
    ag = agent()
    dev = by_id(ag.discover(), exynos.serial)
    start = time.monotonic()
    raw = ag.run(dev, Job(model, dev.id, "android", "xnnpack", 1,
                          Settings(repeats=3, timeout_s=1)), lambda p, f: None)
    assert raw.status == "failed"
    assert "ran past the device-side limit of 1s" in (raw.error or "")
    assert time.monotonic() - start < 2.9  # the first repeat's failure ends the job
    assert any(a == "--max_secs=1" for a in exynos.benchmark_calls[-1])


def test_energy_on_the_battery_gauge(phones: Any, cache: Path, model: ModelRef) -> None:
    _, exynos = phones
    ag = agent()
    dev = by_id(ag.discover(), exynos.serial)
    raw = ag.run(dev, Job(model, dev.id, "android", "xnnpack", 1,
                          Settings(repeats=1, energy=True)), lambda p, f: None)
    assert raw.status == "ok", raw.error
    assert raw.energy is not None, raw.energy_unavailable_reason
    assert raw.energy.method == "battery-gauge" and raw.energy.samples > 4
    assert raw.energy.detail["current_scale_to_uA"] == 1000.0  # this vendor prints mA
    base_mw = 185 * 3987000 / 1e6
    assert raw.energy.baseline_mw == pytest.approx(base_mw, rel=0.01)
    assert raw.energy.mj_per_inference > 0
    assert {s.phase for s in raw.energy_samples} == {"baseline", "load"}
    assert raw.energy.comparability == "battery-gauge" and not raw.energy.on_external_power


def test_energy_samples_the_timed_loop_only(phones: Any, cache: Path, model: ModelRef) -> None:
    """Process start and delegate init draw far more than the loop (GPU kernels compiling):
    the figure is the power inside the timed loop only, read off the runner's own output
    (after its measured-run line, before its results), and the window is recorded."""
    _, exynos = phones
    # 1.5 s of start-up at 4,000 mA, then the warm-up and the loop at 912 mA
    exynos.profile["startup"] = {"seconds": 1.5, "battery_sysfs": {"current_now": "4000"}}
    ag = agent()
    dev = by_id(ag.discover(), exynos.serial)
    raw = ag.run(dev, Job(model, dev.id, "android", "xnnpack", 1,
                          Settings(repeats=1, energy=True)), lambda p, f: None)
    assert raw.status == "ok", raw.error
    assert raw.energy is not None, raw.energy_unavailable_reason
    volts = 3987000 / 1e6
    assert raw.energy.detail["load_mw"] == pytest.approx(912 * volts, rel=0.01)  # not 4,000 mA
    window = raw.energy.detail["window"]
    assert window["readings"] >= 2 and window["left_out_before"] >= 1  # start-up readings
    assert window["end_s"] > window["start_s"]
    loads = [s for s in raw.energy_samples if s.phase == "load" and s.channel == "battery.current"]
    assert loads and {s.value for s in loads} == {912.0}
    # the latency divided by is the energy launch's own, as its raw output says
    assert raw.energy.detail["latency_ms"] == pytest.approx(13.5202)


def test_failed_energy_launch_gives_no_figure(phones: Any, cache: Path, model: ModelRef) -> None:
    """The energy loop fails: no figure, with the reason, never one made from the power
    sampled and a latency from another launch."""
    _, exynos = phones
    ag = agent()
    dev = by_id(ag.discover(), exynos.serial)
    exynos.fail_launches_from = len(exynos.benchmark_calls) + 2  # the job's 2nd launch fails
    raw = ag.run(dev, Job(model, dev.id, "android", "xnnpack", 1,
                          Settings(repeats=1, energy=True)), lambda p, f: None)
    assert raw.status == "ok", raw.error  # the latency launch itself was fine
    assert raw.energy is None
    reason = raw.energy_unavailable_reason or ""
    assert reason.startswith("the energy launch failed: ") and "Failed to invoke" in reason


def test_gauge_on_usb_power_null_unless_asked(phones: Any, cache: Path, model: ModelRef) -> None:
    qcom, _ = phones  # the Pixel 5 profile is on USB power (dumpsys battery) and charging
    ag = agent()
    dev = by_id(ag.discover(), qcom.serial)
    raw = ag.run(dev, Job(model, dev.id, "android", "xnnpack", 1,
                          Settings(repeats=1, energy=True)), lambda p, f: None)
    assert raw.status == "ok", raw.error
    assert raw.energy is None
    assert (raw.energy_unavailable_reason or "").startswith(
        "the phone was on USB power: the gauge reads charge current")
    assert {s.phase for s in raw.energy_samples} == {"baseline", "load"}  # raw readings kept
    kept = ag.run(dev, Job(model, dev.id, "android", "xnnpack", 1,
                           Settings(repeats=1, energy=True, energy_on_usb=True)),
                  lambda p, f: None)
    assert kept.status == "ok", kept.error
    assert kept.energy is not None, kept.energy_unavailable_reason
    assert kept.energy.method == "battery-gauge" and kept.energy.on_external_power
    assert "taken on USB power" in (kept.energy.label or "")
    assert any("USB power" in w for w in kept.warnings)


def test_sampler_reports_its_own_error(phones: Any, cache: Path, model: ModelRef) -> None:
    _, exynos = phones
    exynos.profile["battery_sysfs"].pop("load")  # the fake benchmark would write the file back
    (exynos.sandbox / "sys/class/power_supply/battery/current_now").unlink()
    ag = agent()
    dev = by_id(ag.discover(), exynos.serial)
    raw = ag.run(dev, Job(model, dev.id, "android", "xnnpack", 1,
                          Settings(repeats=1, energy=True)), lambda p, f: None)
    assert raw.status == "ok" and raw.energy is None
    reason = raw.energy_unavailable_reason or ""
    assert reason.startswith("energy sampler failed: the baseline-phase sampler exited with "
                             "code 3: sampler: battery current: cat: ")
    assert "current_now: No such file or directory" in reason and "SELinux" not in reason


def test_dead_sampler_thread_reports_its_exception(phones: Any, cache: Path,
                                                   model: ModelRef) -> None:
    import adbutils

    _, exynos = phones

    class DyingSampler(AndroidAgent):
        def _shell(self, d: Any, cmd: str, timeout: float = 60) -> Any:
            if "sampler.sh load" in cmd:
                raise adbutils.AdbError("closed by the test")
            return super()._shell(d, cmd, timeout)

    ag = DyingSampler(thermal=ThermalPolicy(max_status=1, max_battery_c=45.0, cooldown_s=0),
                      energy_baseline_s=1, energy_load_s=1)
    dev = by_id(ag.discover(), exynos.serial)
    raw = ag.run(dev, Job(model, dev.id, "android", "xnnpack", 1,
                          Settings(repeats=1, energy=True)), lambda p, f: None)
    assert raw.status == "ok" and raw.energy is None
    assert raw.energy_unavailable_reason == (
        "energy sampler failed: the load-phase sampler died: AdbError: closed by the test")


# ----------------------------------------------------------------------------- dispatch


def _plan_and_dispatch(tmp_path: Path, model: ModelRef, delegates: list[str],
                       retry_timeout_s: float = 20.0) -> dict[str, Any]:
    from quantlab.harness.dispatch import Dispatcher
    from quantlab.harness.environment import new_run
    from quantlab.harness.plan import build_plan, discover
    from quantlab.harness.results import run_dict
    from quantlab.harness.store import Store

    ag = agent()
    fleet = discover(agents=[ag])
    devices = [d for d in fleet.devices if d.state == "ready"]
    settings = Settings(warmup=1, iterations=5, repeats=1)
    plan = build_plan([model], devices, fleet, delegates, [1], settings)
    store = Store.open(str(tmp_path / "results"))
    run = new_run(settings, command="test")
    store.create_run(run, plan, devices)
    accounts = Dispatcher(store, run.run_id, fleet, retry_timeout_s=retry_timeout_s).run(
        list(plan.jobs))
    data = run_dict(store.load_run(run.run_id))
    data["accounts"] = [a.as_dict() for a in accounts]
    return data


def test_phone_offline_when_the_run_starts_is_waited_for(adb_port: int, cache: Path,
                                                          model: ModelRef,
                                                          tmp_path: Path) -> None:
    """A phone that is still reconnecting (its adbd not answering yet) when the run starts
    is listed offline; its jobs wait for it instead of failing at once."""
    import threading

    from quantlab.harness.dispatch import Dispatcher
    from quantlab.harness.environment import new_run
    from quantlab.harness.plan import build_plan, discover, select_devices
    from quantlab.harness.store import Store

    phone = FakeAndroidDevice("pixel5_snapdragon", tmp_path / "rebooting", silent=True)
    assert ADB
    connect = subprocess.Popen([ADB, "-P", str(adb_port), "connect", phone.serial],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ag = agent()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            fleet = discover(agents=[ag])
            if any(d.id == phone.serial and d.state == "offline" for d in fleet.devices):
                break
            time.sleep(0.2)
        chosen = select_devices(fleet, [phone.serial])
        assert chosen[0].state == "offline"
        settings = Settings(warmup=1, iterations=5, repeats=1)
        plan = build_plan([model], chosen, fleet, ["xnnpack", "hexagon"], [1], settings)
        assert len(plan.jobs) == 2 and plan.skipped == ()  # kept: supports() asked later
        store = Store.open(str(tmp_path / "results"))
        run = new_run(settings, command="test")
        store.create_run(run, plan, chosen)

        def boot_finishes() -> None:
            time.sleep(2)
            phone.silent = False
            phone.drop()  # the half-open connection goes; the next `adb connect` succeeds

        threading.Thread(target=boot_finishes, daemon=True).start()
        accounts = Dispatcher(store, run.run_id, fleet, retry_timeout_s=30).run(
            list(plan.jobs))
        entries = {e.job.delegate: e for e in store.load_run(run.run_id).entries}
        assert entries["xnnpack"].status == "ok", entries["xnnpack"].error
        # the hexagon job ran too (the phone is a Snapdragon, libs provisioned) once described
        assert entries["hexagon"].status in ("ok", "failed") and entries["hexagon"].attempts == 1
        assert store.load_run(run.run_id).devices[phone.serial].soc is not None
        assert accounts[0].faults[0].endswith("was offline when the run started")
    finally:
        connect.kill()
        connect.wait()
        adb(adb_port, "disconnect", phone.serial)
        phone.close()


def _result(data: dict[str, Any], serial: str, delegate: str) -> dict[str, Any]:
    return next(r for r in data["results"]
                if r["device"]["id"] == serial and r["delegate"] == delegate)


def test_two_phones_in_parallel_with_skips(phones: Any, cache: Path, model: ModelRef,
                                           tmp_path: Path) -> None:
    qcom, exynos = phones
    data = _plan_and_dispatch(tmp_path, model, ["xnnpack", "gpu", "hexagon"])
    for serial in (qcom.serial, exynos.serial):
        for delegate in ("xnnpack", "gpu"):
            r = _result(data, serial, delegate)
            assert r["status"] == "ok", r["error"]
            assert r["latency_ms"]["source"] == "aggregates"
    skipped = _result(data, exynos.serial, "hexagon")
    assert skipped["status"] == "skipped" and "needs a Qualcomm SoC" in skipped["error"]
    assert _result(data, qcom.serial, "hexagon")["status"] == "failed"
    flags = {("gpu", "--use_gpu=true"), ("xnnpack", "--use_xnnpack=true")}
    for fake in (qcom, exynos):
        seen = {a for argv in fake.benchmark_calls for a in argv}
        for _, flag in flags:
            assert flag in seen
    assert not any("--use_hexagon=true" in argv for argv in exynos.benchmark_calls)


def test_dropped_connection_is_retried(phones: Any, cache: Path, model: ModelRef,
                                       tmp_path: Path) -> None:
    qcom, exynos = phones
    qcom.drop_next_benchmarks = 1
    qcom.down_for_s = 1.5
    data = _plan_and_dispatch(tmp_path, model, ["xnnpack"])
    r = _result(data, qcom.serial, "xnnpack")
    assert r["status"] == "ok", r["error"]
    assert r["attempts"] == 2
    assert _result(data, exynos.serial, "xnnpack")["status"] == "ok"
    account = next(a for a in data["accounts"] if a["device_id"] == qcom.serial)
    assert account["retries"] == 1 and "lost the device" in account["faults"][0]


def test_phone_that_never_returns_fails_with_reason(phones: Any, cache: Path, model: ModelRef,
                                                    tmp_path: Path) -> None:
    qcom, exynos = phones
    qcom.drop_next_benchmarks = 1
    qcom.down_for_s = None
    data = _plan_and_dispatch(tmp_path, model, ["xnnpack"], retry_timeout_s=3.0)
    r = _result(data, qcom.serial, "xnnpack")
    assert r["status"] == "failed"
    assert "did not come back within 3s" in r["error"] and qcom.serial in r["error"]
    assert _result(data, exynos.serial, "xnnpack")["status"] == "ok"


# ----------------------------------------------------------------------------- CLI


def _cli(args: list[str], port: int, cache: Path,
         tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(port), "QUANTLAB_CACHE": str(cache),
           "QUANTLAB_RESULTS": str(tmp_path / "cli-results"), "QUANTLAB_COOLDOWN_S": "0",
           "QUANTLAB_THERMAL_MAX_STATUS": "1"}
    return subprocess.run([sys.executable, "-m", "quantlab", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_devices_lists_both_phones(phones: Any, cache: Path, adb_port: int,
                                       tmp_path: Path) -> None:
    qcom, exynos = phones
    out = _cli(["devices", "--json"], adb_port, cache, tmp_path)
    assert out.returncode == 0, out.stderr
    devices = {d["id"]: d for d in json.loads(out.stdout)["devices"]}
    assert devices[qcom.serial]["soc"] == "SM7250"
    assert devices[exynos.serial]["model"] == "SM-G991B"


TINY_TFLITE = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
fn = tf.function(lambda x: tf.nn.relu(tf.matmul(x, tf.ones((4, 2)))),
                 input_signature=[tf.TensorSpec((1, 4), tf.float32)])
conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
open(sys.argv[1], "wb").write(conv.convert())
"""


def test_cli_bench_all_devices(phones: Any, cache: Path, adb_port: int, tmp_path: Path) -> None:
    qcom, exynos = phones
    model = tmp_path / "tiny.tflite"  # a real TFLite file: bench checks what it is given
    subprocess.run([sys.executable, "-c", TINY_TFLITE, str(model)], check=True, timeout=300,
                   capture_output=True)
    out = _cli(["bench", str(model), "--device", "all", "--delegate", "xnnpack,gpu,hexagon",
                "--repeats", "1", "--iterations", "5", "--json"], adb_port, cache, tmp_path)
    assert out.stdout, out.stderr
    data = json.loads(out.stdout)
    results = {(r["device"]["id"], r["delegate"]): r for r in data["results"]}
    for serial in (qcom.serial, exynos.serial):
        assert results[(serial, "xnnpack")]["status"] == "ok"
        assert results[(serial, "gpu")]["status"] == "ok"
    assert results[(exynos.serial, "hexagon")]["status"] == "skipped"
    assert "Qualcomm" in results[(exynos.serial, "hexagon")]["error"]
    assert any("--use_gpu=true" in argv for argv in qcom.benchmark_calls)
