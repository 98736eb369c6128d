"""``culprit`` on an iPhone's TFLite job (issue 23) through the fake iPhone: the probes go
through the runner app's batch job (the outputs capability of issue 22), the same code as a
phone's or a gateway's; the fake runs host LiteRT, so no op is named."""

from __future__ import annotations

from pathlib import Path

from fakes.iphone import FakeIphoneBackend
from test_culprit import NOISY
from tflite_build import chain_model

from quantlab.agents.ios.agent import IosAgent
from quantlab.harness.culprit import find
from quantlab.harness.device_culprit import device_launcher
from quantlab.harness.plan import discover


def test_culprit_on_an_iphone_tflite_job_names_no_culprit(tmp_path: Path) -> None:
    model = chain_model(tmp_path / "noisy.tflite", NOISY).read_bytes()
    phone = FakeIphoneBackend(tmp_path / "phone")
    runs = []
    try:
        fleet = discover(agents=[IosAgent(backend=phone, cooldown_wait_s=0.0)])
        device = fleet.devices[0]
        with device_launcher(fleet.agent_for(device.id), device, "tflite-cpu") as launch:
            def counted(data: bytes, label: str):  # type: ignore[no-untyped-def]
                runs.append(launch(data, label))
                return runs[-1]

            r = find(model, counted)
    finally:
        phone.kill_all()
    assert r["first_failing"] is None and "no culprit" in r["verdict"], r["verdict"]
    assert r["launches"] == 2 and len(r["ops"]) == len(NOISY)
    assert all(row["cosine"] > 0.9999 for row in r["ops"])
    assert [run.extra["run"]["launches"] for run in runs] == [1, 1]  # one app job per probe
