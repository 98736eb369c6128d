"""Records: stable job ids, JSON round trips against golden files, version refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quantlab.harness.records import (
    SCHEMA_VERSION,
    DeviceInfo,
    Energy,
    Job,
    ModelRef,
    OpRecord,
    Plan,
    RawResult,
    Run,
    SchemaError,
    Settings,
    Skipped,
    from_dict,
    load_record,
    to_dict,
)

GOLDEN = Path(__file__).parent / "golden" / f"v{SCHEMA_VERSION}"


def sample_job(delegate: str = "xnnpack", path: str = "/m/model.tflite") -> Job:
    model = ModelRef(path=path, sha256="ab" * 32, size_bytes=1234, format="tflite", scheme="int8")
    return Job(model=model, device_id="sim", platform="sim", delegate=delegate, threads=2,
               settings=Settings(warmup=5, iterations=20, repeats=2, profile_ops=True))


def test_job_id_is_stable_and_content_based() -> None:
    a, b = sample_job(), sample_job(path="/elsewhere/copy.tflite")
    assert a.job_id == b.job_id  # same content, other place: same job
    assert len(a.job_id) == 16
    assert sample_job(delegate="cpu").job_id != a.job_id
    assert a.job_id == "5011fb15cc2be462"  # pinned: job ids must not change between releases
    assert sample_job().job_id == a.job_id


def test_job_id_of_default_settings_is_pinned() -> None:
    # Settings fields added later (energy_on_usb) stay out of the hash at their default:
    # jobs stored before them keep their ids; setting one gives a new id.
    model = ModelRef(path="/m/model.tflite", sha256="ab" * 32, size_bytes=1234, format="tflite")
    plain = Job(model, "sim", "sim", "xnnpack", 1, Settings())
    assert plain.job_id == "3e530912ce193e07"
    energy = Job(model, "pixel", "android", "gpu", 4, Settings(energy=True))
    assert energy.job_id == "9476ba2d1dd8b0ec"
    on_usb = Job(model, "pixel", "android", "gpu", 4, Settings(energy=True, energy_on_usb=True))
    assert on_usb.job_id not in (energy.job_id, plain.job_id)


@pytest.mark.parametrize("method,cls", [("odpm-rails", "device-rails"),
                                        ("battery-gauge", "battery-gauge"),
                                        ("ios-task-energy", "process-estimate"),
                                        ("rapl", "host-package"),
                                        ("something-new", "other:something-new")])
def test_energy_class_is_derived_from_the_method(method: str, cls: str) -> None:
    assert Energy(method=method, mj_per_inference=1.0).comparability == cls
    # a stored value cannot contradict the method: the class is always derived
    assert Energy(method=method, mj_per_inference=1.0, comparability="x").comparability == cls


def test_stored_energy_without_a_class_gets_it_on_load() -> None:
    data = json.loads((GOLDEN / "raw_result.json").read_text())
    del data["energy"]["comparability"]  # a result stored before the field existed
    raw = load_record(RawResult, data)
    assert raw.energy is not None and raw.energy.comparability == "host-package"
    assert to_dict(raw)["energy"]["comparability"] == "host-package"


@pytest.mark.parametrize("name,cls", [("raw_result", RawResult), ("plan", Plan), ("run", Run),
                                      ("device", DeviceInfo)])
def test_golden_files_round_trip(name: str, cls: type) -> None:
    data = json.loads((GOLDEN / f"{name}.json").read_text())
    record: object = load_record(cls, data)
    assert to_dict(record) == data


def _holds(new: object, old: object) -> bool:
    """Everything in ``old`` is in ``new`` unchanged (``new`` may have more keys)."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _holds(new[k], v)
                                             for k, v in old.items())
    if isinstance(old, list):
        return (isinstance(new, list) and len(new) == len(old)
                and all(_holds(a, b) for a, b in zip(new, old, strict=True)))
    return new == old


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(("name", "cls"), [("raw_result", RawResult), ("plan", Plan),
                                           ("run", Run), ("device", DeviceInfo)])
def test_older_files_still_load(name: str, cls: type, version: int) -> None:
    """Files written by quantlab with schema versions 1 and 2 load as current records; what
    they held is kept, what later versions added gets its default."""
    old = json.loads((GOLDEN.parent / f"v{version}" / f"{name}.json").read_text())
    assert old.get("schema_version", version) == version  # DeviceInfo carries none
    record: object = load_record(cls, dict(old))
    out = to_dict(record)
    if "schema_version" in old:
        assert out["schema_version"] == SCHEMA_VERSION == 3
    assert _holds(out, {k: v for k, v in old.items() if k != "schema_version"})
    if name == "raw_result":
        raw = load_record(RawResult, dict(old))
        assert raw.sustained == {} and raw.startup == {}
        if version == 1:
            assert raw.launches == () and raw.raw_files == ()
        assert raw.energy is not None and raw.energy.comparability == "host-package"
    if name == "run":
        assert to_dict(record)["settings"]["sustained_s"] == 0.0


def test_golden_raw_result_fields() -> None:
    raw = load_record(RawResult, json.loads((GOLDEN / "raw_result.json").read_text()))
    assert raw.status == "ok"
    assert isinstance(raw.samples_ms, tuple) and isinstance(raw.samples_ms[0], tuple)
    assert isinstance(raw.ops[0], OpRecord) and raw.ops[0].delegate == "XNNPACK"
    assert isinstance(raw.energy, Energy) and raw.energy.method == "rapl"


def test_newer_schema_is_refused() -> None:
    data = json.loads((GOLDEN / "raw_result.json").read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(SchemaError, match="newer"):
        load_record(RawResult, data)


def test_records_are_frozen() -> None:
    job = sample_job()
    with pytest.raises(AttributeError):
        job.threads = 4  # type: ignore[misc]


def write_golden() -> None:  # pragma: no cover - run by hand when the format changes
    """Regenerate the golden files (then review the diff!)."""
    job = sample_job()
    raw = RawResult(
        job_id=job.job_id, status="ok", samples_ms=((1.5, 1.6, 1.55), (1.52, 1.58, 1.49)),
        init_ms=12.5, first_inference_ms=4.25, peak_memory_mb=48.0,
        memory_method="ru_maxrss of the measuring process",
        ops=(OpRecord(index=0, kernel="Convolution (NHWC, F32) IGEMM", avg_ms=0.8,
                      op_type="CONV_2D", delegate="XNNPACK", node_index=0),
             OpRecord(index=1, kernel="SOFTMAX", avg_ms=0.05, op_type="SOFTMAX", node_index=3)),
        ops_model_ms=0.9,
        energy=Energy(method="rapl", mj_per_inference=2.5, samples=2,
                      label="CPU package energy (whole host, not only this process)"),
        runner={"name": "litert", "version": "2.3.0"}, warnings=("example warning",),
        sustained={"duration_s": 2.0, "window_s": 1.0, "source": "per-iteration times",
                   "sensors_note": "no battery", "windows": [
                       {"start_s": 0.0, "end_s": 1.0, "count": 600, "median_ms": 1.5,
                        "p90_ms": 1.7, "mean_ms": 1.55, "throughput_ips": 600.0,
                        "temperatures_c": {"x86_pkg_temp": 51.0},
                        "cpu_freq_khz": {"cpu0": 2400000}}],
                   "peak_ips": 600.0, "sustained_ips": 600.0, "sustained_ratio": 1.0,
                   "throttle_pct": 10.0, "throttle_at_s": None, "throttle": None},
        startup={"source": "LiteRT runner", "cold": {"load_ms": 8.5, "delegate_ms": 4.0,
                                                     "first_inference_ms": 4.25},
                 "warm": None, "cache": None, "warm_unavailable": "no delegate cache"})
    plan = Plan(jobs=(job,), skipped=(Skipped(sample_job("gpu"), "gpu: not a delegate of sim"),))
    run = Run(run_id="20261122-231500-3fa2", created_at="2026-11-22T23:15:00+00:00", host="lab1",
              tool_versions={"quantlab": "0.1.0"}, git_sha=None, command="quantlab bench m.tflite",
              settings=job.settings)
    device = DeviceInfo(id="emulator-5554", platform="android", name="Pixel 8", model="Pixel 8",
                        manufacturer="Google", soc="Tensor G3", os_version="14", sdk=34,
                        abi="arm64-v8a", cores=9, delegates=("cpu", "xnnpack", "gpu"),
                        health={"battery_pct": 80, "temperature_c": 31.5})
    for name, rec in (("raw_result", raw), ("plan", plan), ("run", run), ("device", device)):
        (GOLDEN / f"{name}.json").write_text(json.dumps(to_dict(rec), indent=2) + "\n")


if __name__ == "__main__":  # pragma: no cover
    write_golden()


def test_from_dict_reads_each_record_class_annotations_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a stored run builds thousands of records: resolving the string annotations of
    a class again for every one of them (typing.get_type_hints compiles each) took most of
    load_run's time."""
    import typing

    calls: list[type] = []
    real = typing.get_type_hints

    def counted(obj: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", counted)
    job = sample_job()
    data = to_dict(job)
    for _ in range(50):
        assert from_dict(Job, data) == job
    assert len(calls) == len(set(calls)) <= 3  # Job, ModelRef, Settings: once each
