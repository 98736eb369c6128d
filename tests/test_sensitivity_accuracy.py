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


def test_top_n_converts_only_the_error_rankings_first_n_layers(
    fragile: tuple[Path, Path],
) -> None:
    """--top 1: the quick error ranking picks the one layer that is converted and scored;
    the others follow in the error ranking's order, without a drop, and the JSON says so."""
    model, data = fragile
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--json")
    assert r.returncode == 0, r.stderr
    by_error = [row["layer"] for row in json.loads(r.stdout)["layers"]]
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--data", str(data),
                 "--by", "accuracy", "--top", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["by"] == "accuracy" and out["top"] == 1 and out["converted"] == 1
    layers = out["layers"]
    assert [row["layer"] for row in layers] == by_error  # one scored: the error order stays
    assert layers[0]["drop"] is not None and layers[0]["ranked_by"] == "accuracy"
    assert all(row["drop"] is None and row["ranked_by"] == "error" for row in layers[1:])
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--data", str(data),
                 "--by", "accuracy", "--top", "1")
    assert r.returncode == 0, r.stderr
    assert "top 1 by error" in r.stdout
    for bad in (["--by", "accuracy", "--data", str(data), "--top", "0"], ["--top", "2"]):
        r = quantlab("sensitivity", str(model), "--calib", str(data), *bad)
        assert r.returncode == 2 and "--top" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def loud_but_harmless(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``fragile`` (a milder stretch: its int8 error 0.6 of ``loud``'s, its top-1 drop
    about 0.08) beside a branch ``loud`` → ``quiet`` added to the logits: ``loud``'s weights
    from input 0 (always 0 in the data) are huge, so int8 crushes its other weights (the
    largest relative error of all), but ``quiet`` scales that branch by 1e-3 so it never
    changes an answer. The error ranking puts ``loud`` first, accuracy puts ``fragile``."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inp = keras.Input((16,))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    f = keras.layers.Dense(32, activation="relu", name="fragile")(h)
    main = keras.layers.Dense(4, name="logits")(f)
    loud = keras.layers.Dense(32, activation="relu", name="loud")(inp)
    quiet = keras.layers.Dense(4, name="quiet")(loud)
    model = keras.Model(inp, keras.layers.Add(name="sum")([main, quiet]))
    k, b = model.get_layer("hidden").get_weights()
    k[:, 0], b[0] = 0.0, -1.0
    model.get_layer("hidden").set_weights([k, b])
    k1, b1 = model.get_layer("fragile").get_weights()
    k1[0, :] = 28.0 * np.abs(k1).max()
    model.get_layer("fragile").set_weights([k1, b1])
    kl, bl = model.get_layer("loud").get_weights()
    kl[0, :] = 1000.0 * np.abs(kl).max()
    model.get_layer("loud").set_weights([kl, bl])
    kq, bq = model.get_layer("quiet").get_weights()
    model.get_layer("quiet").set_weights([kq * 1e-3, bq * 0])
    x = rng.normal(size=(400, 16)).astype("float32")
    x[:, 0] = 0.0
    k2, b2 = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([k2, b2 - np.asarray(model(x)).mean(axis=0)])
    y = np.asarray(model(x)).argmax(axis=1)
    out_dir = tmp_path_factory.mktemp("loud")
    model.save(out_dir / "loud.keras")
    np.savez(out_dir / "data.npz", x=x, y=y)
    return out_dir / "loud.keras", out_dir / "data.npz"


def test_accuracy_and_error_rankings_tell_a_loud_but_harmless_layer_apart(
    loud_but_harmless: tuple[Path, Path],
) -> None:
    model, data = loud_but_harmless
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--json")
    assert r.returncode == 0, r.stderr
    by_error = json.loads(r.stdout)["layers"]
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--data", str(data),
                 "--by", "accuracy", "--json")
    assert r.returncode == 0, r.stderr
    by_accuracy = json.loads(r.stdout)["layers"]
    error_names = [(row["layer"][-40:], round(row["rel_error"], 3)) for row in by_error]
    assert "loud" in by_error[0]["layer"] and "fragile" in by_error[1]["layer"], error_names
    assert by_error[0]["rel_error"] > 1.25 * by_error[1]["rel_error"], error_names
    drops = {row["layer"][-40:]: row["drop"] for row in by_accuracy}
    assert "fragile" in by_accuracy[0]["layer"], drops
    assert by_accuracy[0]["drop"] > 0.05, drops  # 0.085 here: 34 of 400 answers
    assert all(by_accuracy[0]["drop"] > 3 * row["drop"] for row in by_accuracy[1:]), drops
    loud = next(row for row in by_accuracy if "loud" in row["layer"])
    assert loud["drop"] <= 0.01 and by_accuracy.index(loud) > 0, drops


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shapes detector (SSD outputs through TFLite_Detection_PostProcess), trained briefly:
    its ranking only has to be by mAP, not good."""
    from quantlab.harness.quantize.demo_detector import build_detector

    return build_detector(tmp_path_factory.mktemp("det"), styles=("ssd",), n_train=600,
                          epochs=4, n_eval=60)


def test_a_detector_is_ranked_by_its_map_drop_with_coco_labels(
    detector: dict[str, Path], tmp_path: Path,
) -> None:
    """--task/--labels/--decoder as evaluate takes them: each one-layer-int8 model is scored
    by the detection task (mAP against the COCO boxes), not by the quick metric (which read
    the boxes output as class scores: top-1 agreement)."""
    common = ["sensitivity", str(detector["ssd"]), "--calib", str(detector["calib"]),
              "--data", str(detector["eval"]), "--by", "accuracy"]
    r = quantlab(*common, "--task", "detection", "--labels", str(detector["labels"]),
                 "--decoder", "ssd", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["metric"] == "map" and out["task"] == "detection"
    layers = [row for row in out["layers"] if row["drop"] is not None]
    assert len(layers) >= 3
    # the float model's mAP, scored as evaluate scores it: the same for every row
    (reference,) = {row["reference"] for row in layers}
    assert 0.0 < reference <= 1.0
    for row in layers:
        assert row["metric"] == "map"
        assert 0.0 <= row["value"] <= 1.0
        assert row["drop"] == pytest.approx(reference - row["value"], abs=1e-9)
    assert [row["drop"] for row in layers] == sorted((row["drop"] for row in layers),
                                                     reverse=True)
    # the table names the metric; the labels are inferred to mean detection without --task
    r = quantlab(*common, "--labels", str(detector["labels"]), "--top", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "map drop" in r.stdout
    # a missing labels file and an unknown task are one line, exit 2
    r = quantlab(*common, "--labels", str(tmp_path / "none.json"))
    assert r.returncode == 2 and "none.json" in r.stderr and "Traceback" not in r.stderr
    r = quantlab(*common, "--task", "pose")
    assert r.returncode == 2 and "pose" in r.stderr and "Traceback" not in r.stderr
    r = quantlab("sensitivity", str(detector["ssd"]), "--calib", str(detector["calib"]),
                 "--task", "detection")
    assert r.returncode == 2 and "--task" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``fragile`` as a segmenter: 1×1 convolutions score 3 classes per pixel of 8×8 images,
    so each pixel is the Dense model's sample. ``hidden``'s channel 0 is dead and ``fragile``'s
    weights from it are huge: int8 on ``fragile`` alone crushes its other weights and the
    masks fall apart, int8 on another layer moves few pixels. The masks are the float
    model's own (float mIoU = 1.0)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inp = keras.Input((8, 8, 16))
    h = keras.layers.Conv2D(32, 1, activation="relu", name="hidden")(inp)
    f = keras.layers.Conv2D(32, 1, activation="relu", name="fragile")(h)
    out = keras.layers.Conv2D(3, 1, name="logits")(f)
    model = keras.Model(inp, out)
    k, b = model.get_layer("hidden").get_weights()
    k[..., 0], b[0] = 0.0, -1.0
    model.get_layer("hidden").set_weights([k, b])
    k1, b1 = model.get_layer("fragile").get_weights()
    k1[0, 0, 0, :] = 1000.0 * np.abs(k1).max()
    model.get_layer("fragile").set_weights([k1, b1])
    x = rng.normal(size=(100, 8, 8, 16)).astype("float32")
    k2, b2 = model.get_layer("logits").get_weights()
    scores = np.asarray(model(x)).reshape(-1, 3)
    model.get_layer("logits").set_weights([k2, b2 - scores.mean(axis=0)])  # classes balanced
    y = np.asarray(model(x)).argmax(axis=-1).astype(np.int64)
    out_dir = tmp_path_factory.mktemp("segmenter")
    model.save(out_dir / "segmenter.keras")
    np.savez(out_dir / "data.npz", x=x, y=y)
    return out_dir / "segmenter.keras", out_dir / "data.npz"


def test_a_segmenter_is_ranked_by_its_miou_drop(segmenter: tuple[Path, Path]) -> None:
    """--task segmentation: each one-layer-int8 model is scored by the mean IoU of its masks
    against the data's masks, the fragile layer first by a wide margin, every drop the float
    model's mIoU less the row's."""
    model, data = segmenter
    r = quantlab("sensitivity", str(model), "--calib", str(data), "--data", str(data),
                 "--by", "accuracy", "--task", "segmentation", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["task"] == "segmentation" and out["metric"] == "mean_iou"
    layers = out["layers"]
    drops = {row["layer"][-40:]: row["drop"] for row in layers}
    assert len(layers) == 3 and all(row["drop"] is not None for row in layers), drops
    assert "fragile" in layers[0]["layer"], drops
    assert layers[0]["drop"] > 0.3 and all(row["drop"] < 0.1 for row in layers[1:]), drops
    for row in layers:
        assert row["metric"] == "mean_iou" and row["reference"] == pytest.approx(1.0)
        assert row["drop"] == pytest.approx(row["reference"] - row["value"], abs=1e-9)
