"""The gateway side of the ssh agent: probe a Linux gateway, run the LiteRT runner there.

This file runs on the gateway with the gateway's own Python and the standard library
only (the controller pushes it next to the LiteRT runner package,
:mod:`quantlab.agents.litert.runner`, which arrives as the package :data:`RUNNER_PACKAGE`; for
a probe it is piped to ``python -`` on stdin, so nothing is written on the gateway). Modes:

``python - probe [WORKDIR]``
    One JSON line of facts: architecture, OS, board, CPU model and governor,
    temperatures and throttling, free memory and disk, the runner's Python
    dependencies, power sensors.
``python remote.py sha256 FILE``
    The file's sha256 (the controller verifies every pushed model with it).
``python remote.py run JOBDIR``
    Runs ``JOBDIR/job.json``: one fresh runner process (``python -m litert_runner``) per
    process-level repeat (exactly as the simulator does), then one for the per-op
    profile (a job with ``outputs``: one runner process in the ``outputs`` mode instead, the
    set's every output written outside JOBDIR for the controller to fetch); prints JSON
    lines (``progress``, ``thermal``, ``energy``, ``result``, ``done``) on stdout. When
    stdin closes (the SSH connection dropped) the runner
    is killed and the job directory removed, so nothing is left running.

The host decides and interprets; this file only measures and reports facts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

WORKER_DEPS = {"numpy": "numpy", "ai_edge_litert": "ai-edge-litert"}
"""Modules the LiteRT runner imports → their distribution names."""

RUNNER_PACKAGE = "litert_runner"
"""The LiteRT runner package's name on the gateway, beside this file (``python -m`` it)."""

MIN_PYTHON = (3, 10)


# --------------------------------------------------------------------------- facts


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _os_release() -> str | None:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def _cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = (s.strip() for s in line.split(":", 1))
            found.setdefault(key.lower(), value)
    for key in ("model name", "cpu model", "hardware", "processor"):
        if found.get(key) and not found[key].isdigit():
            return found[key]
    part = found.get("cpu part")  # arm without a model name: the core's part number
    return f"ARM part {part}" if part else platform.processor() or None


def thermal_snapshot(thermal_root: str = "/sys/class/thermal",
                     cpu_root: str = "/sys/devices/system/cpu") -> dict[str, Any]:
    """Temperatures by zone (°C), CPU frequency against its maximum, Raspberry Pi throttling."""
    temps: dict[str, float] = {}
    for zone in sorted(Path(thermal_root).glob("thermal_zone*")):
        raw = _read(zone / "temp")
        if raw and raw.lstrip("-").isdigit():
            name = _read(zone / "type") or zone.name
            value = int(raw) / 1000.0
            temps[name] = max(temps.get(name, -273.0), value)
    out: dict[str, Any] = {"temperatures_c": temps, "at": time.time()}
    if temps:
        out["temperature_c"] = max(temps.values())
    cpu0 = Path(cpu_root) / "cpu0" / "cpufreq"
    cur, top = _read(cpu0 / "scaling_cur_freq"), _read(cpu0 / "cpuinfo_max_freq")
    if cur and top and cur.isdigit() and top.isdigit():
        out["cpu_mhz"], out["cpu_max_mhz"] = int(cur) // 1000, int(top) // 1000
    governor = _read(cpu0 / "scaling_governor")
    if governor:
        out["governor"] = governor
    vcgencmd = shutil.which("vcgencmd")
    if vcgencmd:
        try:
            text = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True,
                                  timeout=5).stdout
            bits = int(text.strip().split("=", 1)[1], 16)
            out["throttled_bits"] = hex(bits)
            out["throttled_now"] = [name for bit, name in ((0, "under-voltage"),
                                    (1, "arm frequency capped"), (2, "throttled"),
                                    (3, "soft temperature limit")) if bits & (1 << bit)]
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
    return out


def power_channels(hwmon_root: str = "/sys/class/hwmon") -> list[dict[str, str]]:
    """hwmon power (µW) and energy (µJ) inputs: INA2xx/INA3221 boards, SoC PMICs."""
    channels = []
    for dev in sorted(Path(hwmon_root).glob("hwmon*")):
        name = _read(dev / "name") or dev.name
        for kind, unit in (("energy", "uJ"), ("power", "uW")):
            for f in sorted(dev.glob(f"{kind}*_input")):
                if _read(f) is not None:
                    label = _read(f.with_name(f.name.replace("_input", "_label")))
                    channels.append({"path": str(f), "kind": kind, "unit": unit,
                                     "channel": f"hwmon.{name}.{label or f.name[:-6]}"})
    return channels


def _dependencies() -> dict[str, str | None]:
    import importlib.util

    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return {dist: None for dist in WORKER_DEPS.values()}
    out: dict[str, str | None] = {}
    for module, dist in WORKER_DEPS.items():
        if importlib.util.find_spec(module) is None:
            out[dist] = None
            continue
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


def _mem_mb() -> dict[str, float]:
    out: dict[str, float] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def probe(workdir: str | None = None) -> dict[str, Any]:
    """Every fact the controller shows for a gateway (health, capabilities)."""
    home = os.path.expanduser("~")
    where = workdir if workdir and os.path.isdir(workdir) else home
    try:
        st = os.statvfs(where)
        disk_free_mb: float | None = st.f_bavail * st.f_frsize / 2**20
    except OSError:
        disk_free_mb = None
    rapl = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
    mem = _mem_mb()
    import importlib.util

    return {
        "python": platform.python_version(),
        "python_ok": sys.version_info[:2] >= MIN_PYTHON,
        "executable": sys.executable,
        "venv_module": importlib.util.find_spec("venv") is not None
        and importlib.util.find_spec("ensurepip") is not None,
        "arch": platform.machine(),
        "os": _os_release() or platform.system(),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "board": _read("/proc/device-tree/model") or _read("/sys/class/dmi/id/product_name"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "mem_total_mb": mem.get("MemTotal"),
        "mem_available_mb": mem.get("MemAvailable"),
        "disk_free_mb": disk_free_mb,
        "home": home,
        "uid": os.getuid(),
        "deps": _dependencies(),
        "thermal": thermal_snapshot(),
        "power_channels": [c["channel"] for c in power_channels()],
        "rapl_readable": os.access(rapl, os.R_OK),
    }


def file_sha256(path: str) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- running


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout for the controller."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _oom_kills() -> int:
    for line in (_read("/proc/vmstat") or "").splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return -1


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class PowerSampler:
    """Samples hwmon power/energy inputs while the worker is in a given phase."""

    def __init__(self, channels: list[dict[str, str]], period_s: float = 0.05) -> None:
        self.channels = channels
        self.period_s = period_s
        self.samples: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def read(self, phase: str) -> None:
        now = time.monotonic() - self.t0
        for c in self.channels:
            raw = _read(c["path"])
            if raw and raw.lstrip("-").isdigit():
                self.samples.append({"phase": phase, "t_s": round(now, 4),
                                     "channel": c["channel"], "value": float(raw),
                                     "unit": c["unit"]})

    def baseline(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.read("baseline")
            time.sleep(self.period_s)


class Runner:
    """Runs the runner processes of one job and watches the connection. ``code_dir`` holds
    the runner package (default: this file's folder, as on a gateway)."""

    def __init__(self, jobdir: Path, code_dir: Path | None = None) -> None:
        self.jobdir = jobdir
        self.job: dict[str, Any] = json.loads((jobdir / "job.json").read_text())
        self.code_dir = code_dir or Path(__file__).resolve().parent
        self.proc: subprocess.Popen[bytes] | None = None
        self.dropped = threading.Event()
        self.lock = threading.Lock()

    def watch_stdin(self) -> None:
        """The controller keeps stdin open; EOF means the SSH connection is gone."""
        # os.read on the raw descriptor: a daemon thread blocked inside sys.stdin's buffered
        # reader would hold its lock and abort the interpreter's shutdown
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        self.dropped.set()
        with self.lock:
            if self.proc is not None:
                self._kill(self.proc)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def worker(self, mode: str, repeat: int, deadline: float,
               sampler: PowerSampler | None) -> dict[str, Any]:
        """One runner process (``python -m litert_runner``); its result dict, or one with
        ``error``."""
        payload = dict(self.job["payload"], mode=mode, seed=repeat)
        job_file = self.jobdir / f"{mode}{repeat}.json"
        result_file = self.jobdir / f"{mode}{repeat}.result.json"
        job_file.write_text(json.dumps(payload))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = str(self.code_dir) + os.pathsep + env.get("PYTHONPATH", "")
        stderr_file = self.jobdir / f"{mode}{repeat}.stderr"
        phase_file = result_file.with_suffix(".phase")
        oom_before = _oom_kills()
        with stderr_file.open("wb") as err, self.lock:
            if self.dropped.is_set():
                return {"error": "connection dropped", "kind": "dropped"}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", RUNNER_PACKAGE, str(job_file), str(result_file)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=str(self.code_dir),
                env=env, start_new_session=True)
        proc = self.proc
        timed_out = False
        while proc.poll() is None:
            if time.monotonic() > deadline:
                self._kill(proc)
                proc.wait()
                timed_out = True
                break
            if sampler is not None:
                if _read(phase_file) == "measuring":
                    sampler.read("load")
                time.sleep(sampler.period_s)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
        with self.lock:
            self.proc = None
        if self.dropped.is_set():
            return {"error": "connection dropped", "kind": "dropped"}
        phase = _read(phase_file) or "starting"
        if timed_out:
            return {"error": f"timed out after {self.job['timeout_s']:g}s while {phase}",
                    "kind": "timeout"}
        tail = (_read(stderr_file) or "").splitlines()
        last = next((line.strip() for line in reversed(tail) if line.strip()), "no output")
        code = proc.returncode
        if code < 0:
            if -code == signal.SIGKILL and oom_before >= 0 and _oom_kills() > oom_before:
                mem = _mem_mb().get("MemAvailable")
                return {"error": f"the worker was killed by the kernel's OOM killer while "
                        f"{phase} ({mem:.0f} MB available now)" if mem else
                        f"the worker was killed by the kernel's OOM killer while {phase}",
                        "kind": "oom"}
            return {"error": f"worker crashed with {_signal_name(code)} while {phase}",
                    "kind": "crash"}
        text = "\n".join(tail)
        if "No space left on device" in text or "Errno 28" in text:
            return {"error": f"disk full on the gateway while {phase}: {last}",
                    "kind": "disk_full"}
        if "ModuleNotFoundError" in text or "No module named" in text:
            return {"error": f"{last} (for {sys.executable})", "kind": "missing_dependency"}
        if code != 0 or not result_file.exists():
            return {"error": f"worker exited with code {code} while {phase}: {last}",
                    "kind": "exit"}
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result

    def raw_files(self, mode: str, repeat: int, cap: int = 1 << 20) -> dict[str, str]:
        """The worker's output and result JSON as written (the last ``cap`` bytes)."""
        out = {}
        for kind, suffix in (("log", ".stderr"), ("json", ".result.json")):
            path = self.jobdir / f"{mode}{repeat}{suffix}"
            try:
                with path.open("rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    f.seek(max(size - cap, 0))
                    data = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if data:
                out[kind] = data
        return out

    def cool_down(self, therm: dict[str, str]) -> dict[str, Any]:
        """Wait (up to ``cooldown_s``) while the board is at or above ``hot_c``."""
        hot_c, limit = self.job.get("hot_c"), float(self.job.get("cooldown_s") or 0)
        start = time.monotonic()
        snap = thermal_snapshot(**therm)
        while (hot_c is not None and snap.get("temperature_c", -273.0) >= hot_c
               and time.monotonic() - start < limit and not self.dropped.is_set()):
            emit("progress", phase=f"cooling down ({snap['temperature_c']:.0f} °C)",
                 fraction=None)
            time.sleep(min(5.0, max(limit - (time.monotonic() - start), 0.0)))
            snap = thermal_snapshot(**therm)
        snap["waited_s"] = round(time.monotonic() - start, 1)
        return snap

    def run(self) -> int:
        """Every worker process of the job, with events on stdout."""
        job = self.job
        threading.Thread(target=self.watch_stdin, daemon=True).start()
        deadline = time.monotonic() + float(job["timeout_s"])
        roots = job.get("roots") or {}
        therm = {"thermal_root": roots.get("thermal", "/sys/class/thermal"),
                 "cpu_root": roots.get("cpu", "/sys/devices/system/cpu")}
        deps = _dependencies()
        emit("facts", arch=platform.machine(), python=platform.python_version(),
             litert=deps.get("ai-edge-litert"), numpy=deps.get("numpy"))
        if job.get("outputs"):  # evaluate --device: every sample once, every output kept
            emit("progress", phase="running the samples", fraction=None)
            emit("result", mode="outputs", repeat=0,
                 result=self.worker("outputs", 0, deadline, None),
                 raw=self.raw_files("outputs", 0))
            return 0
        emit("thermal", when="before", snapshot=self.cool_down(therm))
        sampler = None
        if job.get("energy"):
            channels = power_channels(roots.get("hwmon", "/sys/class/hwmon"))
            if channels:
                sampler = PowerSampler(channels)
                emit("progress", phase="energy baseline", fraction=None)
                sampler.baseline(float(job.get("energy_baseline_s", 1.0)))
        repeats = 0 if job.get("sustained") else int(job["repeats"])
        steps = repeats + (1 if job.get("profile") else 0)
        if job.get("sustained"):  # one runner process in windows, the gateway's sysfs read
            emit("progress", phase="sustained run", fraction=None)
            out = self.worker("sustained", 0, deadline, None)
            emit("result", mode="measure", repeat=0, result=out,
                 raw=self.raw_files("sustained", 0))
            if out.get("error") or self.dropped.is_set():
                return 0
        for r in range(repeats):
            emit("progress", phase=f"repeat {r + 1}/{repeats}", fraction=r / steps)
            out = self.worker("measure", r, deadline, sampler)
            emit("result", mode="measure", repeat=r, result=out,
                 raw=self.raw_files("measure", r))
            if out.get("error") or self.dropped.is_set():
                return 0
        if sampler is not None:
            emit("energy", samples=sampler.samples)
        if job.get("profile"):
            emit("progress", phase="profiling ops", fraction=repeats / steps)
            out = self.worker("profile", 0, deadline, None)
            emit("result", mode="profile", repeat=0, result=out,
                 raw=self.raw_files("profile", 0))
        emit("thermal", when="after", snapshot=thermal_snapshot(**therm))
        return 0


def main(argv: list[str]) -> int:
    """Entry point (see the module docstring)."""
    if not argv:
        sys.stderr.write("usage: remote.py probe|sha256 FILE|run JOBDIR\n")
        return 2
    mode = argv[0]
    if mode == "probe":
        print(json.dumps(probe(argv[1] if len(argv) > 1 else None)))
        return 0
    if mode == "sha256":
        print(file_sha256(argv[1]))
        return 0
    if mode == "run":
        jobdir = Path(argv[1])
        try:
            code = Runner(jobdir).run()
            emit("done")
            return code
        finally:
            shutil.rmtree(jobdir, ignore_errors=True)
    sys.stderr.write(f"unknown mode {mode!r}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
