"""compare and report on real simulator runs made by ``quantlab bench`` (needs agents/sim).

Slower on purpose, yet matched: both runs bench a file called ``model.tflite``
(no scheme) on the same device, delegate and threads; the new one is a much
wider network. Its sha256 differs, so compare matches the jobs by scheme + file
name, device, delegate and threads — the "my model changed since last night"
case. Identical settings: the same file benched twice (same sha256).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quantlab.harness.cli.main import app

runner = CliRunner()
BENCH = ["--device", "sim", "--delegate", "xnnpack", "--threads", "1", "--warmup", "10",
         "--iterations", "60", "--repeats", "5"]


def _tflite(path: Path, filters: int, layers: int) -> Path:
    """A small conv net: compute-bound (its weights fit in cache), so its timing reflects
    the model rather than memory traffic from whatever else the machine is doing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    inp = tf.keras.Input(shape=(48, 48, 8), batch_size=1)
    x = inp
    for _ in range(layers):
        x = tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(10)(x))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report-sim")
    # About a millisecond: a few-microsecond model measures scheduler noise, not the model.
    return (_tflite(root / "small" / "model.tflite", 32, 3),
            _tflite(root / "big" / "model.tflite", 64, 6))


def _bench(results: Path, model: Path) -> str:
    res = runner.invoke(app, ["bench", str(model), *BENCH, "--results", str(results), "--json"])
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["run_id"])


def test_sim_compare_slower_and_identical(tmp_path: Path, models: tuple[Path, Path]) -> None:
    small, big = models
    a = _bench(tmp_path, small)
    c = _bench(tmp_path, small)  # identical settings, run right after
    b = _bench(tmp_path, big)
    # Two real runs of the same file differ by whatever the machine did in between: the
    # statistics guarantee no verdict there, only that the pair is tested and in range
    # (the no-difference rule itself is tested on synthetic samples in test_report_compare).
    res = runner.invoke(app, ["compare", a, c, "--results", str(tmp_path), "--json"])
    assert res.exit_code in (0, 1), res.output
    [same] = json.loads(res.stdout)["matches"]
    assert same["method"] == "per-iteration" and 0.5 < same["ratio"] < 2.0, res.stdout
    res = runner.invoke(app, ["compare", a, b, "--results", str(tmp_path), "--json"])
    assert res.exit_code == 1, res.output
    [m] = json.loads(res.stdout)["matches"]
    assert m["verdict"] == "slower" and m["ratio"] > 1.05
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", b, "--baseline", a, "--html", str(out),
                              "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert out.read_text().count("<svg") >= 1


def test_delegates_compared_on_purpose_with_match(tmp_path: Path,
                                                  models: tuple[Path, Path]) -> None:
    """xnnpack run vs builtin-kernel (cpu) run of the same model: with --match model,device
    the pair is tested and the builtin kernels (3-11x slower here) come out slower."""
    small, _ = models
    fast = _bench(tmp_path, small)
    cpu = ["bench", str(small), *BENCH, "--results", str(tmp_path), "--json"]
    cpu[cpu.index("xnnpack")] = "cpu"
    res = runner.invoke(app, cpu)
    assert res.exit_code == 0, res.output
    slow = json.loads(res.stdout)["run_id"]
    # with the default keys the delegates differ: nothing pairs, and each job is listed;
    # the baseline's is missing from the new run, which fails unless accepted
    res = runner.invoke(app, ["compare", fast, slow, "--results", str(tmp_path), "--json"])
    data = json.loads(res.stdout)
    assert res.exit_code == 1 and data["matches"] == []
    assert len(data["only_in_baseline"]) == 1 and len(data["only_in_new"]) == 1
    assert data["only_in_baseline"][0]["verdict"] == "missing"
    res = runner.invoke(app, ["compare", fast, slow, "--allow-missing",
                              "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["compare", fast, slow, "--match", "model,device",
                              "--results", str(tmp_path), "--json"])
    assert res.exit_code == 1, res.output
    [m] = json.loads(res.stdout)["matches"]
    assert m["verdict"] == "slower" and m["method"] == "per-iteration"
    assert m["statistic"] == "median" and m["ratio"] > 1.5
    assert m["delegate"] == "cpu" and "xnnpack" in m["baseline_label"]


def test_interleaved_ab_pairs_launches_on_one_device(tmp_path: Path,
                                                     models: tuple[Path, Path]) -> None:
    small, _ = models
    res = runner.invoke(app, ["ab", str(small), "--device", "sim", "--delegate", "xnnpack",
                              "--delegate-b", "cpu", "--launches", "4", "--iterations", "20",
                              "--warmup", "3", "--results", str(tmp_path), "--json"])
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    ab = data["ab"]
    assert ab["verdict"] == "slower" and ab["statistic"] == "median"
    assert len(ab["pairs"]) == 4 and all(p["ratio"] > 1.5 for p in ab["pairs"])
    assert ab["ratio_ci95"][0] > 1.5 and ab["p_value"] < 0.05
    # both sides are stored as one run, each launch a repeat, and read like any run
    assert data["a"]["delegate"] == "xnnpack" and data["b"]["delegate"] == "cpu"
    assert len(data["a"]["samples_ms"]) == 4 and len(data["b"]["samples_ms"]) == 4
    assert "interleaved with" in data["b"]["runner"]["interleaved"]
    shown = runner.invoke(app, ["show", data["run_id"], "--results", str(tmp_path), "--json"])
    assert len(json.loads(shown.stdout)["results"]) == 2
    same = runner.invoke(app, ["ab", str(small), str(small), "--device", "sim",
                               "--results", str(tmp_path)])
    assert same.exit_code == 2 and "same job" in same.stderr
