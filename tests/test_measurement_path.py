"""One measurement path: every command that measures (bench, a plan file, autoquant's
candidates, the demo's bench step, ab, import) opens its run through quantlab.session, so a
run-level rule holds for all of them alike. Here: a store that stops taking results part-way
(a full disk) leaves the run ``incomplete``, never ``done`` nor ``running``, and the command
says so in one last line and exits 1 — what measured before the failure stays stored.

autoquant and the demo are driven through their commands with the slow parts before their
bench step (training, quantizing, evaluating) replaced by ready-made .tflite files, so their
bench step and exit path run as a user's do, in seconds."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_agent import ScriptedAgent
from typer.testing import CliRunner

from quantlab.harness.ab import interleaved
from quantlab.harness.dispatch import Dispatcher
from quantlab.harness.environment import new_run
from quantlab.harness.errors import StoreError
from quantlab.harness.plan import build_plan, discover, select_devices
from quantlab.harness.records import ModelRef, RawResult, Settings
from quantlab.harness.retry import RetryPolicy
from quantlab.harness.store import Store

FIX = Path(__file__).parent / "fixtures" / "android"
FAST = ["--iterations", "5", "--repeats", "1"]
"""Few iterations, one repeat: the rule is what is tested, not the timing."""


def _full_disk_from(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """From its ``nth`` result on, the store cannot write one (the disk is full)."""
    real = Store.save_result
    calls = [0]

    def save_result(self: Store, run_id: str, job_id: str, raw: RawResult) -> bool:
        calls[0] += 1
        if calls[0] >= nth:
            raise StoreError(f"results store {self.location}: cannot write a result (No space "
                             "left on device)", hint="free some space")
        return real(self, run_id, job_id, raw)

    monkeypatch.setattr(Store, "save_result", save_result)


def _bench(tmp: Path, models: dict[str, Path], mp: pytest.MonkeyPatch) -> list[str]:
    return ["bench", str(models["cnn"]), "--device", "sim", "--delegate", "xnnpack,cpu",
            "--warmup", "1", *FAST]


def _plan_file(tmp: Path, models: dict[str, Path], mp: pytest.MonkeyPatch) -> list[str]:
    plan = tmp / "plan.toml"
    plan.write_text(f'models = ["{models["cnn"]}", "{models["int8"]}"]\ndevices = ["sim"]\n'
                    'delegates = ["xnnpack"]\n\n[measure]\nwarmup = 1\niterations = 5\n'
                    "repeats = 1\n")
    return ["bench", "--plan", str(plan)]


def _autoquant(tmp: Path, models: dict[str, Path], mp: pytest.MonkeyPatch) -> list[str]:
    """autoquant whose ladder made two passing rungs (the two test models): the real climb
    measures them through the command's bench step and chooses."""
    import quantlab.harness.quantize.ladder as ladder

    rungs = [{"name": "int8", "scheme": "int8", "options": {}, "file": models["int8"]},
             {"name": "fp16", "scheme": "fp16", "options": {}, "file": models["cnn"]}]

    def make_step(req: Any, rung: dict[str, Any], index: int, root: Path,
                  progress: Any) -> dict[str, Any]:
        return {"rung": rung["name"], "scheme": rung["scheme"], "options": {},
                "file": str(rung["file"]), "size_bytes": rung["file"].stat().st_size,
                "metric": "top1", "value": 0.9, "reference": 0.9, "drop": 0.0,
                "verdict": "pass", "passed": True}

    mp.setattr(ladder, "tflite_rungs", lambda req: rungs)
    mp.setattr(ladder, "_make_step", make_step)
    data = tmp / "data.npz"
    data.write_bytes(b"unused: the ladder's steps are ready-made")
    return ["autoquant", str(models["cnn"]), "--calib", str(data), "--data", str(data),
            "--explore", "--out", str(tmp / "autoquant"), *FAST]


def _demo(tmp: Path, models: dict[str, Path], mp: pytest.MonkeyPatch) -> list[str]:
    """The demo with its trained, quantized and evaluated variants ready-made (the two test
    models): its bench step runs them on the simulator."""
    import quantlab.harness.cli.demo as demo

    def quantize(keras_path: Path, data: Path, out: Path, schemes: str,
                 eval_data: Path | None = None) -> Any:
        out.mkdir(parents=True)
        variants = []
        for scheme in ("fp32", "int8"):
            shutil.copy(models["cnn" if scheme == "fp32" else "int8"], out / f"{scheme}.tflite")
            variants.append({"scheme": scheme, "file": f"{scheme}.tflite", "status": "ok"})
        (out / "manifest.json").write_text(json.dumps({"variants": variants}))
        return SimpleNamespace(variants=[SimpleNamespace(error=None, **v) for v in variants])

    mp.setattr(demo, "_train", lambda work: (work / "m.keras", work / "d.npz", work / "c.npz"))
    mp.setattr(demo, "_quantize", quantize)
    mp.setattr(demo, "_evaluate", lambda variants, data, location, labels=None: {
        "variants": [], "metric": "top1", "task": {"name": "classification"}, "samples": 0,
        "reference": {"scheme": "fp32"}})  # evaluate's report always names its reference
    return ["demo", "--out", str(tmp / "demo"), "--schemes", "fp32,int8", *FAST]


def _ab(tmp: Path, models: dict[str, Path], mp: pytest.MonkeyPatch) -> list[str]:
    return ["ab", str(models["cnn"]), "--device", "sim", "--delegate", "xnnpack",
            "--delegate-b", "cpu", "--launches", "1", "--warmup", "1", "--iterations", "5"]


def _import(tmp: Path, models: dict[str, Path], mp: pytest.MonkeyPatch) -> list[str]:
    return ["import", str(FIX / "xnnpack_info_tf73862.txt"), "--device-name", "pixel8"]


Command = Callable[[Path, dict[str, Path], pytest.MonkeyPatch], list[str]]


@pytest.mark.parametrize(("command", "nth"), [
    pytest.param(_bench, 2, id="bench"),
    pytest.param(_plan_file, 2, id="plan-file"),
    pytest.param(_autoquant, 2, id="autoquant"),
    pytest.param(_demo, 2, id="demo"),
    pytest.param(_ab, 2, id="ab"),
    pytest.param(_import, 1, id="import"),  # one result: the first write fails
])
def test_a_store_that_fails_mid_run_leaves_every_command_s_run_incomplete(
        command: Command, nth: int, tflite_models: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from quantlab.harness.cli.main import app

    results = tmp_path / "results"
    args = [*command(tmp_path, tflite_models, monkeypatch), "--results", str(results),
            "--json"]
    _full_disk_from(monkeypatch, nth)
    out = CliRunner().invoke(app, args)

    assert out.exit_code == 1, out.output
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: run ") and " is incomplete, " in last, out.stderr
    assert "No space left on device" in last and "Traceback" not in out.stderr
    store = Store.open(str(results))
    runs = store.list_runs()
    statuses = [e.status for e in store.load_run(runs[0]["run_id"]).entries]
    store.close()
    assert [r["status"] for r in runs] == ["incomplete"], runs
    assert statuses.count("ok") == nth - 1  # what was measured before the failure is kept
    assert set(statuses) - {"ok"} <= {"pending", "interrupted"} and len(statuses) >= nth


def test_ab_launches_and_dispatched_jobs_follow_one_retry_policy(tmp_path: Path) -> None:
    """A device that keeps going away: ab's launches gave up after three hard-coded
    attempts whatever the run's policy; both now give up as the policy says, alike."""
    agent = ScriptedAgent(device_ids=("fake-a",), faults={"fake-a": 99})  # always gone
    fleet = discover(agents=[agent])
    (device,) = select_devices(fleet, ["fake-a"])
    model = ModelRef(path="/m/a.tflite", sha256="c" * 64, size_bytes=10, format="tflite")
    plan = build_plan([model], [device], fleet, ["cpu", "fast"], [1], Settings(repeats=2))
    job_a, job_b = plan.jobs
    policy = RetryPolicy(attempts=2, wait_s=5.0)

    ((job, launched),) = list(interleaved(agent, device, job_a, job_b, 3, retry=policy))
    assert job == job_a and launched.status == "failed"
    store = Store.open(str(tmp_path))
    run = new_run(Settings())
    store.create_run(run, plan, [device])
    Dispatcher(store, run.run_id, fleet, retry=policy).run([job_a])
    stored = store.load_run(run.run_id).entries[0]
    store.close()

    assert stored.status == "failed" and stored.error == launched.error
    assert "gave up after 2 attempts" in (launched.error or "")
    assert len(agent.calls) == 4 and agent.waits == [("fake-a", 5.0)] * 2


def _sim_workers() -> list[Any]:
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "quantlab.agents.litert.runner" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("command", [
    pytest.param(_bench, id="bench"),
    pytest.param(_plan_file, id="plan-file"),
    pytest.param(_autoquant, id="autoquant"),
    pytest.param(_demo, id="demo"),
    pytest.param(_ab, id="ab"),
])
def test_ctrl_c_leaves_every_command_s_run_interrupted(
        command: Command, tflite_models: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import _thread
    import threading
    import time

    from quantlab.harness.cli.main import app

    results = tmp_path / "results"
    args = [*command(tmp_path, tflite_models, monkeypatch), "--results", str(results),
            "--json"]
    stop = threading.Event()

    def ctrl_c_once_a_launch_runs() -> None:
        while not stop.is_set():
            if _sim_workers():
                _thread.interrupt_main()  # what a Ctrl-C does to the command
                return
            time.sleep(0.05)

    threading.Thread(target=ctrl_c_once_a_launch_runs, daemon=True).start()
    try:
        out = CliRunner().invoke(app, args)
    finally:
        stop.set()

    assert out.exit_code == 130, out.output
    assert "Traceback" not in out.stderr and _sim_workers() == []
    store = Store.open(str(results))
    runs = store.list_runs()
    store.close()
    assert [r["status"] for r in runs] == ["interrupted"], runs
