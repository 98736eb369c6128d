"""quantlab history on stored runs, on SQLite and on a real PostgreSQL server.

Runs are made of synthetic per-iteration samples (a level of 1 ms with 1 % noise,
then levels 2x and 4x away), so every verdict here is far from the threshold and
nothing depends on timing noise. The change-point rule under test: a shift that
compare's test calls significant is ``unconfirmed`` until the next run; the same shift
again confirms it; a return to the old level makes it a one-run blip (``not
confirmed``) and keeps the old reference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pgserver import PgServer, running_server
from typer.testing import CliRunner

from quantlab.harness.cli.history import sparkline
from quantlab.harness.cli.main import app
from quantlab.harness.records import Job, ModelRef, Plan, RawResult, Run, Settings
from quantlab.harness.store import Store
from quantlab.harness.verdicts.history import build_history

runner = CliRunner()
SETTINGS = Settings(warmup=2, iterations=40, repeats=2)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for this module (skipped where none can start)."""
    with running_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh results store on each back end."""
    if request.param == "sqlite":
        return str(tmp_path / "results")
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()


def _job(name: str, sha: str, delegate: str = "xnnpack") -> Job:
    model = ModelRef(path=f"/lab/models/{name}", sha256=sha * 32, size_bytes=100,
                     format="tflite")
    return Job(model=model, device_id="sim", platform="sim", delegate=delegate, threads=1,
               settings=SETTINGS)


def _samples(level_ms: float, seed: int) -> tuple[tuple[float, ...], ...]:
    rng = np.random.default_rng(seed)
    return tuple(tuple(float(x) for x in level_ms * (1 + 0.01 * rng.standard_normal(40)))
                 for _ in range(2))


def _store_run(store: Store, day: int, levels: dict[str, float], tags: tuple[str, ...],
               failed: tuple[str, ...] = ()) -> str:
    jobs = {name: _job(name, sha) for name, sha in (("net.tflite", "aa"), ("other.tflite", "bb"))
            if name in levels or name in failed}
    run = Run(run_id=f"2026110{day}-030000-00{day}0", created_at=f"2026-11-0{day}T03:00:00+00:00",
              host="lab", settings=SETTINGS)
    store.create_run(run, Plan(jobs=tuple(jobs.values())), tags=tags,
                     plan_text='models = ["models/*.tflite"]\n')
    for name, job in jobs.items():
        store.mark_running(run.run_id, job.job_id)
        if name in failed:
            store.set_status(run.run_id, job.job_id, "failed", "runtime refused the model")
            continue
        store.save_result(run.run_id, job.job_id, RawResult(
            job_id=job.job_id, status="ok", samples_ms=_samples(levels[name], day)))
    store.finish_run(run.run_id, "done")
    return run.run_id


def test_change_points_unconfirmed_confirmed_and_blips(location: str) -> None:
    store = Store.open(location)
    levels = [1.0, 1.0, 2.0, 2.0, 8.0, 2.0]
    ids = [_store_run(store, day, {"net.tflite": level, "other.tflite": 1.0}, ("nightly",))
           for day, level in enumerate(levels[:3], start=1)]
    # after run 3 the doubling is seen once: unconfirmed
    res = runner.invoke(app, ["history", "--json", "--results", location])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    net = next(s for s in data["series"] if s["model"] == "net.tflite")
    other = next(s for s in data["series"] if s["model"] == "other.tflite")
    assert [p["run_id"] for p in net["points"]] == ids
    assert other["change_points"] == [] and len(other["points"]) == 3
    [change] = net["change_points"]
    assert change["run_id"] == ids[2] and change["verdict"] == "slower"
    assert change["status"] == "unconfirmed" and change["unconfirmed"] is True
    assert change["baseline_run"] == ids[1] and change["method"] == "per-iteration"
    assert 1.9 < change["ratio"] < 2.1 and change["ratio_ci95"][0] > 1
    point = net["points"][2]
    assert point["statistic"] == "median" and point["method"] == "per-iteration"
    assert point["ci95"][0] < point["value_ms"] < point["ci95"][1]
    assert point["tags"] == ["nightly"]

    ids += [_store_run(store, day, {"net.tflite": level, "other.tflite": 1.0}, ("nightly",))
            for day, level in enumerate(levels[3:], start=4)]
    found = json.loads(runner.invoke(app, ["history", "--json", "--model", "net.tflite",
                                           "--results", location]).stdout)
    [net] = found["series"]
    [change] = net["change_points"]  # run 4 confirmed it; run 5 was a blip run 6 undid
    assert change["run_id"] == ids[2] and change["status"] == "confirmed"
    assert change["checked_by"] == ids[3] and change["unconfirmed"] is False
    [blip] = net["transients"]
    assert blip["run_id"] == ids[4] and blip["status"] == "not confirmed"
    assert blip["baseline_run"] == ids[3] and blip["checked_by"] == ids[5]

    # --last keeps the newest runs; the table shows sparklines and the change
    last = json.loads(runner.invoke(app, ["history", "--json", "--last", "2", "--model",
                                          "net.tflite", "--results", location]).stdout)
    assert [p["run_id"] for p in last["series"][0]["points"]] == ids[4:]
    table = runner.invoke(app, ["history", "--results", location])
    assert table.exit_code == 0 and "net.tflite" in table.stdout and "confirmed" in table.stdout
    assert any(c in table.stdout for c in "▁█")
    store.close()


def test_filters_by_tag_delegate_and_failed_points(location: str) -> None:
    store = Store.open(location)
    a = _store_run(store, 1, {"net.tflite": 1.0}, ("nightly", "git=aaa"))
    b = _store_run(store, 2, {"net.tflite": 1.0}, ("manual",))
    c = _store_run(store, 3, {}, ("nightly", "git=ccc"), failed=("net.tflite",))
    assert store.find_runs(tag="nightly") == [c, a]
    assert store.find_runs(tag="git") == [c, a]  # a key selects every key=value
    assert store.find_runs(tag="git=aaa") == [a]
    assert store.find_runs(delegate="cpu") == []
    assert store.resolve_run_or_tag("manual") == b
    assert store.resolve_run_or_tag("nightly", exclude=[c]) == a
    assert store.run_plan_text(a) == 'models = ["models/*.tflite"]\n'
    assert store.load_run(a).tags == ("git=aaa", "nightly")
    assert store.list_runs()[0]["tags"] == ["git=ccc", "nightly"]
    data = json.loads(runner.invoke(app, ["history", "--json", "--tag", "nightly",
                                          "--results", location]).stdout)
    [series] = data["series"]
    assert [p["status"] for p in series["points"]] == ["ok", "failed"]
    assert series["points"][1]["value_ms"] is None
    assert series["points"][1]["error"] == "runtime refused the model"
    assert series["change_points"] == []
    empty = runner.invoke(app, ["history", "--json", "--delegate", "cpu", "--results", location])
    assert json.loads(empty.stdout)["series"] == []
    store.close()


def test_history_html_has_one_trend_plot_per_series(tmp_path: Path) -> None:
    location = str(tmp_path / "results")
    store = Store.open(location)
    for day, level in enumerate([1.0, 1.0, 3.0], start=1):
        _store_run(store, day, {"net.tflite": level, "other.tflite": 2.0}, ("nightly",))
    store.close()
    out = tmp_path / "trends.html"
    res = runner.invoke(app, ["report", "--history", "--html", str(out), "--results", location])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert page.count("<svg") == 2 and "net.tflite · sim · xnnpack · 1t" in page
    assert "unconfirmed" in page and "median (per-iteration)" in page
    both = runner.invoke(app, ["report", "latest", "--history", "--results", location])
    assert both.exit_code == 2 and "--history takes no run ids" in both.stderr


def test_same_name_in_two_folders_is_two_series() -> None:
    """Two files called model.tflite in one run are told apart by path, not merged."""
    store = Store.open("sqlite://")  # in memory
    run = Run(run_id="r1", created_at="2026-11-01T03:00:00+00:00", host="lab",
              settings=SETTINGS)
    a = Job(ModelRef("/a/model.tflite", "aa" * 32, 1, "tflite"), "sim", "sim", "xnnpack", 1,
            SETTINGS)
    b = Job(ModelRef("/b/model.tflite", "bb" * 32, 1, "tflite"), "sim", "sim", "xnnpack", 1,
            SETTINGS)
    store.create_run(run, Plan(jobs=(a, b)))
    found = build_history([store.load_run("r1")])
    assert sorted(s.model for s in found.series) == ["/a/model.tflite", "/b/model.tflite"]


def test_sparkline_scales_and_marks_missing_points() -> None:
    assert sparkline([1.0, 2.0, None, 3.0]) == "▁▅·█"
    assert sparkline([None]) == "·"
    flat = sparkline([1.0, 1.001, 0.999])  # noise far below 10 % of the level: one height
    assert len(set(flat)) == 1


def test_history_model_takes_the_form_it_prints(location: str) -> None:
    """``--model "int8 (model.tflite)"``, as history names a variant's series, selects it
    (and only it) on both back ends; an unknown model says which forms are accepted."""
    store = Store.open(location)
    jobs = {scheme: Job(ModelRef(f"/lab/variants/{scheme}.tflite" if scheme == "fp32"
                                 else "/lab/variants/model.tflite", sha * 32, 100, "tflite",
                                 scheme=scheme), "sim", "sim", "xnnpack", 1, SETTINGS)
            for scheme, sha in (("int8", "cc"), ("fp32", "dd"))}
    run = Run(run_id="20261101-030000-0010", created_at="2026-11-01T03:00:00+00:00",
              host="lab", settings=SETTINGS)
    store.create_run(run, Plan(jobs=tuple(jobs.values())), tags=("nightly",))
    for job in jobs.values():
        store.mark_running(run.run_id, job.job_id)
        store.save_result(run.run_id, job.job_id, RawResult(
            job_id=job.job_id, status="ok", samples_ms=_samples(1.0, 1)))
    store.finish_run(run.run_id, "done")
    store.close()
    shown = json.loads(runner.invoke(app, ["history", "--json", "--results", location]).stdout)
    assert sorted(s["model"] for s in shown["series"]) == ["fp32 (fp32.tflite)",
                                                           "int8 (model.tflite)"]
    for form in ("int8 (model.tflite)", "int8", "model.tflite", "/lab/variants/model.tflite"):
        res = runner.invoke(app, ["history", "--json", "--model", form, "--results", location])
        assert res.exit_code == 0, res.output
        assert [s["model"] for s in json.loads(res.stdout)["series"]] == [
            "int8 (model.tflite)"], form
    wrong = runner.invoke(app, ["history", "--model", "fp16 (model.tflite)", "--results",
                                location])
    assert wrong.exit_code == 0
    assert "'int8 (model.tflite)'" in wrong.stderr and "sha256, scheme" in wrong.stderr


def test_runs_shows_tags_and_filters_by_tag(location: str) -> None:
    store = Store.open(location)
    a = _store_run(store, 1, {"net.tflite": 1.0}, ("nightly", "git=" + "0123456789abcdef" * 2))
    b = _store_run(store, 2, {"net.tflite": 1.0}, ("manual",))
    store.close()
    table = runner.invoke(app, ["runs", "--results", location], env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    row_a = next(line for line in table.stdout.splitlines() if a in line)
    assert "nightly,git=0123456" in row_a  # plain tags first, a hash cut to 7 characters
    assert "manual" in next(line for line in table.stdout.splitlines() if b in line)
    nightly = runner.invoke(app, ["runs", "--tag", "nightly", "--json", "--results", location])
    assert [r["run_id"] for r in json.loads(nightly.stdout)["runs"]] == [a]
    git = runner.invoke(app, ["runs", "--tag", "git", "--results", location],
                        env={"COLUMNS": "160"})
    assert a in git.stdout and b not in git.stdout  # a key selects every key=value
    none = runner.invoke(app, ["runs", "--tag", "weekly", "--results", location])
    assert none.exit_code == 0 and "no run has the tag 'weekly'" in none.stderr
