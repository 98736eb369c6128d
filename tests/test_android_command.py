"""benchmark_model command lines per delegate, and runner provisioning."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from quantlab.android_runner import command, provision
from quantlab.harness.errors import UnknownDeviceError, UserError
from quantlab.harness.models import file_sha256
from quantlab.harness.records import Job, ModelRef, Settings

MODEL = ModelRef("/tmp/m.tflite", "ab" * 32, 10, "tflite")


def job(delegate: str, **settings: object) -> Job:
    return Job(MODEL, "serial", "android", delegate, 4, Settings(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(("delegate", "expected", "absent"), [
    ("cpu", ["--use_xnnpack=false"], ["--use_gpu=true"]),
    ("xnnpack", ["--use_xnnpack=true"], ["--use_gpu=true", "--use_nnapi=true"]),
    ("gpu", ["--use_gpu=true"], ["--use_nnapi=true", "--use_hexagon=true"]),
    ("nnapi", ["--use_nnapi=true"], ["--use_gpu=true"]),
    ("hexagon", ["--use_hexagon=true", f"--hexagon_lib_path={command.LIB_DIR}"],
     ["--use_gpu=true"]),
    ("qnn", [f"--external_delegate_path={command.LIB_DIR}/libQnnTFLiteDelegate.so"],
     ["--use_hexagon=true"]),
])
def test_delegate_flags(delegate: str, expected: list[str], absent: list[str]) -> None:
    cmd = command.build_command(job(delegate, warmup=3, iterations=20, min_time_s=1.5,
                                     timeout_s=90), "/data/local/tmp/quantlab/models/x.tflite")
    argv = list(cmd.argv)
    assert argv[0] == command.BINARY
    for flag in expected:
        assert flag in argv
    for flag in absent:
        assert flag not in argv
    for flag in ("--num_threads=4", "--warmup_runs=3", "--num_runs=20", "--min_secs=1.5",
                 "--report_peak_memory_footprint=true",
                 "--graph=/data/local/tmp/quantlab/models/x.tflite"):
        assert flag in argv
    assert "--enable_op_profiling=true" not in argv
    words = shlex.split(cmd.shell())
    assert words[:3] == ["cd", command.DEVICE_DIR, "&&"]
    t = words.index("timeout")
    assert words[t:t + 4] == ["timeout", "-k", "5", "90"]
    assert "--max_secs=72" in argv


def test_qnn_options_and_dsp_environment() -> None:
    cmd = command.build_command(job("qnn"), "m.tflite")
    opts = next(a for a in cmd.argv if a.startswith("--external_delegate_options="))
    assert "backend_type:htp" in opts and f"skel_library_dir:{command.LIB_DIR}" in opts
    assert cmd.env["ADSP_LIBRARY_PATH"].startswith(command.LIB_DIR)
    assert f"ADSP_LIBRARY_PATH='{cmd.env['ADSP_LIBRARY_PATH']}'" in cmd.shell()


def test_profiling_writes_csv_to_a_file_and_hexagon_profiles_cycles() -> None:
    cmd = command.build_command(job("hexagon"), "m.tflite", profile_file="/d/p.csv")
    assert {"--enable_op_profiling=true", "--op_profiling_output_mode=csv",
            "--op_profiling_output_file=/d/p.csv", "--hexagon_profiling=true"} <= set(cmd.argv)


def test_unknown_delegate() -> None:
    with pytest.raises(UnknownDeviceError, match="coreml-ane: not an Android delegate"):
        command.delegate_flags("coreml-ane")


def test_android_delegates_are_one_list() -> None:
    """command.DELEGATES is the list: the agent offers exactly it, in its order (xnnpack
    first: the default), and each tool builds the flags of the delegates it runs from it
    (the agent and command.py kept two lists, in different orders); a .pte's delegates
    (ExecuTorch's executor_runner) follow them."""
    from quantlab.agents.android.agent import AndroidAgent
    from quantlab.android_runner import executorch_command, litert_command

    assert AndroidAgent.delegates == (*command.DELEGATES, *executorch_command.DELEGATES)
    assert executorch_command.DELEGATES == ("et-xnnpack",)
    assert AndroidAgent.delegates[0] == "xnnpack"
    assert litert_command.DELEGATES == ("litert-cpu", "litert-gpu", "litert-npu")
    for name, delegate in command.DELEGATES.items():
        if delegate.runner == command.BENCHMARK_MODEL:
            argv = command.build_command(job(name), "m.tflite").argv
        else:
            argv = litert_command.build_litert_command(job(name), "m.tflite").argv
        assert argv[-len(delegate.flags(False)):] == tuple(delegate.flags(False)), name
    with pytest.raises(UnknownDeviceError, match="litert-gpu: not an Android delegate"):
        command.delegate_flags("litert-gpu")  # not one of benchmark_model's
    with pytest.raises(UnknownDeviceError, match="gpu: not a benchmark_litert_model"):
        litert_command.accelerator_flags("gpu")


def elf(path: Path, machine: int) -> Path:
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little")
                     + bytes(44))
    return path


def test_provision_caches_per_abi_with_sha(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(provision.RunnerMissing, match="no benchmark_model provisioned") as err:
        provision.require_binary("arm64-v8a")
    assert "docs/devices.md" in err.value.one_line()
    binary = elf(tmp_path / "benchmark_model", 183)
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "libhexagon_interface.so").write_bytes(b"lib")
    got = provision.provision_binary(binary, "arm64-v8a", libs)
    assert got.sha256 == file_sha256(binary)
    assert got.path == tmp_path / "cache" / "android" / "arm64-v8a" / "benchmark_model"
    assert provision.require_binary("arm64-v8a").libs == {
        "libhexagon_interface.so": file_sha256(libs / "libhexagon_interface.so")}
    assert provision.provisioned_abis() == ["arm64-v8a"]
    # re-provisioning without --delegate-libs keeps the libraries
    provision.provision_binary(binary, "arm64-v8a")
    assert provision.require_binary("arm64-v8a").libs


def test_provision_refuses_wrong_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UserError, match="not an ELF executable"):
        provision.provision_binary(text)
    with pytest.raises(UserError, match="built for armeabi-v7a, not arm64-v8a"):
        provision.provision_binary(elf(tmp_path / "bm32", 40), "arm64-v8a")
    with pytest.raises(UserError, match="unknown ABI"):
        provision.provision_binary(elf(tmp_path / "bm", 183), "mips")
    with pytest.raises(UserError, match="no such file"):
        provision.provision_binary(tmp_path / "missing")
