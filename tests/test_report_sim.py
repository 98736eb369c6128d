"""compare and report on real simulator runs made by ``quantlab bench`` (needs agents.sim).

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

from harness.cli.main import app

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
    res = runner.invoke(app, ["compare", a, c, "--results", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["matches"][0]["verdict"] != "slower", res.stdout
    res = runner.invoke(app, ["compare", a, b, "--results", str(tmp_path), "--json"])
    assert res.exit_code == 1, res.output
    [m] = json.loads(res.stdout)["matches"]
    assert m["verdict"] == "slower" and m["ratio"] > 1.05
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", b, "--baseline", a, "--html", str(out),
                              "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert out.read_text().count("<svg") >= 1
