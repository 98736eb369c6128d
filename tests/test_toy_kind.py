"""Adding a device kind is one folder plus one registry line: a toy kind defined and
registered by a test module alone (tests/toy_kind.py) is discovered, planned (with the
reasons for what it cannot run), measured and stored like any other kind, and plan files,
their JSON Schema and the CLI's help know it by the same one name."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import toy_kind
from series_runs import tiny_tflite

import quantlab
from quantlab.agents.base import load_agent
from quantlab.harness import kinds
from quantlab.harness.planfile import load_plan_file, plan_schema


@pytest.fixture()
def toy() -> Iterator[kinds.Kind]:
    """The toy kind, registered for one test."""
    kind = toy_kind.register()
    try:
        yield kind
    finally:
        toy_kind.unregister()


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite(b"toy"))
    return path


def test_a_registered_kind_is_planned_with_its_reasons(toy: kinds.Kind, model: Path) -> None:
    plan = quantlab.plan([model], device="toy-1", delegate="abacus,slide-rule", threads="1,2")
    assert sorted((j.platform, j.delegate, j.threads) for j in plan.jobs) == [
        ("toy", "abacus", 1), ("toy", "abacus", 2), ("toy", "slide-rule", 1)]
    (skipped,) = plan.skipped
    assert (skipped.job.delegate, skipped.job.threads) == ("slide-rule", 2)
    assert skipped.reason == "slide-rule: one thread only, not 2"


def test_a_registered_kind_is_measured_and_stored(toy: kinds.Kind, model: Path,
                                                  tmp_path: Path) -> None:
    results = tmp_path / "results"
    run = quantlab.bench([model], device="toy-1", delegate="abacus,slide-rule",
                         threads="1,2", repeats=2, iterations=3, results=results)
    assert run.status == "done"
    by_job = {(r.delegate, r.threads): r for r in run.results}
    assert {k: r.status for k, r in by_job.items()} == {
        ("abacus", 1): "ok", ("abacus", 2): "ok", ("slide-rule", 1): "ok",
        ("slide-rule", 2): "skipped"}
    assert by_job[("slide-rule", 2)].error == "slide-rule: one thread only, not 2"
    ok = by_job[("abacus", 1)]
    assert ok.device.platform == "toy" and ok.device.id == "toy-1"
    assert ok.latency_ms.value == pytest.approx(2.5) and ok.latency_ms.count == 6
    with quantlab.open_results(results) as stored:  # read back from the store
        rows = stored.rows("latest")
    assert sorted((r["platform"], r["delegate"], r["threads"], r["status"]) for r in rows) == [
        ("toy", "abacus", 1, "ok"), ("toy", "abacus", 2, "ok"), ("toy", "slide-rule", 1, "ok"),
        ("toy", "slide-rule", 2, "skipped")]


def test_plan_files_and_their_schema_know_a_registered_kind(toy: kinds.Kind, model: Path,
                                                            tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(f'models = ["{model.name}"]\ndevices = ["toy"]\n')
    plan = load_plan_file(plan_path)
    devices = load_agent("toy").discover()
    assert [d.id for d in plan.select_devices(devices)] == ["toy-1"]
    schema = plan_schema()["properties"]["devices"]
    assert "(sim, android, ios, linux, toy:" in schema["description"]
    assert ["toy"] in schema["examples"]
    assert "toy" in kinds.help_text()


def test_unregistered_the_kind_is_gone(model: Path, tmp_path: Path) -> None:
    toy_kind.register()
    toy_kind.unregister()
    assert "toy" not in kinds.names()
    assert "toy" not in plan_schema()["properties"]["devices"]["description"]
    with pytest.raises(kinds.UnknownKind) as err:
        load_agent("toy")
    assert err.value.one_line() == ("device kind 'toy': unknown: known kinds: "
                                    "sim, android, ios, linux")


@pytest.mark.parametrize("name", ["sim", "android", "ios", "linux"])
def test_each_kind_has_one_name(name: str) -> None:
    """The registry's name is the agent's ``kind`` (the kind of SSH gateways was ``ssh`` in
    the agent and the registry and ``linux`` in records and plan files)."""
    module, cls = kinds.get(name).agent.split(":")
    assert getattr(importlib.import_module(module), cls).kind == name


@pytest.mark.parametrize(("name", "agent", "message"), [
    ("Toy", "toy_kind:ToyAgent", "not a valid name"),
    ("a" * 21, "toy_kind:ToyAgent", "not a valid name"),
    ("toy", "toy_kind.ToyAgent", "is not 'module:Class'"),
    ("sim", "toy_kind:ToyAgent", "already registered"),
])
def test_register_refuses_what_it_cannot_use(name: str, agent: str, message: str) -> None:
    with pytest.raises(quantlab.UserError, match=message):
        kinds.register(name, agent, "a bad line")
    assert kinds.names() == ["sim", "android", "ios", "linux"]
