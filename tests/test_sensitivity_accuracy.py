"""`quantlab sensitivity --by accuracy`: one layer int8 at a time, ranked by the metric's drop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from quantize_fixtures import quantlab


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three dense layers; ``hidden``'s first unit is dead (always 0) and ``fragile``'s weights
    from it are huge (the float function ignores them): int8 weights on ``fragile`` alone get
    a scale per output unit stretched by that one weight, which crushes every other weight.
    No activation range changes, so int8 on ``hidden`` or ``logits`` alone costs little.
    Labels are the float model's own answers (float top-1 = 1.0)."""
    import keras

    rng = np.random.default_rng(0)
    inp = keras.Input((16,))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    f = keras.layers.Dense(32, activation="relu", name="fragile")(h)
    out = keras.layers.Dense(4, name="logits")(f)
    model = keras.Model(inp, out)
    k, b = model.get_layer("hidden").get_weights()
    k[:, 0], b[0] = 0.0, -1.0
    model.get_layer("hidden").set_weights([k, b])
    k1, b1 = model.get_layer("fragile").get_weights()
    k1[0, :] = 1000.0 * np.abs(k1).max()
    model.get_layer("fragile").set_weights([k1, b1])
    k2, b2 = model.get_layer("logits").get_weights()
    x = rng.normal(size=(400, 16)).astype("float32")
    logits = np.asarray(model(x))
    # centre the classes so each is chosen about as often (a crushed layer then costs ~0.7)
    b2 = b2 - logits.mean(axis=0)
    model.get_layer("logits").set_weights([k2, b2])
    y = np.asarray(model(x)).argmax(axis=1)
    out_dir = tmp_path_factory.mktemp("fragile")
    model.save(out_dir / "fragile.keras")
    np.savez(out_dir / "data.npz", x=x, y=y)
    return out_dir / "fragile.keras", out_dir / "data.npz"


def test_by_accuracy_ranks_the_fragile_layer_first_with_its_drop_and_cost(
    fragile: tuple[Path, Path],
) -> None:
    model, data = fragile
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--data", str(data),
                 "--by", "accuracy", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["by"] == "accuracy"
    assert out["seconds"]["accuracy"] > 0 and out["seconds"]["error"] > 0
    layers = out["layers"]
    drops = [(r["layer"][-30:], r["drop"]) for r in layers]
    assert "fragile" in layers[0]["layer"], drops
    assert layers[0]["metric"] == "top1"
    assert layers[0]["drop"] > 0.4, layers[0]
    assert all(row["drop"] < 0.15 for row in layers[1:]), drops
    assert all(row["seconds"] >= 0 and "rel_error" in row for row in layers)
    # the terminal table carries the drop column and what the ranking cost
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--data", str(data),
                 "--by", "accuracy")
    assert r.returncode == 0, r.stderr
    assert "top1 drop" in r.stdout and "accuracy ranking" in r.stdout


def test_by_error_says_so_and_by_accuracy_without_data_is_one_line(
    fragile: tuple[Path, Path],
) -> None:
    model, data = fragile
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["by"] == "error" and set(out["seconds"]) == {"error"}
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--by", "accuracy")
    assert r.returncode == 2
    assert "--data" in r.stderr and "Traceback" not in r.stderr
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--by", "speed")
    assert r.returncode == 2 and "--by speed" in r.stderr


def test_mixed_int8_rank_accuracy_keeps_the_fragile_layer_float_and_says_so(
    fragile: tuple[Path, Path], tmp_path: Path,
) -> None:
    model, data = fragile
    out = tmp_path / "v"
    r = quantlab("quantize", str(model), "--schemes", "mixed-int8", "--calib", str(data),
                 "--eval", str(data), "--rank", "accuracy", "--max-drop", "0.1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    (entry,) = json.loads((out / "manifest.json").read_text())["variants"]
    mixed = entry["mixed"]
    assert mixed["rank"] == "accuracy"
    assert set(mixed["rank_seconds"]) == {"error", "accuracy"}
    assert mixed["passed"] and len(mixed["float_layers"]) == 1
    assert "fragile" in mixed["float_layers"][0]
    r = quantlab("quantize", str(model), "--schemes", "mixed-int8", "--calib", str(data),
                 "--rank", "speed", "--out", str(tmp_path / "w"))
    assert r.returncode == 2 and "--rank speed" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "w").exists()


def test_autoquant_rank_accuracy_reaches_its_mixed_rung(
    fragile: tuple[Path, Path], tmp_path: Path,
) -> None:
    model, data = fragile
    r = quantlab("autoquant", str(model), "--calib", str(data), "--data", str(data),
                 "--max-drop", "0.1", "--rank", "accuracy", "--out", str(tmp_path / "aq"),
                 "--results", str(tmp_path / "res"), "--iterations", "2", "--repeats", "1",
                 "--json")
    assert r.returncode in (0, 1), r.stderr[-3000:]  # 1: a gate verdict, not an error
    steps = json.loads(r.stdout)["steps"]
    (mixed,) = [s for s in steps if s["rung"] == "mixed-int8"]
    assert mixed["options"]["mixed_rank"] == "accuracy"
    assert mixed["mixed"]["rank"] == "accuracy"
    assert set(mixed["mixed"]["rank_seconds"]) == {"error", "accuracy"}
    # (which layers it keeps float is the ladder's size limit's call on this tiny model)
