"""Accuracy where the model runs, through the lab (issue 22): ``evaluate --device …
--cluster ADDR`` reaches a lab host's simulator through its device actor; the evaluation
set goes to the host once (its cache keeps it by content) however many variants and
delegates run there, and the rows come back as a local simulator's do."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import quantize_fixtures as qf

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")

from lab_cluster import LOOPBACK, Lab  # noqa: E402

digits = qf.digits
HOSTS = ("nodeS", "nodeT")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A head and two lab hosts, each offering its simulator (token, no TLS)."""
    the_lab = Lab(tls=False)
    saved = dict(os.environ)
    try:
        the_lab.start_head(wait=False)
        for host in HOSTS:
            argv = the_lab.join_argv(host)
            at = argv.index("lab_agents:SleepAgent")
            argv[at] = "sim"
            while "--agent-option" in argv:  # the sleep agent's options
                i = argv.index("--agent-option")
                del argv[i:i + 2]
            the_lab._spawn(host, argv, the_lab.env(
                QUANTLAB_LAB_CACHE=str(the_lab.dir / f"{host}-cache")))
        the_lab.members["head"].wait_for("lab head running", 90)
        for host in HOSTS:
            the_lab.members[host].wait_for("joined", 120)
        the_lab.sec.apply()
        yield the_lab
    finally:
        ray.shutdown()
        the_lab.close()
        os.environ.clear()  # the lab's token (and TLS) settings stay with this module
        os.environ.update(saved)


variants = qf.digits_fp32_int8  # fp32 and int8 of the digits model (session-wide)


def test_lab_rows_match_local_ones_and_the_set_travels_once_per_host(
        lab: Lab, variants: Path, digits: tuple[Path, Path]) -> None:
    from quantlab.harness.device_eval import evaluate_on_devices
    from quantlab.harness.lab.agent import lab_agents
    from quantlab.harness.plan import discover

    fleet = discover(agents=lab_agents(lab.address, lab.sec, node_ip=LOOPBACK))
    devices = list(fleet.devices)
    assert sorted(d.host for d in devices) == list(HOSTS)
    remote = evaluate_on_devices(fleet, devices, variants, digits[1],
                                 delegates=["xnnpack", "cpu"], samples=60)
    local_fleet = discover(["sim"])
    local = evaluate_on_devices(local_fleet, list(local_fleet.devices), variants, digits[1],
                                delegates=["xnnpack", "cpu"], samples=60)
    rows = {(r["device"], r["scheme"], r["delegate"]): r for r in remote["rows"]}
    here = {(r["scheme"], r["delegate"]): r for r in local["rows"]}
    assert len(here) == 4 and len(rows) == 8
    assert {k[1:] for k in rows} == set(here) and {k[0] for k in rows} == {d.id for d in devices}
    for (_, *rest), row in rows.items():
        key = tuple(rest)
        assert row["error"] is None, row["error"]
        assert row["samples"] == 60
        # the same runner on the same CPU: the same answers as this host's simulator
        assert row["value"] == here[key]["value"]
        assert (row["gate"]["passed"], row["gate"]["drop"]) == (here[key]["gate"]["passed"],
                                                                here[key]["gate"]["drop"])
        assert row["sample_set"] == here[key]["sample_set"]
    # the set went to each host once, with its first (variant, delegate); never again
    for device in devices:
        sent = [r["run"]["transfers"]["lab_inputs"] for r in remote["rows"]
                if r["device"] == device.id]
        assert sent == [1, 0, 0, 0], (device.host, sent)
    for host in HOSTS:
        cached = [p for p in (lab.dir / f"{host}-cache").rglob("*.npz")]
        assert len(cached) == 1 and os.path.getsize(cached[0]) > 0
    # the CLI: evaluate --device ID --cluster ADDR gives the same rows
    import json
    import subprocess
    import sys

    from lab_cluster import ROOT

    r = subprocess.run([sys.executable, "-m", "quantlab", "evaluate", str(variants), "--data",
                        str(digits[1]), "--device", devices[0].id, "--delegate", "cpu",
                        "--samples", "60", "--cluster", lab.address, "--no-store", "--json"],
                       cwd=ROOT, env=lab.env(QUANTLAB_LAB_NODE_IP=LOOPBACK), capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    cli = {(x["scheme"], x["delegate"]): x for x in json.loads(r.stdout)["rows"]}
    assert {k: v["value"] for k, v in cli.items()} == \
        {k: v["value"] for k, v in here.items() if k[1] == "cpu"}


def test_one_process_reaches_a_second_lab_with_its_own_token_and_tls(lab: Lab) -> None:
    """A driver process that worked with one lab (here one with TLS, its own token) and then
    connects to another (the Python API, a notebook, a test session) reaches the second: Ray
    keeps the first token it read and the TLS switch in the environment unless told."""
    from quantlab.harness.lab.ray_processes import connect

    other = Lab(tls=True)
    try:
        other.start_head(wait=True)
        connect(other.address, other.sec, LOOPBACK)
        ray.shutdown()
    finally:
        other.close()
    try:
        connect(lab.address, lab.sec, LOOPBACK)
        hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
        assert LOOPBACK in hosts
    finally:
        ray.shutdown()
