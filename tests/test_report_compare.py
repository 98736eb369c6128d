"""compare: a slower run is "slower" with exit 1; identical settings → no difference, exit 0."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.report.runs import job, measure, open_store, store_run
from typer.testing import CliRunner

from quantlab.harness.cli.main import app
from quantlab.harness.verdicts.compare import compare_runs
from quantlab.harness.verdicts.latency import parse_threshold

runner = CliRunner()


def _two_runs(tmp_path: Path, base_size: int, new_size: int) -> tuple[str, str]:
    """Baseline sorts ``base_size`` floats per inference, the new run ``new_size``.

    Both runs hold the same job (same model sha256, device, delegate, threads),
    so compare matches them; the samples are measured interleaved.
    """
    store = open_store(tmp_path)
    base, new = measure([base_size, new_size])
    j = job("int8")
    a = store_run(store, [j], [base])
    b = store_run(store, [j], [new])
    return a, b


def test_slower_run_fails_the_gate(tmp_path: Path) -> None:
    a, b = _two_runs(tmp_path, 20_000, 120_000)
    res = runner.invoke(app, ["compare", a, b, "--results", str(tmp_path), "--json"])
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    assert data["regressed"] is True
    [m] = data["matches"]
    assert m["verdict"] == "slower"
    assert m["ratio"] > 1.05 and m["ratio_ci95"][0] > 1.05
    assert m["p_value"] < 0.05
    # the other way round it is faster, and the gate passes
    res = runner.invoke(app, ["compare", b, a, "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "faster" in res.stdout


def test_identical_settings_show_no_significant_difference(tmp_path: Path) -> None:
    a, b = _two_runs(tmp_path, 20_000, 20_000)
    res = runner.invoke(app, ["compare", a, b, "--results", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["regressed"] is False
    assert [m["verdict"] for m in data["matches"]] != ["slower"]
    assert 0.8 < data["matches"][0]["ratio"] < 1.2


def test_unmatched_jobs_are_listed(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    s1, s2 = measure([5000, 5000], iterations=10)
    a = store_run(store, [job("int8"), job("fp16", delegate="cpu")], [s1, s2])
    b = store_run(store, [job("int8"), job("fp32")], [s1, s2])
    c = compare_runs(store.load_run(a), store.load_run(b))
    assert len(c.matches) == 1 and c.matches[0].verdict == "no significant difference"
    assert len(c.only_in_baseline) == 1 and "cpu" in c.only_in_baseline[0].label
    assert len(c.only_in_new) == 1 and "fp32" in c.only_in_new[0].label
    # the baseline's fp16 job is not in the new run: missing, which fails unless accepted
    assert c.only_in_baseline[0].verdict == "missing" and c.fails
    res = runner.invoke(app, ["compare", a, b, "--results", str(tmp_path)])
    assert res.exit_code == 1 and "only in new run" in res.stdout and "missing" in res.stdout
    res = runner.invoke(app, ["compare", a, b, "--allow-missing", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output


def test_threshold_parsing_and_bad_values(tmp_path: Path) -> None:
    assert parse_threshold("5%") == 0.05
    assert parse_threshold("0.1") == 0.1
    open_store(tmp_path)
    res = runner.invoke(app, ["compare", "x", "y", "--threshold", "lots",
                              "--results", str(tmp_path)])
    assert res.exit_code == 2
    assert "--threshold 'lots'" in res.stderr


def test_verdict_rules_on_synthetic_samples() -> None:
    import numpy as np

    from quantlab.harness.verdicts.latency import verdict

    rng = np.random.default_rng(1)
    base = rng.normal(10.0, 0.2, 300)
    assert verdict(base, base * 1.03, 0.05)[0] == "no significant difference"  # under threshold
    assert verdict(base, base * 1.10, 0.05)[0] == "slower"
    assert verdict(base, base * 0.80, 0.05)[0] == "faster"
    assert verdict(base, base * 1.10, 0.05, ci=(0.98, 1.2))[0] == "no significant difference"
