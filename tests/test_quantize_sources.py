"""SavedModel and .tflite sources, sensitivity ranking, and interruption safety."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import quantize_fixtures as qf

from quantlab.harness.quantize.requests import QuantizeRequest
from quantlab.harness.quantize.variants import quantize

digits = qf.digits
digits_calib = qf.digits_calib
outlier_model = qf.outlier_model
outlier_tflite = qf.outlier_tflite
keras_variants = qf.keras_variants
quantlab = qf.quantlab


def test_savedmodel_source_with_coreml(digits: tuple[Path, Path], tmp_path: Path) -> None:
    import keras

    saved = tmp_path / "saved"
    keras.models.load_model(digits[0]).export(str(saved), verbose=False)
    m = quantize(QuantizeRequest.create(saved, ["fp32", "int8", "coreml-fp16"], digits[1],
                                        tmp_path / "v"))
    assert m.source["kind"] == "savedmodel"
    assert [(v.scheme, v.status) for v in m.variants] == [
        ("fp32", "ok"),
        ("int8", "ok"),
        ("coreml-fp16", "ok"),
    ], [v.error for v in m.variants]
    assert (tmp_path / "v" / "coreml-fp16.mlpackage").is_dir()


def test_mixed_from_tflite_keeps_the_outlier_layers_float(
    outlier_tflite: Path, digits: tuple[Path, Path], digits_calib: Path, tmp_path: Path
) -> None:
    src = outlier_tflite
    out = tmp_path / "v"
    m = quantize(QuantizeRequest.create(src, ["fp32", "int8", "mixed-int8"], digits_calib, out,
                                        eval_data=digits[1]))
    mixed = next(v for v in m.variants if v.scheme == "mixed-int8")
    assert mixed.converter == "aeq" and mixed.mixed["passed"], mixed.mixed
    assert any("conv2" in layer for layer in mixed.mixed["float_layers"])
    assert mixed.mixed["size_cost_bytes"] > 0
    r = quantlab("evaluate", str(out), "--data", str(digits[1]), "--no-store", "--json")
    assert r.returncode == 1 and r.stderr.rstrip().endswith("for: int8"), r.stderr


@pytest.mark.parametrize("source", ["keras", "tflite"])
def test_sensitivity_ranks_the_outlier_convs_first(
    source: str, outlier_model: Path, outlier_tflite: Path, digits: tuple[Path, Path]
) -> None:
    model = outlier_tflite if source == "tflite" else outlier_model
    r = quantlab("sensitivity", str(model), "--calib", str(digits[1]), "--json")
    assert r.returncode == 0, r.stderr
    layers = json.loads(r.stdout)["layers"]
    assert len(layers) >= 5
    # both outlier convs rank in the top three (relative error ~0.97-1.02, the next layer
    # ~0.66-0.69); their order against the logits layer is a hair's breadth on some
    # trainings (digits seed 7: logits 0.982, conv2 0.980, conv1 0.969), so it is not asserted
    top3 = " ".join(row["layer"] for row in layers[:3])
    assert "conv1" in top3 and "conv2" in top3, layers[:4]


def test_interrupt_leaves_no_folder(digits: tuple[Path, Path], tmp_path: Path) -> None:
    def interrupt(event: str, fields: dict[str, Any]) -> None:
        if event == "start" and fields["scheme"] == "int8":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quantize(QuantizeRequest.create(digits[0], ["fp32", "int8"], digits[1], tmp_path / "v"),
                 progress=interrupt)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_converter_crash_fails_only_that_scheme(
    keras_variants: Path, digits: tuple[Path, Path], tmp_path: Path, jobs: int
) -> None:
    """A worker killed by a signal mid-scheme (as a native crash would) fails that scheme only,
    with a one-line reason; with two workers side by side the other one finishes its schemes."""
    import os
    import signal

    starts: dict[str, int] = {}

    def crash(event: str, fields: dict[str, Any]) -> None:
        if event == "start":
            starts[fields["scheme"]] = fields["pid"]
            if fields["scheme"] == "mixed-int8":
                os.kill(fields["pid"], signal.SIGKILL)

    src = keras_variants / "fp32.tflite"
    m = quantize(QuantizeRequest.create(
        src, ["fp32", "mixed-int8", "dynamic-int8"], digits[1], tmp_path / "v", jobs=jobs),
        progress=crash)
    by = {v.scheme: v for v in m.variants}
    assert by["mixed-int8"].status == "failed"
    assert by["mixed-int8"].error == "the converter crashed (exit code -9)"
    assert by["fp32"].status == "ok" and by["dynamic-int8"].status == "ok"
    assert starts["fp32"] != starts["mixed-int8"] != starts["dynamic-int8"]
    assert (tmp_path / "v" / "dynamic-int8.tflite").exists()
