"""The runtime as an axis of every comparison: a job's runtime (LiteRT for a .tflite,
ExecuTorch for a .pte, Core ML for an .mlpackage) is shown beside its delegate by
``delegates``, ``recommend`` and the HTML report, and keys ``compare``'s pairs and
``history``'s series, so that a .pte job is never taken for the same series as a .tflite job.
Records are built from fixed numbers (tests/series_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

from series_runs import entry, record, store_record
from typer.testing import CliRunner

from quantlab.harness.cli.main import app
from quantlab.harness.records import Job, ModelRef
from quantlab.harness.store import Store

runner = CliRunner()


def _job(name: str, sha: str, fmt: str, delegate: str, scheme: str) -> Job:
    from series_runs import SETTINGS

    model = ModelRef(path=f"/lab/torch/{name}", sha256=(sha * 64)[:64], size_bytes=1000,
                     format=fmt, scheme=scheme)
    return Job(model=model, device_id="sim", platform="sim", delegate=delegate, threads=1,
               settings=SETTINGS)


TFLITE = _job("int8.tflite", "a1", "tflite", "xnnpack", "int8")
PTE = _job("et-int8.pte", "b2", "pte", "et-xnnpack", "et-int8")


def test_runtime_of_a_model_format() -> None:
    from quantlab.harness.runtimes import runtime_of

    assert runtime_of(TFLITE) == "litert" and runtime_of(PTE) == "executorch"
    assert runtime_of(_job("m.mlpackage", "c3", "mlpackage", "coreml-ane", "coreml-w8")) \
        == "coreml"


def test_delegates_shows_litert_and_executorch_side_by_side(tmp_path: Path) -> None:
    results = str(tmp_path / "results")
    store = Store.open(results)
    store_record(store, record(1, [entry(TFLITE, 2.0), entry(PTE, 3.0)]))
    store.close()
    data = runner.invoke(app, ["delegates", "--json", "--results", results])
    assert data.exit_code == 0, data.output
    rows = {r["model"]: r for r in json.loads(data.stdout)["rows"]}
    assert rows["int8 (int8.tflite)"]["runtime"] == "litert"
    assert rows["et-int8 (et-int8.pte)"]["runtime"] == "executorch"
    human = runner.invoke(app, ["delegates", "--results", results], env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.output
    # one table for the device: both runtimes' rows in it, each naming its runtime
    assert human.stdout.count("on sim (run") == 1, human.stdout
    lines = [ln for ln in human.stdout.splitlines() if "int8" in ln]
    assert any("litert" in ln and "xnnpack" in ln and "int8.tflite" in ln for ln in lines)
    assert any("executorch" in ln and "et-xnnpack" in ln for ln in lines), human.stdout


def test_compare_never_pairs_a_pte_job_with_a_tflite_job() -> None:
    from quantlab.harness.verdicts.compare import compare_runs, parse_match

    c = compare_runs(record(1, [entry(TFLITE, 2.0)]), record(2, [entry(PTE, 2.0)]),
                     match=parse_match("device,threads"))
    assert c.matches == []
    assert [u.model for u in c.only_in_baseline] == ["int8 (int8.tflite)"]
    assert [u.model for u in c.only_in_new] == ["et-int8 (et-int8.pte)"]


def test_history_keys_series_by_runtime() -> None:
    from quantlab.harness.verdicts.history import build_history

    found = build_history([record(n, [entry(TFLITE, 2.0), entry(PTE, 3.0)])
                           for n in (1, 2)]).as_dict()
    runtimes = {s["model"]: s["runtime"] for s in found["series"]}
    assert runtimes == {"int8 (int8.tflite)": "litert", "et-int8 (et-int8.pte)": "executorch"}
    assert all(len(s["points"]) == 2 for s in found["series"])


def test_recommend_names_the_runtime_of_its_pick(tmp_path: Path) -> None:
    from quantlab.harness.report.recommend import as_dicts, recommend

    recs = as_dicts(recommend(record(1, [entry(TFLITE, 3.0), entry(PTE, 2.0)]), {}))
    (sim,) = recs
    assert sim["best"]["runtime"] == "executorch" and sim["runner_up"]["runtime"] == "litert"
    results = str(tmp_path / "results")
    store = Store.open(results)
    run_id = store_record(store, record(1, [entry(TFLITE, 3.0), entry(PTE, 2.0)]))
    store.close()
    human = runner.invoke(app, ["recommend", run_id, "--results", results],
                          env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.output
    assert "executorch" in human.stdout and "et-xnnpack" in human.stdout


def test_html_delegate_matrix_has_a_runtime_column() -> None:
    from quantlab.harness.report.html_analysis import _delegates

    html = _delegates([record(1, [entry(TFLITE, 2.0), entry(PTE, 3.0)])])
    assert "<th>runtime</th>" in html
    assert "<td>litert</td>" in html and "<td>executorch</td>" in html
