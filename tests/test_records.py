"""Records: stable job ids, JSON round trips against golden files, version refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.records import (
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


@pytest.mark.parametrize("name,cls", [("raw_result", RawResult), ("plan", Plan), ("run", Run),
                                      ("device", DeviceInfo)])
def test_golden_files_round_trip(name: str, cls: type) -> None:
    data = json.loads((GOLDEN / f"{name}.json").read_text())
    record = load_record(cls, data)
    assert to_dict(record) == data


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
        runner={"name": "litert", "version": "2.3.0"}, warnings=("example warning",))
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
