"""Accuracy on a Linux gateway (issue 22) against a real OpenSSH server on loopback: the set
goes into the gateway's content-addressed cache once, one runner process there runs every
sample on each delegate, and the outputs come back in one SFTP get."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import quantize_fixtures as qf
from conftest import require_tool
from sshd import SSHD, SshServer

from quantlab.agents.linux.agent import SshAgent
from quantlab.agents.linux.outputs import RUNNER
from quantlab.harness.device_eval import evaluate_on_devices
from quantlab.harness.plan import discover

digits = qf.digits


@pytest.fixture(scope="module")
def gateway() -> Iterator[Path]:
    """A hosts file with one ready gateway (this machine, this interpreter)."""
    require_tool("sshd", "install Debian's openssh-server", found=SSHD.exists())
    server = SshServer().start()
    try:
        path = server.dir / "hosts.toml"
        path.write_text(server.hosts_entry("gw", python=sys.executable))
        yield path
    finally:
        server.stop()


variants = qf.digits_fp32_int8  # fp32 and int8 of the digits model (session-wide)


def test_gateway_rows_with_the_set_sent_once_per_host(gateway: Path, variants: Path,
                                                      digits: tuple[Path, Path]) -> None:
    fleet = discover(agents=[SshAgent(hosts_file=gateway)])
    report = evaluate_on_devices(fleet, [fleet.get("ssh:gw")], variants, digits[1],
                                 delegates=["xnnpack", "cpu"], samples=80)
    rows = report["rows"]
    assert [(r["scheme"], r["delegate"]) for r in rows] == [
        ("fp32", "xnnpack"), ("fp32", "cpu"), ("int8", "xnnpack"), ("int8", "cpu")]
    for r in rows:
        assert r["error"] is None, r["error"]
        assert r["device"] == "ssh:gw" and r["samples"] == 80 and 0.5 < r["value"] <= 1.0
        assert r["run"]["runner"] == RUNNER and "python" in r["run"]["runner_detail"]
        assert r["runtime_version"]  # the gateway's ai-edge-litert
        # the gateway is this host's LiteRT: at most a sample of 80 changes its class
        assert abs(r["vs_host"]["drop"]) <= 1 / 80 + 1e-9
    # the set is pushed into the gateway's cache once; every row pulls its outputs once
    assert [r["run"]["transfers"] for r in rows] == [{"push": 1, "pull": 1}] + \
        [{"push": 0, "pull": 1}] * 3
