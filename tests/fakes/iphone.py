"""A fake iPhone behind the IosBackend/IosSession seam of agents/ios/interfaces.py.

Its "app" is a real host process honouring the BenchRunner contract: it reads
``Documents/jobs/<id>/job.json`` from a sandbox folder (the app container), runs
``.tflite`` jobs through LiteRT and answers Core ML jobs with the recorded
fixture ``ios_runner/fixtures/result_coreml.json``, then writes
``results/<id>.json`` via temp + rename and a ``.done`` marker.

Fixed inputs and outputs (``inputs.kind = files``, ``outputs.file``): a TFLite job loads
the pushed input files into its input tensors and, after its last timed run, writes every
output tensor's raw bytes in order, as the app does. The outputs are COMPUTED here with
host LiteRT from those input files, not replayed from a recording: a fake has no device,
so what the numerics tests check is quantlab's side (the files, the pull, the split,
dequantization, the comparison), never a delegate's arithmetic. Core ML cannot run on
Linux: a Core ML job's result says the outputs could not be written, unless
``QUANTLAB_FAKE_IPHONE_COREML_TFLITE`` names a .tflite that stands in for the Core ML model
(its outputs are written as float32 under the Core ML model's output names, in name
order, like the app). A batch job (``outputs.samples``: ``evaluate --device``) runs one
invoke per sample of the input files and writes every sample's outputs, sample after sample,
as the app's ``runBatch`` does; a Core ML batch says in its ``engine_detail`` that host
LiteRT computed the outputs on the stand-in.

Switch it on for the CLI with::

    QUANTLAB_IOS_BACKEND=tests.fakes.iphone:make_backend
    QUANTLAB_FAKE_IPHONE_DIR=/some/folder          # sandbox (created)
    QUANTLAB_FAKE_IPHONE_MODE=ok|never-done|unplug|hot|short-outputs  # optional
    QUANTLAB_FAKE_IPHONE_COREML_TFLITE=stand-in.tflite  # optional, see above

``short-outputs``: the app drops the last byte of the outputs file (a broken output file).

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
COREML_TFLITE_ENV = "QUANTLAB_FAKE_IPHONE_COREML_TFLITE"
COREML_REASON = ("the fake BenchRunner cannot run Core ML on Linux (set "
                 f"{COREML_TFLITE_ENV} to a .tflite that stands in for the model)")


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
        coreml_tflite: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.coreml_tflite = str(coreml_tflite) if coreml_tflite else None
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
        if self.phone.coreml_tflite:
            env[COREML_TFLITE_ENV] = self.phone.coreml_tflite
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
    return FakeIphoneBackend(root, mode=os.environ.get("QUANTLAB_FAKE_IPHONE_MODE", "ok"),
                             coreml_tflite=os.environ.get(COREML_TFLITE_ENV))


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
    documents: Path, job: dict[str, Any], machine: str, os_version: str, mode: str
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
    batch = (job.get("outputs") or {}).get("samples")
    if job["inputs"]["kind"] == "files":
        _set_file_inputs(documents, interp, job["inputs"]["files"], 0, batch or 1)
    else:
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
    outputs = None
    if batch:  # one invoke per sample, every sample's outputs kept (as the app's runBatch)
        per_sample = []
        for i in range(batch):
            _set_file_inputs(documents, interp, job["inputs"]["files"], i, batch)
            interp.invoke()
            per_sample.append([(str(d["name"]), interp.get_tensor(d["index"]).copy())
                               for d in interp.get_output_details()])
        outputs = _write_outputs(documents, job["outputs"]["file"], per_sample, mode)
    elif job.get("outputs"):
        tensors = [(str(d["name"]), interp.get_tensor(d["index"]))
                   for d in interp.get_output_details()]
        outputs = _write_outputs(documents, job["outputs"]["file"], [tensors], mode)
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
        "outputs": outputs,
        "runner": {
            "app_version": "fake-1.0",
            "engine": "tflite",
            "engine_detail": f"delegate={job['tflite']['delegate']} threads={threads} "
            "(host LiteRT)",
        },
    }


def _read_input(documents: Path, spec: dict[str, Any], sample: int = 0, of: int = 1) -> Any:
    """One pushed input file as an array (of a batch file, sample ``sample`` of ``of``),
    checked like TensorFiles.read in the app."""
    import numpy as np

    data = (documents / spec["file"]).read_bytes()
    dtype = np.dtype(spec["dtype"])
    want = int(np.prod(spec["shape"], dtype=np.int64)) * dtype.itemsize
    if len(data) != want * of:
        raise ValueError(f"input {spec['name']}: {spec['file']} has {len(data)} bytes; {of} "
                         f"sample(s) of shape {spec['shape']} {spec['dtype']} take {want * of}")
    return np.frombuffer(data[sample * want:(sample + 1) * want], dtype=dtype) \
        .reshape(spec["shape"])


def _set_file_inputs(documents: Path, interp: Any, files: list[dict[str, Any]],
                     sample: int = 0, of: int = 1) -> None:
    """The input files into the input tensors by position (resizing, like the app)."""
    import numpy as np

    details = interp.get_input_details()
    if len(files) != len(details):
        raise ValueError(f"{len(files)} input files for {len(details)} model inputs")
    arrays = [_read_input(documents, spec, sample, of) for spec in files]
    resized = False
    for d, spec, arr in zip(details, files, arrays, strict=True):
        if np.dtype(d["dtype"]).name != spec["dtype"]:
            raise ValueError(f"input {d['name']} is {np.dtype(d['dtype']).name}; its file is "
                             f"{spec['dtype']}")
        if list(d["shape"]) != list(arr.shape):
            interp.resize_tensor_input(d["index"], arr.shape)
            resized = True
    if resized:
        interp.allocate_tensors()
    for d, arr in zip(interp.get_input_details(), arrays, strict=True):
        interp.set_tensor(d["index"], arr)


def _write_outputs(documents: Path, file: str, samples: list[list[tuple[str, Any]]],
                   mode: str) -> dict[str, Any]:
    """Each sample's output tensors' raw bytes one after the other, sample after sample
    (``short-outputs``: one byte short); the report describes one sample's tensors."""
    import numpy as np

    tensors = samples[0]
    blob = b"".join(np.ascontiguousarray(a).tobytes() for tensors_ in samples
                    for _, a in tensors_)
    if mode == "short-outputs":
        blob = blob[:-1]
    path = documents / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return {"file": file, "error": None, "tensors": [
        {"name": name, "shape": [int(x) for x in a.shape], "dtype": str(a.dtype),
         "bytes": int(a.nbytes)} for name, a in tensors]}


def _coreml_input_files(documents: Path, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The input files of a Core ML job in the model's input order, checked like the app's
    FileInputs: one per input, matched by the Core ML input's name, of the right size."""
    from quantlab.ios_runner.coreml_spec import read_io

    io = read_io(documents / job["model"]["path"])
    files = {f["name"]: f for f in job["inputs"]["files"]}
    names = [f.name for f in io.inputs]
    if sorted(files) != sorted(names):
        raise ValueError(f"input files for {sorted(files)}, but the model's inputs are {names}")
    batch = (job.get("outputs") or {}).get("samples") or 1
    for name in names:
        _read_input(documents, files[name], 0, batch)
    return [files[name] for name in names]


def _coreml_outputs(documents: Path, job: dict[str, Any], mode: str) -> dict[str, Any]:
    """A Core ML job's outputs: the stand-in .tflite run on the input files, written as
    float32 under the Core ML model's output names in name order; else why there are none."""
    stand_in = os.environ.get(COREML_TFLITE_ENV)
    if not stand_in:
        return {"file": None, "tensors": [], "error": COREML_REASON}
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from quantlab.ios_runner.coreml_spec import read_io

    io = read_io(documents / job["model"]["path"])
    interp = Interpreter(model_path=stand_in)
    interp.allocate_tensors()
    files = _coreml_input_files(documents, job)
    batch = job["outputs"].get("samples")
    per_sample = []
    for i in range(batch or 1):
        _set_file_inputs(documents, interp, files, i, batch or 1)
        interp.invoke()
        values = [interp.get_tensor(d["index"]).astype(np.float32)
                  for d in interp.get_output_details()]
        named = dict(zip([f.name for f in io.outputs], values, strict=True))
        per_sample.append(sorted(named.items()))
    return _write_outputs(documents, job["outputs"]["file"], per_sample, mode)


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
            result = _run_tflite(documents, job, machine, os_version, mode)
        else:
            fixture = REPO / "ios_runner" / "fixtures" / "result_coreml.json"
            result = {**json.loads(fixture.read_text()), "job_id": job["job_id"]}
            if job["inputs"]["kind"] == "files":
                _coreml_input_files(documents, job)
            if job.get("outputs"):
                result["outputs"] = _coreml_outputs(documents, job, mode)
                if os.environ.get(COREML_TFLITE_ENV):  # the stand-in says what computed them
                    result["runner"] = {**result["runner"], "engine_detail": (
                        f"{result['runner'].get('engine_detail') or ''}; fake BenchRunner: "
                        "Core ML outputs computed with host LiteRT on "
                        f"{Path(os.environ[COREML_TFLITE_ENV]).name}").lstrip("; ")}
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
