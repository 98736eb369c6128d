"""A fake iPhone behind the IosBackend/IosSession seam of agents.ios_interfaces.

Its "app" is a real host process honouring the BenchRunner contract: it reads
``Documents/jobs/<id>/job.json`` from a sandbox folder (the app container), runs
``.tflite`` jobs through LiteRT and answers Core ML jobs with the recorded
fixture ``ios_runner/fixtures/result_coreml.json``, then writes
``results/<id>.json`` via temp + rename and a ``.done`` marker.

Switch it on for the CLI with::

    QUANTLAB_IOS_BACKEND=tests.fakes.iphone:make_backend
    QUANTLAB_FAKE_IPHONE_DIR=/some/folder          # sandbox (created)
    QUANTLAB_FAKE_IPHONE_MODE=ok|never-done|unplug|hot  # optional

Failures of pymobiledevice3 are injected with ``failures={"launch": SomeError()}``
(real pymobiledevice3 exception instances), keyed by session method name or
``"values"`` for lockdown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FAKE_UDID = "00008110-000A1B2C3D4E5F60"
BUNDLE_ID = "dev.quantlab.BenchRunner"


class FakeIphoneBackend:
    """One fake iPhone (iPhone15,2, iOS 17.5) whose container is ``root/container``."""

    def __init__(
        self,
        root: str | Path,
        *,
        mode: str = "ok",
        values: dict[str, Any] | None = None,
        failures: dict[str, BaseException] | None = None,
        installed: bool = True,
        udid: str = FAKE_UDID,
    ) -> None:
        self.root = Path(root)
        self.container = self.root / "container"
        (self.container / "Documents").mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.udid = udid
        self.attached = True
        self.installed = installed
        self.installed_from: str | None = None
        self.failures = dict(failures or {})
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.launches: list[list[str]] = []
        self.values = {
            "UniqueDeviceID": udid,
            "DeviceName": "Fake iPhone",
            "ProductType": "iPhone15,2",
            "ProductVersion": "17.5.1",
            "BuildVersion": "21F90",
            "HardwarePlatform": "t8120",
            "DeveloperModeStatus": True,
            **(values or {}),
        }

    def _check(self, op: str) -> None:
        if op in self.failures:
            raise self.failures[op]
        if not self.attached:
            from pymobiledevice3.exceptions import ConnectionTerminatedError

            raise ConnectionTerminatedError()

    async def list_udids(self) -> list[str]:
        """usbmux list: the fake while attached."""
        return [self.udid] if self.attached else []

    async def device_values(self, udid: str) -> dict[str, Any]:
        """Lockdown values."""
        self._check("values")
        return dict(self.values)

    @asynccontextmanager
    async def session(self, udid: str) -> AsyncIterator[FakeSession]:
        """A session (no tunnel needed)."""
        self._check("session")
        yield FakeSession(self)

    def kill_all(self) -> None:
        """Stop every fake app process still running."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class FakeSession:
    """IosSession on the sandbox folder; launch starts the fake app as a host process."""

    def __init__(self, phone: FakeIphoneBackend) -> None:
        self.phone = phone

    def _path(self, remote: str) -> Path:
        path = (self.phone.container / remote.lstrip("/")).resolve()
        if self.phone.container.resolve() not in path.parents:
            raise ValueError(f"path escapes the container: {remote}")
        return path

    async def mount_developer_image(self) -> None:
        """Mounting is a no-op, or the injected error."""
        self.phone._check("mount_developer_image")

    async def app_installed(self, bundle_id: str) -> bool:
        """Whether install() ran (or the fake starts installed)."""
        self.phone._check("app_installed")
        return self.phone.installed and bundle_id == BUNDLE_ID

    async def install(self, path: str) -> None:
        """Record the install."""
        self.phone._check("install")
        if not Path(path).exists():
            from pymobiledevice3.exceptions import AppInstallError

            raise AppInstallError(f"no such package {path}")
        self.phone.installed, self.phone.installed_from = True, path

    async def write(self, remote: str, data: bytes) -> None:
        """Write a file."""
        self.phone._check("write")
        p = self._path(remote)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    async def push(self, local: str, remote: str) -> None:
        """Copy a file or a folder."""
        self.phone._check("push")
        dest = self._path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if Path(local).is_dir():
            shutil.copytree(local, dest, dirs_exist_ok=True)
        else:
            shutil.copyfile(local, dest)

    async def exists(self, remote: str) -> bool:
        """Whether a path exists."""
        self.phone._check("exists")
        if self.phone.mode == "unplug" and self.phone.launches:
            self.phone.attached = False
            self.phone._check("exists")
        return self._path(remote).exists()

    async def read(self, remote: str) -> bytes:
        """Read a file (AfcFileNotFoundError when missing, like AFC)."""
        self.phone._check("read")
        p = self._path(remote)
        if not p.exists():
            from pymobiledevice3.exceptions import AfcFileNotFoundError

            raise AfcFileNotFoundError("file not found", 8, remote)
        return p.read_bytes()

    async def remove(self, remote: str) -> None:
        """Remove a file or folder."""
        self.phone._check("remove")
        p = self._path(remote)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    async def launch(self, bundle_id: str, arguments: list[str]) -> int:
        """Start the fake app process."""
        self.phone._check("launch")
        if not await self.app_installed(bundle_id):
            from pymobiledevice3.exceptions import LaunchingApplicationError

            raise LaunchingApplicationError(f"{bundle_id} is not installed")
        self.phone.launches.append(list(arguments))
        job_rel = arguments[arguments.index("-jobPath") + 1]
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                str(self.phone.container / "Documents"),
                job_rel,
                self.phone.mode,
                self.phone.values["ProductType"],
                self.phone.values["ProductVersion"],
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.phone.processes[proc.pid] = proc
        return proc.pid

    async def kill(self, pid: int) -> None:
        """Kill a fake app process."""
        self.phone._check("kill")
        proc = self.phone.processes.get(pid)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    async def process_sample(self, pid: int) -> dict[str, Any] | None:
        """CPU/memory of the fake app from /proc (the host's view of it)."""
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        rss = next(
            (
                int(line.split()[1]) * 1024
                for line in status.splitlines()
                if line.startswith("VmRSS:")
            ),
            None,
        )
        return {"cpu_pct": None, "phys_footprint": rss}

    async def battery(self) -> dict[str, Any] | None:
        """A plausible IOPMPowerSource registry."""
        self.phone._check("battery")
        return {
            "CurrentCapacity": 87,
            "Temperature": 3150,
            "IsCharging": True,
            "ExternalConnected": True,
        }


def make_backend() -> FakeIphoneBackend:
    """Factory for QUANTLAB_IOS_BACKEND (see the module docstring)."""
    root = os.environ.get("QUANTLAB_FAKE_IPHONE_DIR")
    if not root:
        raise RuntimeError(
            "set QUANTLAB_FAKE_IPHONE_DIR to a folder for the fake iPhone's container"
        )
    return FakeIphoneBackend(root, mode=os.environ.get("QUANTLAB_FAKE_IPHONE_MODE", "ok"))


# --------------------------------------------------------------------------- the fake app


def _write_atomically(documents: Path, job_id: str, result: dict[str, Any], done: bool) -> None:
    results = documents / "results"
    results.mkdir(parents=True, exist_ok=True)
    tmp = results / f"{job_id}.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, results / f"{job_id}.json")
    if done:
        (results / f"{job_id}.done").write_text("")


def _run_tflite(
    documents: Path, job: dict[str, Any], machine: str, os_version: str
) -> dict[str, Any]:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    model = str(documents / job["model"]["path"])
    threads = job["tflite"]["num_threads"]
    run = job["run"]
    timeline = [{"t_s": 0.0, "state": "nominal"}]

    def ms(t0: int) -> float:
        return (time.perf_counter_ns() - t0) / 1e6

    load_cold: list[float] = []
    interp = None
    for _ in range(run["cold_load_repeats"]):
        t0 = time.perf_counter_ns()
        interp = Interpreter(model_path=model, num_threads=threads)
        interp.allocate_tensors()
        load_cold.append(ms(t0))
    assert interp is not None
    rng = np.random.default_rng(job["inputs"]["seed"])
    for d in interp.get_input_details():
        if np.issubdtype(d["dtype"], np.floating):
            arr = rng.standard_normal(d["shape"]).astype(d["dtype"])
        else:
            info = np.iinfo(d["dtype"])
            arr = rng.integers(info.min, info.max, size=d["shape"], dtype=d["dtype"])
        interp.set_tensor(d["index"], arr)

    def invoke() -> float:
        t0 = time.perf_counter_ns()
        interp.invoke()
        return ms(t0)

    first = invoke()
    warmup = [invoke() for _ in range(run["warmup"])]
    latency = [invoke() for _ in range(run["iterations"])]
    return {
        "schema": "iosbench.result/1",
        "job_id": job["job_id"],
        "status": "ok",
        "error": None,
        "device": {"machine": machine, "os_version": os_version, "os_build": None, "ane_cores": 16},
        "environment": {
            "thermal_timeline": [*timeline, {"t_s": 1.0, "state": "nominal"}],
            "low_power": False,
            "battery_state": "charging",
        },
        "timing_ms": {
            "compile": None,
            "load_cold": load_cold,
            "load_warm": [],
            "first_prediction": first,
            "warmup": warmup,
            "latency": latency,
        },
        "energy": None,
        "compute_plan": None,
        "runner": {
            "app_version": "fake-1.0",
            "engine": "tflite",
            "engine_detail": f"delegate={job['tflite']['delegate']} threads={threads} "
            "(host LiteRT)",
        },
    }


def app_main(argv: list[str]) -> int:
    """The fake BenchRunner: ``iphone.py DOCUMENTS JOB_REL MODE MACHINE OS_VERSION``."""
    documents, job_rel, mode, machine, os_version = (
        Path(argv[0]),
        argv[1],
        argv[2],
        argv[3],
        argv[4],
    )
    (documents / "status.json").write_text(
        json.dumps({"state": "running", "job": job_rel, "t": time.time()})
    )
    job = json.loads((documents / job_rel).read_text())
    if mode == "never-done":
        time.sleep(3600)
        return 0
    if mode == "hot":  # a warm phone: the app waits the whole cool-down it was given, then runs
        time.sleep(float(job["preconditions"]["cooldown_wait_s"]))
    try:
        if job["engine"] == "tflite":
            result = _run_tflite(documents, job, machine, os_version)
        else:
            fixture = REPO / "ios_runner" / "fixtures" / "result_coreml.json"
            result = {**json.loads(fixture.read_text()), "job_id": job["job_id"]}
    except Exception as exc:
        result = {
            "schema": "iosbench.result/1",
            "job_id": job["job_id"],
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "device": {"machine": machine, "os_version": os_version},
            "environment": {"thermal_timeline": [], "low_power": False},
            "timing_ms": {"load_cold": [], "load_warm": [], "warmup": [], "latency": []},
            "runner": {"app_version": "fake-1.0", "engine": job["engine"]},
        }
    _write_atomically(documents, job["job_id"], result, done=True)
    (documents / "status.json").write_text(json.dumps({"state": "idle", "t": time.time()}))
    return 0


if __name__ == "__main__":
    sys.exit(app_main(sys.argv[1:]))
