"""evaluate --recalibrate: a temperature fitted on a fixed, seeded half of the labelled
samples, with the ECE before and after on the other half (fixed numbers, then the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
