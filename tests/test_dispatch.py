"""Plan and dispatch with a scripted agent: skips with reasons, retries, per-device account."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_agent import ScriptedAgent

from quantlab.harness.dispatch import Dispatcher
from quantlab.harness.environment import new_run
from quantlab.harness.errors import DeviceUnusable, UnknownDeviceError, UserError
from quantlab.harness.plan import build_plan, discover, select_devices
from quantlab.harness.records import DeviceInfo, Job, ModelRef, Settings
from quantlab.harness.store import JobEntry, Store

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


class Notes:
    """A reporter that keeps what the dispatcher says."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.finished: list[tuple[str, str, str | None]] = []

    def job_started(self, job: Job, attempt: int) -> None:
        pass

    def job_progress(self, job: Job, phase: str, fraction: float | None) -> None:
        pass

    def job_finished(self, job: Job, status: str, error: str | None) -> None:
        self.finished.append((job.device_id, status, error))

    def note(self, message: str) -> None:
        self.notes.append(message)


def run_all(tmp_path: Path, agent: ScriptedAgent, delegates: tuple[str, ...] = ("cpu",),
            threads: tuple[int, ...] = (1,), **kw):
    fleet, plan = plan_for(agent, list(delegates), list(threads))
    store = Store.open(str(tmp_path))
    run = new_run(Settings())
    store.create_run(run, plan, fleet.devices)
    accounts = Dispatcher(store, run.run_id, fleet, **kw).run(list(plan.jobs))
    return store, run, {a.device_id: a for a in accounts}


def by_device(store: Store, run_id: str, device_id: str) -> list[JobEntry]:
    return [e for e in store.load_run(run_id).entries if e.job.device_id == device_id]


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


# ------------------------------------------------------------------ errors an agent names


def test_user_error_from_an_agent_is_stored_as_its_message(tmp_path: Path) -> None:
    notes = Notes()
    agent = ScriptedAgent(errors={"fake-a": UserError("bad input shape", hint="re-export it")})
    store, run, accounts = run_all(tmp_path, agent, threads=(1, 2), reporter=notes)
    failed = by_device(store, run.run_id, "fake-a")
    assert [e.status for e in failed] == ["failed", "failed"]  # not device-scoped: each tried
    assert {e.error for e in failed} == {"bad input shape: re-export it"}
    assert not any("internal error" in (e.error or "") for e in failed)
    assert not any("Traceback" in n for n in notes.notes)
    assert [e.status for e in by_device(store, run.run_id, "fake-b")] == ["ok", "ok"]
    assert accounts["fake-a"].failed == 2 and accounts["fake-a"].skipped == 0


def test_device_unusable_fails_one_job_and_skips_the_rest_of_that_device(tmp_path: Path) -> None:
    notes = Notes()
    error = DeviceUnusable("fake-a", "BenchRunner is not installed on this iPhone",
                           hint="quantlab ios install PATH.ipa")
    agent = ScriptedAgent(errors={"fake-a": error})
    store, run, accounts = run_all(tmp_path, agent, threads=(1, 2, 3), reporter=notes)
    entries = by_device(store, run.run_id, "fake-a")
    line = "BenchRunner is not installed on this iPhone: quantlab ios install PATH.ipa"
    assert [e.status for e in entries] == ["failed", "skipped", "skipped"]
    assert entries[0].error == line
    assert all(e.error == f"not run: {line}" for e in entries[1:])
    assert all(e.attempts == 0 for e in entries[1:])
    assert sum(1 for d, _ in agent.calls if d == "fake-a") == 1  # never tried again
    assert [e.status for e in by_device(store, run.run_id, "fake-b")] == ["ok"] * 3
    account = accounts["fake-a"]
    assert (account.ok, account.failed, account.skipped) == (0, 1, 2)
    assert account.as_dict()["skipped"] == 2
    assert ("fake-a", "skipped", f"not run: {line}") in notes.finished
    assert not any("Traceback" in n for n in notes.notes)


def test_accounts_line_counts_skipped_jobs() -> None:
    from quantlab.harness.cli.tables import accounts_line
    from quantlab.harness.dispatch import DeviceAccount

    line = accounts_line([DeviceAccount("fake-a", ok=1, failed=1, skipped=2),
                          DeviceAccount("fake-b", ok=3)])
    assert "fake-a: 1 ok, 1 failed, 2 skipped" in line and "fake-b: 3 ok, 0 failed;" not in line


def test_agents_raise_device_scoped_errors_where_they_know(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from quantlab.agents.android.agent import AndroidAgent
    from quantlab.agents.android.faults import unusable_adb_state
    from quantlab.agents.ios.errors import translate

    # Android: no benchmark_model for the phone's ABI is the same for every job on it
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "cache"))
    phone = DeviceInfo(id="R58M", platform="android", name="Pixel", abi="arm64-v8a")
    job = Job(model=MODEL, device_id="R58M", platform="android", delegate="cpu", threads=1,
              settings=Settings())
    with pytest.raises(DeviceUnusable, match="no benchmark_model provisioned") as err:
        AndroidAgent().run(phone, job, lambda phase, fraction: None)
    assert err.value.device_id == "R58M"
    state = unusable_adb_state("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS "
                                "is not set")
    assert state is not None and state[0] == "unauthorized"
    assert unusable_adb_state("device 'R58M' not found") is None  # a drop: retried

    # iOS: trust, Developer Mode and a missing app stop the iPhone; a lock screen does not
    def pmd3_error(name: str) -> Exception:
        return type(name, (Exception,), {})("detail")

    for name in ("NotTrustedError", "DeveloperModeIsNotEnabledError", "AppNotInstalledError",
                 "LaunchingApplicationError"):
        translated = translate(pmd3_error(name), "00008101-X")
        assert isinstance(translated, DeviceUnusable), name
        assert translated.device_id == "00008101-X"
    locked = translate(pmd3_error("PasscodeRequiredError"), "00008101-X")
    assert isinstance(locked, UserError) and not isinstance(locked, DeviceUnusable)


# ------------------------------------------------------------------ offline at the start


def test_device_offline_at_start_is_waited_for_then_measured(tmp_path: Path) -> None:
    notes = Notes()
    agent = ScriptedAgent(offline=("fake-b",), back_after_waits=1)
    store, run, accounts = run_all(tmp_path, agent, delegates=("cpu", "fast"),
                                   retry_timeout_s=7, reporter=notes)
    entries = by_device(store, run.run_id, "fake-b")
    # planned while offline (supports() unknown); asked again once it was back
    assert [(e.job.delegate, e.status) for e in entries] == [("cpu", "ok"), ("fast", "skipped")]
    assert entries[1].error == "fast: not on this fake device"
    assert agent.waits == [("fake-b", 7)]
    assert store.load_run(run.run_id).devices["fake-b"].state == "ready"
    assert [e.status for e in by_device(store, run.run_id, "fake-a")] == ["ok", "ok"]
    assert (accounts["fake-b"].ok, accounts["fake-b"].skipped) == (1, 1)
    assert any("fake-b was offline when the run started" in n for n in notes.notes)


def test_device_offline_at_start_that_never_returns_fails_with_reason(tmp_path: Path) -> None:
    agent = ScriptedAgent(offline=("fake-a",), comes_back=False)
    store, run, accounts = run_all(tmp_path, agent, threads=(1, 2), retry_timeout_s=1)
    entries = by_device(store, run.run_id, "fake-a")
    assert [e.status for e in entries] == ["failed", "failed"]
    assert all("fake-a is offline: replug the cable (it did not come back within 1s"
               in (e.error or "") for e in entries)
    assert not any(d == "fake-a" for d, _ in agent.calls)
    assert [e.status for e in by_device(store, run.run_id, "fake-b")] == ["ok", "ok"]
    assert accounts["fake-a"].failed == 2
