"""The nightly's confirm re-run interleaved with its baseline (``[measure] confirm = N``) on the
simulator: where the baseline's model file is still on disk (its recorded sha256) and differs
from tonight's, a job judged slower is measured again alternately with that file (A B B A …
on the same device) and judged on the paired launches. Night 2 rebuilds two models into a new
folder: ``net.tflite`` in new bytes at the same speed, made twice as slow on its first run of
the night only (injected: a one-off slow night), and ``grow.tflite`` four times the work (a
real change). The one-off is "not confirmed" by the pairs and the nightly passes without it;
the real change is confirmed by them and fails it. Both say in the JSON, the verdict line and
JUnit that the interleaved pairs were used. Chain models (tests/tflite_build.py) four times
apart in work, and a ×2 injection, keep every verdict far from the 20 % threshold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from junitparser import Failure, JUnitXml
from tflite_build import chain_model
from typer.testing import CliRunner

from quantlab.agents.sim.agent import SimAgent
from quantlab.harness.cli.main import app
from quantlab.harness.records import RawResult
from quantlab.harness.store import Store

runner = CliRunner()
PLAN = """\
models = ["../variants/night{night}/*.tflite"]
devices = ["sim"]
delegates = ["xnnpack"]
threads = [1]
tags = ["nightly"]

[measure]
warmup = 3
iterations = 20
repeats = 3
confirm = 3

[compare]
baseline = "nightly"
threshold = "20%"
"""
STEP = [("ADD", 1.0), ("MUL", 0.5)]


def _night(lab: Path, night: int, grow: int) -> tuple[int, dict[str, Any]]:
    folder = lab / "variants" / f"night{night}"
    folder.mkdir(parents=True)
    # new bytes every night (the constant), the same work for net; grow does ``grow`` × the work
    chain_model(folder / "net.tflite", [("ADD", float(night))] + STEP * 4, shape=(1, 262144))
    chain_model(folder / "grow.tflite", [("ADD", night + 0.5)] + STEP * 4 * grow,
                shape=(1, 262144))
    plan = lab / "bench" / "nightly.toml"
    plan.write_text(PLAN.format(night=night))
    res = runner.invoke(app, ["bench", "--plan", str(plan), "--junit",
                              str(lab / "junit.xml"), "--results", str(lab / "results"),
                              "--json"])
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, json.loads(res.stdout)


def test_a_slower_job_is_confirmed_on_launches_interleaved_with_the_baselines_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bench").mkdir()
    assert _night(tmp_path, 1, grow=1)[0] == 0

    measure = SimAgent.run
    spiked: list[str] = []

    def one_slow_night(self: SimAgent, device: Any, job: Any, progress: Any) -> RawResult:
        raw = measure(self, device, job, progress)
        if job.model.path.endswith("night2/net.tflite") and not spiked:
            spiked.append(job.job_id)  # its first run tonight only
            raw = dataclasses.replace(raw, samples_ms=tuple(
                tuple(2 * x for x in rep) for rep in raw.samples_ms))
        return raw

    monkeypatch.setattr(SimAgent, "run", one_slow_night)
    code, night2 = _night(tmp_path, 2, grow=4)
    matches = {m["model"].split(" ")[0].split("/")[-1].rstrip(")"): m
               for m in night2["comparison"]["matches"]}
    spike, real = matches["net.tflite"], matches["grow.tflite"]

    assert spike["verdict"] == "not confirmed" and spike["ratio"] > 1.5
    conf = spike["confirmation"]
    assert conf["baseline"] == "interleaved" and conf["launches"] == 3
    assert conf["verdict"] == "no significant difference" and 0.7 < conf["ratio"] < 1.3
    assert "interleaved with the baseline's file" in spike["reason"]

    assert real["verdict"] == "slower" and real["confirmation"]["state"] == "confirmed"
    assert real["confirmation"]["baseline"] == "interleaved"
    assert real["confirmation"]["ratio"] > 2 and real["confirmation"]["p_value"] < 0.05
    assert code == 1

    [suite] = list(JUnitXml.fromfile(str(tmp_path / "junit.xml")))
    failures = [r for c in suite for r in c.result if isinstance(r, Failure)]
    [failure] = failures  # the real change only
    assert failure.message.startswith("slower: median")
    assert "; confirmed: slower again (×" in failure.message
    assert "launches interleaved with the baseline's file" in failure.message

    # the confirmation run measured both files, launch by launch, in one run of its own
    confirm = Store.open(str(tmp_path / "results")).load_run(conf["run_id"])
    paths = sorted(Path(e.job.model.path).parent.name + "/" + Path(e.job.model.path).name
                   for e in confirm.entries)
    assert paths == ["night1/grow.tflite", "night1/net.tflite", "night2/grow.tflite",
                     "night2/net.tflite"]
    assert all(len(e.raw.samples_ms) == 3 for e in confirm.entries if e.raw is not None)
