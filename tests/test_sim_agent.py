"""quantlab.agents.sim and quantlab.agents.litert: the host simulator measured through LiteRT
runner processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantlab.agents.litert import reference
from quantlab.agents.litert.runner.inputs import random_input
from quantlab.agents.litert.runner.profiler import LIBRARY_NAMES
from quantlab.agents.litert.runner.rapl import Rapl, rapl_energy
from quantlab.agents.sim.agent import SimAgent
from quantlab.harness.models import model_ref
from quantlab.harness.records import DeviceInfo, Energy, Job, ModelRef, RawResult, Settings

FAST = Settings(warmup=2, iterations=10, repeats=1, timeout_s=120)


def _job(path: Path, delegate: str = "xnnpack", threads: int = 1, **settings: object) -> Job:
    ref = ModelRef(str(path), "0" * 64, path.stat().st_size, "tflite")
    return Job(ref, "sim", "sim", delegate, threads, dataclasses.replace(FAST, **settings))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def agent() -> SimAgent:
    return SimAgent(rapl_root="/nonexistent/powercap")


@pytest.fixture(scope="module")
def device(agent: SimAgent) -> DeviceInfo:
    return agent.discover()[0]


def _run(agent: SimAgent, device: DeviceInfo, job: Job) -> tuple[RawResult, list[str]]:
    phases: list[str] = []
    result = agent.run(device, job, lambda phase, fraction: phases.append(phase))
    return result, phases


def test_discover(device: DeviceInfo) -> None:
    assert (device.id, device.platform) == ("sim", "sim")
    assert device.name.startswith("host CPU (")
    assert device.cores == os.cpu_count()
    assert device.delegates == ("xnnpack", "cpu", "et-xnnpack")  # et-: a .pte (ExecuTorch)


def test_supports(agent: SimAgent, device: DeviceInfo, cnn_tflite: Path) -> None:
    job = _job(cnn_tflite)
    assert agent.supports(device, job) == (True, "")
    coreml = dataclasses.replace(job, model=dataclasses.replace(job.model, format="mlpackage"))
    assert agent.supports(device, coreml) == (False, "Core ML variant: not an iOS device")
    ok, reason = agent.supports(device, dataclasses.replace(job, delegate="gpu"))
    assert not ok and "gpu" in reason
    ok, reason = agent.supports(device, dataclasses.replace(job, threads=1000))
    assert not ok and "logical cores" in reason
    assert agent.wait_until_back(device, 1.0)


@pytest.mark.parametrize("delegate", ["xnnpack", "cpu"])
def test_run_ok_with_profile(
    agent: SimAgent, device: DeviceInfo, cnn_tflite: Path, delegate: str
) -> None:
    result, phases = _run(
        agent, device, _job(cnn_tflite, delegate, repeats=2, iterations=30, profile_ops=True)
    )
    assert result.status == "ok", result.error
    assert [len(s) for s in result.samples_ms] == [30, 30]
    assert all(x > 0 for s in result.samples_ms for x in s)
    assert result.init_ms and result.init_ms > 0 and result.first_inference_ms
    assert result.peak_memory_mb and 10 < result.peak_memory_mb < 2000
    assert result.runner["name"] == "litert" and result.runner["delegate"] == delegate
    pids = {*result.runner["pids"], result.runner["profile_pid"], os.getpid()}
    assert len(pids) == 4  # two repeats + the profile, each its own process, none the controller
    assert phases[:2] == ["repeat 1/2", "repeat 2/2"] and "profiling ops" in phases
    # op rows = kernels the runtime ran: 6 builtin nodes; XNNPACK adds a reshape before the FC
    # a loaded machine can leave < 85 % of Invoke to the op events: the rest is then its own
    # "(unattributed)" row (agents/litert/runner/op_coverage.py), which is not a kernel
    ops = [op for op in result.ops if op.kernel != "(unattributed)"]
    kernels = [op.kernel for op in ops]
    if delegate == "cpu":
        assert kernels == [
            "CONV_2D",
            "MAX_POOL_2D",
            "CONV_2D",
            "CONV_2D",
            "MEAN",
            "FULLY_CONNECTED",
        ]
        assert all(op.delegate is None and op.op_type == op.kernel for op in ops)
    else:
        assert len(kernels) == 7 and all(op.delegate == "XNNPACK" for op in ops)
        assert [op.op_type for op in ops if op.op_type] == [
            "CONV_2D",
            "MAX_POOL_2D",
            "CONV_2D",
            "CONV_2D",
            "MEAN",
            "FULLY_CONNECTED",
        ]
    assert [op.index for op in result.ops] == list(range(len(result.ops)))
    assert result.ops_model_ms
    coverage = sum(op.avg_ms for op in result.ops) / result.ops_model_ms
    assert 0.85 <= coverage <= 1.05, coverage


def test_profile_unavailable_without_the_litert_library(
    agent: SimAgent, device: DeviceInfo, cnn_tflite: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A laptop whose LiteRT C library is not where the lookup looks: the job is still measured
    # and the profile is reported unavailable with the reason.
    monkeypatch.setenv("QUANTLAB_LITERT_LIB", str(tmp_path))  # an empty folder
    result, _ = _run(agent, device, _job(cnn_tflite, profile_ops=True))
    assert result.status == "ok", result.error
    assert len(result.samples_ms) == 1 and result.samples_ms[0]
    assert result.ops == () and result.ops_model_ms is None
    assert [w for w in result.warnings if w.startswith("per-op profile unavailable: ")] == [
        f"per-op profile unavailable: LiteRT C library {LIBRARY_NAMES[sys.platform]} not found "
        f"in {tmp_path}"
    ]


def test_min_time_extends(agent: SimAgent, device: DeviceInfo, cnn_tflite: Path) -> None:
    result, _ = _run(agent, device, _job(cnn_tflite, iterations=5, min_time_s=0.3))
    assert result.status == "ok"
    assert len(result.samples_ms[0]) > 5
    assert sum(result.samples_ms[0]) >= 0.3 * 1000 * 0.5  # invoke time is most of the loop


def test_peak_memory_is_the_workers_own(agent: SimAgent, device: DeviceInfo,
                                        cnn_tflite: Path) -> None:
    # A controller that has grown large (it trained a model, say) must not lend its peak
    # to the worker: ru_maxrss survives execve on Linux, VmHWM does not.
    ballast = np.ones(800 * 2**20 // 8)  # 800 MB, touched
    result, _ = _run(agent, device, _job(cnn_tflite))
    assert float(ballast[-1]) == 1.0
    assert result.status == "ok", result.error
    assert result.peak_memory_mb is not None and 10 < result.peak_memory_mb < 400
    assert result.memory_method and "measuring process" in result.memory_method


def test_int8_model(agent: SimAgent, device: DeviceInfo, tflite_models: dict[str, Path]) -> None:
    result, _ = _run(agent, device, _job(tflite_models["int8"], "cpu"))
    assert result.status == "ok", result.error


def test_custom_op_fails_with_runtime_reason(
    agent: SimAgent, device: DeviceInfo, tflite_models: dict[str, Path]
) -> None:
    result, _ = _run(agent, device, _job(tflite_models["custom_op"]))
    assert result.status == "failed"
    assert result.error and "unresolved custom op: MatrixDeterminant" in result.error


@pytest.mark.parametrize("name", ["truncated", "not_flatbuffer"])
def test_bad_files_never_crash_controller(
    agent: SimAgent, device: DeviceInfo, tflite_models: dict[str, Path], name: str
) -> None:
    result, _ = _run(agent, device, _job(tflite_models[name]))
    assert result.status == "failed" and result.error


def test_worker_crash_is_a_failed_job(device: DeviceInfo, cnn_tflite: Path, tmp_path: Path) -> None:
    crasher = tmp_path / "python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    result, _ = _run(SimAgent(python=str(crasher)), device, _job(cnn_tflite))
    assert result.status == "failed"
    assert result.error == "worker crashed with SIGSEGV while starting"


def test_timeout(agent: SimAgent, device: DeviceInfo, cnn_tflite: Path) -> None:
    result, _ = _run(agent, device, _job(cnn_tflite, min_time_s=60.0, timeout_s=3.0))
    assert result.status == "failed"
    assert result.error == "timed out after 3s"


def test_npz_inputs(
    monkeypatch: pytest.MonkeyPatch,
    agent: SimAgent,
    device: DeviceInfo,
    cnn_tflite: Path,
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, np.zeros((1, 96, 96, 3), np.float32))
    result, _ = _run(agent, device, _job(cnn_tflite, inputs=str(good)))
    assert result.status == "ok", result.error
    monkeypatch.chdir(tmp_path)  # a relative path is the user's, not the worker's
    result, _ = _run(agent, device, _job(cnn_tflite, inputs="good.npz"))
    assert result.status == "ok", result.error
    bad = tmp_path / "bad.npz"
    np.savez(bad, np.zeros((1, 32, 32, 3), np.float32))
    result, _ = _run(agent, device, _job(cnn_tflite, inputs=str(bad)))
    assert result.status == "failed"
    assert result.error and "(1, 32, 32, 3)" in result.error and "(1, 96, 96, 3)" in result.error
    wrong_type = tmp_path / "int.npz"
    np.savez(wrong_type, np.zeros((1, 96, 96, 3), np.int32))
    result, _ = _run(agent, device, _job(cnn_tflite, inputs=str(wrong_type)))
    assert result.status == "failed" and result.error and "int32" in result.error


def test_random_inputs_match_dtype_and_quantization() -> None:
    rng = np.random.default_rng(0)
    f = random_input(
        {
            "shape": [1, 4],
            "shape_signature": [-1, 4],
            "dtype": np.float32,
            "quantization": (0.0, 0),
        },
        rng,
    )
    assert f.dtype == np.float32 and f.shape == (1, 4)
    q = random_input(
        {
            "shape": [1, 1000],
            "shape_signature": [1, 1000],
            "dtype": np.int8,
            "quantization": (0.01, -10),
        },
        rng,
    )
    assert q.dtype == np.int8
    real = (q.astype(np.float32) + 10) * 0.01
    assert real.min() >= -1.01 and real.max() <= 1.01 and real.std() > 0.3
    u = random_input({"shape": [2], "dtype": np.uint8, "quantization": (0.0, 0)}, rng)
    assert u.dtype == np.uint8


def test_energy_unavailable_reason(agent: SimAgent, device: DeviceInfo, cnn_tflite: Path) -> None:
    result, _ = _run(agent, device, _job(cnn_tflite, energy=True))
    assert result.energy is None
    assert (
        result.energy_unavailable_reason
        == "RAPL not readable: /nonexistent/powercap does not exist"
    )


def test_energy_from_rapl(device: DeviceInfo, cnn_tflite: Path, tmp_path: Path) -> None:
    domain = tmp_path / "intel-rapl:0"
    domain.mkdir()
    (domain / "energy_uj").write_text("1000\n")
    (domain / "max_energy_range_uj").write_text("262143328850\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-domain (core), not counted
    result, _ = _run(SimAgent(rapl_root=str(tmp_path), rapl_idle_s=0.05), device,
                     _job(cnn_tflite, energy=True))
    assert result.status == "ok"
    # the fake counter does not move: nothing above the idle baseline, so no invented energy
    assert result.energy is None
    assert "was not above the idle baseline (0 mW)" in (result.energy_unavailable_reason or "")


def test_rapl_only_with_energy(device: DeviceInfo, cnn_tflite: Path, tmp_path: Path) -> None:
    """Without --energy the worker reads no RAPL counter and sleeps no idle baseline before
    its timed loop: a 300 s idle window would run far past the job's 40 s limit."""
    domain = tmp_path / "intel-rapl:0"
    domain.mkdir()
    (domain / "energy_uj").write_text("1000\n")
    result, _ = _run(SimAgent(rapl_root=str(tmp_path), rapl_idle_s=300), device,
                     _job(cnn_tflite, timeout_s=40))
    assert result.status == "ok", result.error
    assert result.energy is None and result.energy_unavailable_reason is None
    # asked for, the same counter is read (it does not move: no figure, with the reason)
    result, _ = _run(SimAgent(rapl_root=str(tmp_path), rapl_idle_s=0.05), device,
                     _job(cnn_tflite, energy=True))
    assert result.energy is None
    assert "not above the idle baseline" in (result.energy_unavailable_reason or "")


def test_rapl_baseline_from_a_counter_that_moves(
    device: DeviceInfo, cnn_tflite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake package counter that a thread advances at 1 W while the worker idles and at
    # 5 W while it measures (it watches the worker's phase file): the figure is the 4 W
    # the inferences added, and the 1 W idle baseline is recorded.
    import tempfile
    import threading
    import time

    domain = tmp_path / "rapl" / "intel-rapl:0"
    domain.mkdir(parents=True)
    counter = domain / "energy_uj"
    counter.write_text("0\n")
    (domain / "max_energy_range_uj").write_text("262143328850\n")
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    stop = threading.Event()

    def advance() -> None:
        uj, last = 0.0, time.monotonic()
        while not stop.is_set():
            phases = [p.read_text() for p in work.glob("quantlab-sim-*/*.phase")]
            now = time.monotonic()
            uj += (5e6 if "measuring" in phases else 1e6) * (now - last)
            last = now
            tmp = counter.with_suffix(".tmp")
            tmp.write_text(f"{int(uj)}\n")
            os.replace(tmp, counter)
            time.sleep(0.001)

    th = threading.Thread(target=advance, daemon=True)
    th.start()
    try:
        result, _ = _run(SimAgent(rapl_root=str(tmp_path / "rapl"), rapl_idle_s=0.4), device,
                         _job(cnn_tflite, min_time_s=0.4, energy=True))
    finally:
        stop.set()
        th.join()
    assert result.status == "ok", result.error
    assert result.energy is not None, result.energy_unavailable_reason
    assert result.energy.baseline_mw == pytest.approx(1000.0, rel=0.2)
    mean_ms = sum(result.samples_ms[0]) / len(result.samples_ms[0])
    assert result.energy.mj_per_inference == pytest.approx(4.0 * mean_ms, rel=0.25)
    assert result.energy.comparability == "host-package"


def test_rapl_subtracts_the_idle_baseline() -> None:
    # 2 J over 0.5 s idle = 4 W; 9 J over 1.5 s of load = 6 W; 100 inferences:
    # (9 J - 4 W x 1.5 s) / 100 = 30 mJ each, with the 4 W baseline recorded
    energy, reason = rapl_energy(2e6, 0.5, 9e6, 1.5, 100)
    assert reason is None and energy is not None
    assert energy["mj_per_inference"] == pytest.approx(30.0)
    assert energy["baseline_mw"] == pytest.approx(4000.0)
    assert "idle baseline" in energy["label"] and "whole host" in energy["label"]
    built = Energy(**energy)
    assert built.comparability == "host-package" and built.baseline_mw == pytest.approx(4000.0)
    energy, reason = rapl_energy(2e6, 0.5, 5e6, 1.5, 100)  # 3.3 W under load < 4 W idle
    assert energy is None and "not above the idle baseline (4000 mW)" in (reason or "")


def test_rapl_wraparound(tmp_path: Path) -> None:
    domain = tmp_path / "intel-rapl:0"
    domain.mkdir()
    (domain / "energy_uj").write_text("5")
    (domain / "max_energy_range_uj").write_text("1000")
    rapl = Rapl(tmp_path)
    assert rapl.reason is None
    assert rapl.delta_uj([990], [10]) == 20


def test_model_ref_then_run(agent: SimAgent, device: DeviceInfo, cnn_tflite: Path) -> None:
    job = Job(model_ref(cnn_tflite), "sim", "sim", "xnnpack", 2, FAST)
    result, _ = _run(agent, device, job)
    assert result.status == "ok" and result.job_id == job.job_id and result.runner["threads"] == 2


def test_keyboard_interrupt_kills_worker(
    monkeypatch: pytest.MonkeyPatch, agent: SimAgent, device: DeviceInfo, cnn_tflite: Path
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    class InterruptedPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

        def wait(self, timeout: float | None = None) -> int:
            if timeout is not None:  # the agent's wait for the worker: Ctrl-C arrives
                raise KeyboardInterrupt
            return super().wait()

    monkeypatch.setattr(subprocess, "Popen", InterruptedPopen)
    with pytest.raises(KeyboardInterrupt):
        agent.run(device, _job(cnn_tflite, min_time_s=60.0), lambda phase, fraction: None)
    assert len(started) == 1 and started[0].returncode == -signal.SIGKILL


def test_numerics_with_inputs_that_do_not_fit_is_one_clear_line(cnn_tflite: Path,
                                                                 tmp_path: Path) -> None:
    """The numerics modes run in the runner's numerics module: their WorkerError must reach
    the entry point's handler (not a traceback of a __main__ copy of the class)."""
    import time

    bad = tmp_path / "bad.npz"
    np.savez(bad, np.zeros((1, 5), np.float32))
    job = Job(model_ref(cnn_tflite), "sim", "sim", "xnnpack", 1,
              Settings(inputs=str(bad), numerics=True, timeout_s=120))
    out = reference.prepare(job, tmp_path, time.monotonic() + 120)
    assert out["error"].startswith("--inputs ") and "WorkerError" not in out["error"]
    assert "bad.npz" in out["error"]
