"""A real lab: a head and two lab hosts (``quantlab lab head/join``) on loopback, token + mTLS.

The controller is this test process (harness/lab/agent.py + the ordinary dispatcher and store).
One test crashes a lab host mid-run and checks that its jobs complete once it
rejoins, with no duplicate and nothing lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantlab.harness.records import ModelRef, Settings

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")

from lab_cluster import LOOPBACK, ROOT, Lab  # noqa: E402
from pgserver import PgServer, running_server  # noqa: E402


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for this module."""
    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh empty PostgreSQL database."""
    return pg_server.new_database()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    the_lab = Lab(tls=True, sleep_s=0.3, devices_per_host=2)
    saved = dict(os.environ)
    try:
        the_lab.start_head(wait=False)  # lab hosts wait for the head themselves
        # a lab host with the wrong token is refused (Ray takes ~20 s to give up: run it
        # alongside the rest and look at its outcome at the end)
        bad = the_lab.dir / "bad-token"
        bad.write_text("0" * 64)
        bad.chmod(0o600)
        the_lab.start_host("intruder", wait=False, token=bad)
        the_lab.count_file("nodeB").write_text("2")
        the_lab.start_host("nodeA", wait=False)
        the_lab.start_host("nodeB", wait=False)
        the_lab.members["head"].wait_for("lab head running", 90)
        the_lab.members["nodeA"].wait_for("joined", 120)
        the_lab.members["nodeB"].wait_for("joined", 120)
        the_lab.sec.apply()
        yield the_lab
    finally:
        ray.shutdown()
        the_lab.close()
        os.environ.clear()  # the lab's token (and TLS) settings stay with this module
        os.environ.update(saved)


@pytest.fixture(scope="module")
def model(lab: Lab) -> ModelRef:
    data = os.urandom(4096)
    path = lab.dir / "tiny.tflite"
    path.write_bytes(data)
    return ModelRef(str(path), hashlib.sha256(data).hexdigest(), len(data), "tflite")


def _fleet(lab: Lab):  # type: ignore[no-untyped-def]
    from quantlab.harness.lab.agent import lab_agents
    from quantlab.harness.plan import discover

    return discover(agents=lab_agents(lab.address, lab.sec, node_ip=LOOPBACK))


def _run(lab: Lab, tmp_path: Path, model: ModelRef, threads: list[int],
         during=None, retry_timeout_s: float = 90.0):  # type: ignore[no-untyped-def]
    from quantlab.harness.dispatch import Dispatcher
    from quantlab.harness.environment import new_run
    from quantlab.harness.plan import build_plan
    from quantlab.harness.store import Store

    fleet = _fleet(lab)
    plan = build_plan([model], list(fleet.devices), fleet, ["cpu"], threads, Settings(repeats=1))
    store = Store.open(str(tmp_path))
    run = new_run(Settings(repeats=1))
    store.create_run(run, plan, fleet.devices)
    dispatcher = Dispatcher(store, run.run_id, fleet, retry_timeout_s=retry_timeout_s)
    accounts: list = []
    worker = threading.Thread(target=lambda: accounts.extend(dispatcher.run(list(plan.jobs))))
    worker.start()
    if during is not None:
        during()
    worker.join(180)
    assert not worker.is_alive(), "the run did not finish"
    return store, run.run_id, plan, {a.device_id: a for a in accounts}


def test_devices_of_both_hosts_are_planned_like_local_ones(lab: Lab, model: ModelRef) -> None:
    from quantlab.harness.plan import build_plan

    fleet = _fleet(lab)
    hosts = {d.id: d.host for d in fleet.devices}
    assert hosts == {"slp-1@nodeA": "nodeA", "slp-2@nodeA": "nodeA",
                     "slp-1@nodeB": "nodeB", "slp-2@nodeB": "nodeB"}
    plan = build_plan([model], list(fleet.devices), fleet, ["slow"], [1, 2], Settings())
    # the device's own agent answered supports() on its host
    assert len(plan.jobs) == 4
    assert {s.reason for s in plan.skipped} == {"slow: single thread only"}


def test_jobs_run_on_every_host_and_model_bytes_travel_once_per_host(
        lab: Lab, model: ModelRef, tmp_path: Path) -> None:
    store, run_id, _, accounts = _run(lab, tmp_path, model, [1, 2, 3])
    record = store.load_run(run_id)
    assert [e.status for e in record.entries] == ["ok"] * 12
    for e in record.entries:
        assert e.raw is not None and e.raw.runner["device"] == e.job.device_id.split("@")[0]
        assert e.raw.init_ms == model.size_bytes  # the agent read the file sent to its host
    assert {a.host for a in accounts.values()} == {"nodeA", "nodeB"}
    assert all(a.ok == 3 and a.retries == 0 for a in accounts.values())
    for host in ("nodeA", "nodeB"):
        cached = lab.dir / f"{host}-cache" / model.sha256 / "tiny.tflite"
        assert cached.read_bytes() == Path(model.path).read_bytes()


def test_lab_status_shows_hosts_devices_and_health(lab: Lab) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "quantlab", "lab", "status", "--address", lab.address,
         "--node-ip", LOOPBACK, "--json"],
        env=lab.env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    alive = {n["host"]: n["devices"] for n in data["nodes"] if n["alive"] and n["host"]}
    assert alive["nodeA"] == ["slp-1@nodeA", "slp-2@nodeA"]
    assert alive["nodeB"] == ["slp-1@nodeB", "slp-2@nodeB"]
    devices = {d["device_id"]: d for d in data["devices"]}
    assert set(devices) >= {"slp-1@nodeA", "slp-2@nodeA", "slp-1@nodeB", "slp-2@nodeB"}
    assert all(devices[d]["health"] == "idle" for d in devices)
    assert devices["slp-1@nodeA"]["kind"] == "sleep"


def test_serve_shows_the_lab_live(lab: Lab, tmp_path: Path) -> None:
    """quantlab serve --cluster: the lab page's data is the lab as it is now (hosts up,
    each device's state and its live health from its actor)."""
    import httpx
    from fixtures.serve.server import serving

    from quantlab.harness.store import Store

    Store.open(str(tmp_path)).close()  # an empty store: every device comes from the lab
    with serving("--cluster", lab.address, "--node-ip", LOOPBACK, "--results", str(tmp_path),
                 env=lab.env(), timeout_s=120) as info:
        data = httpx.get(f"{info['url']}api/lab", timeout=60).json()
    alive = {n["host"] for n in data["hosts"] if n["alive"]}
    assert {"nodeA", "nodeB"} <= alive and data["cluster_error"] is None
    devices = {d["device_id"]: d for d in data["devices"]}
    for name in ("slp-1@nodeA", "slp-2@nodeA", "slp-1@nodeB", "slp-2@nodeB"):
        assert devices[name]["state"] == "idle" and devices[name]["runs"] == 0
        assert devices[name]["battery_pct"] == 100  # the agent's health, asked just now
        assert devices[name]["health_source"] == "live"


def test_crashed_host_rejoins_and_its_jobs_complete_once(
        lab: Lab, model: ModelRef, tmp_path: Path) -> None:
    crashed_at: list[float] = []

    def crash_and_rejoin() -> None:
        time.sleep(0.8)  # nodeA's devices are mid-job
        lab.kill("nodeA")
        crashed_at.append(time.monotonic())
        lab.start_host("nodeA")  # the host reboots

    store, run_id, plan, accounts = _run(lab, tmp_path, model, [1, 2, 3, 4, 5],
                                         during=crash_and_rejoin)
    record = store.load_run(run_id)
    assert len(record.entries) == len(plan.jobs) == 20
    assert all(e.status == "ok" for e in record.entries), [e.error for e in record.entries]
    results = store.table_rows("results", run_id)
    assert sorted(r["job_id"] for r in results) == sorted(j.job_id for j in plan.jobs)
    for device_id in ("slp-1@nodeA", "slp-2@nodeA"):
        a = accounts[device_id]
        assert a.ok == 5 and a.retries >= 1 and a.faults, a
        assert "outcome unknown" in a.faults[0]
    for device_id in ("slp-1@nodeB", "slp-2@nodeB"):
        assert accounts[device_id].ok == 5 and accounts[device_id].retries == 0
    retried = [e for e in record.entries if e.attempts > 1]
    assert retried and all(e.job.device_id.endswith("@nodeA") for e in retried)


def _wait_devices(host: str, want: list[str], timeout_s: float = 60.0) -> dict:  # type: ignore[type-arg]
    from quantlab.harness.lab.status import device_actor_names, lab_status

    deadline = time.monotonic() + timeout_s
    while True:
        data = lab_status()
        names = sorted(n.removeprefix("device:") for n in device_actor_names()
                       if n.endswith(f"@{host}"))
        idle = sorted(d["device_id"] for d in data["devices"]
                      if d["device_id"].endswith(f"@{host}") and d["health"] == "idle")
        if names == want and idle == want:
            return data
        assert time.monotonic() < deadline, (names, idle, data)
        time.sleep(0.5)


def test_plugged_and_unplugged_devices_are_picked_up(lab: Lab) -> None:
    nodeB = lab.members["nodeB"]
    lab.count_file("nodeB").write_text("3")  # a third device is plugged in
    data = _wait_devices("nodeB", ["slp-1@nodeB", "slp-2@nodeB", "slp-3@nodeB"])
    node = [n for n in data["nodes"] if n["alive"] and n["host"] == "nodeB"]
    assert node and node[0]["devices"] == ["slp-1@nodeB", "slp-2@nodeB", "slp-3@nodeB"]
    lab.count_file("nodeB").write_text("1")  # two are unplugged
    _wait_devices("nodeB", ["slp-1@nodeB"])
    assert any("unregistered slp-3@nodeB" in ln for ln in nodeB.lines)
    assert nodeB.proc.poll() is None
    lab.count_file("nodeB").write_text("2")  # back as the other tests expect it
    _wait_devices("nodeB", ["slp-1@nodeB", "slp-2@nodeB"])


def test_host_without_the_token_is_refused(lab: Lab) -> None:
    intruder = lab.members["intruder"]
    intruder.proc.wait(90)
    intruder.ready.wait(5)
    output = "\n".join(intruder.lines)
    assert intruder.proc.returncode == 2, output
    assert "AuthenticationError" in output or "InvalidAuthToken" in output, output
    assert "registered" not in output


def test_bench_cli_on_the_lab_stores_into_postgresql(lab: Lab, pg_url: str, cnn_tflite: Path,
                                                      tmp_path: Path) -> None:
    from quantlab.harness.store import Store

    model = cnn_tflite
    for host in ("nodeA", "nodeB"):  # both hosts with both devices, whatever ran before
        _wait_devices(host, [f"slp-1@{host}", f"slp-2@{host}"])
    env = lab.env(QUANTLAB_LAB_NODE_IP=LOOPBACK, QUANTLAB_CLUSTER=lab.address)
    out = subprocess.run(
        [sys.executable, "-m", "quantlab", "bench", str(model), "--device", "all",
         "--threads", "1,2", "--repeats", "1", "--results", pg_url, "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    hosts = {d["device_id"]: d["host"] for d in data["devices"]}
    assert hosts == {"slp-1@nodeA": "nodeA", "slp-2@nodeA": "nodeA",
                     "slp-1@nodeB": "nodeB", "slp-2@nodeB": "nodeB"}
    assert all(d["ok"] == 2 for d in data["devices"])
    shown = subprocess.run(
        [sys.executable, "-m", "quantlab", "show", "latest", "--results", pg_url,
         "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["results"]) == 8
    assert Store.open(pg_url).list_runs()[0]["jobs"] == {"ok": 8}
