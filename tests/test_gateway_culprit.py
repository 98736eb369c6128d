"""``quantlab culprit VARIANT --device ssh:GW`` against a real OpenSSH server on loopback (issue
23): the probes go through the gateway's outputs capability (issue 22), the same code as a
phone's; the gateway is this host's LiteRT, so XNNPACK there names no culprit, and the
placement its runner reports reaches every row."""

from __future__ import annotations

from pathlib import Path

from test_culprit import NOISY
from test_gateway_outputs import gateway  # noqa: F401  (fixture)
from tflite_build import chain_model

from quantlab.agents.linux.agent import SshAgent
from quantlab.harness.culprit import find
from quantlab.harness.device_culprit import device_launcher
from quantlab.harness.plan import discover


def test_culprit_on_a_gateway_names_no_culprit_with_placement(
        gateway: Path, tmp_path: Path) -> None:  # noqa: F811
    model = chain_model(tmp_path / "noisy.tflite", NOISY).read_bytes()
    fleet = discover(agents=[SshAgent(hosts_file=gateway)])
    device = fleet.get("ssh:gw")
    with device_launcher(fleet.agent_for(device.id), device, "xnnpack") as launch:
        r = find(model, launch)
    assert r["first_failing"] is None and "no culprit" in r["verdict"], r["verdict"]
    assert r["mode"] == "all-in-one" and r["launches"] == 2 and len(r["ops"]) == len(NOISY)
    assert all(row["cosine"] > 0.9999 for row in r["ops"])
    assert all(row["placement"].startswith("XNNPACK") for row in r["ops"]), r["ops"]
