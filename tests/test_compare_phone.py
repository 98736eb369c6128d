"""compare on phone results: recorded benchmark_model logs imported as runs.

A verdict for every pair, at the level the data supports, named in the output:
one launch's summary (mean, std, count), several launches, or untestable with the
reason. A 3x slowdown is never "no significant difference"; nothing drops out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quantlab.harness.cli.main import app

FIX = Path(__file__).parent / "fixtures" / "android"
LOG = FIX / "cpu_tf42507.txt"  # a real CPU run: count=50 … avg=33209.4 std=450
runner = CliRunner()


def scaled(text: str, factor: float) -> str:
    """The same log with every timing (µs) multiplied by ``factor`` (a slower phone)."""
    def timing_line(m: re.Match[str]) -> str:
        return re.sub(r"(first|curr|min|max|avg|std)=([\d.]+)",
                      lambda k: f"{k.group(1)}={float(k.group(2)) * factor:g}", m.group(0))

    text = re.sub(r"^.*count=\d+.*$", timing_line, text, flags=re.M)
    return re.sub(r"(Init|First inference|Warmup \(avg\)|Inference \(avg\)): ([\d.]+)",
                  lambda k: f"{k.group(1)}: {float(k.group(2)) * factor:g}", text)


def imported(tmp_path: Path, *texts: str, name: str = "log") -> str:
    files = []
    for k, text in enumerate(texts):
        f = tmp_path / f"{name}-{k}.txt"
        f.write_text(text)
        files.append(str(f))
    res = runner.invoke(app, ["import", *files, "--device-name", "pixel",
                              "--results", str(tmp_path / "store"), "--json"])
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["run_id"])


def compare(tmp_path: Path, a: str, b: str, *extra: str) -> tuple[int, dict]:
    res = runner.invoke(app, ["compare", a, b, "--results", str(tmp_path / "store"), "--json",
                              *extra])
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, json.loads(res.stdout)


def test_three_times_slower_phone_run_is_slower_and_exits_1(tmp_path: Path) -> None:
    text = LOG.read_text()
    a = imported(tmp_path, text, name="a")
    b = imported(tmp_path, scaled(text, 3.0), name="b")
    code, data = compare(tmp_path, a, b)
    assert code == 1 and data["regressed"] is True
    [m] = data["matches"]
    assert m["verdict"] == "slower" and m["method"] == "summary" and m["statistic"] == "mean"
    assert m["ratio"] == pytest.approx(3.0, rel=1e-3) and m["ratio_ci95"][0] > 2.5
    assert "variance between launches unknown" in m["reason"]
    assert data["only_in_baseline"] == [] and data["only_in_new"] == []
    # terminal output says what it compared and how
    res = runner.invoke(app, ["compare", a, b, "--results", str(tmp_path / "store")])
    assert res.exit_code == 1 and "slower" in res.stdout and "summary" in res.stdout


def test_same_log_twice_is_no_difference(tmp_path: Path) -> None:
    text = LOG.read_text()
    a = imported(tmp_path, text, name="a")
    b = imported(tmp_path, text, name="b")
    code, data = compare(tmp_path, a, b)
    assert code == 0
    [m] = data["matches"]
    assert m["verdict"] == "no significant difference" and m["ratio"] == 1.0


def test_launches_are_the_samples_when_the_tool_ran_several_times(tmp_path: Path) -> None:
    text = LOG.read_text()
    base = [scaled(text, f) for f in (1.0, 1.02, 0.99)]
    slow = [scaled(text, f) for f in (1.5, 1.53, 1.48)]
    a = imported(tmp_path, *base, name="a")
    b = imported(tmp_path, *slow, name="b")
    code, data = compare(tmp_path, a, b)
    [m] = data["matches"]
    assert code == 1 and m["verdict"] == "slower" and m["method"] == "per-launch"
    assert m["ratio"] == pytest.approx(1.5, rel=0.02)
    # the stored result says how its figure was measured, and keeps each launch
    res = runner.invoke(app, ["show", b, "--results", str(tmp_path / "store"), "--json"])
    lat = json.loads(res.stdout)["results"][0]["latency_ms"]
    assert lat["method"] == "per-launch" and lat["statistic"] == "mean"
    assert lat["launches"] == 3 and lat["median"] is None and lat["ci95"] is not None


def test_a_pair_without_spread_is_untestable_with_the_reason(tmp_path: Path) -> None:
    # the oldest layout: one average per launch, no count= line, no std
    only_avg = ("Graph: [/data/local/tmp/mobilenet.tflite]\n"
                "Average inference timings in us: Warmup: 83235, Init: 38467, "
                "Inference: 79760.9\n")
    a = imported(tmp_path, only_avg, name="a")
    b = imported(tmp_path, only_avg.replace("79760.9", "239282.7"), name="b")
    code, data = compare(tmp_path, a, b)
    [m] = data["matches"]
    assert code == 0 and m["verdict"] == "untestable" and data["untestable"] == 1
    assert "no std" in m["reason"] and "--repeats" in m["reason"]
    assert m["ratio"] == pytest.approx(3.0, rel=1e-3)
    code, _ = compare(tmp_path, a, b, "--fail-untestable")
    assert code == 1
    # a figure the tool did not print stays null and its checks say so
    res = runner.invoke(app, ["show", a, "--results", str(tmp_path / "store"), "--json"])
    r = json.loads(res.stdout)["results"][0]
    assert r["latency_ms"]["std"] is None and r["latency_ms"]["min"] is None
    assert any("not checkable" in w for w in r["stability_not_checkable"])


def test_a_job_that_now_fails_is_a_regression(tmp_path: Path) -> None:
    text = LOG.read_text()
    a = imported(tmp_path, text, name="a")
    broken = text.split("Inference timings")[0] + "ERROR: Failed to invoke the interpreter\n"
    b = imported(tmp_path, broken, name="b")
    code, data = compare(tmp_path, a, b)
    [m] = data["matches"]
    assert code == 1 and m["verdict"] == "failed" and "Failed to invoke" in m["reason"]


def test_ambiguous_match_keys_are_a_clear_error(tmp_path: Path) -> None:
    text = LOG.read_text()
    a = imported(tmp_path, text, name="a")
    b = imported(tmp_path, text, name="b")
    res = runner.invoke(app, ["compare", a, b, "--match", "model,colour",
                              "--results", str(tmp_path / "store")])
    assert res.exit_code == 2 and "--match 'model,colour'" in res.stderr


def test_phone_jobs_are_in_the_html_latency_section(tmp_path: Path) -> None:
    text = LOG.read_text()
    a = imported(tmp_path, text, name="a")
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", a, "--html", str(out),
                              "--results", str(tmp_path / "store")])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    latency = html[html.index('id="latency"'):html.index('id="accuracy"')]
    assert "espcn_harmonic_2x_slim_w_cl.tflite" in latency and "summary" in latency
    assert "mean 33.2 ms" in latency
