"""The HTML report: every section present, plots rendered, no console errors in Chromium."""

from __future__ import annotations

from pathlib import Path

from conftest import require_tool
from fixtures.report.checks import CHROMIUM, check_in_chromium
from fixtures.report.runs import job, measure, open_store, store_run
from typer.testing import CliRunner

from quantlab.harness.cli.main import app
from quantlab.harness.records import Skipped
from quantlab.harness.report.html import SECTIONS

runner = CliRunner()


def _report(tmp_path: Path) -> Path:
    store = open_store(tmp_path)
    jobs = [job("fp32", size=40_000), job("int8", size=10_000),
            job("int8", delegate="cpu", size=10_000)]
    s = measure([20_000, 8000, 30_000, 20_000, 8000, 30_000], iterations=40)
    base = store_run(store, jobs, s[:3])
    skipped = (Skipped(job("fp16", delegate="gpu"), "gpu: no GPU delegate on the simulator"),)
    new = store_run(store, jobs, s[3:], skipped=skipped, failed=job("mixed-int8"))
    for scheme, drop in (("fp32", 0.0), ("int8", 0.012)):
        m = job(scheme).model
        store.save_evaluation(m.sha256, scheme, m.path, None, "top1", 0.91 - drop, 0.91, drop,
                              0.03, True, {})
    m = job("int8").model  # and on the device: sim · cpu lost 9 points there
    for delegate, value in (("xnnpack", 0.895), ("cpu", 0.82)):
        gate = {"metric": "top1", "drop": 0.91 - value, "drop_pt": 100 * (0.91 - value),
                "interval": {"low": 0.9 - value, "high": 0.92 - value}}
        store.save_evaluation(m.sha256, "int8", m.path, None, "top1", value, 0.91, 0.91 - value,
                              0.02, value > 0.89, {"gate": gate, "samples": 500, "vs_host": {
                                  "drop": 0.895 - value, "drop_pt": 100 * (0.895 - value)},
                                  "run": {"runner_detail": "batch 64"}},
                              where={"device": "sim", "delegate": delegate, "runtime": "litert",
                                     "runtime_version": "2.3.0", "sample_set": "cd" * 32})
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", new, "--html", str(out), "--baseline", base,
                              "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    return out


def test_report_has_every_section(tmp_path: Path) -> None:
    text = _report(tmp_path).read_text()
    for key in SECTIONS:
        assert f'data-section="{key}"' in text
    for ref in ('src="http', "src='http", 'href="http', "@import", "<link"):
        assert ref not in text  # no CDN, nothing fetched
    assert "<script" not in text
    assert text.count("<svg") >= 4  # latency, accuracy, two op-type plots at least
    assert "unsupported op FOO" in text and "no GPU delegate" in text
    assert "ran inside xnnpack delegate" in text and "CPU builtin kernels" in text
    assert "no data" not in text.split('data-section="comparison"')[1]
    device = text.split('data-section="device-accuracy"')[1].split("</section>")[0]
    assert "<th>sim · cpu</th>" in device and "0.82 FAIL" in device and "0.895 pass" in device
    assert "+7.50 pt" in device  # what the device changed against int8 on the host


def test_empty_sections_say_no_data(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    rid = store_run(store, [], [], failed=job("fp32"))
    from quantlab.harness.report.html import write_report

    text = write_report(store, [rid], tmp_path / "r.html").read_text()
    for key in ("latency", "accuracy", "device-accuracy", "ops", "resources", "comparison"):
        assert "no data" in text.split(f'data-section="{key}"')[1].split("</section>")[0]


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    require_tool("chromium", f"{CHROMIUM} is not installed", found=Path(CHROMIUM).exists())
    check_in_chromium(_report(tmp_path), Path("results/report-fixture-screenshot.png"),
                      SECTIONS, min_plots=4)
