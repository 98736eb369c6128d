"""Android phones through a real adb server (adbutils), measured with benchmark_model.

discover → health → supports → run: push what is missing (runner, delegate
libraries, the variant), wait for the phone to cool down, launch benchmark_model
once per repeat under a device-side ``timeout``, pull the profile file, parse
(android_runner.parser), map (android_runner.result_mapping) and hand back a RawResult.
A phone that drops off the bus raises :class:`~quantlab.harness.errors.DeviceDisconnected`
(:mod:`quantlab.agents.android.faults`); the dispatcher waits for it with
:meth:`AndroidAgent.wait_until_back` and retries.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantlab.agents.android.faults import STATE_HINTS, adb_errors, adb_faults
from quantlab.agents.base import Progress
from quantlab.android_runner import command as cmdmod
from quantlab.android_runner import litert_command, provision
from quantlab.android_runner.device_props import (
    is_qualcomm,
    parse_battery,
    parse_getprop,
    parse_thermal,
)
from quantlab.android_runner.litert_parser import parse_any
from quantlab.android_runner.parser import BenchmarkOutput
from quantlab.android_runner.result_mapping import to_raw_result
from quantlab.harness.errors import DeviceUnusable, JobFailed, QuantlabError
from quantlab.harness.records import DeviceInfo, Job, RawOutput, RawResult

if TYPE_CHECKING:
    from quantlab.agents.android.npu_compile import CompiledModel
    from quantlab.agents.outputs import OutputsFacts

NNAPI_MIN_SDK = 27
NNAPI_DEPRECATED_SDK = 35


@dataclass(frozen=True)
class ThermalPolicy:
    """When a phone is cool enough to measure, and how long to wait for it."""

    max_status: int = 1  # Android thermal status (0 none … 6 shutdown)
    max_battery_c: float = 38.0
    cooldown_s: float = 120.0  # give up waiting after this long (and say so)
    poll_s: float = 5.0


class AndroidAgent:
    """Every phone the adb server lists; jobs run with benchmark_model."""

    kind: str = "android"
    delegates: tuple[str, ...] = tuple(cmdmod.DELEGATES)  # android_runner/command.py's list

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
        describe_errors: tuple[type[Exception], ...] = (QuantlabError, *adb_errors())
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
                **STATE_HINTS,
                "offline": "replug the cable or run `adb reconnect`; for a Wi-Fi device run "
                           f"`adb connect {info.serial}`",
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
                          if (x not in ("hexagon", "qnn", "litert-npu") or qualcomm)
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
        errors: tuple[type[Exception], ...] = (QuantlabError, *adb_errors())
        try:
            health = self.health(info)
        except errors:
            health = {}
        return DeviceInfo(**{**info.__dict__, "health": health})

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """Battery level/temperature/power source and thermal status of a phone."""
        d = self._device(device.id)
        with adb_faults(device.id, "reading its health"):
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
        litert = cmdmod.runner_of(job.delegate) == litert_command.RUNNER
        if job.settings.inputs and litert:
            return False, (f"--inputs: {litert_command.RUNNER} cannot load input files (it "
                           "fills inputs with random data); use a benchmark_model delegate "
                           "(xnnpack, gpu, nnapi, …) for fixed inputs")
        if litert:
            return self._supports_litert(device, job)
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

    def _supports_litert(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """benchmark_litert_model jobs: the tool provisioned; for litert-npu a dispatch
        library and a model compiled for this phone's SoC."""
        runner = provision.cached_binary(device.abi or "", litert_command.RUNNER)
        if runner is None:
            return False, (f"no {litert_command.RUNNER} provisioned for ABI "
                           f"{device.abi or 'unknown'}: {provision.LITERT_HINT}")
        if job.delegate == "litert-npu":
            if not any(n.startswith("libLiteRtDispatch") for n in runner.libs):
                return False, ("litert-npu: no vendor dispatch library provisioned "
                               "(libLiteRtDispatch_<Vendor>.so): `quantlab android provision "
                               "--runner benchmark_litert_model --binary PATH --delegate-libs "
                               "DIR`")
            from quantlab.agents.android.npu_compile import find_compiled

            compiled = find_compiled(job.model.path, job.model.sha256, device.soc)
            if compiled.path is None:
                return False, (f"litert-npu: {compiled.reason}: `quantlab compile "
                               f"{job.model.path} --target {device.soc or 'SOC'}`")
        return True, ""

    def _command(self, job: Job, model: str, profile_file: str | None = None,
                 extra_flags: tuple[str, ...] = (), **overrides: Any) -> cmdmod.BenchmarkCommand:
        """The job's launch (benchmark_litert_model for litert-*, which takes no extra_flags)."""
        if cmdmod.runner_of(job.delegate) == litert_command.RUNNER:
            return litert_command.build_litert_command(job, model, profile=bool(profile_file),
                                                       **overrides)
        return cmdmod.build_command(job, model, profile_file=profile_file,
                                    extra_flags=extra_flags, **overrides)

    def outputs_supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """Outputs come back from benchmark_model delegates only."""
        from quantlab.agents.android.outputs import outputs_supports

        return outputs_supports(job)

    def outputs(self, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
        """Every sample of ``inputs`` through ``job`` in one device-side loop
        (:mod:`quantlab.agents.android.outputs`; the contract: :mod:`quantlab.agents.outputs`)."""
        from quantlab.agents.android.outputs import run_outputs

        return run_outputs(self, device, job, inputs, out, progress)

    # ------------------------------------------------------------------ run

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Measure ``job`` on ``device`` (see the module docstring)."""
        try:
            runner = provision.require_binary(device.abi, cmdmod.runner_of(job.delegate))
        except provision.RunnerMissing as exc:  # the same for every job on this phone
            raise DeviceUnusable(device.id, exc.message, hint=exc.hint) from None
        if not Path(job.model.path).is_file():
            raise JobFailed(f"{job.model.path}: model file not found on this host",
                            hint="the variant was moved or deleted after planning")
        compiled = None
        if job.delegate == "litert-npu":  # only a model compiled from this very variant
            from quantlab.agents.android.npu_compile import find_compiled

            compiled = find_compiled(job.model.path, job.model.sha256, device.soc)
            if compiled.path is None:
                return RawResult.failure(job.job_id, f"litert-npu: {compiled.reason}")
        d = self._device(device.id)
        warnings: list[str] = []
        if job.delegate == "nnapi" and (device.sdk or 0) >= NNAPI_DEPRECATED_SDK:
            warnings.append("nnapi is deprecated since Android 15; vendors may drop drivers")
        with adb_faults(device.id, "waiting for it to cool down"):
            progress("cooling down", None)
            thermal_before = self._wait_cool(device, warnings)
        with adb_faults(device.id, "pushing files"):
            progress("pushing", None)
            model_remote = self._push(d, runner, job, compiled)
        with tempfile.TemporaryDirectory(prefix="quantlab-android-") as tmp:
            return self._run_pushed(d, device, job, runner, model_remote, Path(tmp),
                                    thermal_before, warnings, progress,
                                    compiled.record if compiled else None)

    def _run_pushed(self, d: Any, device: DeviceInfo, job: Job, runner: provision.RunnerBinary,
                    model_remote: str, tmp: Path, thermal_before: dict[str, Any],
                    warnings: list[str], progress: Progress,
                    compiled: dict[str, Any] | None = None) -> RawResult:
        """The launches of a job whose files are on the phone (``tmp``: host scratch)."""
        from quantlab.agents.android import energy as android_energy  # numpy: not for `devices`
        from quantlab.agents.android import numerics as android_numerics

        launches: list[BenchmarkOutput] = []
        raw_outputs: list[RawOutput] = []  # every launch's full output and pulled file
        fixed = android_numerics.setup(d, device, job, tmp, progress)
        if fixed.failure:  # --inputs that the launches cannot use
            return RawResult.failure(job.job_id, fixed.failure)
        numerics = fixed.numerics
        input_flags = fixed.input_flags
        sustained: dict[str, Any] = {}
        if job.settings.sustained_s > 0:  # windows instead of repeats
            from quantlab.agents.android.sustained import run_windows

            launches, sustained = run_windows(self, d, device, job, model_remote, input_flags,
                                              raw_outputs, progress)
        for r in range(0 if sustained else job.settings.repeats):
            progress(f"repeat {r + 1}/{job.settings.repeats}", r / job.settings.repeats)
            cmd = self._command(job, model_remote, extra_flags=input_flags)
            out, _ = self._launch(d, device, cmd, raw=raw_outputs, raw_name=f"launch-{r + 1}")
            launches.append(out)
            if not out.ok:
                break
        profile = None
        if job.settings.profile_ops and all(o.ok for o in launches):
            progress("profiling ops", None)
            profile = self._profile(d, device, job, model_remote, raw_outputs, input_flags)
        if fixed.prepared is not None and fixed.check and all(o.ok for o in launches):
            progress("checking numerics", None)
            numerics = android_numerics.check(
                d, device, job, fixed.prepared, raw_outputs,
                launch=lambda flags: self._launch(
                    d, device, self._command(job, model_remote, num_runs=1, min_secs=0,
                                             warmup_runs=1, extra_flags=flags),
                    raw=raw_outputs, raw_name="numerics-launch")[0])
        argv = self._command(job, model_remote, extra_flags=input_flags).argv
        runner_meta: dict[str, Any] = {"name": runner.name, "abi": runner.abi,
                                       "sha256": runner.sha256, "argv": list(argv)}
        if compiled:  # litert-npu: which compiled model ran, from what, by which compiler
            runner_meta["compiled_model"] = compiled
        energy_fields: dict[str, Any] = {}
        if job.settings.energy and launches and all(o.ok for o in launches):
            progress("measuring energy", None)
            with adb_faults(device.id, "measuring energy"):
                energy_fields, energy_warn = android_energy.measure(
                    self, d, device, job, model_remote, thermal_before, raw_outputs, input_flags)
            warnings.extend(energy_warn)
        startup: dict[str, Any] = {}
        if launches and all(o.ok for o in launches) and not sustained:
            from quantlab.agents.android import startup as first_second

            progress("cold and warm start", None)
            startup = first_second.measure(self, d, device, job, model_remote, input_flags,
                                           raw_outputs, launches)
        energy_fields["raw_outputs"] = tuple(raw_outputs)
        with adb_faults(device.id, "reading its thermal state"):
            thermal_after = self._thermal_snapshot(device)
        status_after = thermal_after.get("thermal_status", 0)
        if status_after > thermal_before.get("thermal_status", 0) or status_after >= 2:
            warnings.append(f"thermal throttling: thermal status went from "
                            f"{thermal_before.get('thermal_status_name', '?')} to "
                            f"{thermal_after.get('thermal_status_name', '?')} during the job")
        raw = to_raw_result(job.job_id, launches, job.delegate, profile=profile,
                            runner=runner_meta, thermal_before=thermal_before,
                            thermal_after=thermal_after, **energy_fields)
        if warnings or numerics or sustained or startup:
            raw = RawResult(**{**raw.__dict__, "warnings": tuple(warnings) + raw.warnings,
                               "numerics": numerics, "startup": startup,
                               "sustained": sustained if raw.status == "ok" else {}})
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

    def _push(self, d: Any, runner: provision.RunnerBinary, job: Job,
              compiled: CompiledModel | None = None) -> str:
        litert = cmdmod.runner_of(job.delegate) == litert_command.RUNNER
        provision.ensure_file(d, runner.path, litert_command.BINARY if litert else cmdmod.BINARY,
                              runner.sha256, mode=0o755)
        if job.delegate in ("hexagon", "qnn") or (litert and job.delegate != "litert-cpu"):
            for name, sha in runner.libs.items():
                provision.ensure_file(d, runner.lib_dir / name, f"{cmdmod.LIB_DIR}/{name}", sha)
        remote = f"{cmdmod.DEVICE_DIR}/models/{job.model.sha256[:16]}.tflite"
        if compiled is not None and compiled.path:  # litert-npu: compiled from this variant
            sha = compiled.record["sha256"]
            remote = f"{cmdmod.DEVICE_DIR}/models/{sha[:16]}.tflite"
            provision.ensure_file(d, compiled.path, remote, sha)
            return remote
        provision.ensure_file(d, Path(job.model.path), remote, job.model.sha256)
        return remote

    def _launch(self, d: Any, device: DeviceInfo, cmd: cmdmod.BenchmarkCommand,
                profile_text: str | None = None, raw: list[RawOutput] | None = None,
                raw_name: str = "launch") -> tuple[BenchmarkOutput, str]:
        """Run benchmark_model once; its full stdout/stderr go to ``raw`` as
        ``<raw_name>.stdout`` / ``.stderr`` (what the figures are parsed from); with
        ``cmd.log_file`` its output is read back from that file on the phone."""
        with adb_faults(device.id, "running benchmark_model"):
            res = d.shell2(cmd.shell(), timeout=cmd.timeout_s + 60, v2=True, encoding=None)
            out_bytes = res.stdout if (res.stdout or res.stderr) else res.output  # v1: merged
            if cmd.log_file:
                try:
                    out_bytes = d.sync.read_bytes(cmd.log_file) + out_bytes
                except adb_errors():
                    pass  # never written: what the shell said is all there is
        stdout = out_bytes.decode("utf-8", "replace")
        stderr = res.stderr.decode("utf-8", "replace")
        if raw is not None:
            raw.append(RawOutput.capture(f"{raw_name}.stdout", "text/plain", out_bytes))
            if res.stderr:
                raw.append(RawOutput.capture(f"{raw_name}.stderr", "text/plain", res.stderr))
        text = launch_text(stdout, stderr)
        out = parse_any(text, profile_text)
        if res.returncode in (124, 137):
            return BenchmarkOutput(ok=False, error=f"benchmark_model ran past the device-side "
                                   f"limit of {cmd.timeout_s}s and was killed"), text
        if res.returncode != 0 and out.ok:
            return BenchmarkOutput(ok=False, error=f"benchmark_model exited with code "
                                   f"{res.returncode}: {_last(text)}"), text
        if res.returncode != 0 and not out.error:
            return BenchmarkOutput(ok=False, error=_last(text)), text
        return out, text

    def _profile(self, d: Any, device: DeviceInfo, job: Job, model: str,
                 raw: list[RawOutput] | None = None, inputs: tuple[str, ...] = ()
                 ) -> BenchmarkOutput:
        remote = f"{cmdmod.DEVICE_DIR}/out/{job.job_id}.profile.csv"
        with adb_faults(device.id, "profiling ops"):
            self._shell(d, f"mkdir -p {shlex.quote(cmdmod.DEVICE_DIR + '/out')} && "
                           f"rm -f {shlex.quote(remote)}")
        cmd = self._command(job, model, profile_file=remote, extra_flags=inputs)
        out, text = self._launch(d, device, cmd, raw=raw, raw_name="profile-launch")
        if not out.ok:
            return out
        with adb_faults(device.id, "pulling the op profile"):
            try:
                blob = d.sync.read_bytes(remote)
            except adb_errors():
                blob = b""  # an older tool ignores the file flag and prints to stdout
        data = blob.decode("utf-8", "replace")
        if raw is not None and blob:
            raw.append(RawOutput.capture("profile.csv", "text/csv", blob))
        return parse_any(text, data) if data.strip() else out

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
            except adb_errors():
                pass
            self.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        return False


def launch_text(stdout: str, stderr: str) -> str:
    """The text one launch is parsed from: its stdout, then its stderr (as stored raw)."""
    return stdout + ("\n" + stderr if stderr else "")


def _last(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return "(no output)"
