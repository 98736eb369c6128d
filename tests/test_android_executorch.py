"""ExecuTorch on an Android phone: ``executor_runner`` provisioned like benchmark_model
(``quantlab android provision --executorch-runner PATH``) runs ``.pte`` jobs through a REAL
adb server on the loopback phone, whose stand-in runner executes the program with this
host's ExecuTorch runtime and says so; latency comes from the runner's per-iteration lines,
the per-op profile from its ETDump pulled and read with ExecuTorch's Inspector. Without the
runner a ``.pte`` job is refused in one line naming the provision command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.adbd import FakeAndroidDevice
from test_android_adb import adb_port, connected_phone  # noqa: F401  (fixtures)

from quantlab.agents.android.agent import AndroidAgent
from quantlab.android_runner import executorch_command as etcmd
from quantlab.harness.models import model_ref
from quantlab.harness.records import Job, Settings

ADB = shutil.which("adb")
ROOT = Path(__file__).resolve().parent.parent

# executor_runner's lines as its posix platform layer prints them (executor_runner.cpp)
RUNNER_LOG = """\
I 00:00:00.000412 executorch:executor_runner.cpp:476] Model file net.pte is loaded.
I 00:00:00.000431 executorch:executor_runner.cpp:486] Using method forward
I 00:00:00.001876 executorch:executor_runner.cpp:626] Model loaded in 1.402000 ms.
I 00:00:00.005218 executorch:executor_runner.cpp:781] Iteration 1 of 3: 3.301000 ms
I 00:00:00.007290 executorch:executor_runner.cpp:781] Iteration 2 of 3: 2.050500 ms
I 00:00:00.009301 executorch:executor_runner.cpp:781] Iteration 3 of 3: 1.990000 ms
I 00:00:00.009322 executorch:executor_runner.cpp:791] Model executed successfully 3 time(s) \
in 7.341500 ms.
I 00:00:00.009330 executorch:executor_runner.cpp:798] 1 outputs: \n"""


def test_runner_output_is_read_per_iteration() -> None:
    out = etcmd.parse_output(RUNNER_LOG)
    assert out.ok and out.samples_ms == (3.301, 2.0505, 1.99)
    assert out.load_ms == 1.402 and out.executions == 3
    failed = etcmd.parse_output(
        "I 00:00:00.000412 executorch:executor_runner.cpp:476] Model file m.pte is loaded.\n"
        "F 00:00:00.000900 executorch:executor_runner.cpp:620] In function main(), assert "
        "failed (method.ok()): Loading of method forward failed with status 0x20\n")
    assert not failed.ok
    assert failed.error == ("executor_runner failed: In function main(), assert failed "
                            "(method.ok()): Loading of method forward failed with status 0x20")
    old = etcmd.parse_output("I 00:00:00.1 executorch:executor_runner.cpp:700] Model executed "
                             "successfully 3 time(s) in 7.3 ms.\n")  # before ExecuTorch 1.3
    assert not old.ok and "ExecuTorch 1.3 or newer" in str(old.error)


@pytest.fixture()
def pte(small_pte: Path) -> Path:
    """The shared conv net lowered to XNNPACK (tests/pte_fixtures.py)."""
    return small_pte


@pytest.fixture()
def phone(adb_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
          ) -> Iterator[FakeAndroidDevice]:
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "cache"))
    with connected_phone(adb_port, "pixel5_snapdragon", tmp_path / "phone") as dev:
        yield dev


def _cli(args: list[str], port: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(port),
           "QUANTLAB_CACHE": str(tmp_path / "cache"), "QUANTLAB_COOLDOWN_S": "0",
           "QUANTLAB_RESULTS": str(tmp_path / "results"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "quantlab", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _elf_aarch64(path: Path) -> Path:
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little")
                     + bytes(44))
    return path


def test_et_xnnpack_job_on_the_loopback_phone(phone: FakeAndroidDevice, adb_port: int,  # noqa: F811
                                              pte: Path, tmp_path: Path) -> None:
    # no runner yet: the job is refused in one line that names the provision command
    agent = AndroidAgent()
    device = next(d for d in agent.discover() if d.id == phone.serial)
    job = Job(model_ref(pte), device.id, "android", "et-xnnpack", 1, Settings())
    ok, why = agent.supports(device, job)
    assert not ok and "\n" not in why
    assert why == ("no ExecuTorch executor_runner provisioned for ABI arm64-v8a: run `quantlab "
                   "android provision --executorch-runner PATH --abi arm64-v8a` (docs/devices.md)")
    assert agent.supports(device, replace(job, delegate="xnnpack"))[1].startswith(
        "xnnpack: a LiteRT delegate; an ExecuTorch program runs on et-xnnpack")

    got = _cli(["android", "provision", "--executorch-runner",
                str(_elf_aarch64(tmp_path / "executor_runner")), "--executorch-version",
                "1.5.1", "--json"], adb_port, tmp_path)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["runner"] == "executor_runner"

    bench = ["bench", str(pte), "--device", phone.serial, "--repeats", "2", "--warmup", "2",
             "--iterations", "5", "--profile-ops", "--json"]
    after = _cli(bench, adb_port, tmp_path)
    assert after.returncode == 0, after.stderr
    result = json.loads(after.stdout)["results"][0]
    assert result["status"] == "ok", result["error"]
    runner = result["runner"]
    assert (runner["name"], runner["runtime"], runner["version"]) == \
        ("executor_runner", "executorch", "1.5.1")
    assert "--num_executions=7" in runner["argv"] and "--cpu_threads=1" in runner["argv"]
    assert result["latency_ms"]["count"] == 10  # 5 per launch, the 2 warm-ups dropped
    # two timed launches, then one with --etdump_path whose ETDump was pulled and read
    calls = phone.executor_runner_calls
    assert len(calls) == 3 and not any(a.startswith("--etdump_path") for a in calls[0])
    assert any(a.startswith("--etdump_path=/data/local/tmp/quantlab/out/") for a in calls[2])
    kernels = {op["kernel"]: op for op in result["ops"]}
    assert any(k.startswith("Convolution") and op["delegate"] == "XNNPACK"
               for k, op in kernels.items())
    assert "DELEGATE_CALL #0 (outside its kernels)" in kernels
    assert 0.3 <= sum(op["avg_ms"] for op in result["ops"]) / result["ops_model_ms"] <= 1.05
    assert "pulled from the phone" in runner["profiler"]
    # the stand-in says what ran the program, in the output stored with the job
    run_id = json.loads(after.stdout)["run_id"]
    raw = _cli(["show", run_id, "--raw", result["job_id"], "--file", "launch-1.stdout"],
               adb_port, tmp_path)
    assert "stand-in executor_runner: the .pte ran on this host with ExecuTorch's runtime" \
        in raw.stdout, raw.stdout[-2000:] + raw.stderr[-2000:]


def test_a_program_the_runner_cannot_parse_fails_the_job_in_one_line(
        phone: FakeAndroidDevice, tmp_path: Path) -> None:
    from quantlab.android_runner import provision
    from quantlab.harness.records import ModelRef

    provision.provision_binary(_elf_aarch64(tmp_path / "executor_runner"), "arm64-v8a",
                               runner="executor_runner", version="1.5.1")
    broken = tmp_path / "broken.pte"
    broken.write_bytes(b"\x00\x00\x00\x00ET12" + bytes(64))  # the identifier, then nothing
    ref = ModelRef(str(broken), "d" * 64, broken.stat().st_size, "pte")
    agent = AndroidAgent()
    device = next(d for d in agent.discover() if d.id == phone.serial)
    raw = agent.run(device, Job(ref, device.id, "android", "et-xnnpack", 1, Settings(repeats=2)),
                    lambda phase, fraction: None)
    assert raw.status == "failed"
    assert raw.error == ("executor_runner failed: Failed to parse model file "
                         f"/data/local/tmp/quantlab/models/{'d' * 16}.pte")
    assert len(phone.executor_runner_calls) == 1  # the first launch failed: no more
    assert raw.runner["runtime"] == "executorch" and raw.runner["version"] == "1.5.1"
    assert any(o.name == "launch-1.stderr" for o in raw.raw_outputs)


def test_a_phone_refuses_a_program_on_the_other_executorch_delegate(portable_pte: Path,
                                                                    tmp_path: Path) -> None:
    """As the simulator does: a program without XNNPACK calls is not measured under
    et-xnnpack's label (the .pte's bytes say), before any runner is asked for."""
    from quantlab.agents.android.executorch import supports_pte
    from quantlab.harness.records import DeviceInfo

    phone = DeviceInfo("p1", "android", "phone", abi="arm64-v8a")
    ok, why = supports_pte(phone, Job(model_ref(portable_pte), "p1", "android", "et-xnnpack",
                                      1, Settings()))
    assert not ok and why == ("portable.pte has no XNNPACK delegate call (portable kernels "
                              "only): it runs on et-portable")


def test_numerics_of_a_pte_through_the_runners_input_and_output_files(
        phone: FakeAndroidDevice, pte_with_source: Path, small_pte: Path,
        tmp_path: Path) -> None:
    """--numerics on a phone: the fixed inputs made on this host go to executor_runner as raw
    --inputs files, its --output_file files come back and are compared with the PyTorch
    model the program was lowered from; a .pte with no float reference says why not."""
    from quantlab.android_runner import provision
    from quantlab.harness.numerics import verdict

    provision.provision_binary(_elf_aarch64(tmp_path / "executor_runner"), "arm64-v8a",
                               runner="executor_runner", version="1.5.1")
    agent = AndroidAgent()
    device = next(d for d in agent.discover() if d.id == phone.serial)
    settings = Settings(repeats=1, warmup=1, iterations=2, numerics=True)
    raw = agent.run(device, Job(model_ref(pte_with_source), device.id, "android",
                                "et-xnnpack", 1, settings), lambda phase, fraction: None)
    assert raw.status == "ok", raw.error
    num = raw.numerics
    assert num["reference"]["model"] == "net.pt2" and "PyTorch" in num["reference"]["kernels"]
    assert num["sqnr_db"] > 60 and num["values"] == 4 and num["nonfinite"] == 0
    assert "--output_file" in num["computed_by"]
    assert verdict(num)[0] is True
    [call] = [c for c in phone.executor_runner_calls if any("--output_file" in a for a in c)]
    assert any(a.startswith("--inputs=/data/local/tmp/quantlab/out/") for a in call)
    assert not any("numerics" in w for w in raw.warnings)

    bare = agent.run(device, Job(model_ref(small_pte), device.id, "android", "et-xnnpack", 1,
                                 settings), lambda phase, fraction: None)
    assert bare.status == "ok" and bare.numerics["unchecked"] is True
    assert bare.numerics["error"].startswith("net.pte has no manifest.json beside it")


def test_inputs_feed_the_timed_launches_of_a_pte_job(phone: FakeAndroidDevice, small_pte: Path,
                                                     tmp_path: Path) -> None:
    """--inputs on a phone: the arrays go to executor_runner as raw --inputs files for every
    timed launch (before, the job was refused); one the program cannot take fails the job
    naming its shape, before any launch."""
    import numpy as np

    from quantlab.android_runner import provision

    provision.provision_binary(_elf_aarch64(tmp_path / "executor_runner"), "arm64-v8a",
                               runner="executor_runner", version="1.5.1")
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, x=np.ones((2, 3, 8, 8), np.float32))
    np.savez(bad, x=np.ones((1, 3, 5, 5), np.float32))
    agent = AndroidAgent()
    device = next(d for d in agent.discover() if d.id == phone.serial)

    def job(inputs: Path) -> Job:
        return Job(model_ref(small_pte), device.id, "android", "et-xnnpack", 1,
                   Settings(repeats=2, warmup=1, iterations=2, inputs=str(inputs)))

    assert agent.supports(device, job(good)) == (True, "")
    raw = agent.run(device, job(good), lambda phase, fraction: None)
    assert raw.status == "ok", raw.error
    calls = phone.executor_runner_calls
    assert len(calls) == 2 and all(
        sum(a.startswith("--inputs=/data/local/tmp/quantlab/out/") for a in c) == 1
        for c in calls)
    failed = agent.run(device, job(bad), lambda phase, fraction: None)
    assert failed.status == "failed" and len(phone.executor_runner_calls) == 2
    assert failed.error == ("--inputs bad.npz: array 'x' has shape (1, 3, 5, 5), the program "
                            "takes (1, 3, 8, 8)")
