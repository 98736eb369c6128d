"""Converters found by name: every scheme's recipe names a registered converter, and the worker
makes a variant with whatever converter a recipe names (no TensorFlow here: fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quantlab.harness.quantize.converters import CONVERTERS, load_converter
from quantlab.harness.quantize.events import Events
from quantlab.harness.quantize.requests import WorkerRequest
from quantlab.harness.quantize.schemes import SCHEMES, Recipe, Scheme
from quantlab.harness.quantize.worker import Job


def test_every_scheme_names_registered_converters_that_load() -> None:
    named = {r.converter for s in SCHEMES.values() for r in (s.from_tf, s.from_tflite) if r}
    assert named <= set(CONVERTERS), named - set(CONVERTERS)
    for key in CONVERTERS:
        assert callable(load_converter(key)), key
    assert SCHEMES["fp32"].recipe_for("keras") == Recipe("tf-float")
    assert SCHEMES["int8"].recipe_for("tflite") == Recipe("aeq", {"recipe": "static_wi8_ai8"})
    assert SCHEMES["coreml-w8"].recipe_for("tflite") is None


def test_an_unknown_converter_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="no converter 'nope' \\(known: tf, tf-float"):
        load_converter("nope")


def copy_with_a_header(source: Any, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """A converter registered by a test: the float model behind a header from the recipe."""
    out = source.work / f"{scheme.name}{scheme.suffix}"
    out.write_bytes(settings["header"] + source.fp32)
    return {"file": out.name, "converter": "test-copy"}


def _job(tmp_path: Path) -> Job:
    req = WorkerRequest(task="quantize", source=str(tmp_path / "m.tflite"), source_kind="tflite",
                        work_dir=str(tmp_path), events=str(tmp_path / "events.jsonl"))
    job = Job(req, Events(req.events))
    job.fp32 = b"TFL3-float-model"
    return job


def test_the_worker_makes_a_variant_with_the_converter_a_recipe_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CONVERTERS, "test-copy", f"{__name__}:copy_with_a_header")
    scheme = Scheme("test-scheme", "tflite", False, "a scheme with a new converter",
                    from_tflite=Recipe("test-copy", {"header": b"H:"}))
    fields = _job(tmp_path).make(scheme)
    assert fields == {"file": "test-scheme.tflite", "converter": "test-copy"}
    assert (tmp_path / "test-scheme.tflite").read_bytes() == b"H:TFL3-float-model"
    with pytest.raises(ValueError,
                       match="Core ML variants need a Keras, SavedModel or PyTorch source"):
        _job(tmp_path).make(SCHEMES["coreml-w4"])
