"""recommend agrees with the store's numbers (recomputed here independently); export round-trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fixtures.report.checks import independent_best, picked
from fixtures.report.runs import job, measure, open_store, store_run
from typer.testing import CliRunner

from quantlab.harness.cli.main import app

runner = CliRunner()


def _run(tmp_path: Path, evaluate: bool) -> tuple[Any, str]:
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
    assert sim["runner_up"] is not None and "%)" in sim["gives_up"]
    assert sim["best"]["latency_ci95"] is not None
    assert any("int8" in x and "drop 8.00 pt > 3.00 pt" in x for x in sim["excluded"])
    # a looser gate lets int8 in; the pick again agrees with the raw numbers
    res = runner.invoke(app, ["recommend", rid, "--max-drop", "0.1", "--results", str(tmp_path),
                              "--json"])
    assert picked(json.loads(res.stdout)) == independent_best(store, rid, 0.1)
    res = runner.invoke(app, ["recommend", rid, "--results", str(tmp_path)])
    assert res.exit_code == 0 and "ms" in res.stdout
    # the terminal says what was left out and why, as the JSON does
    left = [line for line in res.stdout.splitlines() if line.startswith("left out sim: ")]
    assert any("int8" in line and "8.00 pt" in line for line in left), res.stdout


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


def write_tsv(rows: list[dict[str, Any]], path: Path) -> None:
    """An export format registered by a test: tab-separated values."""
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)),
                           delimiter="\t")
        w.writeheader()
        w.writerows(rows)


def test_an_export_format_is_a_writer_and_one_registry_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quantlab.harness.export_formats import EXPORT_FORMATS

    store, rid = _run(tmp_path, evaluate=False)
    monkeypatch.setitem(EXPORT_FORMATS, "tsv", f"{__name__}:write_tsv")
    res = runner.invoke(app, ["export", rid, "--format", "tsv", "--out", str(tmp_path / "t"),
                              "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    with (tmp_path / "t" / "samples.tsv").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == len(store.table_rows("samples", rid))  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- energy classes

RAILS = "sum of on-device power-monitor rails, idle baseline subtracted"
GAUGE = "battery gauge (whole phone), idle baseline subtracted"


def _energy_run(tmp_path: Path) -> tuple[object, str]:
    """One run: a phone with rail, gauge and gauge-on-USB figures; a host with RAPL."""
    from quantlab.harness.records import DeviceInfo, Energy, Plan, RawResult, Run
    from quantlab.harness.store import new_run_id, utcnow

    store = open_store(tmp_path)
    specs = [  # (scheme, delegate, device, method, mJ, extra detail)
        ("fp32", "xnnpack", "phone", "odpm-rails", 5.0, {}),
        ("int8", "xnnpack", "phone", "odpm-rails", 2.0, {}),
        ("int8", "gpu", "phone", "odpm-rails", 3.0, {}),
        ("fp16", "xnnpack", "phone", "battery-gauge", 1.0, {}),  # lowest, other class
        ("fp16", "gpu", "phone", "battery-gauge", 0.4,
         {"on_external_power": True, "power_source": "USB"}),
        ("fp32", "xnnpack", "sim", "rapl", 9.0, {}),
        ("int8", "xnnpack", "sim", "rapl", 4.0, {}),
    ]
    jobs = [job(s, delegate=d, device=dev) for s, d, dev, *_ in specs]
    run = Run(run_id=new_run_id(), created_at=utcnow(), host="testhost", command="test",
              settings=jobs[0].settings)
    devices = [DeviceInfo(id=d, platform="sim", name=d) for d in ("phone", "sim")]
    store.create_run(run, Plan(jobs=tuple(jobs)), devices)
    for j, (_s, _d, _dev, method, mj, detail) in zip(jobs, specs, strict=True):
        label = {"odpm-rails": RAILS, "battery-gauge": GAUGE}.get(method, "CPU package")
        if detail.get("on_external_power"):
            label += "; taken on USB power (kept by --energy-on-usb)"
        store.mark_running(run.run_id, j.job_id)
        store.save_result(run.run_id, j.job_id, RawResult(
            job_id=j.job_id, status="ok", samples_ms=((1.0, 1.1, 0.9, 1.05, 0.95),),
            energy=Energy(method=method, mj_per_inference=mj, baseline_mw=100.0, samples=20,
                          label=label, detail=detail)))
    store.finish_run(run.run_id, "done")
    return store, run.run_id


def test_recommend_by_energy_ranks_within_one_class(tmp_path: Path) -> None:
    _, rid = _energy_run(tmp_path)
    res = runner.invoke(app, ["recommend", rid, "--by", "energy", "--results", str(tmp_path),
                              "--json"])
    assert res.exit_code == 0, res.output
    devices = {d["device"]: d for d in json.loads(res.stdout)["devices"]}
    phone = devices["phone"]
    # three rail figures outnumber the gauge ones: rails are ranked, the 1.0 and 0.4 mJ gauge
    # figures do not "win" against them
    assert phone["energy_class"] == "device-rails"
    assert (phone["best"]["scheme"], phone["best"]["delegate"]) == ("int8", "xnnpack")
    assert (phone["runner_up"]["scheme"], phone["runner_up"]["delegate"]) == ("int8", "gpu")
    assert phone["best"]["energy_class"] == "device-rails"
    assert phone["best"]["energy_label"] == RAILS
    left = {(d["model"].split()[0], d["delegate"]): d for d in phone["energy_left_out"]}
    assert set(left) == {("fp16", "xnnpack"), ("fp16", "gpu")}
    assert left[("fp16", "xnnpack")]["energy_class"] == "battery-gauge"
    assert left[("fp16", "gpu")]["energy_class"] == "battery-gauge on USB power"
    assert all("not compared" in d["reason"] for d in left.values())
    assert "energy ranked within device-rails only" in phone["note"]
    assert sum("not compared" in x for x in phone["excluded"]) == 2
    sim = devices["sim"]  # the host's RAPL figures are ranked on their own device only
    assert sim["energy_class"] == "host-package" and sim["energy_left_out"] == []
    assert sim["best"]["scheme"] == "int8"
    # the user picks the class: the gauge figure is ranked, the rails are left out
    res = runner.invoke(app, ["recommend", rid, "--by", "energy", "--energy-class",
                              "battery-gauge", "--results", str(tmp_path), "--json"])
    phone = next(d for d in json.loads(res.stdout)["devices"] if d["device"] == "phone")
    assert phone["energy_class"] == "battery-gauge" and phone["runner_up"] is None
    assert (phone["best"]["scheme"], phone["best"]["delegate"]) == ("fp16", "xnnpack")
    assert sorted(d["energy_class"] for d in phone["energy_left_out"]) == [
        "battery-gauge on USB power", "device-rails", "device-rails", "device-rails"]
    # terminal: the ranked class and label, and each left-out figure with its reason
    res = runner.invoke(app, ["recommend", rid, "--by", "energy", "--results", str(tmp_path)],
                        terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "phone best: int8 (model-int8.tflite) · xnnpack — 2 mJ/inference, device-rails" \
        in res.stdout
    assert "on-device power-monitor rails" in res.stdout
    assert res.stdout.count("left out phone:") == 2 and "battery-gauge on USB power" in res.stdout
    res = runner.invoke(app, ["recommend", rid, "--by", "energy", "--energy-class", "joules",
                              "--results", str(tmp_path)])
    assert res.exit_code == 2 and "unknown class" in res.stderr


def test_energy_label_and_class_wherever_the_figure_is(tmp_path: Path) -> None:
    _, rid = _energy_run(tmp_path)
    # show --json and the terminal table
    data = json.loads(runner.invoke(app, ["show", rid, "--results", str(tmp_path),
                                          "--json"]).stdout)
    energies = [r["energy"] for r in data["results"]]
    assert {e["comparability"] for e in energies} == {"device-rails", "battery-gauge",
                                                      "host-package"}
    assert all(e["label"] for e in energies)
    res = runner.invoke(app, ["show", rid, "--results", str(tmp_path)], terminal_width=220)
    assert res.exit_code == 0, res.output
    assert ("energy model-int8 · phone · xnnpack: 2 mJ/inference · device-rails "
            f"(odpm-rails) · {RAILS} · idle 100 mW subtracted") in res.stdout
    assert "9 mJ/inference · host-package (rapl)" in res.stdout
    assert "battery-gauge (battery-gauge) · battery gauge (whole phone)" in res.stdout
    # HTML energy section
    html = tmp_path / "r.html"
    assert runner.invoke(app, ["report", rid, "--html", str(html), "--results",
                               str(tmp_path)]).exit_code == 0
    text = html.read_text()
    assert "class device-rails (method odpm-rails)" in text and RAILS in text
    assert "comparable only within one class on one device" in text
    # exports: every results row has the class and label columns
    out = tmp_path / "csv"
    assert runner.invoke(app, ["export", rid, "--format", "csv", "--out", str(out),
                               "--results", str(tmp_path)]).exit_code == 0
    with (out / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["energy.comparability"] for r in rows} == {"device-rails", "battery-gauge",
                                                        "host-package"}
    assert all(r["energy.label"] for r in rows)


def test_runner_up_significance_is_compares_test_not_overlapping_intervals() -> None:
    """The runner-up is 11 % slower: each median's 95 % CI overlaps the other's (wide
    within-launch spread), yet compare's test on the pair calls it slower — overlapping
    intervals do not mean no difference. A runner-up within the threshold is no
    significant difference by that same test; one without a test says why."""
    import numpy as np
    from series_runs import entry, job, record

    from quantlab.harness.report.recommend import recommend

    spread = tuple(float(x) for x in np.linspace(0.4, 1.6, 100))
    launches = (1.0, 1.01, 0.99, 1.0)
    best = entry(job("/v/int8.tflite", "aa", "int8"), 1.0, launches=launches, pattern=spread)
    slow = entry(job("/v/fp16.tflite", "bb", "fp16"), 1.11, launches=launches,
                 pattern=spread)
    [rec] = recommend(record(1, [best, slow]), {})
    assert rec.best is not None and rec.best.scheme == "int8"
    assert rec.runner_up is not None and rec.best.latency_ci95 and rec.runner_up.latency_ci95
    assert rec.best.latency_ci95[1] > rec.runner_up.latency_ci95[0]  # the intervals overlap
    assert rec.gives_up is not None and "compare's test: slower" in rec.gives_up
    assert "not a significant difference" not in rec.gives_up

    close = entry(job("/v/fp16.tflite", "bb", "fp16"), 1.002, launches=launches,
                  pattern=spread)
    [rec] = recommend(record(1, [best, close]), {})
    assert rec.gives_up is not None
    assert "compare's test: no significant difference" in rec.gives_up
    far = entry(job("/v/fp32.tflite", "cc", "fp32"), 2.0, launches=(1.0,))
    lone = entry(job("/v/int8.tflite", "aa", "int8"), 1.0, launches=(1.0,))
    [rec] = recommend(record(1, [lone, far]), {})
    assert rec.gives_up is not None and "(+100.0%)" in rec.gives_up
    assert "compare's test: slower" in rec.gives_up and "one launch" in rec.gives_up


def test_a_delegate_whose_numerics_fail_on_the_device_is_left_out() -> None:
    """The GPU is fastest, but its outputs on the phone point elsewhere than the float
    model's: it is excluded with the reason; a delegate that could not be checked stays."""
    from dataclasses import replace

    from quantlab.harness.report.recommend import Candidate, recommend_device

    def cand(delegate: str, ms: float, numerics: bool | None, why: str = "") -> Candidate:
        return Candidate(model="int8", sha256="a" * 64, scheme="int8", delegate=delegate,
                         threads=1, latency_ms=ms, latency_statistic="median",
                         latency_method="per-iteration", energy_mj=None, size_bytes=1000,
                         accuracy="passed", drop=0.0, metric="top1", job_id=delegate,
                         numerics=numerics, numerics_why=why)

    gpu = cand("gpu", 1.0, False, "cosine 0.1200 vs the float model is below 0.99")
    litert = cand("litert-gpu", 1.5, None, "numerics not checked: no outputs")
    cpu = cand("xnnpack", 3.0, True)
    rec = recommend_device("phone", [gpu, litert, cpu], "latency", 0.03)
    assert rec.best is not None and rec.best.delegate == "litert-gpu"
    assert rec.excluded == ["int8 · gpu: cosine 0.1200 vs the float model is below 0.99 "
                            "(measured on the device)"]
    assert "numerics gate: cosine ≥ 0.99 where measured" in rec.note
    none = recommend_device("phone", [gpu, replace(gpu, delegate="nnapi")], "latency", 0.03)
    assert none.best is None and "every candidate fails the numerics gate" in none.note


def test_a_left_out_variants_drop_is_in_the_tables_units() -> None:
    """The left-out line says 2.06 pt > 2.00 pt, as the evaluate and demo tables do, not
    the raw fractions (0.020621477968469137 > 0.02); MSE keeps its own units."""
    from dataclasses import replace

    from quantlab.harness.report.recommend import Candidate, recommend_device

    fp32 = Candidate(model="fp32", sha256="a" * 64, scheme="fp32", delegate="xnnpack",
                     threads=1, latency_ms=3.0, latency_statistic="median",
                     latency_method="per-iteration", energy_mj=None, size_bytes=1000,
                     accuracy="passed", drop=0.0, metric="map", job_id="j1", gate=0.005)
    int8 = replace(fp32, model="int8", scheme="int8", latency_ms=1.0, accuracy="failed",
                   drop=0.020621477968469137, gate=0.02, job_id="j2")
    rec = recommend_device("sim", [fp32, int8], "latency", None)
    assert rec.excluded == ["int8 · xnnpack: accuracy drop 2.06 pt > 2.00 pt"], rec.excluded
    mse = replace(int8, metric="mse", drop=0.0123, gate=0.01)
    rec = recommend_device("sim", [fp32, mse], "latency", None)
    assert rec.excluded == ["int8 · xnnpack: accuracy mse rise +0.0123 > 0.01"], rec.excluded


def test_default_gate_is_each_variants_own_from_evaluate(tmp_path: Path) -> None:
    """evaluate gates fp16 at 0.005 and int8 at 0.02 by default; recommend agrees with those
    verdicts unless --max-drop sets one bound for every variant."""
    store = open_store(tmp_path)
    jobs = [job("fp16", size=20_000), job("int8", size=10_000)]
    rid = store_run(store, jobs, measure([8000, 30_000], iterations=20))
    for scheme, drop, gate in (("fp16", 0.01, 0.005), ("int8", 0.01, 0.02)):
        m = job(scheme).model
        store.save_evaluation(m.sha256, scheme, m.path, None, "top1", 0.9 - drop, 0.9, drop,
                              gate, drop <= gate, {})
    data = json.loads(runner.invoke(app, ["recommend", rid, "--results", str(tmp_path),
                                          "--json"]).stdout)
    sim = data["devices"][0]
    assert sim["best"]["scheme"] == "int8" and data["max_drop"] is None
    assert any("fp16" in x and "1.00 pt > 0.50 pt" in x for x in sim["excluded"]), \
        sim["excluded"]
    assert "each variant's own" in sim["note"]
    data = json.loads(runner.invoke(app, ["recommend", rid, "--max-drop", "0.03", "--results",
                                          str(tmp_path), "--json"]).stdout)
    assert data["devices"][0]["best"]["scheme"] == "fp16"  # faster, and within 0.03


def test_device_accuracy_gates_where_measured_and_the_note_names_the_gate(
        tmp_path: Path) -> None:
    """fp32 passes on the host, but its outputs on sim · xnnpack lost 8 points (evaluate
    --device): there that evaluation gates it; on the phone, unmeasured, the host's does."""
    store, rid = _run(tmp_path, evaluate=True)
    fp32 = job("fp32").model
    store.save_evaluation(fp32.sha256, "fp32", fp32.path, None, "top1", 0.82, 0.9, 0.08, 0.005,
                          False, {}, where={"device": "sim", "delegate": "xnnpack",
                                            "runtime": "litert", "runtime_version": "2.3.0",
                                            "sample_set": "ab" * 32})
    data = json.loads(runner.invoke(app, ["recommend", rid, "--results", str(tmp_path),
                                          "--json"]).stdout)
    sim = next(d for d in data["devices"] if d["device"] == "sim")
    phone = next(d for d in data["devices"] if d["device"] == "phone")
    assert sim["best"]["scheme"] == "fp16" and sim["best"]["gated_on"] == "host"
    assert any(x.startswith("fp32") and "xnnpack" in x and x.endswith("on the device")
               for x in sim["excluded"]), sim["excluded"]
    assert "on the device's own outputs (evaluate --device) for 1 of" in sim["note"]
    assert phone["best"]["scheme"] == "fp32" and phone["best"]["gated_on"] == "host"
    assert "device's own outputs" not in phone["note"]
    # the host's figure for fp32 is untouched: what the device measured never stands in
    assert store.evaluations([fp32.sha256])[fp32.sha256]["passed"]
