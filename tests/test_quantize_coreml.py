"""Core ML palettization with layers kept fp16 (``--coreml-keep``) and the Core ML ladder.

On real coremltools (conversion works on Linux; prediction needs macOS, so no test here
measures Core ML accuracy). What a variant holds is read back from its saved ML program:
a palettized weight is a ``constexpr_lut_to_dense`` op, a weight left fp16 a ``const``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf

from quantlab.harness.errors import UserError
from quantlab.harness.quantize.requests import QuantizeRequest
from quantlab.harness.quantize.variants import quantize

digits = qf.digits
quantlab = qf.quantlab

pytestmark = pytest.mark.slow

PALETTIZED = "constexpr_lut_to_dense"


def weights(package: Path) -> dict[str, list[tuple[str, int]]]:
    """Each Core ML op of a saved .mlpackage → (producer op type, size) of its ≥ 2-D weights."""
    import coremltools as ct

    fn = ct.utils.load_spec(str(package)).mlProgram.functions["main"]
    ops = fn.block_specializations[fn.opset].operations
    made = {}
    for op in ops:
        for out in op.outputs:
            dims = [d.constant.size for d in out.type.tensorType.dimensions]
            made[out.name] = (op.type, dims)
    found: dict[str, list[tuple[str, int]]] = {}
    for op in ops:
        if op.type == "const" or op.type.startswith("constexpr_"):
            continue
        name = op.attributes["name"].immediateValue.tensor.strings.values[0]
        args = [a.name for v in op.inputs.values() for a in v.arguments if a.name]
        found[name] = [(made[a][0], int(np.prod(made[a][1]))) for a in args
                       if a in made and made[a][0] in ("const", PALETTIZED)
                       and len(made[a][1]) >= 2]
    return found


def by_scheme(manifest: object) -> dict[str, object]:
    return {v.scheme: v for v in manifest.variants}  # type: ignore[attr-defined]


def test_kept_layer_stays_fp16_between_palettized_and_fp16_in_size(
    digits: tuple[Path, Path], tmp_path: Path
) -> None:
    full = quantize(QuantizeRequest.create(digits[0], ["coreml-fp16", "coreml-w4"], None,
                                           tmp_path / "full"))
    kept = quantize(QuantizeRequest.create(digits[0], ["coreml-w4"], None, tmp_path / "kept",
                                           options={"coreml_keep": ["dense1"]}))
    fp16, w4 = by_scheme(full)["coreml-fp16"], by_scheme(full)["coreml-w4"]
    entry = by_scheme(kept)["coreml-w4"]
    assert entry.status == "ok", entry.error
    assert entry.options["coreml_keep"] == ["dense1"] and entry.options["keep"] == ["dense1"]
    (op,) = entry.options["keep_ops"]
    assert "dense1" in op
    # dense1 holds 32768 of the model's ~42k weights: fp16 costs 48 KiB more than 4-bit
    assert w4.size_bytes + 40_000 < entry.size_bytes < fp16.size_bytes
    ops = weights(tmp_path / "kept" / entry.file)
    assert ops[op] == [("const", 512 * 64)]
    conv2 = next(o for o in ops if "conv2" in o)
    assert ops[conv2] == [(PALETTIZED, 32 * 32 * 9)]  # the other big layer: palettized
    assert weights(tmp_path / "full" / w4.file)[op] == [(PALETTIZED, 512 * 64)]


@pytest.fixture(scope="module")
def keep_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv + batch norm (the converter names the fused conv after the batch norm) and Dense
    layers named dense, dense_1 and dense_b (TF scopes them dense_1, dense_1_2, dense_b_1);
    built in a subprocess."""
    out = tmp_path_factory.mktemp("keep") / "keep.keras"
    script = f"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
keras.utils.set_random_seed(0)
x = keras.Input((8, 8, 8), name="image")
h = keras.layers.Conv2D(32, 3, padding="same", name="conv")(x)
h = keras.layers.BatchNormalization(name="bn")(h)
h = keras.layers.ReLU(name="relu")(h)
h = keras.layers.Flatten(name="flatten")(h)
h = keras.layers.Dense(16, activation="relu", name="dense")(h)
h = keras.layers.Dense(160, activation="relu", name="dense_1")(h)
h = keras.layers.Dense(16, activation="relu", name="dense_b")(h)
y = keras.layers.Dense(10, activation="softmax", name="logits")(h)
keras.Model(x, y).save({str(out)!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return out


def test_layers_are_traced_through_the_graph_not_matched_by_name(
    keep_model: Path, tmp_path: Path
) -> None:
    m = quantize(QuantizeRequest.create(keep_model, ["coreml-w4"], None, tmp_path / "v",
                                        options={"coreml_keep": ["conv", "dense"]}))
    entry = by_scheme(m)["coreml-w4"]
    assert entry.status == "ok", entry.error
    assert entry.options["keep"] == ["conv", "dense"] and len(entry.options["keep_ops"]) == 2
    ops = weights(tmp_path / "v" / entry.file)
    kept = {o: ops[o] for o in entry.options["keep_ops"]}
    assert sorted(kept.values()) == [[("const", 3 * 3 * 8 * 32)], [("const", 2048 * 16)]]
    others = {o: w for o, w in ops.items() if o not in kept and w}
    assert sorted(w for ws in others.values() for w in ws) == [
        ("const", 16 * 10),  # logits: too small to palettize (≤ 2048 values)
        (PALETTIZED, 16 * 160), (PALETTIZED, 160 * 16)]  # dense_1, dense_b: not kept


def test_unknown_layer_is_a_user_error_naming_the_layers(
    keep_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError) as err:
        quantize(QuantizeRequest.create(keep_model, ["coreml-w4"], None, tmp_path / "v",
                                        options={"coreml_keep": ["dense", "bn"]}))
    line = err.value.one_line()
    assert "'bn' matches no Core ML weight op" in line and "\n" not in line
    assert "conv, dense, dense_1, dense_b, logits" in line
    assert not (tmp_path / "v").exists()
    for schemes, keep, why in ((["coreml-w8"], ["dense"], "palettized Core ML weights"),
                               (["coreml-w4"], ["sensitive:0"], "sensitive:N alone"),
                               (["coreml-w4"], ["dense", "sensitive:1"], "sensitive:N alone")):
        with pytest.raises(UserError, match=why):
            quantize(QuantizeRequest.create(keep_model, schemes, None, tmp_path / "v",
                                            options={"coreml_keep": keep}))


def test_cli_unknown_layer_exits_2_with_one_line(digits: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    proc = quantlab("quantize", str(digits[0]), "--schemes", "coreml-w4", "--coreml-keep",
                    "dense", "--out", str(tmp_path / "v"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "'dense' matches no Core ML weight op" in proc.stderr
    assert "conv1, conv2, dense1, logits" in proc.stderr
    assert not (tmp_path / "v").exists()


def test_coreml_ladder_keeps_the_most_sensitive_layer_and_measures_only_size(
    digits: tuple[Path, Path], tmp_path: Path
) -> None:
    from rich.console import Console

    from quantlab.harness.cli.autoquant import ladder_table
    from quantlab.harness.quantize.ladder import NO_COREML_RUNTIME, LadderRequest, climb_coreml

    req = LadderRequest(model=str(digits[0]), calib=str(digits[1]), data=str(digits[1]),
                        out=str(tmp_path))
    res = climb_coreml(req, tmp_path, None)
    steps = {s["rung"]: s for s in res["steps"]}
    assert list(steps) == ["coreml-w8", "coreml-w4", "coreml-w4 (sensitive layers kept)",
                           "coreml-fp16"]
    kept = steps["coreml-w4 (sensitive layers kept)"]
    assert kept["verdict"] == "unverified" and kept["passed"] is None
    assert kept["value"] is None and kept["drop"] is None  # no metric without a runtime
    if sys.platform != "darwin":
        assert kept["accuracy_note"] == NO_COREML_RUNTIME and res["note"] == NO_COREML_RUNTIME
    assert kept["options"]["coreml_keep"] == ["sensitive:1"]
    (layer,) = kept["options"]["keep"]
    assert layer in ("conv2", "dense1")  # the only layers palettization compresses
    assert steps["coreml-w4"]["size_bytes"] < kept["size_bytes"] < steps["coreml-fp16"][
        "size_bytes"]
    console = Console(record=True, width=250)
    console.print(ladder_table({"steps": res["steps"]}, "Core ML ladder"))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "sensitive layers kept" in line)
    assert f"fp16: {layer}" in row and f"{kept['size_bytes'] / 1024:.1f} KiB" in row
    assert "not measured" in row
