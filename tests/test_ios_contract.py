# ruff: noqa: E501  (signature pins are long literal strings)
"""The iOS job/result contract: schemas, fixtures, codec, Swift sources, pymobiledevice3 pins."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from quantlab.harness.records import Job as QJob
from quantlab.harness.records import ModelRef, Settings
from quantlab.ios_runner import codec

RUNNER = Path(codec.__file__).parent
FIXTURES = sorted((RUNNER / "fixtures").glob("*.json"))
SWIFT = sorted(RUNNER.rglob("*.swift"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_golden_fixtures_validate(path: Path) -> None:
    codec.validate("job" if path.name.startswith("job") else "result", _load(path))


def test_schema_rejects_a_broken_result() -> None:
    bad = _load(RUNNER / "fixtures" / "result_coreml.json")
    bad["compute_plan"]["label"] = "measured"
    with pytest.raises(codec.ContractError, match="compute_plan/label"):
        codec.validate("result", bad)


def _job(delegate: str, fmt: str) -> QJob:
    model = ModelRef(path=f"/m/x.{fmt}", sha256="b" * 64, size_bytes=10, format=fmt)
    return QJob(
        model=model,
        device_id="u",
        platform="ios",
        delegate=delegate,
        threads=3,
        settings=Settings(warmup=4, iterations=20, profile_ops=True, timeout_s=120),
    )


def test_build_job_for_each_delegate() -> None:
    ml = codec.build_job(_job("coreml-gpu", "mlpackage"))
    assert ml["engine"] == "coreml" and ml["coreml"]["compute_units"] == "cpuAndGPU"
    assert ml["model"]["path"].endswith("/model.mlpackage") and ml["coreml"]["compile_on_device"]
    tfl = codec.build_job(_job("tflite-metal", "tflite"))
    assert tfl["tflite"] == {
        **tfl["tflite"],
        "delegate": "metal",
        "num_threads": 3,
        "op_profile": True,
    }
    assert tfl["run"] == {"warmup": 4, "iterations": 20, "cold_load_repeats": 3, "timeout_s": 120}
    with pytest.raises(codec.ContractError, match="nnapi"):
        codec.build_job(_job("nnapi", "tflite"))


def test_an_executorch_job_and_its_result() -> None:
    """et-xnnpack: engine executorch with the .pte; the app's result (the same shape as the
    other engines') becomes a RawResult that records the runtime and the app's version."""
    et = codec.build_job(_job("et-xnnpack", "pte"))
    assert et["engine"] == "executorch" and et["model"]["path"].endswith("/model.pte")
    assert et["executorch"] == {"backend": "xnnpack", "op_profile": True}
    assert "tflite" not in et and "coreml" not in et
    job = _job("et-xnnpack", "pte")
    data = {**_load(RUNNER / "fixtures" / "result_executorch.json"), "job_id": job.job_id}
    raw = codec.parse_result(data, job)
    assert raw.status == "ok" and raw.samples_ms == ((1.1, 1.05, 1.2, 1.1),)
    assert (raw.runner["runtime"], raw.runner["version"]) == ("executorch", "1.4.1")
    assert raw.ops == () and "no ETDump" in raw.runner["engine_detail"]


def test_parse_tflite_result_with_op_profile() -> None:
    data = _load(RUNNER / "fixtures" / "result_tflite.json")
    job = _job("tflite-metal", "tflite")
    data["job_id"] = job.job_id
    raw = codec.parse_result(data, job)
    assert raw.samples_ms == ((2.1, 2.0, 2.2, 2.1, 2.05, 2.0),)
    assert raw.init_ms == 44.0 and raw.runner["load_warm_ms"] == [11.8]
    assert [op.kernel for op in raw.ops] == ["TfLiteMetalDelegate", "SOFTMAX"]
    assert raw.runner["runtime"] == "litert"  # every job names its runtime
    assert raw.ops[1].avg_ms == pytest.approx(0.1205)
    assert any("fair" in w for w in raw.warnings)
    assert raw.energy is None


def test_parse_failed_result_and_mismatched_id() -> None:
    data = _load(RUNNER / "fixtures" / "result_failed.json")
    job = _job("coreml-ane", "mlpackage")
    with pytest.raises(codec.ContractError, match="expected"):
        codec.parse_result(data, job)
    data["job_id"] = job.job_id
    raw = codec.parse_result(data, job)
    assert raw.status == "failed" and raw.error and "thermal state was serious" in raw.error


# --------------------------------------------------------------------------- Swift


def _swift_keys(path: Path) -> set[str]:
    """Raw JSON names of every CodingKeys case in a Swift file."""
    text = path.read_text()
    keys: set[str] = set()
    for block in re.findall(r"enum CodingKeys: String, CodingKey \{(.*?)\n\s*\}", text, re.S):
        for name, raw in re.findall(r"case (\w+)(?: = \"([^\"]+)\")?", block):
            keys.add(raw or name)
    return keys


def _schema_props(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                found |= set(value)
            found |= _schema_props(value)
    elif isinstance(node, list):
        for item in node:
            found |= _schema_props(item)
    return found


@pytest.mark.parametrize(("swift", "schema"), [("Job.swift", "job"),
                                                ("Result.swift Sustained.swift", "result")])
def test_swift_coding_keys_match_schema(swift: str, schema: str) -> None:
    keys = set().union(*(_swift_keys(RUNNER / "Sources" / "RunnerCore" / name)
                         for name in swift.split()))
    props = _schema_props(_load(RUNNER / "schema" / f"{schema}.schema.json"))
    assert keys == props, f"only in Swift: {keys - props}; only in schema: {props - keys}"


def test_every_swift_codable_declares_coding_keys() -> None:
    for name in ("Job.swift", "Result.swift", "Sustained.swift"):
        text = (RUNNER / "Sources" / "RunnerCore" / name).read_text()
        assert text.count(": Codable") == text.count("enum CodingKeys"), name


@pytest.mark.parametrize("path", SWIFT, ids=lambda p: str(p.relative_to(RUNNER)))
def test_swift_parses_without_errors(path: Path) -> None:
    import tree_sitter as ts
    import tree_sitter_swift as tss

    tree = ts.Parser(ts.Language(tss.language())).parse(path.read_bytes())
    bad: list[tuple[int, int]] = []

    def walk(node: Any) -> None:
        if node.type == "ERROR" or node.is_missing:
            bad.append(node.start_point)
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    assert not bad, f"{path}: syntax errors at {bad[:5]}"


def test_swift_parser_catches_errors() -> None:
    import tree_sitter as ts
    import tree_sitter_swift as tss

    tree = ts.Parser(ts.Language(tss.language())).parse(b"struct A { func f( { }")
    assert tree.root_node.has_error


def test_info_plist_has_file_sharing() -> None:
    import plistlib

    info = plistlib.loads((RUNNER / "Resources" / "Info.plist").read_bytes())
    assert (
        info["UIFileSharingEnabled"] is True and info["LSSupportsOpeningDocumentsInPlace"] is True
    )


# --------------------------------------------------------------------------- pymobiledevice3 pins

PINS = {
    "pymobiledevice3.usbmux:list_devices": "(usbmux_address: Optional[str] = None)",
    "pymobiledevice3.lockdown:create_using_usbmux": "(serial: Optional[str] = None, identifier",
    "pymobiledevice3.services.installation_proxy:InstallationProxyService.get_apps": "(self, application_type: str = 'Any', calculate_sizes: bool = False, "
    "bundle_identifiers: Optional[list[str]] = None",
    "pymobiledevice3.services.installation_proxy:InstallationProxyService.install_from_local": "(self, package_path: str, cmd: str = 'Install', options",
    "pymobiledevice3.services.house_arrest:HouseArrestService.create": "(lockdown: pymobiledevice3.lockdown_service_provider.LockdownServiceProvider, bundle_id: str",
    "pymobiledevice3.services.afc:AfcService.makedirs": "(self, filename",
    "pymobiledevice3.services.afc:AfcService.set_file_contents": "(self, filename",
    "pymobiledevice3.services.afc:AfcService.get_file_contents": "(self, filename",
    "pymobiledevice3.services.afc:AfcService.exists": "(self, filename",
    "pymobiledevice3.services.afc:AfcService.push": "(self, local_path",
    "pymobiledevice3.services.afc:AfcService.rm": "(self, filename",
    "pymobiledevice3.services.dvt.instruments.process_control:ProcessControl.launch": "(self, bundle_id: str, arguments: Optional[list[str]] = None, kill_existing: bool = True",
    "pymobiledevice3.services.dvt.instruments.process_control:ProcessControl.kill": "(self, pid: int)",
    "pymobiledevice3.services.dvt.instruments.sysmontap:Sysmontap.__init__": "(self, dvt: pymobiledevice3.dtx_service_provider.DtxServiceProvider, "
    "process_attributes: list[str], system_attributes: list[str], interval_ms: int",
    "pymobiledevice3.services.mobile_image_mounter:auto_mount": "(lockdown: pymobiledevice3.lockdown_service_provider.LockdownServiceProvider, xcode",
    "pymobiledevice3.services.diagnostics:DiagnosticsService.get_battery": "(self)",
    "pymobiledevice3.tunneld.api:get_tunneld_device_by_udid": "(udid: str",
    "pymobiledevice3.remote.userspace_tunnel:UserspaceRsdTunnel.__init__": "(self",
    "pymobiledevice3.lockdown_service_provider:LockdownServiceProvider.get_developer_mode_status": "(self)",
}


@pytest.mark.parametrize("target", sorted(PINS))
def test_pymobiledevice3_signature_pins(target: str) -> None:
    import importlib

    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    sig = str(inspect.signature(obj))
    assert sig.startswith(PINS[target]), f"{target} changed: {sig}"


def test_userspace_tunnel_takes_serial() -> None:
    from pymobiledevice3.remote.userspace_tunnel import UserspaceRsdTunnel

    assert "serial" in inspect.signature(UserspaceRsdTunnel.__init__).parameters


def test_a_sustained_job_and_its_windows() -> None:
    job = _job("tflite-cpu", "tflite")
    job = dataclasses.replace(job, settings=dataclasses.replace(
        job.settings, sustained_s=2.0, window_s=0.5, window_samples=3))
    spec = codec.build_job(job)
    assert spec["run"]["sustained"] == {"duration_s": 2.0, "window_s": 0.5, "window_samples": 3}
    assert spec["run"]["timeout_s"] == 122.0  # the job's timeout plus the run's duration
    assert "sustained" not in codec.build_job(_job("tflite-cpu", "tflite"))["run"]

    data = _load(RUNNER / "fixtures" / "result_sustained.json")
    raw = codec.parse_result({**data, "job_id": job.job_id}, job)
    s = raw.sustained
    assert [w["thermal_state"] for w in s["windows"]] == ["nominal", "fair", "serious", "serious"]
    assert [w["median_ms"] for w in s["windows"]] == [2.0, 2.0, 4.0, 4.0]
    assert s["windows"][0]["throughput_ips"] == 500.0  # 250 predictions in 0.5 s
    assert s["throttle"]["window"] == 2 and s["throttle_at_s"] == 1.0
    assert s["samples"] == {**s["samples"], "measured": 750, "kept": 12, "downsampled": True}
    assert "thermal state only" in s["sensors_note"]  # no temperatures filled in
    assert all("temperatures_c" not in w for w in s["windows"])
    assert raw.samples_ms == (tuple(data["timing_ms"]["latency"]),)


def test_the_first_second_of_core_ml_and_tflite_jobs() -> None:
    from quantlab.harness.startup import cold_and_warm

    data = _load(RUNNER / "fixtures" / "result_coreml.json")
    job = _job("coreml-ane", "mlpackage")
    start = codec.parse_result({**data, "job_id": job.job_id}, job).startup
    # cold: compiled on the phone, the first load (device specialization), the first prediction
    assert start["cold"] == {"load_ms": 1830.2, "delegate_ms": 412.7, "first_inference_ms": 6.8}
    assert start["warm"] == {"load_ms": pytest.approx(21.15), "delegate_ms": None,
                             "first_inference_ms": None}  # a later load of the compiled model
    cold, warm = cold_and_warm(start)
    assert cold == pytest.approx(2249.7) and warm == pytest.approx(21.15)

    data = _load(RUNNER / "fixtures" / "result_tflite.json")
    job = _job("tflite-metal", "tflite")
    start = codec.parse_result({**data, "job_id": job.job_id}, job).startup
    assert start["cold"] == {"load_ms": 44.0, "delegate_ms": None, "first_inference_ms": 9.5}
    assert start["warm"] is None and "no delegate cache" in start["warm_unavailable"]
