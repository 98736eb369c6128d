"""compare's verdicts on fixed numbers: which jobs pair (two variants folders with the
same file names), jobs that vanish (``missing``), new jobs that fail, and the level at
which the p-value is computed.

Samples are a level times a fixed pattern (tests/series_runs.py), so every verdict here is
decided by the levels the test chose, far from any threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped
from series_runs import entry, job, record, store_record
from typer.testing import CliRunner

from quantlab.harness.cli.main import app
from quantlab.harness.errors import UserError
from quantlab.harness.report.ci import comparison_junit, comparison_markdown
from quantlab.harness.store import Store
from quantlab.harness.verdicts.compare import compare_runs, parse_match

runner = CliRunner()


def _folders_night(night: int, levels: dict[str, float]) -> list:
    """Two variants folders a/ and b/ with int8.tflite (rebuilt each night: its sha256
    changes) and fp32.tflite (the same bytes in both folders, every night)."""
    out = []
    for folder in ("a", "b"):
        out.append(entry(job(f"/lab/variants/{folder}/int8.tflite", f"{folder}{night}",
                             "int8"), levels[f"{folder}/int8"]))
        out.append(entry(job(f"/lab/variants/{folder}/fp32.tflite", "f0", "fp32"),
                         levels[f"{folder}/fp32"]))
    return out


LEVELS = {"a/int8": 1.0, "b/int8": 10.0, "a/fp32": 2.0, "b/fp32": 20.0}


def test_two_variants_folders_with_the_same_file_names_pair_folder_by_folder() -> None:
    base = record(1, _folders_night(1, LEVELS))
    new = record(2, _folders_night(2, LEVELS))
    c = compare_runs(base, new)  # raised "more than one job for the same key" before
    assert c.only_in_baseline == [] and c.only_in_new == []
    by_model = {m.model: m for m in c.matches}
    assert set(by_model) == {"int8 (a/int8.tflite)", "int8 (b/int8.tflite)",
                             "fp32 (a/fp32.tflite)", "fp32 (b/fp32.tflite)"}
    # each file paired with the one of its own folder: the same level, a ratio of 1
    assert all(m.ratio == pytest.approx(1.0) for m in c.matches)
    assert all(m.verdict == "no significant difference" for m in c.matches)
    assert not c.regressed
    # the JUnit cases are told apart by folder too
    [suite] = list(JUnitXml.fromstring(comparison_junit(c)))
    assert len({case.name for case in suite}) == 4


def test_keys_that_really_cannot_tell_jobs_apart_still_name_the_fix() -> None:
    one = [entry(job("/lab/m.tflite", "aa", delegate=d), 1.0) for d in ("cpu", "gpu")]
    with pytest.raises(UserError, match="more than one job for the same key") as info:
        compare_runs(record(1, one), record(2, one), match=parse_match("model,device"))
    assert "add the setting that differs" in (info.value.hint or "")


def _phones_night(night: int, phones: tuple[str, ...], failed: tuple[str, ...] = ()) -> list:
    out = []
    for phone in phones:
        j = job("/lab/model.tflite", "cc", device=phone)
        out.append(entry(j, status="failed", error="GPU delegate refused") if phone in failed
                   else entry(j, 1.0))
    return out


def test_a_job_that_vanished_is_missing_and_fails_unless_allowed() -> None:
    c = compare_runs(record(1, _phones_night(1, ("phone-1", "phone-2"))),
                     record(2, _phones_night(2, ("phone-1",))))
    [gone] = c.only_in_baseline
    assert gone.verdict == "missing" and gone.device == "phone-2"
    assert "not in the new run" in (gone.reason or "")
    assert c.missing == [gone] and not c.regressed
    assert c.fails  # missing fails by default
    assert c.as_dict()["missing"] == 1 and c.as_dict()["fails"] is True
    [suite] = list(JUnitXml.fromstring(comparison_junit(c)))
    assert suite.tests == 2 and suite.failures == 1
    [(where, fail)] = [(case.classname, r) for case in suite for r in case.result]
    assert where == "quantlab.phone-2"
    assert isinstance(fail, Failure) and fail.type == "missing"
    md = comparison_markdown(c)
    assert "❌ regression" in md and "**1 missing**" in md
    assert any(line.startswith("| ❌ |") and "phone-2" in line and "missing" in line
               for line in md.splitlines())

    accepted = compare_runs(record(1, _phones_night(1, ("phone-1", "phone-2"))),
                            record(2, _phones_night(2, ("phone-1",))), allow_missing=True)
    assert not accepted.fails
    [suite] = list(JUnitXml.fromstring(comparison_junit(accepted)))
    assert suite.failures == 0 and suite.skipped == 1
    [skip] = [r for case in suite for r in case.result]
    assert isinstance(skip, Skipped) and "--allow-missing" in skip.message
    assert "✅ no regression" in comparison_markdown(accepted)


def test_a_new_job_that_fails_is_red_in_junit_and_markdown() -> None:
    c = compare_runs(record(1, _phones_night(1, ("phone-1",))),
                     record(2, _phones_night(2, ("phone-1", "phone-3"), failed=("phone-3",))))
    [new] = c.only_in_new
    assert new.verdict == "failed" and c.regressed and c.fails
    [suite] = list(JUnitXml.fromstring(comparison_junit(c)))
    [fail] = [r for case in suite for r in case.result]
    assert isinstance(fail, Failure) and fail.type == "failed"
    assert "GPU delegate refused" in fail.message
    md = comparison_markdown(c)
    assert "❌ regression" in md
    assert any(line.startswith("| ❌ |") and "phone-3" in line for line in md.splitlines())


def test_compare_cli_exits_1_on_a_missing_job_and_0_with_allow_missing(tmp_path: Path
                                                                       ) -> None:
    results = str(tmp_path / "results")
    store = Store.open(results)
    a = store_record(store, record(1, _phones_night(1, ("phone-1", "phone-2"))))
    b = store_record(store, record(2, _phones_night(2, ("phone-1",))))
    store.close()
    res = runner.invoke(app, ["compare", a, b, "--results", results, "--json",
                              "--junit", str(tmp_path / "j.xml")])
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    assert data["only_in_baseline"][0]["verdict"] == "missing" and data["fails"] is True
    assert JUnitXml.fromfile(str(tmp_path / "j.xml")).failures == 1
    human = runner.invoke(app, ["compare", a, b, "--results", results],
                          env={"COLUMNS": "200"})
    assert human.exit_code == 1 and "missing" in human.stdout and "phone-2" in human.stdout
    ok = runner.invoke(app, ["compare", a, b, "--allow-missing", "--results", results])
    assert ok.exit_code == 0, ok.output


# ----------------------------------------------------------------------------- p-values


def test_p_value_is_computed_between_launches_not_between_iterations() -> None:
    """Two launches a side whose levels differ by 12 % between processes, the new run 6 %
    above: pooled iterations made p ~1e-9; at the level of launches it is far from
    significant, and that is the p-value reported (and the verdict)."""
    base = entry(job("/lab/m.tflite", "aa"), 1.0, launches=(1.00, 1.12))
    new = entry(job("/lab/m.tflite", "aa"), 1.0, launches=(1.06, 1.18))
    c = compare_runs(record(1, [base]), record(2, [new]))
    [m] = c.matches
    assert m.method == "per-iteration" and m.p_value is not None
    assert m.p_value > 0.2 and m.verdict == "no significant difference"
    assert "launch" in c.tests["per-iteration"] and "Mann" not in c.tests["per-iteration"]


def test_one_launch_a_side_has_no_p_value_and_says_why() -> None:
    base = entry(job("/lab/m.tflite", "aa"), 1.0, launches=(1.0,))
    new = entry(job("/lab/m.tflite", "aa"), 1.5, launches=(1.0,))
    [m] = compare_runs(record(1, [base]), record(2, [new])).matches
    assert m.p_value is None and m.verdict == "slower"  # ratio 1.5, its CI clear of 1
    assert "one launch" in (m.reason or "") and "no p-value" in (m.reason or "")
    [suite] = list(JUnitXml.fromstring(comparison_junit(
        compare_runs(record(1, [base]), record(2, [new])))))
    [fail] = [r for case in suite for r in case.result]
    assert "p=" not in fail.message and "no p-value" in fail.message


def test_a_summary_pair_has_no_p_value() -> None:
    """One launch's mean, std and count as a tool printed them: a Welch test from the
    within-launch std printed p = 1e-30; that std says nothing about launches."""
    from quantlab.harness.records import LaunchStats, RawResult
    from quantlab.harness.store import JobEntry

    def logged(mean: float) -> JobEntry:
        j = job("/lab/m.tflite", "aa")
        raw = RawResult(job_id=j.job_id, status="ok",
                        launches=(LaunchStats(mean_ms=mean, count=500, std_ms=0.3),))
        return JobEntry(job=j, seq=0, status="ok", error=None, attempts=1, raw=raw)

    [m] = compare_runs(record(1, [logged(10.0)]), record(2, [logged(12.0)])).matches
    assert m.method == "summary" and m.p_value is None
    assert m.verdict == "slower" and "variance between launches unknown" in (m.reason or "")


def test_a_pooled_summary_of_one_iteration_has_no_std() -> None:
    from quantlab.harness.records import LaunchStats
    from quantlab.harness.verdicts.compare import _pooled_summary

    pooled = _pooled_summary([LaunchStats(mean_ms=3.0, count=1, std_ms=0.0)])
    assert pooled is not None and pooled.std_ms is None


def test_a_corrupt_stored_plan_is_an_error_not_default_rules(tmp_path: Path) -> None:
    """bench --resume reads the compare rules back from the run's stored plan file; a plan
    that no longer parses used to become the default rules (threshold 5 %, no baseline)."""
    from quantlab.harness.cli.plan_run import stored_plan_compare
    from quantlab.harness.records import Plan

    store = Store.open(str(tmp_path / "results"))
    rec = record(1, _phones_night(1, ("phone-1",)))
    store.create_run(rec.run, Plan(jobs=tuple(e.job for e in rec.entries)),
                     plan_text='models = ["m.tflite"]\n[compare]\nthreshold = 50%\n')
    with pytest.raises(UserError, match=f"run {rec.run.run_id}: its stored plan file") as info:
        stored_plan_compare(store, rec.run.run_id)
    assert "line 3" in info.value.message
    other = record(2, _phones_night(2, ("phone-1",)))
    store.create_run(other.run, Plan(jobs=tuple(e.job for e in other.entries)),
                     plan_text='models = ["m.tflite"]\ncompare = "50%"\n')
    with pytest.raises(UserError, match="compare is not a table"):
        stored_plan_compare(store, other.run.run_id)
    store.close()


def test_a_plan_file_can_accept_missing_jobs(tmp_path: Path) -> None:
    from quantlab.harness.cli.plan_run import compare_rules
    from quantlab.harness.planfile import load_plan_file

    (tmp_path / "m.tflite").write_bytes(b"")
    plan = tmp_path / "nightly.toml"
    plan.write_text('models = ["m.tflite"]\ndevices = ["sim"]\n\n[compare]\n'
                    'baseline = "nightly"\nallow_missing = true\n')
    loaded = load_plan_file(str(plan))
    assert compare_rules(loaded.compare, {}, set()).allow_missing is True
    assert compare_rules({}, {}, set()).allow_missing is False
    assert compare_rules({}, {"allow_missing": True}, {"allow_missing"}).allow_missing is True
    plan.write_text('models = ["m.tflite"]\n\n[compare]\nallow_missing = "yes"\n')
    with pytest.raises(UserError, match=r"compare\.allow_missing"):
        load_plan_file(str(plan))
