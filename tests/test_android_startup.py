"""The first second on a loopback Android phone, through the real adb server: a GPU job's cold
start (compiling into an empty --delegate_serialize_dir) and warm start (from that cache), which
the stand-in honours; a delegate without a cache gets its cold start and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.adbd import FakeAndroidDevice
from test_android_adb import _adb_installed, adb_port, agent, by_id, cache, model, phone

from quantlab.harness.records import Job, ModelRef, Settings

__all__ = ["_adb_installed", "adb_port", "cache", "model", "phone"]  # fixtures used here

SETTINGS = Settings(warmup=1, iterations=2, repeats=1, timeout_s=60)


def test_gpu_cold_and_warm_start_from_the_delegate_cache(phone: FakeAndroidDevice,
                                                         model: ModelRef, cache: Path) -> None:
    a = agent()
    device = by_id(a.discover(), phone.serial)
    job = Job(model, phone.serial, "android", "gpu", 1, SETTINGS)
    raw = a.run(device, job, lambda *args: None)
    assert raw.status == "ok", raw.error
    start = raw.startup
    assert start["cold"]["load_ms"] == pytest.approx(870.557)  # the recorded Init
    assert start["warm"]["load_ms"] == pytest.approx(870.557 * 0.2, rel=1e-4)  # cached
    assert start["cold"]["first_inference_ms"] == pytest.approx(130.565)
    assert start["cache"]["files"] == [f"{job.job_id}.gpu.bin"]
    cold, warm = phone.benchmark_calls[-2:]
    folder = f"--delegate_serialize_dir=/data/local/tmp/quantlab/cache/{job.job_id}"
    assert folder in cold and folder in warm and "--use_gpu=true" in warm
    assert not any("--delegate_serialize_dir" in a for a in phone.benchmark_calls[0])
    assert not (phone.sandbox / f"data/local/tmp/quantlab/cache/{job.job_id}").exists()
    assert any(o.name == "start-warm.stdout" for o in raw.raw_outputs)  # the figures' source


def test_stand_in_without_the_cache_folder_starts_cold_every_time(
        phone: FakeAndroidDevice, model: ModelRef, cache: Path) -> None:
    a = agent()
    device = by_id(a.discover(), phone.serial)
    original = a._shell

    def no_folder(d: object, cmd: str, timeout: float = 60) -> object:
        # the folder is never made: the delegate has nowhere to write its cache
        return original(d, cmd.replace("mkdir -p", "echo"), timeout)

    a._shell = no_folder  # type: ignore[method-assign]
    raw = a.run(device, Job(model, phone.serial, "android", "gpu", 1, SETTINGS),
                lambda *args: None)
    assert raw.status == "ok", raw.error
    assert raw.startup["warm"] is None
    assert "wrote nothing to --delegate_serialize_dir" in raw.startup["warm_unavailable"]


def test_a_delegate_without_a_cache_has_its_cold_start_and_the_reason(
        phone: FakeAndroidDevice, model: ModelRef, cache: Path) -> None:
    a = agent()
    device = by_id(a.discover(), phone.serial)
    raw = a.run(device, Job(model, phone.serial, "android", "cpu", 1, SETTINGS),
                lambda *args: None)
    assert raw.status == "ok", raw.error
    assert raw.startup["cold"]["load_ms"] == pytest.approx(raw.init_ms)
    assert raw.startup["warm"] is None and "keeps no delegate cache" in \
        raw.startup["warm_unavailable"]
    assert len(phone.benchmark_calls) == 1  # no extra launches


def test_an_npu_jobs_start_says_it_was_compiled_ahead_of_time() -> None:
    """litert-npu runs a model compiled on the host (quantlab compile): its cold start is
    benchmark_litert_model's model initialization and first warm-up run, nothing is compiled
    on the phone, and there is no cache to warm; no launch beyond the measured ones."""
    from quantlab.agents.android import startup
    from quantlab.android_runner.parser import BenchmarkOutput
    from quantlab.harness.records import DeviceInfo

    ref = ModelRef("/m/m.tflite", "c" * 64, 10, "tflite")
    job = Job(ref, "R58M", "android", "litert-npu", 1, Settings())
    measured = [BenchmarkOutput(ok=True, init_ms=23.5, first_inference_ms=7.4)]
    phone = DeviceInfo(id="R58M", platform="android", name="R58M")
    record = startup.measure(None, None, phone, job, "m", (), [], measured)
    assert record["cold"] == {"load_ms": 23.5, "delegate_ms": None, "first_inference_ms": 7.4}
    assert "benchmark_litert_model" in record["source"]
    assert "compiled ahead of time" in record["warm_unavailable"]
    assert "benchmark_model keeps" not in record["warm_unavailable"]
