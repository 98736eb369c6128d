"""Quantize and evaluate: time per scheme to quantize, evaluation throughput vs a bare LiteRT loop.

Trains the digits CNN (sklearn data, no download), makes every scheme with
``quantize`` (converters in the worker process, as users run them), then
times ``evaluate`` over every TFLite variant against a bare per-sample
ai_edge_litert loop (set_tensor / invoke / get_tensor) over the same
samples and the same files, in the same run, alternating, best of
``--repeats``. Target (issue 3): evaluation throughput ≥ 0.9 × the bare loop.

    .venv/bin/python benchmarks/quantize_eval.py [--repeats 3] [--samples 2000] [--json]

``--task detection`` does the same for the small shapes detector (demo_detector, generated
data; issue 12). The two sides, each over the fp32/fp16/int8/int8-io variants:

- ``evaluate(..., labels=..., edge=False)``: reads the .npz and the COCO labels JSON from disk,
  checks the inputs against the manifest's calibration stats, runs every variant through
  TfliteRunner (one image per invoke: TFLite_Detection_PostProcess takes batch 1; the yolo
  export's fixed reshape too), then per variant decodes, host NMS (``--style yolo``), COCO
  mAP@[.5:.95] and mAP@.5 against the labels, agreement mAP with fp32, per-output fidelity and
  score drift with ECE;
- the bare loop: the inputs already in memory; per file Interpreter + allocate_tensors (+ the
  int8 input quantization), then per image set_tensor / invoke / get_tensor of every output.

It also times TfliteRunner alone over the same files (what evaluate spends in LiteRT) so the
output splits evaluate into LiteRT and everything else.

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

from harness.quantize.demo_model import build_digits_model  # noqa: E402
from harness.quantize.evaluate import evaluate, variant_files  # noqa: E402
from harness.quantize.tflite_runner import quiet_native_stderr  # noqa: E402
from harness.quantize.variants import quantize  # noqa: E402

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


def detection_main(args: argparse.Namespace) -> dict[str, Any]:
    """Detection evaluation throughput vs the bare loop, on the demo's shapes detector."""
    from harness.quantize.demo_detector import build_detector

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = build_detector(Path(tmp) / "model", styles=(args.style,), n_eval=args.samples)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = quantize(paths[args.style], ["fp32", "fp16", "int8", "int8-io"],
                            paths["calib"], Path(tmp) / "variants")
        quantize_s = time.perf_counter() - t0
        x = np.load(paths["eval"])["x"]
        files = [v["path"] for v in variant_files(Path(tmp) / "variants")]
        ours, bare, runner = [], [], []
        report: dict[str, Any] = {}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            report = evaluate(Path(tmp) / "variants", paths["eval"], labels=paths["labels"],
                              edge=False)
            ours.append(time.perf_counter() - t0)
            bare.append(bare_loop(files, x, all_outputs=True))
            runner.append(runner_loop(files, x))
    total = len(x) * len(files)
    return {
        "task": "detection", "style": args.style, "train_s": round(train_s, 2),
        "quantize_total_s": round(quantize_s, 2),
        "quantize_s_per_scheme": {v.scheme: v.seconds for v in manifest.variants},
        "status": {v.scheme: v.status for v in manifest.variants},
        "map": {v["scheme"]: round(v["metrics"]["map"], 4) for v in report["variants"]},
        "agreement_map50": {v["scheme"]: round(v["fidelity"]["agreement_map50"], 4)
                            for v in report["variants"]},
        "eval_variants": len(files), "eval_samples": total,
        "evaluate_samples_per_s": round(total / min(ours), 1),
        "bare_litert_samples_per_s": round(total / min(bare), 1),
        "throughput_ratio": round(min(bare) / min(ours), 3),
        "target_met": min(bare) / min(ours) >= TARGET,
        "evaluate_ms": round(1000 * min(ours), 1), "bare_ms": round(1000 * min(bare), 1),
        "evaluate_litert_ms": round(1000 * min(runner), 1),
        "evaluate_rest_ms": round(1000 * (min(ours) - min(runner)), 1),
    }


def runner_loop(paths: list[str], x: np.ndarray) -> float:
    """Seconds evaluate spends in LiteRT: TfliteRunner(path).predict(x) for every file."""
    from harness.quantize.tflite_runner import TfliteRunner

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
                    help="detector outputs: ssd (TFLite_Detection_PostProcess) or yolo (raw)")
    args = ap.parse_args()
    if args.task == "detection":
        det = detection_main(args)
        print(json.dumps(det, indent=2) if args.json else
              f"detection ({det['style']}): evaluate {det['evaluate_samples_per_s']} samples/s, "
              f"bare LiteRT loop {det['bare_litert_samples_per_s']} samples/s over "
              f"{det['eval_samples']} samples → ratio {det['throughput_ratio']} (target ≥ "
              f"{TARGET}: {'met' if det['target_met'] else 'NOT met'}); evaluate "
              f"{det['evaluate_ms']} ms = LiteRT {det['evaluate_litert_ms']} ms + reading, "
              f"decoding and metrics {det['evaluate_rest_ms']} ms, bare loop {det['bare_ms']} "
              f"ms; mAP {det['map']}; agreement mAP@.5 {det['agreement_map50']}")
        return 0 if det["target_met"] else 1
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        keras_path, data_path = build_digits_model(Path(tmp) / "model")
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = quantize(keras_path, ["all"], data_path, Path(tmp) / "variants")
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
    from harness.quantize.demo_model import digits_arrays

    x_train, y_train, _, _ = digits_arrays()
    train = tmp / "train.npz"
    np.savez(train, x=x_train, y=y_train)
    t0 = time.perf_counter()
    manifest = quantize(keras_path, ["qat-int8"], data_path, tmp / "qat", train=train,
                        qat={"epochs": epochs, "patience": epochs})
    total = time.perf_counter() - t0
    entry = manifest.variants[0]
    if entry.status != "ok" or not entry.qat:
        return {"status": entry.status, "error": entry.error}
    keys = ("epochs_run", "train_samples", "seconds_per_epoch",
            "seconds_per_epoch_per_1000_samples")
    return {**{k: entry.qat[k] for k in keys}, "total_s": round(total, 1)}


if __name__ == "__main__":
    sys.exit(main())
