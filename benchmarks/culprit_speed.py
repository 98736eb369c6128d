"""How long ``quantlab culprit`` takes against one benchmark launch of the same model.

``.venv/bin/python benchmarks/culprit_speed.py [--model M.tflite] [--rounds N]`` builds
MobileNetV2 1.0 224 (random weights, no download; 65 ops) in a subprocess unless a model is
given, then times on the simulator with XNNPACK, in the same run:

* one benchmark launch: ``quantlab bench MODEL --device sim --delegate xnnpack --repeats 1``
  (one runner process: load, warm-up, the timed iterations);
* ``quantlab culprit MODEL --device sim --delegate xnnpack`` (its launches counted);

and prints the ratio culprit / bench (target, issue 23: under 10×), medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD = """
import sys, tensorflow as tf
tf.keras.utils.set_random_seed(0)
m = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None)
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(m).convert())
"""

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")


def timed(args: list[str]) -> tuple[float, str]:
    """Wall seconds of one quantlab command and its stdout."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "quantlab", *args], capture_output=True,
                         text=True, check=True, env=ENV)
    return time.perf_counter() - t, out.stdout


def main() -> None:
    """Build or take the model, time both commands, print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a .tflite (default: MobileNetV2 built here)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else Path(tmp) / "mobilenet_v2.tflite"
        if not args.model:
            subprocess.run([sys.executable, "-c", BUILD, str(model)], check=True, env=ENV,
                           capture_output=True)
        bench, culprit, launches, ops = [], [], 0, 0
        for i in range(args.rounds):
            s, _ = timed(["bench", str(model), "--device", "sim", "--delegate", "xnnpack",
                          "--repeats", "1", "--results", str(Path(tmp) / f"r{i}")])
            bench.append(s)
            s, out = timed(["culprit", str(model), "--device", "sim", "--delegate", "xnnpack",
                            "--json"])
            culprit.append(s)
            r = json.loads(out)
            launches, ops = r["launches"], r["ops_total"]
        b, c = statistics.median(bench), statistics.median(culprit)
        print(f"model: {model.name}, {ops} ops; culprit launches: {launches}")
        print(f"one benchmark launch (bench --repeats 1): {b:.2f} s")
        print(f"culprit: {c:.2f} s")
        print(f"ratio culprit / bench launch: {c / b:.2f}x (target < 10x)")


if __name__ == "__main__":
    main()
