"""Plan and dispatch with a scripted agent: skips with reasons, retries, per-device account."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_agent import ScriptedAgent

from harness.dispatch import Dispatcher
from harness.environment import new_run
from harness.errors import UnknownDeviceError
from harness.plan import build_plan, discover, select_devices
from harness.records import ModelRef, Settings
from harness.store import Store

MODEL = ModelRef(path="/m/a.tflite", sha256="c" * 64, size_bytes=10, format="tflite")


def plan_for(agent: ScriptedAgent, delegates: list[str], threads: list[int] | None = None):
    fleet = discover(agents=[agent])
    devices = select_devices(fleet, ["all"])
    plan = build_plan([MODEL], devices, fleet, delegates, threads or [1], Settings(repeats=2))
    return fleet, plan


def test_plan_is_cross_product_minus_unsupported() -> None:
    _fleet, plan = plan_for(ScriptedAgent(), ["cpu", "fast"], [1, 2])
    assert len(plan.jobs) == 6  # a: cpu×2, fast×2; b: cpu×2
    assert [s.reason for s in plan.skipped] == ["fast: not on this fake device"] * 2
    assert len({j.job_id for j in plan.jobs}) == 6


def test_unknown_device_and_delegate() -> None:
    fleet = discover(agents=[ScriptedAgent()])
    with pytest.raises(UnknownDeviceError, match="--device nope: no such device"):
        select_devices(fleet, ["nope"])
    with pytest.raises(UnknownDeviceError, match="--delegate warp: unknown delegate"):
        build_plan([MODEL], list(fleet.devices), fleet, ["warp"], [1], Settings())


def run_all(tmp_path: Path, agent: ScriptedAgent, **kw):
    fleet, plan = plan_for(agent, ["cpu"])
    store = Store.open(str(tmp_path))
    run = new_run(Settings())
    store.create_run(run, plan, fleet.devices)
    accounts = Dispatcher(store, run.run_id, fleet, **kw).run(list(plan.jobs))
    return store, run, {a.device_id: a for a in accounts}


def test_all_jobs_stored(tmp_path: Path) -> None:
    store, run, accounts = run_all(tmp_path, ScriptedAgent())
    entries = store.load_run(run.run_id).entries
    assert [e.status for e in entries] == ["ok", "ok"]
    assert accounts["fake-a"].ok == 1 and accounts["fake-b"].ok == 1


def test_disconnect_is_retried_and_others_carry_on(tmp_path: Path) -> None:
    agent = ScriptedAgent(faults={"fake-a": 1})
    store, run, accounts = run_all(tmp_path, agent)
    entries = {e.job.device_id: e for e in store.load_run(run.run_id).entries}
    assert entries["fake-a"].status == "ok" and entries["fake-a"].attempts == 2
    assert entries["fake-b"].status == "ok" and entries["fake-b"].attempts == 1
    assert accounts["fake-a"].retries == 1


def test_device_that_never_returns_fails_with_reason(tmp_path: Path) -> None:
    agent = ScriptedAgent(faults={"fake-a": 5}, comes_back=False)
    store, run, _ = run_all(tmp_path, agent, retry_timeout_s=1)
    entries = {e.job.device_id: e for e in store.load_run(run.run_id).entries}
    assert entries["fake-a"].status == "failed"
    assert "did not come back within 1s" in (entries["fake-a"].error or "")
    assert entries["fake-b"].status == "ok"


def test_retries_are_bounded(tmp_path: Path) -> None:
    agent = ScriptedAgent(faults={"fake-a": 10}, comes_back=True)
    store, run, _ = run_all(tmp_path, agent, max_attempts=3)
    entry = next(e for e in store.load_run(run.run_id).entries if e.job.device_id == "fake-a")
    assert entry.status == "failed" and entry.attempts == 3 and "gave up" in (entry.error or "")
