"""The nightly example of docs/nightly-lab.md, night after night, on a lab of pretend phones
(tests/nightly_lab_agent.py) where three things go wrong that used to leave the nightly
green or crash it:

* the plan measures **two variants folders** whose files have the same names
  (``a/int8.tflite``, ``b/int8.tflite``), rebuilt every night (new sha256s);
* **a phone is gone** on the third night: its jobs are not even planned;
* one variant on one phone gets **4 % slower every night**, under the 5 % threshold, so
  each night against the one before is "no significant difference".

The third night exits 1, and each cause is a failing case in the JUnit file and a red row
in the Markdown. Latencies are fixed numbers (the agent's), so no verdict depends on timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml
from nightly_lab_agent import NightlyLabAgent
from series_runs import tiny_tflite
from typer.testing import CliRunner

from quantlab.harness import kinds
from quantlab.harness.cli.main import app

runner = CliRunner()
PLAN = """\
# bench/nightly.toml: what the lab measures every night (docs/nightly-lab.md)
models = ["../variants/a", "../variants/b"]  # two variants folders
devices = ["tier=flagship"]
devices_file = "lab-devices.toml"
delegates = ["xnnpack"]
threads = [1]
tags = ["nightly"]

[measure]
warmup = 2
iterations = 40
repeats = 3

[compare]
baseline = "nightly"
threshold = "5%"
match = ["model", "device", "delegate", "threads"]
fail_untestable = false
"""
DEVICES = """\
[devices.R58M-1]
tier = "flagship"

[devices.R58M-2]
tier = "flagship"
"""


@pytest.fixture()
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lab's checkout (bench/, variants/) with only the pretend phones discoverable."""
    for kind in kinds.names():
        monkeypatch.delitem(kinds.KINDS, kind)
    monkeypatch.setitem(kinds.KINDS, "fake", kinds.Kind(
        "fake", "nightly_lab_agent:NightlyLabAgent", "pretend phones"))
    monkeypatch.setattr(NightlyLabAgent, "attached", ("R58M-1", "R58M-2"))
    monkeypatch.setattr(NightlyLabAgent, "drifting", frozenset({("R58M-1", "b/int8.tflite")}))
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "nightly.toml").write_text(PLAN)
    (tmp_path / "bench" / "lab-devices.toml").write_text(DEVICES)
    return tmp_path


def _quantize(lab: Path, night: int) -> None:
    """What the nightly's quantize step leaves: both folders rebuilt, int8 in new bytes."""
    for folder in ("a", "b"):
        out = lab / "variants" / folder
        out.mkdir(parents=True, exist_ok=True)
        (out / "fp32.tflite").write_bytes(tiny_tflite(f"fp32 {folder}".encode()))
        (out / "int8.tflite").write_bytes(tiny_tflite(f"int8 {folder} night {night}".encode()))
        (out / "manifest.json").write_text(json.dumps({"variants": [
            {"scheme": "fp32", "file": "fp32.tflite", "status": "ok"},
            {"scheme": "int8", "file": "int8.tflite", "status": "ok"}]}))


def _night(lab: Path, night: int, monkeypatch: pytest.MonkeyPatch,
           *extra: str) -> tuple[int, dict]:
    monkeypatch.setattr(NightlyLabAgent, "night", night)
    _quantize(lab, night)
    res = runner.invoke(app, [
        "bench", "--plan", str(lab / "bench" / "nightly.toml"), "--tag", f"git=n{night}",
        "--baseline", "nightly", "--junit", str(lab / "results" / "junit.xml"),
        "--markdown", str(lab / "results" / "summary.md"), "--results", str(lab / "results"),
        "--json", *extra])
    assert res.exit_code in (0, 1), res.output  # never 2: nothing here is a usage error
    return res.exit_code, json.loads(res.stdout)


def _failures(lab: Path) -> dict[tuple[str, str], Failure]:
    [suite] = list(JUnitXml.fromfile(str(lab / "results" / "junit.xml")))
    return {(c.classname, c.name): r for c in suite for r in c.result
            if isinstance(r, Failure)}


def test_two_folders_a_removed_phone_and_a_slow_drift_each_fail_the_nightly(
        lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, first = _night(lab, 1, monkeypatch)
    assert code == 0 and len(first["results"]) == 8  # 2 folders × 2 files × 2 phones

    code, second = _night(lab, 2, monkeypatch)
    comparison = second["comparison"]
    assert code == 0, comparison  # 4 % since last night: under the threshold
    assert len(comparison["matches"]) == 8 and comparison["only_in_baseline"] == []
    assert {m["model"] for m in comparison["matches"]} == {
        "fp32 (a/fp32.tflite)", "int8 (a/int8.tflite)", "fp32 (b/fp32.tflite)",
        "int8 (b/int8.tflite)"}
    assert all(m["ratio"] == pytest.approx(1.04 if (m["device"], m["model"]) == (
        "R58M-1", "int8 (b/int8.tflite)") else 1.0) for m in comparison["matches"])
    assert _failures(lab) == {}

    monkeypatch.setattr(NightlyLabAgent, "attached", ("R58M-1",))  # R58M-2 is unplugged
    code, third = _night(lab, 3, monkeypatch)
    assert code == 1
    comparison = third["comparison"]
    assert comparison["fails"] is True and comparison["missing"] == 4
    drifted = [m for m in comparison["matches"] if m["drift"] and m["drift"]["flagged"]]
    assert [(m["device"], m["model"]) for m in drifted] == [("R58M-1", "int8 (b/int8.tflite)")]
    [m] = drifted
    assert m["verdict"] == "no significant difference"  # against last night alone
    assert m["drift"]["verdict"] == "slower" and m["drift"]["runs"] == 3
    assert m["drift"]["cumulative"] == pytest.approx(1.04 ** 2)

    # JUnit: each cause is a failing case; the folders stay apart
    failures = _failures(lab)
    drift = failures[("quantlab.R58M-1", "int8 (b/int8.tflite) · xnnpack · 1t")]
    assert drift.type == "drift" and "drift slower: ×1.082" in drift.message
    missing = {k: f for k, f in failures.items() if f.type == "missing"}
    assert {name for _, name in missing} == {
        "fp32 (a/fp32.tflite) · xnnpack · 1t", "int8 (a/int8.tflite) · xnnpack · 1t",
        "fp32 (b/fp32.tflite) · xnnpack · 1t", "int8 (b/int8.tflite) · xnnpack · 1t"}
    assert {cls for cls, _ in missing} == {"quantlab.R58M-2"}
    assert len(failures) == 5

    # Markdown: the same five rows are red
    md = (lab / "results" / "summary.md").read_text()
    assert "❌ regression" in md and "**4 missing**" in md and "**1 drift slower**" in md
    red = [line for line in md.splitlines() if line.startswith("| ❌ |")]
    assert len(red) == 5
    assert any("R58M-1" in line and "b/int8.tflite" in line and "drift slower" in line
               for line in red)
    assert sum("R58M-2" in line and "missing" in line for line in red) == 4

    # the fourth night R58M-2 is back and R58M-1 is away; accepted with --allow-missing,
    # its four jobs are skipped cases and the night is green
    monkeypatch.setattr(NightlyLabAgent, "attached", ("R58M-2",))
    code, fourth = _night(lab, 4, monkeypatch, "--allow-missing")
    assert code == 0, fourth["comparison"]
    assert fourth["comparison"]["missing"] == 4 and fourth["comparison"]["fails"] is False
    [suite] = list(JUnitXml.fromfile(str(lab / "results" / "junit.xml")))
    assert suite.skipped == 4 and suite.failures == 0
    assert "✅ no regression" in (lab / "results" / "summary.md").read_text()
