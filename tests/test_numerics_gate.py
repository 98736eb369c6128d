"""The numerics gate on fixed numbers: NaN/Inf outputs fail it and never reach stored JSON as a
bare token; top-1 agreement enters the verdict where an output is a class vector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from quantize_fixtures import quantlab

from harness.numerics import compare_outputs, delegate_only, jsonable, verdict


def _record(reference: dict[str, np.ndarray], got: dict[str, np.ndarray],
            variant: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """A numerics record as the runners build it (figures vs float, delegate_only vs the
    variant on the host), through JSON as the store keeps it."""
    result = compare_outputs(reference, got)
    if variant is not None:
        result["delegate_only"] = delegate_only(variant, got)
    return json.loads(json.dumps(jsonable(result), allow_nan=False))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_outputs_fail_the_numerics_gate(bad: float) -> None:
    reference = {"scores": np.linspace(0.0, 1.0, 40).reshape(4, 10),
                 "value": np.array([[0.5]])}
    got = {k: v.copy() for k, v in reference.items()}
    got["scores"][1, 3] = bad
    got["scores"][2, 7] = bad
    # against the float model only, and against the variant on the host: both fail
    for record in (_record(reference, got), _record(reference, got, reference)):
        ok, why = verdict(record)
        assert ok is False, why
        assert "2 of 41 output values are NaN/Inf" in why
    # the figures are over the values finite on both sides; none is a bare NaN
    record = _record(reference, got, reference)
    assert record["nonfinite"] == 2 and record["values"] == 41
    assert record["outputs"]["scores"]["nonfinite"] == 2
    assert record["cosine"] == pytest.approx(1.0)


def test_all_nan_outputs_fail_and_store_as_strict_json() -> None:
    reference = {"out": np.ones((1, 8))}
    got = {"out": np.full((1, 8), np.nan)}
    record = _record(reference, got, reference)
    ok, why = verdict(record)
    assert ok is False and "8 of 8 output values are NaN/Inf" in why
    json.dumps(record, allow_nan=False)  # what PostgreSQL's json type accepts


def test_a_nan_figure_in_an_old_record_fails() -> None:
    """A record stored before the count existed (a bare NaN read back as float nan)."""
    ok, why = verdict({"cosine": float("nan"), "delegate_only": {"cosine": float("nan")}})
    assert ok is False and "nan" in why.lower()
    ok, why = verdict({"cosine": float("nan")})
    assert ok is False and "nan" in why.lower()


def test_jsonable_writes_non_finite_numbers_as_strings() -> None:
    out = jsonable({"a": float("nan"), "b": [np.float32("inf"), -np.inf],
                    "c": {"d": np.float64("nan"), "e": 1.5}})
    assert out == {"a": "nan", "b": ["inf", "-inf"], "c": {"d": "nan", "e": 1.5}}
    json.dumps(out, allow_nan=False)


def test_a_non_finite_reference_fails_the_pair() -> None:
    reference = {"out": np.array([[1.0, np.inf, 2.0]])}
    got = {"out": np.array([[1.0, 3.0, 2.0]])}
    ok, why = verdict(_record(reference, got))
    assert ok is False and "reference" in why and "1 of 3" in why


def test_nan_outputs_on_the_simulator_are_stored_as_strict_json(
        tflite_models: dict[str, Path], tmp_path: Path) -> None:
    """A model whose outputs are NaN on the simulator: the stored record is strict JSON (a
    bare NaN would make PostgreSQL refuse it) and recommend leaves the delegate out with
    the count."""
    from harness.store import Store

    res = str(tmp_path / "res")
    run = quantlab("bench", str(tflite_models["nan_out"]), "--device", "sim", "--numerics",
                   "--repeats", "1", "--iterations", "3", "--results", res, "--json")
    data = json.loads(run.stdout, parse_constant=_refuse)
    (result,) = data["results"]
    assert result["status"] == "ok", run.stderr
    store = Store.open(res)
    try:
        with store.engine.connect() as conn:
            texts = [row[0] for row in conn.exec_driver_sql("SELECT raw FROM results")]
    finally:
        store.close()
    (numerics,) = [json.loads(t, parse_constant=_refuse)["numerics"] for t in texts]
    assert numerics["nonfinite"] > 0 and numerics["values"] == 4, numerics
    rec = quantlab("recommend", "latest", "--results", res, "--json")
    assert rec.returncode == 0, rec.stderr
    (device,) = json.loads(rec.stdout)["devices"]
    assert device["best"] is None
    assert any("output values are NaN/Inf" in why for why in device["excluded"]), device


def _refuse(token: str) -> None:
    raise AssertionError(f"bare {token} in JSON")


def test_evaluate_fails_a_variant_whose_outputs_are_nan(
        tflite_models: dict[str, Path], tmp_path: Path) -> None:
    """evaluate on the host: a variant with NaN outputs fails its gate with the count, and
    neither --json nor the stored evaluation carries a bare NaN."""
    import shutil

    from harness.store import Store

    folder = tmp_path / "v"
    folder.mkdir()
    shutil.copy(tflite_models["nan_out"], folder / "fp32.tflite")
    shutil.copy(tflite_models["nan_out"], folder / "fp16.tflite")
    (folder / "manifest.json").write_text(json.dumps({"variants": [
        {"scheme": s, "format": "tflite", "status": "ok", "file": f"{s}.tflite"}
        for s in ("fp32", "fp16")]}))
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(0).uniform(
        -1, 1, (50, 4)).astype(np.float32))
    res = str(tmp_path / "res")
    r = quantlab("evaluate", str(folder), "--data", str(tmp_path / "eval.npz"), "--results",
                 res, "--json")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout, parse_constant=_refuse)
    for v in report["variants"]:
        assert v["gate"]["passed"] is False
        assert "of 200 output values are NaN/Inf" in v["gate"]["why"], v["gate"]
    assert "fp32, fp16" in r.stderr
    store = Store.open(res)
    try:
        with store.engine.connect() as conn:
            texts = [row[0] for row in conn.exec_driver_sql("SELECT payload FROM evaluations")]
    finally:
        store.close()
    assert len(texts) == 2
    for text in texts:
        assert "NaN/Inf" in json.loads(text, parse_constant=_refuse)["gate"]["why"]


def test_json_output_never_carries_a_bare_nan(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.common import print_json

    print_json({"cosine": float("nan"), "sqnr_db": [float("inf"), -float("inf")], "n": 1})
    out = json.loads(capsys.readouterr().out, parse_constant=_refuse)
    assert out == {"cosine": "nan", "sqnr_db": ["inf", "-inf"], "n": 1}
