"""Interleaved A/B (harness.ab) on fixed numbers: launch order and pairing, merging a side's
launches into one result, and the paired verdict's edge cases (ties, too few launches, a
launch that fails part-way). The end-to-end A/B on the simulator is in test_report_sim.py."""

from __future__ import annotations

import math
from typing import Any

import pytest

from quantlab.harness.ab import Pair, interleaved, merge_launches, paired_verdict, pairs_of
from quantlab.harness.errors import DeviceDisconnected
from quantlab.harness.records import DeviceInfo, Job, LaunchStats, ModelRef, RawResult, Settings

DEVICE = DeviceInfo(id="fake-a", platform="android", name="fake-a", delegates=("cpu", "fast"))


def _job(delegate: str) -> Job:
    model = ModelRef(path="/m/a.tflite", sha256="c" * 64, size_bytes=10, format="tflite")
    return Job(model=model, device_id=DEVICE.id, platform="android", delegate=delegate,
               threads=1, settings=Settings(repeats=10))


A, B = _job("cpu"), _job("fast")


class SlotAgent:
    """Each launch's every sample is the launch's slot number (1, 2, 3 …), so a pair's two
    figures say which launches were paired; ``fail_at`` fails that launch, ``fault_at``
    makes it disconnect once first."""

    def __init__(self, fail_at: int | None = None, fault_at: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_at = fail_at
        self.fault_at = fault_at

    def run(self, device: DeviceInfo, job: Job, progress: Any) -> RawResult:
        slot = len(self.calls) + 1
        if slot == self.fault_at:
            self.fault_at = None
            raise DeviceDisconnected(device.id, "connection reset")
        self.calls.append((job.delegate, job.settings.repeats))
        if slot == self.fail_at:
            return RawResult.failure(job.job_id, f"launch {slot} crashed")
        return RawResult(job_id=job.job_id, status="ok",
                         samples_ms=tuple((float(slot),) * 5 for _ in range(job.settings.repeats)),
                         init_ms=float(slot), peak_memory_mb=10.0 * slot)

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        return True


def _run(agent: SlotAgent, launches: int) -> dict[str, list[RawResult]]:
    done: dict[str, list[RawResult]] = {A.job_id: [], B.job_id: []}
    for job, raw in interleaved(agent, DEVICE, A, B, launches, retry_timeout_s=1):
        assert raw.job_id == job.job_id
        done[job.job_id].append(raw)
    return done


# ------------------------------------------------------------------ order and pairing


@pytest.mark.parametrize(("launches", "order"), [
    (1, "AB"), (2, "ABBA"), (3, "ABBAAB"), (4, "ABBAABBA")])
def test_launches_alternate_a_b_b_a_one_repeat_each(launches: int, order: str) -> None:
    agent = SlotAgent()
    done = _run(agent, launches)
    assert "".join("A" if d == "cpu" else "B" for d, _ in agent.calls) == order
    assert {repeats for _, repeats in agent.calls} == {1}  # each launch is one process
    assert len(done[A.job_id]) == len(done[B.job_id]) == launches


def test_pairs_are_neighbouring_launches_in_order() -> None:
    done = _run(SlotAgent(), 4)  # slots: A1 B2 B3 A4 A5 B6 B7 A8
    statistic, pairs = pairs_of(done[A.job_id], done[B.job_id])
    assert statistic == "median"
    assert [(p.a_ms, p.b_ms) for p in pairs] == [(1, 2), (4, 3), (5, 6), (8, 7)]


def test_pairs_use_the_mean_when_a_launch_has_no_median() -> None:
    def summary(mean: float) -> RawResult:  # benchmark_model without a median: its mean only
        return RawResult(job_id="j", status="ok", launches=(LaunchStats(mean_ms=mean),))

    statistic, pairs = pairs_of([summary(2.0), summary(4.0)], [summary(3.0), summary(2.0)])
    assert statistic == "mean" and pairs == [Pair(2.0, 3.0), Pair(4.0, 2.0)]


def test_a_device_fault_is_retried_and_keeps_the_order() -> None:
    agent = SlotAgent(fault_at=2)
    done = _run(agent, 2)
    assert "".join("A" if d == "cpu" else "B" for d, _ in agent.calls) == "ABBA"
    assert all(r.status == "ok" for r in done[A.job_id] + done[B.job_id])


def test_a_failed_launch_ends_the_ab_where_it_failed() -> None:
    agent = SlotAgent(fail_at=4)  # A1 B2 B3 A4(fails)
    done = _run(agent, 5)
    assert len(agent.calls) == 4
    assert [r.status for r in done[A.job_id]] == ["ok", "failed"]
    assert [r.status for r in done[B.job_id]] == ["ok", "ok"]


# ------------------------------------------------------------------ merging a side


def test_merge_keeps_every_launch_as_a_repeat() -> None:
    done = _run(SlotAgent(), 3)
    merged = merge_launches(A, done[A.job_id], "interleaved with B")
    assert merged.status == "ok" and merged.job_id == A.job_id
    assert merged.samples_ms == ((1.0,) * 5, (4.0,) * 5, (5.0,) * 5)
    assert merged.init_ms == 4.0 and merged.peak_memory_mb == 50.0  # median init, peak max
    assert merged.runner["interleaved"] == "interleaved with B"


def test_merge_of_summary_launches_keeps_each_launch_figure() -> None:
    launches = [RawResult(job_id=A.job_id, status="ok",
                          launches=(LaunchStats(mean_ms=m, count=50, median_ms=m - 0.1),))
                for m in (2.0, 3.0)]
    merged = merge_launches(A, launches, "note")
    assert merged.samples_ms == ()
    assert [x.mean_ms for x in merged.launches] == [2.0, 3.0]


def test_merge_with_a_failed_launch_is_a_failure_that_counts_what_ran() -> None:
    done = _run(SlotAgent(fail_at=4), 5)
    merged = merge_launches(A, done[A.job_id], "note")
    assert merged.status == "failed" and merged.job_id == A.job_id
    assert "launch 4 crashed" in (merged.error or "")
    assert (merged.error or "").startswith("launch 2 failed (1 before it ok): ")


def test_a_launch_without_a_figure_makes_its_pair_untestable() -> None:
    done = _run(SlotAgent(), 3)
    empty = RawResult(job_id=B.job_id, status="ok")  # ok, yet nothing measured
    statistic, pairs = pairs_of(done[A.job_id], [*done[B.job_id][:2], empty])
    result = paired_verdict("a", "b", statistic, pairs, 0.05)
    assert result.verdict == "untestable" and "pair 3" in (result.reason or "")


# ------------------------------------------------------------------ the paired verdict


def _pairs(*ratios: float) -> list[Pair]:
    return [Pair(10.0, 10.0 * r) for r in ratios]


def test_one_or_two_pairs_are_untestable_with_the_reason() -> None:
    for pairs in (_pairs(2.0), _pairs(2.0, 2.1)):
        result = paired_verdict("a", "b", "median", pairs, 0.05)
        assert result.verdict == "untestable" and result.ratio is None
        assert f"{len(pairs)} pair(s)" in (result.reason or "")


def test_exact_ties_are_no_difference() -> None:
    result = paired_verdict("a", "b", "median", _pairs(1.0, 1.0, 1.0, 1.0), 0.05)
    assert result.verdict == "no significant difference"
    assert result.ratio == 1.0 and result.ratio_ci95 == (1.0, 1.0) and result.p_value == 1.0


def test_the_same_ratio_every_time_is_a_clear_verdict() -> None:
    slower = paired_verdict("a", "b", "median", _pairs(2.0, 2.0, 2.0), 0.05)
    assert slower.verdict == "slower" and slower.ratio == pytest.approx(2.0)
    faster = paired_verdict("a", "b", "median", _pairs(0.5, 0.5, 0.5), 0.05)
    assert faster.verdict == "faster"
    within = paired_verdict("a", "b", "median", _pairs(1.02, 1.02, 1.02), 0.05)
    assert within.verdict == "no significant difference"  # real but under the threshold


def test_noisy_pairs_with_a_clear_shift() -> None:
    result = paired_verdict("a", "b", "median", _pairs(1.9, 2.1, 2.0, 1.95, 2.05, 2.0), 0.05)
    assert result.verdict == "slower" and result.p_value is not None and result.p_value < 1e-4
    assert result.ratio_ci95 is not None and 1.8 < result.ratio_ci95[0] < 2.0 < \
        result.ratio_ci95[1] < 2.2
    mixed = paired_verdict("a", "b", "median", _pairs(0.6, 1.7, 0.8, 1.4), 0.05)
    assert mixed.verdict == "no significant difference"


@pytest.mark.parametrize("bad", [Pair(0.0, 1.0), Pair(1.0, 0.0), Pair(math.nan, 1.0),
                                 Pair(1.0, math.inf)])
def test_a_launch_figure_that_is_not_a_positive_time_is_untestable(bad: Pair) -> None:
    result = paired_verdict("a", "b", "median", [*_pairs(2.0, 2.0, 2.0), bad], 0.05)
    assert result.verdict == "untestable"
    assert "pair 4" in (result.reason or "") and "not a positive" in (result.reason or "")


def test_an_untestable_pair_is_null_in_json() -> None:
    import json

    result = paired_verdict("a", "b", "median", [*_pairs(2.0, 2.0, 2.0), Pair(math.nan, 1.0)],
                            0.05)
    pairs = json.loads(json.dumps(result.as_dict(), allow_nan=False))["pairs"]
    assert pairs[3] == {"a_ms": None, "b_ms": 1.0, "ratio": None}
