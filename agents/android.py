"""Android phones through a real adb server (adbutils), measured with benchmark_model.

discover → health → supports → run: push what is missing (runner, delegate
libraries, the variant), wait for the phone to cool down, launch benchmark_model
once per repeat under a device-side ``timeout``, pull the profile file, parse
(android_runner.parser) and hand back a RawResult. A phone that drops off the bus
raises :class:`~harness.errors.DeviceDisconnected`; the dispatcher waits for it with
:meth:`AndroidAgent.wait_until_back` and retries.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.base import Progress
from android_runner import command as cmdmod
from android_runner import energy as energymod
from android_runner import provision
from android_runner.parser import BenchmarkOutput, parse_output, to_raw_result
from harness.errors import DeviceDisconnected, DeviceTimeout, JobFailed, QuantlabError
from harness.records import DeviceInfo, Job, RawResult

QUALCOMM_PLATFORMS = re.compile(
    r"^(msm|sdm|sm\d|qcs|apq|lito|kona|lahaina|taro|kalama|pineapple|sun|trinket|bengal|holi|"
    r"atoll|sdmmagpie|msmnile|parrot|crow|blair|khaje|monaco|cliffs|volcano)", re.I)
THERMAL_NAMES = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical",
                 5: "emergency", 6: "shutdown"}
HAL_TYPES = {0: "cpu", 1: "gpu", 2: "battery", 3: "skin"}
NNAPI_MIN_SDK = 27
NNAPI_DEPRECATED_SDK = 35


@dataclass(frozen=True)
class ThermalPolicy:
    """When a phone is cool enough to measure, and how long to wait for it."""

    max_status: int = 1  # Android thermal status (0 none … 6 shutdown)
    max_battery_c: float = 38.0
    cooldown_s: float = 120.0  # give up waiting after this long (and say so)
    poll_s: float = 5.0


def _adb_errors() -> tuple[type[Exception], ...]:
    import adbutils

    return (adbutils.AdbError, OSError, EOFError, ConnectionError)



def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` output (``[key]: [value]`` lines) as a dict."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M))


def parse_battery(text: str) -> dict[str, Any]:
    """Level, temperature (°C), voltage (mV), power source and status from ``dumpsys battery``."""
    fields = dict(re.findall(r"^\s*([A-Za-z][\w ]*?): (.*)$", text, re.M))
    out: dict[str, Any] = {}
    if "level" in fields:
        out["battery_pct"] = int(fields["level"])
    if "temperature" in fields:
        out["battery_temp_c"] = int(fields["temperature"]) / 10.0
    if "voltage" in fields:
        out["battery_mv"] = int(fields["voltage"])
    powered = [src for src in ("AC", "USB", "Wireless")
               if fields.get(f"{src} powered", "false").strip() == "true"]
    out["powered_by"] = powered
    out["usb_powered"] = "USB" in powered
    status = {"1": "unknown", "2": "charging", "3": "discharging", "4": "not charging",
              "5": "full"}
    if "status" in fields:
        out["charging_status"] = status.get(fields["status"].strip(), fields["status"].strip())
    return out


def parse_thermal(text: str) -> dict[str, Any]:
    """Thermal status and HAL temperatures by type from ``dumpsys thermalservice``."""
    out: dict[str, Any] = {}
    m = re.search(r"Thermal Status: (\d)", text)
    if m:
        out["thermal_status"] = int(m.group(1))
        out["thermal_status_name"] = THERMAL_NAMES.get(int(m.group(1)), "unknown")
    section = text.split("Current temperatures from HAL:", 1)
    body = section[1] if len(section) == 2 else text
    temps: dict[str, float] = {}
    for value, typ, name in re.findall(
            r"Temperature\{mValue=([-\d.]+), mType=(-?\d+), mName=([^,]+),", body):
        kind = HAL_TYPES.get(int(typ))
        if kind:
            temps[kind] = max(temps.get(kind, -273.0), float(value))
            temps.setdefault(f"{kind}:{name}", float(value))
    out["temperatures_c"] = {k: v for k, v in temps.items() if ":" not in k}
    return out


def is_qualcomm(props: dict[str, str]) -> bool:
    """Whether the SoC is a Qualcomm Snapdragon (Hexagon DSP / QNN HTP present)."""
    maker = (props.get("ro.soc.manufacturer") or "").lower()
    if maker:
        return maker in ("qti", "qualcomm", "qualcomm technologies, inc")
    platform = props.get("ro.board.platform", "")
    return bool(QUALCOMM_PLATFORMS.match(platform)) or props.get("ro.hardware", "") == "qcom"


class AndroidAgent:
    """Every phone the adb server lists; jobs run with benchmark_model."""

    kind: str = "android"
    delegates: tuple[str, ...] = ("xnnpack", "cpu", "gpu", "nnapi", "hexagon", "qnn")

    def __init__(self, host: str | None = None, port: int | None = None,
                 thermal: ThermalPolicy | None = None, energy_baseline_s: int = 5,
                 energy_load_s: int = 10, sleep: Callable[[float], None] = time.sleep) -> None:
        self.host = host or os.environ.get("ANDROID_ADB_SERVER_HOST", "127.0.0.1")
        self.port = int(port or os.environ.get("ANDROID_ADB_SERVER_PORT") or 5037)
        self.thermal = thermal or ThermalPolicy(
            max_status=int(os.environ.get("QUANTLAB_THERMAL_MAX_STATUS", 1)),
            max_battery_c=float(os.environ.get("QUANTLAB_THERMAL_MAX_BATTERY_C", 38.0)),
            cooldown_s=float(os.environ.get("QUANTLAB_COOLDOWN_S", 120.0)))
        self.energy_baseline_s = energy_baseline_s
        self.energy_load_s = energy_load_s
        self.sleep = sleep
        self._client: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ adb plumbing

    def client(self) -> Any:
        """The adbutils client of the adb server this agent talks to."""
        with self._lock:
            if self._client is None:
                import adbutils

                self._client = adbutils.AdbClient(host=self.host, port=self.port)
            return self._client

    def _device(self, serial: str) -> Any:
        return self.client().device(serial)

    @contextmanager
    def _faults(self, device_id: str, doing: str) -> Iterator[None]:
        """Turn adb and socket errors into DeviceDisconnected / DeviceTimeout."""
        import adbutils

        try:
            yield
        except QuantlabError:
            raise
        except adbutils.AdbTimeout as exc:
            raise DeviceTimeout(device_id, f"no answer while {doing} ({exc})",
                                hint="check the cable / Wi-Fi connection") from None
        except _adb_errors() as exc:
            raise DeviceDisconnected(device_id, f"lost the device while {doing} ({exc})",
                                     hint="reconnect it; quantlab retries the job") from None

    def _shell(self, d: Any, cmd: str, timeout: float = 60) -> Any:
        return d.shell2(cmd, timeout=timeout, v2=True)

    # ------------------------------------------------------------------ discover / health

    def discover(self) -> list[DeviceInfo]:
        """Every device the adb server lists (ready, offline or unauthorized)."""
        import adbutils

        try:
            infos = self.client().list()
        except (adbutils.AdbError, OSError, subprocess.SubprocessError) as exc:
            raise QuantlabError(f"adb server at {self.host}:{self.port} not reachable ({exc})",
                                hint="install adb (platform-tools) or start it with "
                                "`adb start-server`; see docs/devices.md") from None
        devices = []
        describe_errors: tuple[type[Exception], ...] = (QuantlabError, *_adb_errors())
        for info in infos:
            if info.state == "device":
                try:
                    devices.append(self._describe(info.serial))
                except describe_errors as exc:
                    devices.append(DeviceInfo(id=info.serial, platform="android",
                                              name=info.serial, state="unavailable",
                                              state_hint=f"could not read its properties ({exc})"))
                continue
            hint = {
                "unauthorized": "unlock the phone and accept the 'Allow USB debugging?' prompt "
                                "(tick 'Always allow'); if no prompt shows, revoke USB debugging "
                                "authorizations in Developer options and replug",
                "offline": "replug the cable or run `adb reconnect`; for a Wi-Fi device run "
                           f"`adb connect {info.serial}`",
                "no permissions": "add a udev rule for the phone (see docs/devices.md) and replug",
            }.get(info.state, "see docs/devices.md")
            devices.append(DeviceInfo(id=info.serial, platform="android", name=info.serial,
                                      state=info.state if info.state in ("offline",
                                                                         "unauthorized")
                                      else "unavailable", state_hint=hint))
        return devices

    def _describe(self, serial: str) -> DeviceInfo:
        d = self._device(serial)
        res = self._shell(d, "getprop", timeout=30)
        props = parse_getprop(res.stdout)
        sdk = int(props["ro.build.version.sdk"]) if props.get("ro.build.version.sdk",
                                                              "").isdigit() else None
        qualcomm = is_qualcomm(props)
        delegates = tuple(x for x in self.delegates
                          if (x not in ("hexagon", "qnn") or qualcomm)
                          and (x != "nnapi" or (sdk or 0) >= NNAPI_MIN_SDK))
        soc = props.get("ro.soc.model") or props.get("ro.board.platform") or None
        info = DeviceInfo(
            id=serial, platform="android",
            name=props.get("ro.product.model") or serial,
            model=props.get("ro.product.model"),
            manufacturer=props.get("ro.product.manufacturer"),
            soc=soc, os_version=props.get("ro.build.version.release"), sdk=sdk,
            abi=props.get("ro.product.cpu.abi"), delegates=delegates,
            extra={"qualcomm": qualcomm, "board_platform": props.get("ro.board.platform"),
                   "soc_manufacturer": props.get("ro.soc.manufacturer"),
                   "abilist": props.get("ro.product.cpu.abilist", ""),
                   "serialno": props.get("ro.serialno"),
                   "runner_provisioned": provision.cached_binary(
                       props.get("ro.product.cpu.abi", "")) is not None})
        errors: tuple[type[Exception], ...] = (QuantlabError, *_adb_errors())
        try:
            health = self.health(info)
        except errors:
            health = {}
        return DeviceInfo(**{**info.__dict__, "health": health})

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """Battery level/temperature/power source and thermal status of a phone."""
        d = self._device(device.id)
        with self._faults(device.id, "reading its health"):
            battery = self._shell(d, "dumpsys battery", timeout=30)
            thermal = self._shell(d, "dumpsys thermalservice", timeout=30)
        out = parse_battery(battery.stdout)
        out.update(parse_thermal(thermal.stdout))
        return out

    # ------------------------------------------------------------------ supports

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """Whether ``device`` can run ``job``, with the reason when it cannot."""
        fmt = job.model.format
        if fmt in ("mlpackage", "mlmodel") or job.delegate.startswith("coreml"):
            return False, "Core ML variant: not an iOS device"
        if fmt != "tflite":
            return False, f"{Path(job.model.path).name}: Android runs .tflite models only"
        if job.delegate not in self.delegates:
            return False, (f"{job.delegate}: not an Android delegate "
                           f"(Android has {', '.join(self.delegates)})")
        if job.delegate in ("hexagon", "qnn") and not device.extra.get("qualcomm"):
            return False, (f"{job.delegate}: needs a Qualcomm SoC (this phone has "
                           f"{device.soc or 'an unknown SoC'})")
        if job.delegate == "nnapi" and device.sdk is not None and device.sdk < NNAPI_MIN_SDK:
            return False, (f"nnapi: needs Android 8.1 (SDK {NNAPI_MIN_SDK}) or newer; this "
                           f"phone has SDK {device.sdk}")
        runner = provision.cached_binary(device.abi or "")
        if runner is None:
            return False, (f"no benchmark_model provisioned for ABI {device.abi or 'unknown'}: "
                           f"run `quantlab android provision --binary PATH --abi "
                           f"{device.abi or 'ABI'}` (docs/devices.md)")
        if job.delegate == "hexagon" and not any(n.startswith("libhexagon") for n in runner.libs):
            return False, ("hexagon: no Hexagon libraries provisioned (libhexagon_interface.so, "
                           "libhexagon_nn_skel*.so): `quantlab android provision --binary PATH "
                           "--delegate-libs DIR`")
        if job.delegate == "qnn" and cmdmod.QNN_DELEGATE_LIB not in runner.libs:
            return False, (f"qnn: {cmdmod.QNN_DELEGATE_LIB} not provisioned: `quantlab android "
                           "provision --binary PATH --delegate-libs DIR` (QNN SDK libraries)")
        return True, ""

    # ------------------------------------------------------------------ run

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Measure ``job`` on ``device`` (see the module docstring)."""
        try:
            runner = provision.require_binary(device.abi)
        except provision.RunnerMissing as exc:
            raise JobFailed(exc.one_line()) from None
        if not Path(job.model.path).is_file():
            raise JobFailed(f"{job.model.path}: model file not found on this host",
                            hint="the variant was moved or deleted after planning")
        d = self._device(device.id)
        warnings: list[str] = []
        if job.delegate == "nnapi" and (device.sdk or 0) >= NNAPI_DEPRECATED_SDK:
            warnings.append("nnapi is deprecated since Android 15; vendors may drop drivers")
        with self._faults(device.id, "waiting for it to cool down"):
            progress("cooling down", None)
            thermal_before = self._wait_cool(device, warnings)
        with self._faults(device.id, "pushing files"):
            progress("pushing", None)
            model_remote = self._push(d, runner, job)
        launches: list[BenchmarkOutput] = []
        stdout_tail = ""
        for r in range(job.settings.repeats):
            progress(f"repeat {r + 1}/{job.settings.repeats}", r / job.settings.repeats)
            cmd = cmdmod.build_command(job, model_remote)
            out, text = self._launch(d, device, cmd)
            launches.append(out)
            stdout_tail = text[-4000:]
            if not out.ok:
                break
        profile = None
        if job.settings.profile_ops and all(o.ok for o in launches):
            progress("profiling ops", None)
            profile = self._profile(d, device, job, model_remote)
        runner_meta = {"name": "benchmark_model", "abi": runner.abi, "sha256": runner.sha256,
                       "argv": list(cmdmod.build_command(job, model_remote).argv),
                       "output_tail": stdout_tail}
        energy_fields: dict[str, Any] = {}
        if job.settings.energy and launches and all(o.ok for o in launches):
            progress("measuring energy", None)
            with self._faults(device.id, "measuring energy"):
                energy_fields, energy_warn = self._energy(d, device, job, model_remote,
                                                          launches, thermal_before)
            warnings.extend(energy_warn)
        with self._faults(device.id, "reading its thermal state"):
            thermal_after = self._thermal_snapshot(device)
        status_after = thermal_after.get("thermal_status", 0)
        if status_after > thermal_before.get("thermal_status", 0) or status_after >= 2:
            warnings.append(f"thermal throttling: thermal status went from "
                            f"{thermal_before.get('thermal_status_name', '?')} to "
                            f"{thermal_after.get('thermal_status_name', '?')} during the job")
        raw = to_raw_result(job.job_id, launches, job.delegate, profile=profile,
                            runner=runner_meta, thermal_before=thermal_before,
                            thermal_after=thermal_after, **energy_fields)
        if warnings:
            raw = RawResult(**{**raw.__dict__, "warnings": tuple(warnings) + raw.warnings})
        progress("done", 1.0)
        return raw

    def _thermal_snapshot(self, device: DeviceInfo) -> dict[str, Any]:
        h = self.health(device)
        keys = ("thermal_status", "thermal_status_name", "temperatures_c", "battery_temp_c",
                "battery_pct", "usb_powered", "powered_by", "charging_status")
        snap = {k: h[k] for k in keys if k in h}
        snap["at"] = time.time()
        return snap

    def _wait_cool(self, device: DeviceInfo, warnings: list[str]) -> dict[str, Any]:
        """Wait until thermal status and battery temperature are under the limits."""
        policy = self.thermal
        start = time.monotonic()
        while True:
            snap = self._thermal_snapshot(device)
            hot = []
            if snap.get("thermal_status", 0) > policy.max_status:
                hot.append(f"thermal status {snap.get('thermal_status_name')}")
            if snap.get("battery_temp_c", 0.0) > policy.max_battery_c:
                hot.append(f"battery {snap.get('battery_temp_c')} °C")
            waited = time.monotonic() - start
            if not hot:
                snap["waited_s"] = round(waited, 1)
                return snap
            if waited >= policy.cooldown_s:
                snap["waited_s"] = round(waited, 1)
                warnings.append(f"still hot after {policy.cooldown_s:.0f}s cool-down "
                                f"({', '.join(hot)}); measured anyway")
                return snap
            self.sleep(min(policy.poll_s, max(0.0, policy.cooldown_s - waited)))

    def _push(self, d: Any, runner: provision.RunnerBinary, job: Job) -> str:
        provision.ensure_file(d, runner.path, cmdmod.BINARY, runner.sha256, mode=0o755)
        if job.delegate in ("hexagon", "qnn"):
            for name, sha in runner.libs.items():
                provision.ensure_file(d, runner.lib_dir / name, f"{cmdmod.LIB_DIR}/{name}", sha)
        remote = f"{cmdmod.DEVICE_DIR}/models/{job.model.sha256[:16]}.tflite"
        provision.ensure_file(d, Path(job.model.path), remote, job.model.sha256)
        return remote

    def _launch(self, d: Any, device: DeviceInfo, cmd: cmdmod.BenchmarkCommand,
                profile_text: str | None = None) -> tuple[BenchmarkOutput, str]:
        with self._faults(device.id, "running benchmark_model"):
            res = self._shell(d, cmd.shell(), timeout=cmd.timeout_s + 60)
        text = res.stdout + ("\n" + res.stderr if res.stderr else "")
        out = parse_output(text, profile_text)
        if res.returncode in (124, 137):
            return BenchmarkOutput(ok=False, error=f"benchmark_model ran past the device-side "
                                   f"limit of {cmd.timeout_s}s and was killed"), text
        if res.returncode != 0 and out.ok:
            return BenchmarkOutput(ok=False, error=f"benchmark_model exited with code "
                                   f"{res.returncode}: {_last(text)}"), text
        if res.returncode != 0 and not out.error:
            return BenchmarkOutput(ok=False, error=_last(text)), text
        return out, text

    def _profile(self, d: Any, device: DeviceInfo, job: Job, model: str) -> BenchmarkOutput:
        remote = f"{cmdmod.DEVICE_DIR}/out/{job.job_id}.profile.csv"
        with self._faults(device.id, "profiling ops"):
            self._shell(d, f"mkdir -p {cmdmod.DEVICE_DIR}/out && rm -f {remote}")
        cmd = cmdmod.build_command(job, model, profile_file=remote)
        out, text = self._launch(d, device, cmd)
        if not out.ok:
            return out
        with self._faults(device.id, "pulling the op profile"):
            try:
                data = d.sync.read_bytes(remote).decode("utf-8", "replace")
            except _adb_errors():
                data = ""  # an older tool ignores the file flag and prints to stdout
        return parse_output(text, data) if data.strip() else out

    def _energy(self, d: Any, device: DeviceInfo, job: Job, model: str,
                launches: list[BenchmarkOutput], thermal_before: dict[str, Any]
                ) -> tuple[dict[str, Any], list[str]]:
        sampler = f"{cmdmod.DEVICE_DIR}/sampler.sh"
        provision.ensure_file(d, energymod.SAMPLER, sampler,
                              provision.file_sha256(energymod.SAMPLER))
        base = self._shell(d, f"sh {sampler} baseline {self.energy_baseline_s} 0.1",
                           timeout=self.energy_baseline_s + 60)
        baseline = energymod.parse_sampler(base.stdout)
        result: dict[str, Any] = {}
        load_text: list[str] = []

        def sample_load() -> None:
            client = self._device(device.id)
            res = self._shell(client, f"sh {sampler} load {self.energy_load_s} 0.1",
                              timeout=self.energy_load_s + 60)
            load_text.append(res.stdout)

        th = threading.Thread(target=sample_load, daemon=True)
        th.start()
        cmd = cmdmod.build_command(job, model, num_runs=1, min_secs=self.energy_load_s + 1,
                                   warmup_runs=1)
        loop, _ = self._launch(d, device, cmd)
        th.join(self.energy_load_s + 90)
        load = energymod.parse_sampler(load_text[0] if load_text else "")
        latency = loop.inference_avg_ms if loop.ok else None
        if latency is None:
            latency = launches[-1].inference_avg_ms
        outcome = energymod.compute_energy(baseline, load, latency,
                                           bool(thermal_before.get("usb_powered")))
        result["energy"] = outcome.energy
        result["energy_samples"] = outcome.samples
        result["energy_unavailable_reason"] = outcome.reason
        return result, list(outcome.warnings)

    # ------------------------------------------------------------------ after a fault

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """Poll the adb server (re-issuing ``adb connect`` for network serials) until the
        phone answers a shell command again, or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        network = re.fullmatch(r"[\w.\-]+:\d+", device.id) is not None
        while time.monotonic() < deadline:
            try:
                if network:
                    self.client().connect(device.id, timeout=5)
                states = {i.serial: i.state for i in self.client().list()}
                if states.get(device.id) == "device":
                    res = self._shell(self._device(device.id), "echo quantlab", timeout=10)
                    if res.returncode == 0 and "quantlab" in res.stdout:
                        return True
            except _adb_errors():
                pass
            self.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        return False


def _last(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return "(no output)"
