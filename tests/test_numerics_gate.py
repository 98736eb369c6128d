"""The numerics gate on fixed numbers: NaN/Inf outputs fail it and never reach stored JSON as a
bare token; top-1 agreement enters the verdict where an output is a class vector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from quantize_fixtures import quantlab

from quantlab.harness.numerics import compare_outputs, delegate_only, jsonable, verdict


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
    from quantlab.harness.store import Store

    res = str(tmp_path / "res")
    run = quantlab("bench", str(tflite_models["nan_out"]), "--device", "sim", "--numerics",
                   "--repeats", "1", "--iterations", "3", "--results", res, "--json")
    data = json.loads(run.stdout, parse_constant=_refuse)
    (result,) = data["results"]
    assert result["status"] == "ok", run.stderr
    # the numerics gate at the end of bench: the job is named, and bench exits 1
    assert run.returncode == 1, run.stderr
    gate = data["numerics_gate"]
    assert gate["failed"] == ["log_nan.tflite · sim · xnnpack"] and gate["min_top1"] == 0.99
    assert "output values are NaN/Inf" in gate["verdicts"][0]["why"]
    human = quantlab("bench", str(tflite_models["nan_out"]), "--device", "sim", "--numerics",
                     "--repeats", "1", "--iterations", "3", "--results", res)
    assert human.returncode == 1
    assert "numerics failed log_nan.tflite · sim · xnnpack: numerics failed: " in \
        " ".join(human.stderr.split()), human.stderr
    store = Store.open(res)
    try:
        with store.engine.connect() as conn:
            texts = [row[0] for row in conn.exec_driver_sql("SELECT raw FROM results")]
    finally:
        store.close()
    assert len(texts) == 2  # the two runs
    for text in texts:
        numerics = json.loads(text, parse_constant=_refuse)["numerics"]
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

    from quantlab.harness.store import Store

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
    from quantlab.harness.cli.common import print_json

    print_json({"cosine": float("nan"), "sqnr_db": [float("inf"), -float("inf")], "n": 1})
    out = json.loads(capsys.readouterr().out, parse_constant=_refuse)
    assert out == {"cosine": "nan", "sqnr_db": ["inf", "-inf"], "n": 1}


def _swapped_top2(rows: int, swapped: int) -> tuple[np.ndarray, np.ndarray]:
    """Class scores whose top two classes are close, and the same scores with the top two
    swapped in ``swapped`` rows: cosine stays above 0.99 while top-1 agreement drops."""
    rng = np.random.default_rng(1)
    ref = rng.uniform(0.0, 0.1, (rows, 10))
    ref[:, 3], ref[:, 5] = 0.62, 0.60
    out = ref.copy()
    out[:swapped, 3], out[:swapped, 5] = 0.60, 0.62
    return ref, out


def test_top1_agreement_enters_the_verdict() -> None:
    """A cosine of 0.995 with 80 % top-1 agreement fails (default bound 0.99)."""
    ref, out = _swapped_top2(100, 20)
    record = _record({"scores": ref}, {"scores": out}, {"scores": ref})
    own = record["delegate_only"]
    assert own["cosine"] > 0.99 and own["top1_agreement"] == pytest.approx(0.8)
    ok, why = verdict(record)
    assert ok is False, why
    assert why.startswith("top-1 agreement 80.0% vs this variant on the host is below 99%")
    assert verdict(record, min_top1=0.75)[0] is True
    # against the float model alone, the same
    ok, why = verdict(_record({"scores": ref}, {"scores": out}))
    assert ok is False and why.startswith("top-1 agreement 80.0% vs the float model"), why
    # one swapped row in 200 is within the bound
    ref, out = _swapped_top2(200, 1)
    ok, why = verdict(_record({"scores": ref}, {"scores": out}, {"scores": ref}))
    assert ok is True and "top-1 agreement 99.5% ≥ 99%" in why, why


def test_outputs_that_are_not_class_vectors_have_no_top1_bound() -> None:
    """A feature map or a detector's post-processed outputs are judged on cosine alone."""
    ref = np.random.default_rng(2).uniform(0, 1, (1, 8, 8, 4))
    out = ref + 1e-4
    record = _record({"map": ref}, {"map": out})
    assert record["top1_agreement"] is None and verdict(record)[0] is True


def test_a_plan_files_gate_sets_the_top1_bound(tflite_models: dict[str, Path],
                                                tmp_path: Path) -> None:
    """[gate] min_top1 reaches bench's numerics gate; --min-top1 overrides it."""
    np.savez(tmp_path / "val.npz", x=np.zeros((4, 4), np.float32))
    plan = tmp_path / "plan.toml"
    model = tflite_models["nan_out"]
    plan.write_text(f'models = ["{model}"]\ndevices = ["sim"]\n'
                    'delegates = ["xnnpack"]\nthreads = [1]\n\n[measure]\niterations = 3\n'
                    'repeats = 1\nnumerics = true\n\n[gate]\ndata = "val.npz"\n'
                    "min_top1 = 0.7\n")
    res = str(tmp_path / "res")
    r = quantlab("bench", "--plan", str(plan), "--results", res, "--json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["numerics_gate"]["min_top1"] == 0.7
    r = quantlab("bench", "--plan", str(plan), "--min-top1", "0.5", "--results", res, "--json")
    assert json.loads(r.stdout)["numerics_gate"]["min_top1"] == 0.5
    bad = tmp_path / "bad.toml"
    bad.write_text(plan.read_text().replace("min_top1 = 0.7", "min_top1 = 7"))
    r = quantlab("plan", "--plan", str(bad))
    assert r.returncode == 2 and "gate.min_top1" in r.stderr, r.stderr


def test_recommend_leaves_out_a_delegate_whose_top1_agreement_is_low(tmp_path: Path) -> None:
    """On a phone, int8 on the GPU keeps a cosine of 0.996 but changes 20 % of top-1 classes:
    recommend leaves it out (default bound 0.99) and --min-top1 0.75 lets it in."""
    from fixtures.report.runs import SETTINGS, job, open_store
    from typer.testing import CliRunner

    from quantlab.harness.cli.main import app
    from quantlab.harness.records import DeviceInfo, Plan, RawResult, Run
    from quantlab.harness.store import new_run_id, utcnow

    store = open_store(tmp_path)
    jobs = [job("int8", delegate="gpu", device="phone"),
            job("int8", delegate="cpu", device="phone")]
    run = Run(run_id=new_run_id(), created_at=utcnow(), host="testhost", settings=SETTINGS)
    store.create_run(run, Plan(jobs=tuple(jobs)), [DeviceInfo(
        id="phone", platform="android", name="phone", model="phone")])
    numerics = {"gpu": {"cosine": 0.996, "top1_agreement": 0.8},
                "cpu": {"cosine": 0.9999, "top1_agreement": 1.0}}
    for j, ms in zip(jobs, (1.0, 4.0), strict=True):
        store.mark_running(run.run_id, j.job_id)
        store.save_result(run.run_id, j.job_id, RawResult(
            job_id=j.job_id, status="ok", samples_ms=((ms, ms * 1.01, ms * 0.99) * 10,),
            numerics={**numerics[j.delegate], "values": 1000, "nonfinite": 0}))
    store.finish_run(run.run_id, "done")
    store.close()
    cli = CliRunner()
    out = json.loads(cli.invoke(app, ["recommend", run.run_id, "--results", str(tmp_path),
                                      "--json"]).stdout)["devices"][0]
    assert out["best"]["delegate"] == "cpu"
    assert any("gpu: top-1 agreement 80.0% vs the float model is below 99%" in why
               for why in out["excluded"]), out["excluded"]
    out = json.loads(cli.invoke(app, ["recommend", run.run_id, "--min-top1", "0.75",
                                      "--results", str(tmp_path), "--json"]).stdout)
    assert out["devices"][0]["best"]["delegate"] == "gpu"


def test_min_top1_without_per_delegate_is_a_usage_error(tmp_path: Path) -> None:
    r = quantlab("evaluate", str(tmp_path), "--data", str(tmp_path / "x.npz"), "--min-top1",
                 "0.9")
    assert r.returncode == 2 and r.stderr.count("\n") <= 2, r.stderr
    assert "--min-top1 0.9: only used with --per-delegate" in r.stderr
