"""quantlab explore: Model Explorer node-data files from a real simulator run and a culprit
result, keyed by the node ids Model Explorer's own TFLite adapter gives the model's ops, and
in the format its node_data_builder reads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from quantize_fixtures import QUANTLAB, quantlab
from tflite_build import chain_model

CHAIN = [("ADD", 1.0), ("MUL", 2.0), ("EXP", None), ("LOG", None), ("TANH", None)]


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("explore")
    model = chain_model(d / "chain.tflite", CHAIN)
    bench = quantlab("bench", str(model), "--device", "sim", "--delegate", "cpu,xnnpack",
                     "--profile-ops", "--repeats", "1", "--iterations", "5", "--results",
                     str(d / "r"), "--json")
    assert bench.returncode == 0, bench.stderr
    jobs = {r["delegate"]: r["job_id"] for r in json.loads(bench.stdout)["results"]}
    culprit = quantlab("culprit", str(model), "--delegate", "xnnpack", "--json")
    assert culprit.returncode == 0, culprit.stderr
    (d / "culprit.json").write_text(culprit.stdout)
    out = quantlab("explore", jobs["cpu"], "--vs", jobs["xnnpack"], "--culprit",
                   str(d / "culprit.json"), "--out", str(d / "overlays"), "--results",
                   str(d / "r"), "--json")
    assert out.returncode == 0, out.stderr
    x = quantlab("explore", jobs["xnnpack"], "--out", str(d / "x"), "--results", str(d / "r"),
                 "--json")
    assert x.returncode == 0, x.stderr
    return {"model": model, "files": json.loads(out.stdout)["files"],
            "xnnpack": json.loads(x.stdout)["files"], "dir": d, "jobs": jobs}


def _load(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def test_explore_writes_each_overlay(explored: dict[str, Any]) -> None:
    files = explored["files"]
    assert set(files) == {"latency_ms", "latency_share", "latency_change", "placement",
                          "culprit_sqnr"}
    ms = _load(files["latency_ms"])["results"]
    assert set(ms) == {"0", "1", "2", "3", "4"} and all(v["value"] >= 0 for v in ms.values())
    share = _load(files["latency_share"])["results"]
    assert sum(v["value"] for v in share.values()) == pytest.approx(100, abs=0.01)
    place = _load(files["placement"])
    assert {v["value"] for v in place["results"].values()} == {"CPU"}
    assert "5 CPU" in place["name"]
    xplace = _load(explored["xnnpack"]["placement"])
    assert {v["value"] for v in xplace["results"].values()} == {"XNNPACK"}
    sqnr = _load(files["culprit_sqnr"])["results"]
    assert set(sqnr) == set(ms) and all(v["value"] > 60 for v in sqnr.values())
    assert set(_load(files["latency_change"])["results"]) <= set(ms)


def test_overlay_keys_are_model_explorer_node_ids(explored: dict[str, Any]) -> None:
    """Every key names a node of the graph Model Explorer's own TFLite adapter builds for the
    model, and every file builds the package's GraphNodeData (its field names)."""
    pytest.importorskip("ai_edge_model_explorer_adapter")
    from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter
    from model_explorer.node_data_builder import (
        GradientItem,
        GraphNodeData,
        NodeDataResult,
        ThresholdItem,
    )

    graphs = BuiltinTfliteFlatbufferAdapter().convert(str(explored["model"]), {})
    (graph,) = graphs["graphCollections"][0].graphs
    ids = {n["id"]: n["label"] for n in graph["nodes"]}
    for path in [*explored["files"].values(), *explored["xnnpack"].values()]:
        data = _load(path)
        assert set(data["results"]) <= set(ids), path
        assert ids["2"] == "exp" and ids["4"] == "tanh"  # op index = node id
        GraphNodeData(results={k: NodeDataResult(**v) for k, v in data["results"].items()},
                      name=data["name"],
                      thresholds=[ThresholdItem(**t) for t in data.get("thresholds", [])],
                      gradient=[GradientItem(**g) for g in data.get("gradient", [])],
                      **{k: v for k, v in data.items()
                         if k not in ("results", "name", "thresholds", "gradient")})


def test_explore_refuses_a_file_that_is_not_a_culprit_result(explored: dict[str, Any]) -> None:
    bad = explored["dir"] / "bad.json"
    bad.write_text("[1, 2]")
    proc = quantlab("explore", explored["jobs"]["cpu"], "--out", str(explored["dir"] / "o2"),
                    "--culprit", str(bad), "--results", str(explored["dir"] / "r"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bad.json: not a culprit result" in proc.stderr
    assert not (explored["dir"] / "o2").exists()  # nothing half-written


def test_explore_serve_loads_the_overlays_in_model_explorer(explored: dict[str, Any]) -> None:
    """explore --serve starts Model Explorer on the model with the overlays: its page loads in
    headless Chromium and asks the server for every overlay file, which it returns."""
    pytest.importorskip("ai_edge_model_explorer_adapter")
    from conftest import require_tool
    from fixtures.serve.journey import ARGS, CHROMIUM

    require_tool("chromium", f"{CHROMIUM} is not installed", found=Path(CHROMIUM).exists())
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [*QUANTLAB, "explore", explored["jobs"]["cpu"], "--out", str(explored["dir"] / "served"),
         "--results", str(explored["dir"] / "r"), "--serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        url, deadline = None, time.monotonic() + 120
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "explore --serve ended early"
            if line.startswith(f"http://localhost:{port}/"):
                url = line.strip()
        assert url is not None
        files = sorted(str(p) for p in (explored["dir"] / "served").glob("*.json"))
        assert len(files) == 3  # latency_ms, latency_share, placement
        served: dict[str, Any] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.on("response", lambda r: served.__setitem__(r.url, r)
                    if "read_text_file" in r.url else None)
            page.goto(url, wait_until="load", timeout=60_000)
            for _ in range(60):
                if len(served) >= len(files):
                    break
                page.wait_for_timeout(500)
            bodies = {unquote(u.split("path=", 1)[1]): r.json() for u, r in served.items()}
            browser.close()
        assert sorted(bodies) == files
        for path, body in bodies.items():
            assert json.loads(body["content"]) == json.loads(Path(path).read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_html_report_links_each_jobs_overlays(explored: dict[str, Any]) -> None:
    """report --overlays writes every profiled job's overlays beside the page and links them
    from the delegate matrix; without it, no link and no folder."""
    html = explored["dir"] / "rep" / "report.html"
    proc = quantlab("report", "--html", str(html), "--overlays", "--results",
                    str(explored["dir"] / "r"))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    for job in explored["jobs"].values():
        assert f"href='report_overlays/{job}/'" in page
        folder = html.parent / "report_overlays" / job
        assert (folder / "placement.json").is_file() and (folder / "latency_ms.json").is_file()
    plain = explored["dir"] / "rep2" / "report.html"
    assert quantlab("report", "--html", str(plain), "--results",
                    str(explored["dir"] / "r")).returncode == 0
    assert "report_overlays" not in plain.read_text()
    assert not (plain.parent / "report_overlays").exists()
