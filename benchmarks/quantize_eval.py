"""Quantize and evaluate: time per scheme to quantize, evaluation throughput vs a bare LiteRT loop.

Trains the digits CNN (sklearn data, no download), makes every scheme with
``quantize`` (converters in the worker process, as users run them), then
times ``evaluate`` over every TFLite variant against a bare per-sample
ai_edge_litert loop (set_tensor / invoke / get_tensor) over the same
samples and the same files, in the same run, alternating, best of
``--repeats``. Target (issue 3): evaluation throughput ≥ 0.9 × the bare loop.

    .venv/bin/python benchmarks/quantize_eval.py [--repeats 3] [--samples 2000] [--json]
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
from harness.quantize.evaluate import evaluate, quiet_native_stderr, variant_files  # noqa: E402
from harness.quantize.variants import quantize  # noqa: E402

TARGET = 0.9


def bare_loop(paths: list[str], x: np.ndarray) -> float:
    """Seconds for a plain per-sample LiteRT loop over every file (interpreter setup included)."""
    from ai_edge_litert.interpreter import Interpreter

    t0 = time.perf_counter()
    for path in paths:
        with quiet_native_stderr():
            interp = Interpreter(model_path=path)
            interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        out = interp.get_output_details()[0]
        xi = x
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            xi = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
        for i in range(len(xi)):
            interp.set_tensor(inp["index"], xi[i : i + 1])
            interp.invoke()
            interp.get_tensor(out["index"])
    return time.perf_counter() - t0


def main() -> int:
    """Run the benchmark and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=2000, help="evaluation samples (data is tiled)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        keras_path, data_path = build_digits_model(Path(tmp) / "model")
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = quantize(keras_path, ["all"], data_path, Path(tmp) / "variants")
        quantize_s = time.perf_counter() - t0
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
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
