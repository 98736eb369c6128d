"""``quantlab culprit VARIANT --device PHONE`` on the loopback phone through the real adb server
(issue 23): each probe runs on the phone's delegate through the outputs capability (issue 22)
and on the host's reference kernels on the same inputs. The phone's benchmark_model stand-in
computes with host LiteRT; a profile's ``wrong-kernel:LOGISTIC=NEG`` fault makes its
``xnnpack`` delegate compute LOGISTIC with NEG's kernel (one op type wrong), so culprit must
name that op, by a wide margin, and a clean delegate (``cpu``) must name none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.adbd import FakeAndroidDevice, load_profile
from quantize_fixtures import quantlab
from test_android_adb import adb_port, agent, cache, connected_phone  # noqa: F401  (fixtures)
from test_culprit import NOISY
from tflite_build import chain_model

from quantlab.harness.culprit import find
from quantlab.harness.device_culprit import device_launcher
from quantlab.harness.plan import discover


@pytest.fixture()
def phone(adb_port: int, tmp_path: Path) -> Iterator[FakeAndroidDevice]:  # noqa: F811
    """The Pixel 5 loopback phone whose ``xnnpack`` computes LOGISTIC with NEG's kernel."""
    profile = load_profile("pixel5_snapdragon")
    profile["numerics_faults"] = {"xnnpack": "wrong-kernel:LOGISTIC=NEG"}
    with connected_phone(adb_port, profile, tmp_path / "pixel") as dev:
        yield dev


def test_culprit_on_a_phone_names_the_op_its_delegate_computes_wrong(
        phone: FakeAndroidDevice, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    model = chain_model(tmp_path / "noisy.tflite", NOISY)  # op 4 is the one LOGISTIC
    calls = len(phone.benchmark_calls)
    proc = quantlab("culprit", str(model), "--device", phone.serial, "--delegate", "xnnpack",
                    "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["device"] == phone.serial and r["mode"] == "all-in-one"
    assert r["first_failing"]["index"] == 4 and r["first_failing"]["op_type"] == "LOGISTIC"
    assert r["largest"]["index"] == 4
    rows = {row["index"]: row for row in r["ops"]}
    assert all(rows[i]["cosine"] > 0.9999 for i in range(4))  # before it: the reference's
    assert rows[4]["cosine"] < 0  # NEG against LOGISTIC of positive inputs
    assert rows[4]["added"] > 10 * max(row["added"] for i, row in rows.items() if i != 4)
    # two probes (the model, every tensor), each one launch on the phone, counted
    assert r["launches"] == 2 and len(phone.benchmark_calls) - calls == 2
    human = quantlab("culprit", str(model), "--device", phone.serial, "--delegate", "xnnpack")
    assert human.returncode == 0, human.stderr
    assert "LOGISTIC#4" in human.stdout and "2 launches" in human.stdout


def test_bisection_on_a_phone_names_the_same_op_within_its_launch_bound(
        phone: FakeAndroidDevice, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    """``--bisect`` on the phone: models cut after one op, each one outputs call, within
    2·⌈log2 ops⌉ + 2 launches, and the same LOGISTIC named."""
    model = chain_model(tmp_path / "noisy.tflite", NOISY).read_bytes()
    fleet = discover(agents=[agent()])
    device = fleet.get(phone.serial)
    calls = len(phone.benchmark_calls)
    with device_launcher(fleet.agent_for(device.id), device, "xnnpack") as launch:
        r = find(model, launch, force_bisection=True)
    assert r["mode"] == "bisection"
    assert r["first_failing"]["index"] == 4 and r["largest"]["index"] == 4, r["verdict"]
    assert r["launches"] == len(phone.benchmark_calls) - calls <= r["launch_bound"]


def test_a_clean_delegate_on_a_phone_names_no_culprit(
        phone: FakeAndroidDevice, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    """The same model on the phone's ``cpu`` (no fault): no op crosses the bound; each probe
    is one outputs call that pushes the fixed inputs once and pulls its outputs once."""
    model = chain_model(tmp_path / "noisy.tflite", NOISY).read_bytes()
    fleet = discover(agents=[agent()])
    device = fleet.get(phone.serial)
    runs = []

    with device_launcher(fleet.agent_for(device.id), device, "cpu") as launch:
        def counted(data: bytes, label: str):  # type: ignore[no-untyped-def]
            run = launch(data, label)
            runs.append(run)
            return run

        r = find(model, counted)
    assert r["first_failing"] is None and r["largest"] is None, r["verdict"]
    assert "no culprit" in r["verdict"] and r["launches"] == 2 and len(r["ops"]) == len(NOISY)
    assert all(row["cosine"] > 0.9999 for row in r["ops"])
    assert [run.extra["run"]["transfers"] for run in runs] == [{"push": 1, "pull": 1}] * 2
    assert [run.extra["run"]["launches"] for run in runs] == [1, 1]


def test_culprit_refuses_a_phone_delegate_that_writes_no_outputs(
        phone: FakeAndroidDevice, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    model = chain_model(tmp_path / "m.tflite", NOISY)
    proc = quantlab("culprit", str(model), "--device", phone.serial, "--delegate", "npu")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert phone.serial in proc.stderr and "npu" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_outputs_that_come_back_unreadable_fail_the_probe_in_one_line(tmp_path: Path) -> None:
    """An agent whose outputs file is not an .npz: the launch fails with the reason, as a
    UserError (one line, exit 2 at the CLI), not a traceback."""
    from quantlab.agents.outputs import OutputsFacts
    from quantlab.harness.errors import UserError
    from quantlab.harness.records import DeviceInfo

    class Garbled:
        def outputs(self, device, job, inputs, out, progress):  # type: ignore[no-untyped-def]
            out.write_bytes(b"not an npz")
            return OutputsFacts(samples=1, runner="garbled", runtime="litert",
                                runtime_version=None, delegate=job.delegate, launches=1)

    model = chain_model(tmp_path / "m.tflite", NOISY).read_bytes()
    device = DeviceInfo(id="garbled", platform="android", name="garbled")
    with device_launcher(Garbled(), device, "xnnpack") as launch, \
            pytest.raises(UserError, match="model launch failed: the outputs that came back "
                          "cannot be read"):
        find(model, launch)
