"""The nightly's confirm-on-regression re-run (``[measure] confirm = 2``) on the lab of pretend
phones (tests/nightly_lab_agent.py): a one-off slow night (one job twice as slow on its first
run only, injected) is "not confirmed" and the nightly passes; a real 2x change is slower again
in the confirmation launches, a confirmed regression, and the nightly fails. Latencies are fixed
numbers, so no verdict depends on timing."""

from __future__ import annotations

from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml
from nightly_lab_agent import NightlyLabAgent
from test_nightly_causes import DEVICES, PLAN, _night

from quantlab.harness import kinds
from quantlab.harness.store import Store

CONFIRMING = PLAN.replace("repeats = 3\n", "repeats = 3\nconfirm = 2\n")


@pytest.fixture()
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(kinds, "KINDS", {"fake": kinds.Kind(
        "fake", "nightly_lab_agent:NightlyLabAgent", "pretend phones")})
    monkeypatch.setattr(NightlyLabAgent, "attached", ("R58M-1", "R58M-2"))
    monkeypatch.setattr(NightlyLabAgent, "spiked", set())
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "nightly.toml").write_text(CONFIRMING)
    (tmp_path / "bench" / "lab-devices.toml").write_text(DEVICES)
    return tmp_path


def test_a_one_off_slow_night_is_not_confirmed_and_a_real_2x_change_is(
        lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _night(lab, 1, monkeypatch)[0] == 0

    monkeypatch.setattr(NightlyLabAgent, "once", frozenset({("R58M-1", "a/int8.tflite")}))
    code, second = _night(lab, 2, monkeypatch)
    matches = {(m["device"], m["model"]): m for m in second["comparison"]["matches"]}
    spike = matches[("R58M-1", "int8 (a/int8.tflite)")]
    assert spike["verdict"] == "not confirmed" and spike["ratio"] == pytest.approx(2.0)
    assert spike["confirmation"]["state"] == "not confirmed"
    assert spike["confirmation"]["launches"] == 2
    assert "a one-off, not reported as a regression" in spike["reason"]
    assert code == 0  # the nightly passes: nothing confirmed
    assert not _failures(lab)
    confirm_run = Store.open(str(lab / "results")).load_run(spike["confirmation"]["run_id"])
    assert sorted(confirm_run.tags) == ["confirm", f"confirms={second['run_id']}"]
    assert [e.job.settings.repeats for e in confirm_run.entries] == [2]  # only the slow job

    monkeypatch.setattr(NightlyLabAgent, "once", frozenset())
    monkeypatch.setattr(NightlyLabAgent, "drifting", frozenset({("R58M-2", "b/int8.tflite")}))
    monkeypatch.setattr(NightlyLabAgent, "rate", 2 ** 0.5)  # night 3: rate ** 2 = 2x, to stay
    code, third = _night(lab, 3, monkeypatch)
    assert third["comparison"]["baseline"] == second["run_id"]  # not the confirmation run
    matches = {(m["device"], m["model"]): m for m in third["comparison"]["matches"]}
    real = matches[("R58M-2", "int8 (b/int8.tflite)")]
    assert real["verdict"] == "slower" and real["ratio"] == pytest.approx(2.0, rel=0.01)
    assert real["confirmation"]["state"] == "confirmed"
    assert real["confirmation"]["ratio"] == pytest.approx(2.0, rel=0.01)
    # the one-off's own figure stays in night 2's run: night 3 is faster than it
    assert matches[("R58M-1", "int8 (a/int8.tflite)")]["verdict"] == "faster"
    assert code == 1
    assert [name for _cls, name in _failures(lab)] == ["int8 (b/int8.tflite) · xnnpack · 1t"]


def _failures(lab: Path) -> dict[tuple[str, str], Failure]:
    [suite] = list(JUnitXml.fromfile(str(lab / "results" / "junit.xml")))
    return {(c.classname, c.name): r for c in suite for r in c.result
            if isinstance(r, Failure)}
