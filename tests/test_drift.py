"""Slow drift: a series that gets a little slower every night, each step under the
threshold, is flagged against a fixed reference with a trend test over the window; noise
around a flat line is not.

Samples are a level times a fixed pattern (tests/series_runs.py): each night's median is
exactly its level, so the drift and the noise are the numbers the test chose.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from series_runs import PATTERN, entry, job, record, run_id, store_record
from typer.testing import CliRunner

from quantlab.harness.cli.main import app
from quantlab.harness.store import RunRecord, Store
from quantlab.harness.verdicts.history import build_history, series_drift

runner = CliRunner()
LAUNCHES = (1.0, 1.003, 0.997)


def _nights(levels: list[float], launches: tuple[float, ...] = LAUNCHES,
            pattern: tuple[float, ...] = PATTERN) -> list[RunRecord]:
    j = job("/lab/models/net.tflite", "aa")
    return [record(night, [entry(j, level, launches=launches, pattern=pattern)])
            for night, level in enumerate(levels, start=1)]


def test_four_percent_a_night_is_flagged_by_the_third_night() -> None:
    records = _nights([1.04 ** k for k in range(5)])
    for k in range(1, 6):
        [series] = build_history(records[:k], 0.05).series
        assert series.change_points == []  # each step is 4 %: under the 5 % threshold
        drift = series.drift
        assert drift is not None
        if k < 3:
            assert drift.verdict == "none" and not drift.flagged
            continue
        assert drift.verdict == "slower", (k, drift)
        assert drift.reference_run == run_id(1) and drift.latest_run == run_id(k)
        assert drift.runs == k
        assert drift.cumulative is not None
        assert abs(drift.cumulative - 1.04 ** (k - 1)) < 1e-6  # reported: ×1.082 by night 3
        assert drift.trend_per_run is not None and abs(drift.trend_per_run - 1.04) < 1e-6
        assert "drift slower" in drift.text()


def test_noise_of_3_percent_around_a_flat_line_is_never_flagged() -> None:
    """Fifty seeded series of eight nights, each night's level uniform within ±3 % of a
    flat line: two nights can be 6 % apart (compare may call one slower than another),
    but no window of three nights or more is a drift. Every prefix of every series is
    judged from its first night, a window at least as long as history's."""
    for seed in range(50):
        rng = np.random.default_rng(seed)
        records = _nights(list(1.0 + rng.uniform(-0.03, 0.03, 8)), launches=(1.0, 1.003),
                          pattern=PATTERN[:20])
        [series] = build_history(records, 0.05).series
        assert series.drift is not None and not series.drift.flagged, (seed, series.drift)
        entries = [r.entries[0] for r in records]
        for k in range(3, 8):
            drift = series_drift(series.points[:k], entries[:k], 0, 0.05)
            assert not drift.flagged, (seed, k, drift)
            assert drift.cumulative is not None  # the cumulative change is reported all the same


def test_a_step_is_a_change_point_and_restarts_the_drift_window() -> None:
    records = _nights([1.0, 1.0, 1.0, 1.3, 1.3, 1.3])
    [series] = build_history(records, 0.05).series
    [change] = series.change_points
    assert change.status == "confirmed" and change.run_id == run_id(4)
    assert series.drift is not None and not series.drift.flagged
    assert series.drift.reference_run == run_id(4)  # the new level is the reference
    assert abs((series.drift.cumulative or 0) - 1.0) < 1e-6


def test_history_reports_drift_in_json_terminal_and_html(tmp_path: Path) -> None:
    results = str(tmp_path / "results")
    store = Store.open(results)
    for rec in _nights([1.04 ** k for k in range(4)]):
        store_record(store, rec)
    store.close()
    res = runner.invoke(app, ["history", "--json", "--results", results])
    assert res.exit_code == 0, res.output
    [series] = json.loads(res.stdout)["series"]
    drift = series["drift"]
    assert drift["verdict"] == "slower" and drift["flagged"] is True
    assert drift["reference_run"] == run_id(1) and drift["runs"] == 4
    assert abs(drift["cumulative"] - 1.04 ** 3) < 1e-6 and drift["trend_p"] < 0.05
    assert json.loads(res.stdout)["drift_rule"]
    table = runner.invoke(app, ["history", "--results", results], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "drift slower" in table.stdout and "×1.125" in table.stdout
    html = tmp_path / "trends.html"
    res = runner.invoke(app, ["report", "--history", "--html", str(html), "--results",
                              results])
    assert res.exit_code == 0, res.output
    page = html.read_text()
    assert "drift slower" in page and "×1.125" in page
