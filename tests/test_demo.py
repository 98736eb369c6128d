"""`quantlab demo`: train → quantize → evaluate → bench on the simulator → report, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import require_tool
from fixtures.report.checks import CHROMIUM, check_in_chromium, independent_best, picked
from fixtures.serve.journey import walk
from fixtures.serve.server import serving

from quantlab.harness.report.html import SECTIONS
from quantlab.harness.store import Store

ROOT = Path(__file__).resolve().parent.parent


def test_demo_end_to_end(tmp_path: Path) -> None:
    out, res = tmp_path / "demo", tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "quantlab", "demo", "--out", str(out), "--results",
         str(res), "--schemes", "fp32,int8,coreml-fp16", "--iterations", "20", "--repeats", "1",
         "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {r["scheme"]: r for r in data["variants"]}
    assert set(rows) == {"fp32", "int8"}  # the Core ML variant is made but not run on the host
    for r in rows.values():
        assert r["status"] == "ok", r["error"]
        assert r["median_ms"] > 0 and r["metric"] == "top1"
        assert 0.8 < r["accuracy"] <= 1.0  # a trained model, not chance (0.1)
        assert r["gate"] is True and r["edge_cases_ok"] is True
    assert rows["int8"]["size_bytes"] < rows["fp32"]["size_bytes"] / 2
    assert rows["fp32"]["speedup_vs_fp32"] == 1.0
    assert (out / "variants" / "coreml-fp16.mlpackage").is_dir()
    html = Path(data["report"]).read_text()
    assert data["run_id"] in html and "int8" in html

    store = Store.open(str(res))
    record = store.load_run(data["run_id"])
    assert record.status == "done"
    assert all(e.raw and e.raw.ops for e in record.entries)  # per-op profile was taken
    evals = store.evaluations({e.job.model.sha256 for e in record.entries})
    assert len(evals) == 2
    # recommend on the demo run agrees with the raw samples and evaluations in the store
    rec = subprocess.run(
        [sys.executable, "-m", "quantlab", "recommend", data["run_id"], "--results",
         str(res), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert rec.returncode == 0, rec.stderr
    assert picked(json.loads(rec.stdout)) == independent_best(store, data["run_id"], 0.03)
    store.close()
    assert data["recommendation"][0]["best"] in {"fp32", "int8"}
    # the demo's report as a user opens it (last: without chromium only this part skips)
    require_tool("chromium", f"{CHROMIUM} is not installed: the demo's report was not opened",
                 found=Path(CHROMIUM).exists())
    check_in_chromium(Path(data["report"]), Path("results/report-screenshot.png"),
                      SECTIONS, min_plots=3)
    # and served: the dashboard's walk on the demo's store (its one run compared with itself)
    with serving("--results", str(res)) as info:
        seen = walk(str(info["url"]), tmp_path / "screenshots")
    assert seen.console_errors == [] and seen.run_id == data["run_id"]
    assert seen.compared == (data["run_id"], data["run_id"]) and "passes" in seen.gate
    assert "fp32 (fp32.tflite)" in seen.trend_text or "int8 (int8.tflite)" in seen.trend_text
    for name, path in seen.screenshots.items():
        print(f"screenshot {name}: {path}")


def test_detection_demo_report(tmp_path: Path) -> None:
    """`demo --task detection`: shapes detector → quantize → mAP, agreement, calibration →
    bench → report, the report opened in headless Chromium."""
    out, res = tmp_path / "demo", tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "quantlab", "demo", "--task", "detection", "--out",
         str(out), "--results", str(res), "--schemes", "fp32,int8", "--iterations", "20",
         "--repeats", "1", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["task"] == "detection"
    rows = {r["scheme"]: r for r in data["variants"]}
    assert set(rows) == {"fp32", "int8"}
    for r in rows.values():
        assert r["metric"] == "map" and 0.5 < r["accuracy"] <= 1.0
        assert r["median_ms"] > 0 and r["agreement"] > 0.9
    assert rows["fp32"]["agreement"] == 1.0 and rows["fp32"]["gate"] is True
    # Whether int8 passes its 2 pt mAP gate depends on how the detector trained on this CPU
    # (+1.1 pt here, +2.06 pt on another 2-core machine), and which variant is faster on a
    # loaded machine is a measurement: the demo may honestly fail int8, and then says so in
    # the table's units; the pick is the fastest variant that passes. Its post-processed
    # detections differ from the float model's in row order (cosine 0.89 compared row by
    # row), which once made the numerics gate leave int8 out, unsaid: rows are matched now,
    # the delegate is judged against int8 itself on the host, and numerics leave nothing out
    int8 = rows["int8"]
    assert int8["gate"] is (int8["drop"] <= 0.02), int8
    (rec,) = data["recommendation"]
    passing = [r for r in rows.values() if r["gate"]]
    assert rec["best"] == min(passing, key=lambda r: r["median_ms"])["scheme"], (rec, rows)
    assert rec["excluded"] == ([] if int8["gate"] else [
        f"int8 (int8.tflite) · xnnpack: accuracy drop {100 * int8['drop']:.2f} pt > 2.00 pt"]
    ), rec
    html = Path(data["report"]).read_text()
    for text in ("Task metrics, agreement and confidence calibration", "agreement_map50",
                 "map50", "Confidence scores"):
        assert text in html, text
    require_tool("chromium", f"{CHROMIUM} is not installed: the demo's report was not opened",
                 found=Path(CHROMIUM).exists())
    check_in_chromium(Path(data["report"]), Path("results/report-detection-screenshot.png"),
                      SECTIONS, min_plots=4)


def test_demo_bad_scheme_fails_before_training(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "quantlab", "demo", "--out", str(out), "--results",
         str(tmp_path / "results"), "--schemes", "fp32,int9"],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown scheme 'int9'" in lines[0]
    assert not out.exists()
