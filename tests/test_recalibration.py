"""evaluate --recalibrate: a temperature fitted on a fixed, seeded half of the labelled
samples, with the ECE before and after on the other half (fixed numbers, then the CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf

from quantlab.harness.tasks.recalibration import fit_temperature, recalibrate, split

digits = qf.digits
keras_variants = qf.keras_variants
quantlab = qf.quantlab


def _overconfident(scale: float, n: int = 4000, classes: int = 10) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Logits ``scale`` times sharper than the ones the labels were drawn from: their best
    temperature is ``scale``."""
    rng = np.random.default_rng(7)
    honest = rng.normal(0.0, 2.0, (n, classes))
    p = np.exp(honest - honest.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return honest * scale, y


def test_the_fitted_temperature_undoes_a_known_sharpening() -> None:
    for scale in (0.4, 3.0):
        logits, y = _overconfident(scale)
        t = fit_temperature(logits, y)
        assert abs(t / scale - 1) < 0.2, (scale, t)


def test_ece_on_the_held_out_half_falls_and_the_split_is_recorded() -> None:
    logits, y = _overconfident(3.0)
    rec = recalibrate(logits, y, seed=0)
    assert rec["ece_before"] > 0.15 and rec["ece_after"] < 0.05, rec
    assert rec["split"] == {"seed": 0, "share": 0.5, "fit": 2000, "held_out": 2000}
    fit, held = split(len(y), 0)
    assert not set(fit) & set(held) and len(fit) + len(held) == len(y)
    assert np.array_equal(split(len(y), 0)[0], fit)  # the same split every run
    assert not np.array_equal(split(len(y), 1)[0], fit)


def test_probabilities_are_recalibrated_like_their_logits() -> None:
    logits, y = _overconfident(3.0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert abs(fit_temperature(p, y) - fit_temperature(logits, y)) < 0.05


def test_evaluate_recalibrate_reports_and_stores_the_temperature_per_variant(
    keras_variants: Path, digits: tuple[Path, Path], tmp_path: Path
) -> None:
    r = quantlab("evaluate", str(keras_variants), "--data", str(digits[1]), "--results",
                 str(tmp_path / "store"), "--json", "--recalibrate")
    assert r.returncode == 0, r.stderr
    variants = json.loads(r.stdout)["variants"]
    for v in variants:
        rec = v["calibration"]["recalibration"]
        assert 0.05 <= rec["temperature"] <= 20 and rec["split"]["seed"] == 0
        assert rec["split"]["fit"] + rec["split"]["held_out"] == json.loads(r.stdout)["samples"]
        assert rec["ece_before"] is not None and rec["ece_after"] is not None
    from quantlab.harness.store import Store

    store = Store.open(str(tmp_path / "store"))
    try:
        stored = store.evaluations()
    finally:
        store.close()
    assert {k: ev["payload"]["calibration"]["recalibration"] for k, ev in stored.items()} == \
        {v["sha256"]: v["calibration"]["recalibration"] for v in variants}
    human = quantlab("evaluate", str(keras_variants), "--data", str(digits[1]), "--no-store",
                     "--recalibrate")
    assert human.returncode == 0, human.stderr
    assert "recalibrated fp32: temperature" in human.stdout and "held-out" in human.stdout


def test_recalibrate_without_labels_is_a_one_line_error(
    keras_variants: Path, digits: tuple[Path, Path], tmp_path: Path
) -> None:
    unlabelled = tmp_path / "x.npz"
    np.savez(unlabelled, x=np.load(digits[1])["x"])
    r = quantlab("evaluate", str(keras_variants), "--data", str(unlabelled), "--no-store",
                 "--recalibrate")
    assert r.returncode == 2 and "needs labels" in r.stderr and "Traceback" not in r.stderr


def test_the_reliability_points_move_onto_the_diagonal_and_the_report_draws_them() -> None:
    logits, y = _overconfident(3.0)
    rec = recalibrate(logits, y, seed=0)

    def gap(points: dict[str, list[float | None]]) -> float:
        pairs = [(c, a, n) for c, a, n in zip(points["confidence"], points["accuracy"],
                                              points["count"], strict=True) if n]
        return sum(abs(c - a) * n for c, a, n in pairs) / sum(n for _c, _a, n in pairs)

    before, after = rec["reliability"]["before"], rec["reliability"]["after"]
    assert sum(before["count"]) == sum(after["count"]) == rec["split"]["held_out"]
    assert abs(gap(before) - rec["ece_before"]) < 1e-9  # the ECE's own bins
    assert gap(after) < 0.05 < 0.15 < gap(before)

    from quantlab.harness.report.html_analysis import _calibration

    class OneEvaluation:
        def evaluations(self, _sha256s: object) -> dict[str, dict[str, object]]:
            return {"ab": {"scheme": "int8", "path": "int8.tflite", "payload": {
                "metrics": {"top1": 0.9}, "fidelity": {}, "calibration": {
                    "ece": 0.2, "recalibration": rec}}}}

    html = _calibration(OneEvaluation(), [])  # type: ignore[arg-type]
    assert "Reliability on the held-out half" in html and "<svg" in html
    assert f"int8 (T {rec['temperature']:.2f}; ECE {rec['ece_before']:.3f}" in html


def test_the_detection_threshold_matches_the_float_models_recall() -> None:
    from quantlab.harness.tasks.recalibration import matching_threshold

    # 10 truth boxes; fp32 finds 6 of them at ≥ 0.5. The variant's scores sag: at 0.5 it
    # finds 3; the lowest-scored of its first 6 hits is at 0.31, so 0.31 is the threshold.
    ref_scores = np.array([0.9, 0.8, 0.7, 0.65, 0.6, 0.55, 0.4, 0.3])
    ref_hits = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)
    scores = np.array([0.7, 0.6, 0.52, 0.45, 0.44, 0.44, 0.31, 0.2, 0.1])
    hits = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0], bool)
    rec = matching_threshold(ref_scores, ref_hits, scores, hits, 10, 0.5)
    assert rec["reference_recall"] == 0.6 and rec["recall_at_reference_threshold"] == 0.3
    assert rec["threshold"] == 0.31 and rec["recall"] == 0.6
    # a tie is kept whole: 5 hits need 0.44, and both 0.44s come with it
    assert matching_threshold(ref_scores, ref_hits, scores, hits, 12, 0.6)["threshold"] == 0.44
    # never reached: None, said so
    assert matching_threshold(ref_scores, ref_hits, scores[:2], hits[:2], 10, 0.5
                              )["threshold"] is None


def test_the_detection_threshold_is_fitted_on_half_the_images_and_judged_on_the_rest() -> None:
    from quantlab.harness.tasks.recalibration import held_out_threshold

    # 4 images of 2 truth boxes; split(4, seed 0) fits on images 0 and 2, holds out 1 and 3.
    # fp32 finds both boxes of every image at ≥ 0.5 (recall 1.0 on each half). The variant
    # finds them at 0.8 and 0.4 on the fit images but at 0.8 and 0.3 on the held-out ones:
    # fitted on the fit half the threshold is 0.4 (on every image it would be 0.3), and on
    # the held-out half 0.4 gives back only half the boxes, which the record says.
    fit, held = split(4, 0)
    assert (fit.tolist(), held.tolist()) == ([0, 2], [1, 3])
    image = np.repeat(np.arange(4), 2)
    ref_scores = np.tile([0.9, 0.6], 4)
    scores = np.array([0.8, 0.4, 0.8, 0.3, 0.8, 0.4, 0.8, 0.3])
    hits = np.ones(8, bool)
    rec = held_out_threshold(ref_scores, hits, image, scores, hits, image, image, 4, 0.5,
                             seed=0)
    assert rec["threshold"] == 0.4 and rec["reference_recall"] == 1.0
    assert rec["split"] == {"seed": 0, "share": 0.5, "fit": 2, "held_out": 2}
    assert rec["held_out"] == {"reference_recall": 1.0, "recall": 0.5,
                               "recall_at_reference_threshold": 0.5}


def test_the_fitted_temperature_travels_with_the_variant_in_its_manifest(
    keras_variants: Path, digits: tuple[Path, Path], tmp_path: Path
) -> None:
    from quantlab.harness.quantize.manifest import Manifest

    folder = tmp_path / "v"
    shutil.copytree(keras_variants, folder)
    r = quantlab("evaluate", str(folder), "--data", str(digits[1]), "--no-store", "--json",
                 "--recalibrate")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    entries = {e["file"]: e for e in json.loads((folder / "manifest.json").read_text())
               ["variants"] if e.get("file")}
    assert report["variants"]
    for v in report["variants"]:
        rec, kept = (v["calibration"]["recalibration"],
                     entries[Path(v["path"]).name]["recalibration"]["host"])
        assert kept["temperature"] == rec["temperature"] and kept["split"] == rec["split"]
        assert (kept["ece_before"], kept["ece_after"]) == (rec["ece_before"], rec["ece_after"])
        assert kept["samples"] == report["samples"] and kept["data"] == str(digits[1])
        assert "reliability" not in kept  # the diagram's points stay in the JSON and store
    assert Manifest.load(folder).variants[0].recalibration is not None  # still loads


def test_the_python_api_writes_the_fitted_temperature_into_the_manifest_too(
    keras_variants: Path, digits: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """``quantlab.evaluate(..., recalibrate=True)`` keeps the fits in each variant's manifest
    entry as the CLI does (it used to return them and leave the manifest as it was), and an
    unwritable manifest is a warning in the record."""
    from quantlab import evaluate
    from quantlab.harness import atomic

    folder = tmp_path / "v"
    shutil.copytree(keras_variants, folder)
    record = evaluate(folder, digits[1], store=False, recalibrate=True)
    entries = {e["file"]: e for e in json.loads((folder / "manifest.json").read_text())
               ["variants"] if e.get("file")}
    assert record["variants"]
    for v in record["variants"]:
        kept = entries[Path(v["path"]).name]["recalibration"]["host"]
        assert kept["temperature"] == v["calibration"]["recalibration"]["temperature"]
        assert kept["samples"] == record["samples"] and kept["data"] == str(digits[1])
    before = (folder / "manifest.json").read_bytes()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)  # a read-only folder (as root)
    again = evaluate(folder, digits[1], store=False, recalibrate=True)
    assert any("not written into the manifest" in w for w in again["warnings"])
    assert (folder / "manifest.json").read_bytes() == before


def _manifest(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "manifest.json"
    path.write_text(json.dumps({"out": str(folder), "variants": [
        {"scheme": "int8", "file": "int8.tflite", "status": "ok",
         "recalibration": {"host": {"temperature": 9.0}, "sim · cpu": {"temperature": 2.0}}},
        {"scheme": "fp32", "file": "fp32.tflite", "status": "ok"}]}, indent=2))
    return path


def test_a_rerun_overwrites_what_it_fits_again_and_keeps_the_rest(tmp_path: Path) -> None:
    from quantlab.harness.quantize.manifest_fits import record_fits

    path = _manifest(tmp_path / "v")
    assert record_fits(tmp_path / "v", [(str(tmp_path / "v" / "int8.tflite"), "host",
                                         {"temperature": 1.5})]) is None
    entries = json.loads(path.read_text())["variants"]
    assert entries[0]["recalibration"] == {"host": {"temperature": 1.5},
                                           "sim · cpu": {"temperature": 2.0}}
    assert "recalibration" not in entries[1]


def test_an_unwritable_manifest_is_a_warning_and_stays_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only folder (made here by refusing the temporary file: tests run as root) and
    a write that fails half-way both leave the manifest byte for byte as it was."""
    import os
    import tempfile

    from quantlab.harness import atomic
    from quantlab.harness.quantize.manifest_fits import record_fits

    path = _manifest(tmp_path / "v")
    before = path.read_bytes()
    fits = [(str(tmp_path / "v" / "int8.tflite"), "host", {"temperature": 1.5})]

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    warning = record_fits(tmp_path / "v", fits)
    assert warning is not None and "\n" not in warning and str(path) in warning
    assert "not written into the manifest" in warning and path.read_bytes() == before
    monkeypatch.setattr(atomic.tempfile, "mkstemp", tempfile.mkstemp)
    monkeypatch.setattr(atomic.os, "replace", refuse)
    assert record_fits(tmp_path / "v", fits) is not None
    assert path.read_bytes() == before and os.listdir(tmp_path / "v") == ["manifest.json"]
