"""Quantization-aware training (qat-int8), int8 options and the autoquant remedy ladder.

On real TensorFlow, tfmot and LiteRT. Two ladder models:

- ``weight_outlier_model``: a digits MLP whose every layer carries one huge weight on an input
  that is always zero (pixel 0 of the 8×8 digits, and a dead hidden unit). The float function
  is unchanged, but each layer's int8 weight scale is stretched so that the useful weights round
  to a few levels: int8 loses >10 points, int16x8 too (its weights are int8 as well), keeping
  layers float only helps once nearly the whole model is float (over the ladder's size limit),
  while fine-tuning with fake quantization learns weights that survive the coarse grid.
- the shared ``outlier_model`` (one activation channel ×1000): mixed-int8 suffices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf

from quantlab.harness.quantize.ladder import choose

digits = qf.digits
digits_calib = qf.digits_calib
outlier_model = qf.outlier_model
quantlab = qf.quantlab

pytestmark = pytest.mark.slow


def _build_weight_outlier(out: Path) -> tuple[Path, Path, Path]:
    """(model.keras, train.npz, test.npz) — see the module docstring; runs in a subprocess so
    that this test process stays free of TensorFlow."""
    script = f"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {str(qf.ROOT)!r})
import numpy as np, keras
from quantlab.harness.quantize.demo_model import digits_arrays
xtr, ytr, xte, yte = digits_arrays()
assert float(xtr[..., 0, 0, 0].max()) == 0.0 and float(xte[..., 0, 0, 0].max()) == 0.0
keras.utils.set_random_seed(0)
m = keras.Sequential([keras.Input((8, 8, 1), name="image"), keras.layers.Flatten(name="flatten"),
    keras.layers.Dense(64, activation="relu", name="fc1"),
    keras.layers.Dense(10, activation="softmax", name="fc2")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(xtr, ytr, epochs=30, batch_size=32, verbose=0)
w1, b1 = m.get_layer("fc1").get_weights(); w2, b2 = m.get_layer("fc2").get_weights()
w1[:, 0] = 0; b1[0] = -1.0                 # hidden unit 0 is dead (pixel 0 is always 0)
w1[0, :] = 3 * w1.std() * 127               # int8 step = 3 weight std devs
w2[0, :] = 3 * w2.std() * 127
m.get_layer("fc1").set_weights([w1, b1]); m.get_layer("fc2").set_weights([w2, b2])
out = {str(out)!r}
m.save(out + "/weights.keras")
np.savez(out + "/train.npz", x=xtr, y=ytr)
np.savez(out + "/test.npz", x=xte, y=yte)
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return out / "weights.keras", out / "train.npz", out / "test.npz"


@pytest.fixture(scope="module")
def weight_outlier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return _build_weight_outlier(tmp_path_factory.mktemp("wout"))


def _autoquant(*args: str) -> dict:
    proc = quantlab("autoquant", *args, "--iterations", "20", "--repeats", "1", "--json")
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_autoquant_climbs_to_qat_when_nothing_else_passes(
    weight_outlier: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, train, test = weight_outlier
    out = tmp_path / "aq"
    res = _autoquant(str(model), "--calib", str(train), "--data", str(test), "--train",
                     str(train), "--max-drop", "0.02", "--epochs", "10", "--lr", "1e-3",
                     "--out", str(out), "--results", str(tmp_path / "res"))
    by = {s["rung"]: s for s in res["steps"]}
    assert by["int8"]["verdict"] == "fail" and by["int8"]["drop"] > 0.05
    assert by["int8"]["options"]["granularity"] == "per-channel"
    assert by["mixed-int8"]["verdict"] == "fail"
    assert "size limit" in by["mixed-int8"]["why_next"]
    assert by["int16x8"]["verdict"] == "fail"
    qat = by["qat-int8"]
    assert qat["verdict"] == "pass" and qat["drop"] <= 0.02
    assert qat["qat"]["epochs_run"] >= 1 and qat["qat"]["seconds_per_epoch_per_1000_samples"] > 0
    assert "fp16" not in by  # the ladder stops at the first rung that passes
    assert res["chosen"]["scheme"] == "qat-int8"
    assert qat["latency_ms"] and qat["latency_ms"] > 0  # measured on the simulator
    assert Path(res["chosen"]["file"]).exists() and (out / "ladder.json").exists()
    # an independent check of the chosen file: bare LiteRT, sample by sample
    data = np.load(test)
    ref = qf.plain_litert_top1(str(out / "steps" / "01-int8" / "fp32.tflite"), data["x"],
                               data["y"])
    assert ref - qf.plain_litert_top1(res["chosen"]["file"], data["x"], data["y"]) <= 0.02
    html = Path(res["report"]).read_text()
    assert 'data-section="ladder"' in html and "qat-int8" in html and "size limit" in html


def test_autoquant_stops_at_mixed_and_never_trains(
    outlier_model: Path, digits: tuple[Path, Path], digits_calib: Path, tmp_path: Path
) -> None:
    res = _autoquant(str(outlier_model), "--calib", str(digits_calib), "--data",
                     str(digits[1]), "--train", str(digits_calib), "--max-drop", "0.02",
                     "--out", str(tmp_path / "aq"), "--results", str(tmp_path / "res"))
    rungs = [s["rung"] for s in res["steps"]]
    assert res["steps"][0]["verdict"] == "fail"
    assert rungs[-1] == "mixed-int8" and res["steps"][-1]["verdict"] == "pass"
    assert res["steps"][-1]["mixed"]["float_layers"]
    assert "qat-int8" not in rungs and res["chosen"]["scheme"] == "mixed-int8"
    assert not list((tmp_path / "aq" / "steps").glob("*qat*"))
    # each rung's seconds, and mixed-int8 quantized from a calibration an earlier rung made
    for step in res["steps"]:
        if step["verdict"] != "skipped":
            assert set(step["timing"]) == {"quantize", "calibration", "conversion", "checks",
                                           "evaluate"}
            assert step["timing"]["evaluate"] > 0 and step["timing"]["quantize"] > 0
            assert step["seconds"] >= step["timing"]["quantize"]
    assert res["steps"][-1]["calibration"]["reused"] == "cache"
    assert res["timing"]["calibrations_reused"] >= 1
    assert res["timing"]["seconds"] >= sum(s.get("seconds") or 0 for s in res["steps"]) - 1


def test_ladder_timing_counts_made_and_reused_calibrations() -> None:
    from quantlab.harness.cli.autoquant import fmt_step_time, timing_line
    from quantlab.harness.quantize.ladder import ladder_timing

    made = {"rung": "int8", "seconds": 30.0, "calibration": {"reused": False, "seconds": 12.0},
            "timing": {"quantize": 20.0, "calibration": 12.0, "conversion": 3.0,
                       "checks": 1.0, "evaluate": 10.0}}
    cached = {"rung": "int16x8", "seconds": 19.5, "calibration": {"reused": "cache",
                                                                  "seconds": 12.0},
              "timing": {"quantize": 9.0, "calibration": 0.5, "conversion": 4.0,
                         "checks": 1.0, "evaluate": 10.0}}
    float16 = {"rung": "fp16", "seconds": 15.0, "calibration": None,
               "timing": {"quantize": 5.0, "calibration": 0.0, "conversion": 2.0,
                          "checks": 1.0, "evaluate": 10.0}}
    skipped = {"rung": "qat-int8", "verdict": "skipped"}
    timing = ladder_timing([made, cached, skipped, float16], 70.0)
    assert timing == {"seconds": 70.0, "calibrations_made": 1, "calibrations_reused": 1,
                      "calibration_saved_s": 11.5}
    assert fmt_step_time(made) == "30.0 s (calib 12.0 made, conv 3.0, eval 10.0)"
    assert fmt_step_time(cached) == "19.5 s (calib 0.5 cached, conv 4.0, eval 10.0)"
    assert fmt_step_time(float16) == "15.0 s (conv 2.0, eval 10.0)"
    assert fmt_step_time(skipped) == "–"
    assert timing_line(timing) == ("ladder: 70.0 s; calibration made by 1 rung(s), reused from "
                                   "the cache by 1 (≈ 11.5 s saved)")


def test_qat_on_the_demo_keras3_file_then_evaluate(
    digits: tuple[Path, Path], digits_calib: Path, tmp_path: Path
) -> None:
    keras_path, data = digits
    out = tmp_path / "v"
    proc = quantlab("quantize", str(keras_path), "--out", str(out), "--schemes",
                    "fp32,int8,qat-int8", "--calib", str(digits_calib), "--train",
                    str(digits_calib),
                    "--epochs", "2", "--granularity", "per-tensor", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    by = {v["scheme"]: v for v in manifest["variants"]}
    assert by["qat-int8"]["status"] == "ok", by["qat-int8"]["error"]
    facts = by["qat-int8"]["qat"]
    assert facts["source"]["loaded"].startswith("Keras 3, rebuilt as tf-keras")
    assert 1 <= facts["epochs_run"] <= 2 and facts["held_out_samples"] > 0
    assert by["qat-int8"]["ops"]["float_ops"] == 0  # full integer
    assert by["int8"]["options"] == {"granularity": "per-tensor", "calibration_samples": 200}
    ev = quantlab("evaluate", str(out), "--data", str(data), "--no-store", "--json")
    report = json.loads(ev.stdout)
    rows = {v["scheme"]: v for v in report["variants"]}
    assert rows["qat-int8"]["accuracy"]["top1"] > 0.85
    assert rows["qat-int8"]["gate"]["metric"] == "top1"


def test_qat_refuses_tflite_and_missing_training_data(
    digits: tuple[Path, Path], tmp_path: Path
) -> None:
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    proc = quantlab("quantize", str(tfl), "--out", str(tmp_path / "a"), "--schemes",
                    "qat-int8", "--train", str(digits[1]))
    assert proc.returncode == 2 and "cannot be fine-tuned" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = quantlab("quantize", str(digits[0]), "--out", str(tmp_path / "b"), "--schemes",
                    "qat-int8")
    assert proc.returncode == 2 and "--train" in proc.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_layers_tf_keras_lacks_are_named(tmp_path: Path) -> None:
    script = f"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"; os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, {str(qf.ROOT)!r})
import keras
from quantlab.harness.quantize.qat import QatError
from quantlab.harness.quantize.qat_rebuild import rebuild_as_tf_keras
m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d"),
                      keras.layers.RMSNormalization(name="norm")])
try:
    rebuild_as_tf_keras(m)
except QatError as exc:
    print("REFUSED", exc)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert "REFUSED" in proc.stdout and "norm (no tf-keras layer RMSNormalization)" in proc.stdout


def test_choice_prefers_fastest_and_breaks_ties_by_size() -> None:
    def step(rung: str, size: int, median: float, ci: tuple[float, float]) -> dict:
        return {"rung": rung, "scheme": rung, "passed": True, "size_bytes": size,
                "latency": {"median_ms": median, "ci95": list(ci)}, "latency_ms": median}

    fast = step("int16x8", 9000, 1.0, (0.95, 1.05))
    slow = step("mixed-int8", 5000, 2.0, (1.9, 2.1))
    assert choose([slow, fast])[0] is fast
    tied = step("qat-int8", 5000, 1.02, (0.97, 1.07))
    best, why = choose([fast, tied, {"rung": "int8", "passed": False}])
    assert best is tied and "smaller file" in why
    assert choose([{"rung": "int8", "passed": False}])[0] is None


def test_ties_are_compares_verdict_not_overlapping_intervals() -> None:
    """Two passing rungs measured on the device, the larger file 10 % faster: each
    median's 95 % CI overlaps the other's (wide spread within launches), which made them
    a tie and shipped the slower, smaller file; compare's test on the pair calls them
    different, so the faster wins. A pair compare calls the same is still a tie."""
    from series_runs import entry, job

    from quantlab.harness.stats import summarize
    from quantlab.harness.verdicts.compare import latency_ties

    spread = tuple(float(x) for x in np.linspace(0.4, 1.6, 100))
    launches = (1.0, 1.01, 0.99, 1.0)
    fast = entry(job("/s/int16x8.tflite", "aa"), 1.0, launches=launches, pattern=spread)
    slow = entry(job("/s/qat-int8.tflite", "bb"), 1.11, launches=launches, pattern=spread)
    same = entry(job("/s/mixed-int8.tflite", "cc"), 1.002, launches=launches, pattern=spread)
    by_file = {e.job.model.path: e for e in (fast, slow, same)}
    ties = latency_ties(by_file)

    def step(e: object, rung: str, size: int) -> dict:
        summary = summarize(e.raw)  # type: ignore[attr-defined]
        path = e.job.model.path  # type: ignore[attr-defined]
        latency = {"median_ms": summary.median, "ci95": list(summary.ci95), "file": path,
                   "ties": ties[path]}
        return {"rung": rung, "scheme": rung, "passed": True, "size_bytes": size,
                "latency": latency, "latency_ms": summary.median}

    a, b = step(fast, "int16x8", 9000), step(slow, "qat-int8", 5000)
    assert a["latency"]["ci95"][1] > b["latency"]["ci95"][0]  # the intervals overlap
    best, why = choose([a, b])
    assert best is a and "fastest" in why
    c = step(same, "mixed-int8", 4000)
    best, why = choose([a, c])
    assert best is c and "tied on latency" in why
