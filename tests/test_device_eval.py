"""Accuracy where the model runs (issue 22), on the simulator: ``evaluate --device sim
--delegate xnnpack,cpu`` scores each (variant, delegate) from the outputs the runner brought
back, with the same task plug-ins as the host; a stand-in delegate that zeroes one class (or
one class's detection scores) shows the matching drop and fails its gate with exit 1."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import quantize_fixtures as qf

from quantlab.agents.outputs import OutputsAgent, OutputsFacts, Progress, read_outputs
from quantlab.agents.sim.agent import SimAgent
from quantlab.harness.device_eval import evaluate_on_devices
from quantlab.harness.plan import discover
from quantlab.harness.records import DeviceInfo, Job

quantlab = qf.quantlab
digits = qf.digits
ZERO = "zero-class-0"


def zero_class_0(outputs: dict[str, np.ndarray]) -> None:
    """Lose class 0 in place: a classifier's class-0 score (its one 2-D output) put below
    every other; a detector's class-0 boxes labelled class 1 (SSD, TF's output order: boxes,
    classes, scores, count, so the 2-D outputs by name are classes, then scores)."""
    flat = [outputs[k] for k in sorted(outputs) if outputs[k].ndim == 2]
    if len(flat) == 1:
        flat[0][:, 0] = flat[0].min(axis=1) - 1.0
    else:
        classes = flat[0]
        classes[np.isclose(classes, 0.0)] = 1.0


class PerturbingSim(SimAgent):
    """The simulator plus a stand-in delegate ``zero-class-0``: the model runs on LiteRT's
    builtin kernels and class 0's outputs are then zeroed (scores of a detector's class 0,
    the class-0 column of a classifier's vector), as a delegate that drops a class would."""

    delegates = ("xnnpack", "cpu", ZERO)

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """As the simulator's ``cpu``."""
        return super().supports(device, dataclasses.replace(job, delegate="cpu")
                                if job.delegate == ZERO else job)

    def outputs(self, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
        """The simulator's outputs on ``cpu``, then class 0 zeroed."""
        if job.delegate != ZERO:
            return super().outputs(device, job, inputs, out, progress)
        facts = super().outputs(device, dataclasses.replace(job, delegate="cpu"), inputs, out,
                                progress)
        arrays = {f"output:{k}": v for k, v in read_outputs(out).items()}
        zero_class_0(arrays)
        np.savez(out, **arrays)
        return dataclasses.replace(facts, delegate=ZERO, runner_detail="zeroes class 0")


variants = qf.digits_fp32_int8  # fp32 and int8 of the digits model (session-wide)


def test_sim_rows_per_variant_and_delegate_stored_with_their_sample_set(
        variants: Path, digits: tuple[Path, Path], tmp_path: Path) -> None:
    r = quantlab("evaluate", str(variants), "--data", str(digits[1]), "--device", "sim",
                 "--delegate", "xnnpack,cpu", "--samples", "150", "--results",
                 str(tmp_path / "store"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    rows = {(x["scheme"], x["delegate"]): x for x in report["rows"]}
    assert set(rows) == {(s, d) for s in ("fp32", "int8") for d in ("xnnpack", "cpu")}
    assert report["metric"] == "top1" and report["samples"] == 150
    subset = report["sample_set"]
    assert subset["count"] == 150 and subset["of"] == len(np.load(digits[1])["y"])
    for row in rows.values():
        assert row["device"] == "sim" and row["samples"] == 150
        assert row["sample_set"] == subset["indices_sha256"]
        assert row["runtime"] == "litert" and row["runtime_version"]
        assert row["run"]["launches"] == 1 and row["run"]["transfers"] == {"push": 0, "pull": 0}
        assert 0.5 < row["value"] <= 1.0  # a trained model, not chance
        gate = row["gate"]
        assert gate["interval"]["low"] <= gate["drop"] <= gate["interval"]["high"]
        # the device is this host's LiteRT: what it changed is at most a sample or two
        assert abs(row["vs_host"]["drop"]) <= 2 / 150
    assert rows[("fp32", "xnnpack")]["gate"]["drop"] == 0
    # stored: one evaluation per (variant, device, delegate), naming what ran it and on what
    from quantlab.harness.store import Store

    store = Store.open(str(tmp_path / "store"))
    try:
        stored = store.device_evaluations()
        host = store.evaluations()
    finally:
        store.close()
    assert {(k[1], k[2]) for k in stored} == {("sim", "xnnpack"), ("sim", "cpu")}
    assert len(stored) == 4 and not host  # device rows never stand in for the host's
    for ev in stored.values():
        assert ev["runtime"] == "litert" and ev["runtime_version"]
        assert ev["sample_set"] == subset["indices_sha256"]


def test_the_same_subset_on_every_run(variants: Path, digits: tuple[Path, Path]
                                      ) -> None:
    fleet = discover(["sim"])
    runs = [evaluate_on_devices(fleet, list(fleet.devices), variants, digits[1],
                                delegates=["cpu"], samples=40) for _ in range(2)]
    assert runs[0]["sample_set"] == runs[1]["sample_set"]
    assert [r["value"] for r in runs[0]["rows"]] == [r["value"] for r in runs[1]["rows"]]


def _zeroed_top1(path: str, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of ``path`` on the host with class 0's score dropped, computed apart."""
    from quantlab.harness.quantize.tflite_runner import TfliteRunner

    scores = TfliteRunner(path).predict(x)[0].reshape(len(x), -1).copy()
    zero_class_0({"scores": scores})
    return float(np.mean(np.argmax(scores, 1) == y))


def test_a_delegate_that_zeroes_a_class_shows_the_drop_and_fails_with_exit_1(
        variants: Path, digits: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import quantlab.session as session
    from quantlab.harness.cli.main import app

    agent = PerturbingSim()
    assert isinstance(agent, OutputsAgent)
    monkeypatch.setattr(session, "discover", lambda cluster=None: discover(agents=[agent]))
    res = CliRunner().invoke(app, ["evaluate", str(variants), "--data", str(digits[1]),
                                   "--device", "sim", "--delegate", f"xnnpack,{ZERO}",
                                   "--no-store", "--json"])
    assert res.exit_code == 1, res.output
    report: dict[str, Any] = json.loads(res.stdout[:res.stdout.rindex("}") + 1])
    rows = {(x["scheme"], x["delegate"]): x for x in report["rows"]}
    data = np.load(digits[1])
    y = data["y"]
    share_of_class_0 = float(np.mean(y == 0))
    assert share_of_class_0 > 0.05  # every class is in the data: a drop of ~10 pt, gate 2 pt
    for scheme in ("fp32", "int8"):
        zeroed, plain = rows[(scheme, ZERO)], rows[(scheme, "xnnpack")]
        assert zeroed["value"] == pytest.approx(
            _zeroed_top1(str(variants / f"{scheme}.tflite"), data["x"], y), abs=2 / len(y))
        # what the device changed: the class-0 samples the variant got right on the host
        assert zeroed["vs_host"]["drop"] > 0.5 * share_of_class_0
        assert not zeroed["gate"]["passed"] and plain["gate"]["passed"]
    assert sorted(report["failed"]) == sorted(f"{s} on sim · {ZERO}" for s in ("fp32", "int8"))


detector = qf.detector_fp32_int8  # the shapes detector (SSD outputs, 3 classes), fp32 and int8


def test_detection_map_per_delegate_from_the_outputs_that_came_back(
        detector: dict[str, Path]) -> None:
    fleet = discover(agents=[PerturbingSim()])
    report = evaluate_on_devices(fleet, list(fleet.devices), detector["variants"],
                                 detector["eval"], delegates=["xnnpack", "cpu", ZERO],
                                 task="detection", labels=str(detector["labels"]))
    assert report["metric"] == "map" and report["task"]["decoder"] == "ssd"
    rows = {(x["scheme"], x["delegate"]): x for x in report["rows"]}
    assert len(rows) == 6 and not report["skipped"]
    for (_scheme, delegate), row in rows.items():
        assert 0.3 < row["value"] <= 1.0 and row["gate"]["interval"] is not None
        if delegate != ZERO:  # this host's LiteRT: the same boxes as the host's, near enough
            assert abs(row["vs_host"]["drop"]) < 0.01
    assert rows[("fp32", "xnnpack")]["gate"]["drop"] == 0
    assert rows[("fp32", "xnnpack")]["gate"]["passed"]
    # one class of three lost: its AP is gone from the mean (the class-0 boxes now also
    # count against class 1), so mAP falls by far more than any scheme's 2-point gate
    for scheme in ("fp32", "int8"):
        lost = rows[(scheme, ZERO)]
        assert lost["vs_host"]["drop"] > 0.15
        assert not lost["gate"]["passed"] and "drop" in lost["gate"]["why"]
    assert {f"{s} on sim · {ZERO}" for s in ("fp32", "int8")} <= set(report["failed"])
    # a fixed subset: its images and only their boxes (COCO truth cut to the subset)
    part = evaluate_on_devices(fleet, [fleet.devices[0]], detector["variants"],
                               detector["eval"], delegates=["xnnpack"], samples=60,
                               task="detection", labels=str(detector["labels"]))
    assert part["samples"] == 60 and part["sample_set"]["count"] == 60
    assert all(0.3 < r["value"] <= 1.0 and r["samples"] == 60 for r in part["rows"])


def test_host_evaluation_points_core_ml_variants_to_the_device(tmp_path: Path) -> None:
    from quantlab.harness.quantize.evaluate import skipped_variants

    (tmp_path / "manifest.json").write_text(json.dumps({"variants": [
        {"scheme": "coreml-fp16", "format": "coreml", "status": "ok",
         "file": "coreml-fp16.mlpackage"}]}))
    (why,) = skipped_variants(tmp_path)
    assert "--device IPHONE --delegate coreml-ane" in why["reason"]


def test_max_mse_gates_each_row_on_its_device_outputs(variants: Path,
                                                      digits: tuple[Path, Path]) -> None:
    """--max-mse (the seeds' "output MSE < 0.01") on the device's own outputs against the
    float model on the host: int8's outputs differ from fp32's (MSE > 0), fp32's own on
    the host kernels do not."""
    fleet = discover(["sim"])
    rows = {r["scheme"]: r for r in evaluate_on_devices(
        fleet, list(fleet.devices), variants, digits[1], delegates=["cpu"], samples=100,
        max_mse=1e-9)["rows"]}
    assert rows["int8"]["gate"]["mse_passed"] is False and not rows["int8"]["gate"]["passed"]
    assert "--max-mse" in rows["int8"]["gate"]["why"]
    assert rows["fp32"]["gate"]["mse_passed"] is True
    loose = evaluate_on_devices(fleet, list(fleet.devices), variants, digits[1],
                                delegates=["cpu"], samples=100, max_mse=1.0)
    assert all(r["gate"]["mse_passed"] for r in loose["rows"])


def test_a_delegate_the_device_lacks_is_one_line_and_exit_2(
        variants: Path, digits: tuple[Path, Path]) -> None:
    r = quantlab("evaluate", str(variants), "--data", str(digits[1]), "--device", "sim",
                 "--delegate", "gpu", "--no-store")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "nothing to evaluate" in r.stderr and "'gpu' is not available" in r.stderr
    assert "Traceback" not in r.stderr


def test_cluster_without_device_is_one_line_and_exit_2(
        variants: Path, digits: tuple[Path, Path]) -> None:
    """--cluster names the lab whose devices --device picks: alone it was silently ignored
    (the host evaluation ran as if it were not there)."""
    r = quantlab("evaluate", str(variants), "--data", str(digits[1]), "--cluster",
                 "127.0.0.1:1", "--no-store")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--cluster" in r.stderr and "--device" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2


SHARP = "sharpen-3x"


class SharpeningSim(SimAgent):
    """The simulator plus a stand-in delegate ``sharpen-3x`` whose class scores come back
    three times too sharp (logits × 3; probabilities p³ renormalised, the same thing), so a
    temperature fitted on what came back is three times the one fitted on the cpu's."""

    delegates = ("cpu", SHARP)

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """As the simulator's ``cpu``."""
        return super().supports(device, dataclasses.replace(job, delegate="cpu"))

    def outputs(self, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
        """The simulator's outputs on ``cpu``, sharpened for ``sharpen-3x``."""
        facts = super().outputs(device, dataclasses.replace(job, delegate="cpu"), inputs, out,
                                progress)
        if job.delegate != SHARP:
            return facts
        arrays = {}
        for k, v in read_outputs(out).items():
            v = v.astype(np.float64)
            if v.min() >= 0 and np.allclose(v.sum(axis=-1), 1, atol=1e-2):
                v = v ** 3 / np.sum(v ** 3, axis=-1, keepdims=True)
            else:
                v = v * 3
            arrays[f"output:{k}"] = v.astype(np.float32)
        np.savez(out, **arrays)
        return dataclasses.replace(facts, delegate=SHARP)


def test_recalibrate_with_device_fits_on_the_outputs_that_came_back(
        variants: Path, digits: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    import quantlab.session as session
    from quantlab.harness.cli.main import app

    shutil.copytree(variants, tmp_path / "v")
    variants = tmp_path / "v"

    monkeypatch.setattr(session, "discover",
                        lambda cluster=None: discover(agents=[SharpeningSim()]))
    res = CliRunner().invoke(app, ["evaluate", str(variants), "--data", str(digits[1]),
                                   "--device", "sim", "--delegate", f"cpu,{SHARP}",
                                   "--samples", "300", "--no-store", "--json",
                                   "--recalibrate", "--max-drop", "1"])
    assert res.exit_code == 0, res.output
    report: dict[str, Any] = json.loads(res.stdout[:res.stdout.rindex("}") + 1])
    fits = {(r["scheme"], r["delegate"]): r["calibration"]["recalibration"]
            for r in report["rows"]}
    assert len(fits) == 4
    for scheme in ("fp32", "int8"):
        plain, sharp = fits[(scheme, "cpu")], fits[(scheme, SHARP)]
        assert plain["split"] == sharp["split"] == {"seed": 0, "share": 0.5, "fit": 150,
                                                    "held_out": 150}
        # fitted on the device's own outputs: three times too sharp needs three times the T
        assert sharp["temperature"] / plain["temperature"] == pytest.approx(3, rel=0.1)
    # the fitted values travel with each variant, per (device, delegate)
    entries = {e["file"]: e for e in json.loads((variants / "manifest.json").read_text())
               ["variants"] if e.get("file")}
    for (scheme, delegate), fit in fits.items():
        kept = entries[f"{scheme}.tflite"]["recalibration"][f"sim · {delegate}"]
        assert kept["temperature"] == fit["temperature"] and kept["samples"] == 300
    human = CliRunner().invoke(app, ["evaluate", str(variants), "--data", str(digits[1]),
                                     "--device", "sim", "--delegate", SHARP, "--samples",
                                     "100", "--no-store", "--recalibrate", "--max-drop", "1"])
    assert human.exit_code == 0, human.output
    assert f"recalibrated int8 on sim · {SHARP}: temperature" in human.stdout
