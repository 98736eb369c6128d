"""What quantlab's simulator adds on top of LiteRT, and what the CLI costs.

``.venv/bin/python benchmarks/sim_overhead.py [--iterations N] [--rounds N]`` builds
a small Keras CNN (MobileNetV2 1.0 224, random weights; no download)
in a subprocess, then on that model in the same run prints:

* overhead ratio: quantlab simulator median / bare ``Interpreter.invoke()`` loop
  median (target ≤ 1.03);
* profiler ratio: LiteRT compiled-model run time with the profiler recording /
  without (target ≤ 1.05);
* start-up time of ``quantlab --help``, ``devices``, ``runs`` (target ≤ 0.3 s);
* the controller's peak RSS during ``quantlab bench`` of the model (target < 300 MB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import overhead_common as oc  # noqa: E402  (beside this script)

BUILD = """
import sys, tensorflow as tf
tf.keras.utils.set_random_seed(0)
m = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None)
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(m).convert())
"""

BARE = """
import sys, time, statistics, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1); it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.random.default_rng(0).uniform(-1, 1, d["shape"]).astype(np.float32))
for _ in range(int(sys.argv[2])): it.invoke()
s = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter_ns(); it.invoke(); s.append(time.perf_counter_ns() - t)
print(statistics.median(s) / 1e6)
"""

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")


def profiler_ratio(model: Path, iterations: int, rounds: int) -> float:
    """Median run time with the profiler recording / without, alternating in fresh processes."""
    code = (
        "import sys, statistics; from quantlab.agents.litert.runner.profiler import run_times_ms; "
        "print(statistics.median(run_times_ms(sys.argv[1], runs=int(sys.argv[2]), "
        "profiling=sys.argv[3] == '1')))"
    )
    on: list[float] = []
    off: list[float] = []
    for _ in range(rounds):
        for flag, acc in (("0", off), ("1", on)):
            out = subprocess.run(
                [sys.executable, "-c", code, str(model), str(iterations), flag],
                capture_output=True,
                text=True,
                check=True,
                env=ENV,
                cwd=ROOT,
            )
            acc.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(on) / statistics.median(off)


def startup_s(args: list[str], results: Path, runs: int = 3) -> float:
    """Median wall time of a quantlab command."""
    exe = shutil.which("quantlab", path=str(Path(sys.executable).parent)) or "quantlab"
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            [exe, *args], capture_output=True, env=dict(ENV, QUANTLAB_RESULTS=str(results))
        )
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def controller_peak_rss_mb(model: Path, results: Path) -> float:
    """Peak RSS of the ``quantlab bench`` controller process itself (workers excluded)."""
    import psutil

    exe = shutil.which("quantlab", path=str(Path(sys.executable).parent)) or "quantlab"
    proc = subprocess.Popen(
        [
            exe,
            "bench",
            str(model),
            "--device",
            "sim",
            "--repeats",
            "2",
            "--profile-ops",
            "--results",
            str(results),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    return peak / 2**20


def main() -> None:
    """Build the model, measure, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "mobilenet_v2_100_224.tflite"
        subprocess.run(
            [sys.executable, "-c", BUILD, str(model)], check=True, env=ENV, capture_output=True
        )
        bare, ours = [], []
        for _ in range(args.rounds):  # alternate so drift hits both alike
            bare.append(oc.bare_median_ms(BARE, model, args.warmup, args.iterations, ENV))
            ours.append(oc.sim_median_ms(model, "xnnpack", args.warmup, args.iterations))
        b, q = statistics.median(bare), statistics.median(ours)
        print(f"model: {model.name} ({model.stat().st_size / 1e6:.1f} MB), 1 thread, XNNPACK")
        print(f"bare Interpreter.invoke() median {b:.3f} ms | quantlab sim median {q:.3f} ms")
        print(f"overhead ratio (quantlab / bare): {q / b:.3f}   (target ≤ 1.03)")
        pr = profiler_ratio(model, args.iterations, args.rounds)
        print(f"profiler ratio (profiled / unprofiled): {pr:.3f}   (target ≤ 1.05)")
        results = Path(tmp) / "results"
        for cmd in (["--help"], ["devices"], ["runs"]):
            print(
                f"start-up `quantlab {' '.join(cmd)}`: {startup_s(cmd, results):.3f} s   "
                "(target ≤ 0.3 s)"
            )
        rss = controller_peak_rss_mb(model, results)
        print(f"controller peak RSS during `quantlab bench`: {rss:.0f} MB   (target < 300 MB)")


if __name__ == "__main__":
    main()
