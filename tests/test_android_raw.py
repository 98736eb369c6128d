"""Android raw output, through a REAL adb server and loopback adbd phones (fixtures of
test_android_adb): every launch's full output and the pulled op profile are handed back,
stored by content, and the stored result's figures re-parse from them exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# the adb server, the two loopback phones, the provisioned runner and the model
from test_android_adb import (  # noqa: F401
    _adb_installed,
    adb_port,
    agent,
    by_id,
    cache,
    model,
    phones,
)

from quantlab.agents.android.agent import launch_text
from quantlab.android_runner.parser import parse_output
from quantlab.android_runner.result_mapping import to_raw_result
from quantlab.harness.environment import new_run
from quantlab.harness.records import Job, ModelRef, Plan, RawResult, Settings
from quantlab.harness.store import Store


def _store(tmp_path: Path, job: Job, raw: RawResult) -> tuple[Store, RawResult]:
    store = Store.open(str(tmp_path / "results"))
    run = new_run(job.settings)
    store.create_run(run, Plan(jobs=(job,)))
    assert store.save_result(run.run_id, job.job_id, raw)
    loaded = store.load_run(run.run_id).entries[0].raw
    assert loaded is not None
    return store, loaded


def _text(store: Store, stored: RawResult, name: str) -> str:
    f = next((f for f in stored.raw_files if f.name == name), None)
    return store.read_raw(f.sha256).decode("utf-8", "replace") if f else ""


def test_figures_reparse_from_the_stored_launch_outputs(phones: Any, cache: Path,  # noqa: F811
                                                        model: ModelRef,  # noqa: F811
                                                        tmp_path: Path) -> None:
    qcom, _ = phones
    ag = agent()
    dev = by_id(ag.discover(), qcom.serial)
    job = Job(model, dev.id, "android", "gpu", 2,
              Settings(warmup=2, iterations=7, repeats=3, profile_ops=True))
    raw = ag.run(dev, job, lambda p, f: None)
    assert raw.status == "ok", raw.error
    names = [o.name for o in raw.raw_outputs]
    # a GPU job also measures its cold and warm start (the delegate's cache folder)
    assert [n for n in names if n.endswith(".stdout")] == [
        "launch-1.stdout", "launch-2.stdout", "launch-3.stdout", "profile-launch.stdout",
        "start-cold.stdout", "start-warm.stdout"]
    assert "profile.csv" in names and "output_tail" not in raw.runner
    assert all(not o.truncated for o in raw.raw_outputs)
    store, stored = _store(tmp_path, job, raw)
    assert stored.raw_outputs == () and [f.name for f in stored.raw_files] == names
    # re-parse what the store kept, exactly as the agent did, and get the same figures
    launches = [parse_output(launch_text(_text(store, stored, f"launch-{k}.stdout"),
                                         _text(store, stored, f"launch-{k}.stderr")))
                for k in (1, 2, 3)]
    profile = parse_output(launch_text(_text(store, stored, "profile-launch.stdout"),
                                       _text(store, stored, "profile-launch.stderr")),
                           _text(store, stored, "profile.csv"))
    again = to_raw_result(job.job_id, launches, job.delegate, profile=profile)
    assert again.aggregates_ms == stored.aggregates_ms and again.aggregates_ms["repeats"] == 3
    assert again.launches == stored.launches
    assert (again.init_ms, again.first_inference_ms, again.peak_memory_mb) == (
        stored.init_ms, stored.first_inference_ms, stored.peak_memory_mb)
    assert again.ops == stored.ops and len(stored.ops) > 0
    assert again.ops_model_ms == stored.ops_model_ms


def test_failed_launch_keeps_its_output(phones: Any, cache: Path, model: ModelRef,  # noqa: F811
                                        tmp_path: Path) -> None:
    qcom, _ = phones
    ag = agent()
    dev = by_id(ag.discover(), qcom.serial)
    job = Job(model, dev.id, "android", "hexagon", 1, Settings(repeats=2))
    raw = ag.run(dev, job, lambda p, f: None)
    assert raw.status == "failed" and "Could not create Hexagon delegate" in (raw.error or "")
    store, stored = _store(tmp_path, job, raw)
    assert next(f.name for f in stored.raw_files if f.name.startswith("launch-")) == \
        "launch-1.stdout"
    kept = _text(store, stored, "launch-1.stdout") + _text(store, stored, "launch-1.stderr")
    assert "Could not create Hexagon delegate" in kept


def test_energy_sampler_output_is_kept(phones: Any, cache: Path, model: ModelRef,  # noqa: F811
                                       tmp_path: Path) -> None:
    _, exynos = phones
    ag = agent()
    dev = by_id(ag.discover(), exynos.serial)
    job = Job(model, dev.id, "android", "xnnpack", 1, Settings(repeats=1, energy=True))
    raw = ag.run(dev, job, lambda p, f: None)
    assert raw.status == "ok" and raw.energy is not None, raw.energy_unavailable_reason
    names = {o.name for o in raw.raw_outputs}
    assert {"energy-baseline.txt", "energy-load.txt", "energy-launch.stdout"} <= names
    store, stored = _store(tmp_path, job, raw)
    assert _text(store, stored, "energy-baseline.txt").strip()


def test_cap_on_a_launch_output(phones: Any, cache: Path, model: ModelRef,  # noqa: F811
                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, exynos = phones
    monkeypatch.setenv("QUANTLAB_RAW_CAP_BYTES", "300")
    ag = agent()
    dev = by_id(ag.discover(), exynos.serial)
    job = Job(model, dev.id, "android", "xnnpack", 1, Settings(repeats=1))
    raw = ag.run(dev, job, lambda p, f: None)
    assert raw.status == "ok", raw.error
    out = next(o for o in raw.raw_outputs if o.name == "launch-1.stdout")
    assert out.truncated and out.cap_bytes == 300 and out.size_bytes > 300
    store, stored = _store(tmp_path, job, raw)
    f = next(f for f in stored.raw_files if f.name == "launch-1.stdout")
    assert f.truncated and f.cap_bytes == 300 and f.original_size_bytes == out.size_bytes
    assert "bytes cut here; raw files keep at most 300 bytes" in _text(store, stored,
                                                                      "launch-1.stdout")
