"""recommend agrees with the store's numbers (recomputed here independently); export round-trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
from fixtures.report.checks import independent_best, picked
from fixtures.report.runs import job, measure, open_store, store_run
from typer.testing import CliRunner

from harness.cli.main import app

runner = CliRunner()


def _run(tmp_path: Path, evaluate: bool) -> tuple[object, str]:
    store = open_store(tmp_path)
    jobs = [job("fp32", size=40_000), job("int8", size=10_000), job("fp16", size=20_000),
            job("int8", delegate="cpu", size=10_000), job("fp32", device="phone", size=40_000)]
    samples = measure([8000, 30_000, 15_000, 60_000, 12_000], iterations=20)
    rid = store_run(store, jobs, samples)
    if evaluate:
        for scheme, drop in (("fp32", 0.0), ("int8", 0.08), ("fp16", 0.001)):
            m = job(scheme).model
            store.save_evaluation(m.sha256, scheme, m.path, None, "top1", 0.9 - drop, 0.9, drop,
                                  0.03, drop <= 0.03, {})
    return store, rid


def test_recommend_matches_store_numbers(tmp_path: Path) -> None:
    store, rid = _run(tmp_path, evaluate=True)
    res = runner.invoke(app, ["recommend", rid, "--results", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert picked(data) == independent_best(store, rid, 0.03)
    sim = next(d for d in data["devices"] if d["device"] == "sim")
    assert sim["best"]["scheme"] != "int8"  # int8 dropped 8% > 3%: gated out
    assert sim["runner_up"] is not None and sim["gives_up"].endswith("%)")
    assert any("int8" in x and "0.08" in x for x in sim["excluded"])
    # a looser gate lets int8 in; the pick again agrees with the raw numbers
    res = runner.invoke(app, ["recommend", rid, "--max-drop", "0.1", "--results", str(tmp_path),
                              "--json"])
    assert picked(json.loads(res.stdout)) == independent_best(store, rid, 0.1)
    res = runner.invoke(app, ["recommend", rid, "--results", str(tmp_path)])
    assert res.exit_code == 0 and "ms" in res.stdout


def test_recommend_without_evaluations_says_so(tmp_path: Path) -> None:
    store, rid = _run(tmp_path, evaluate=False)
    data = json.loads(runner.invoke(app, ["recommend", rid, "--results", str(tmp_path),
                                          "--json"]).stdout)
    assert picked(data) == independent_best(store, rid, None)
    assert all("accuracy not evaluated" in d["note"] for d in data["devices"])
    data = json.loads(runner.invoke(app, ["recommend", rid, "--by", "size", "--results",
                                          str(tmp_path), "--json"]).stdout)
    assert next(d for d in data["devices"] if d["device"] == "sim")["best"]["scheme"] == "int8"
    data = json.loads(runner.invoke(app, ["recommend", rid, "--by", "energy", "--results",
                                          str(tmp_path), "--json"]).stdout)
    assert all(d["best"] is None and "energy" in d["note"] for d in data["devices"])
    res = runner.invoke(app, ["recommend", rid, "--by", "speed", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "--by 'speed'" in res.stderr


def test_nothing_passes(tmp_path: Path) -> None:
    store, rid = _run(tmp_path, evaluate=True)
    data = json.loads(runner.invoke(app, ["recommend", rid, "--max-drop", "0", "--results",
                                          str(tmp_path), "--json"]).stdout)
    # fp32 has drop 0.0 and passes a zero gate; on "phone" only fp32 ran
    assert picked(data) == independent_best(store, rid, 0.0)
    store.save_evaluation(job("fp32").model.sha256, "fp32", "x", None, "top1", 0.5, 0.9, 0.4,
                          0.03, False, {})
    data = json.loads(runner.invoke(app, ["recommend", rid, "--max-drop", "0", "--results",
                                          str(tmp_path), "--json"]).stdout)
    phone = next(d for d in data["devices"] if d["device"] == "phone")
    assert phone["best"] is None and "no variant passes" in phone["note"]


def test_export_round_trips_row_counts(tmp_path: Path) -> None:
    store, rid = _run(tmp_path, evaluate=False)
    n_jobs = len(store.table_rows("jobs", rid))  # type: ignore[attr-defined]
    n_samples = len(store.table_rows("samples", rid))  # type: ignore[attr-defined]
    n_ops = len(store.table_rows("ops", rid))  # type: ignore[attr-defined]
    assert n_samples == 5 * 2 * 20 and n_ops == 5 * 5
    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"out-{fmt}"
        res = runner.invoke(app, ["export", rid, "--format", fmt, "--out", str(out),
                                  "--results", str(tmp_path)])
        assert res.exit_code == 0, res.output
        counts = {}
        for name in ("results", "samples", "ops"):
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                with path.open(newline="") as f:
                    counts[name] = sum(1 for _ in csv.DictReader(f))
            elif fmt == "json":
                counts[name] = len(json.loads(path.read_text()))
            else:
                counts[name] = pq.read_table(path).num_rows
        assert counts == {"results": n_jobs, "samples": n_samples, "ops": n_ops}
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    res = runner.invoke(app, ["export", rid, "--format", "xlsx", "--out", str(tmp_path / "x"),
                              "--results", str(tmp_path)])
    assert res.exit_code == 2 and "--format 'xlsx'" in res.stderr
