"""Quantize at the speed of the converter (#27): quantlab's quantize against the bare TF Lite
converter and against quantlab before #27, on Keras' MobileNetV2, every figure from one run.

    .venv/bin/python benchmarks/quantize_speed.py [--before 4653b0e] [--samples 100]

The model is ``keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3),
classes=100)`` (nothing downloaded) with ``--samples`` random 224×224 calibration images.
Each row is one fresh process tree (start-up and model load included), timed by the wall
clock, its peak memory the largest sum of the resident memory of the process and its
children (the workers) sampled every 0.1 s:

* ``bare``: the TF Lite converter in one Python process, fp32, fp16, dynamic-int8 and int8
  in sequence;
* ``before 7``: ``quantlab quantize`` as the commit ``--before`` made it (checked out with
  ``git archive`` into a temporary folder), all seven TFLite schemes;
* ``now 4 / 7``: this checkout, default ``--jobs``, an empty calibration cache;
* ``now 7 --jobs 1``: one worker, an empty cache (memory against ``before 7``);
* ``now 7, cached``: again, the calibration in the cache (a second quantize);
* ``bare again``: the bare converter once more, last (the 4-scheme ratio divides by the
  faster of the two bare times).

It prints the table and the issue's two ratios (now 7 / before 7, target ≤ 0.5; now 4 /
bare, target ≤ 0.7) and ``--jobs 1``'s peak memory against before 7 (target ≤ 1.1), with the
load average and cores, and exits 1 when a target is missed. Run it when the machine is idle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEVEN = "fp32,fp16,dynamic-int8,int8,int8-io,int16x8,mixed-int8"
FOUR = "fp32,fp16,dynamic-int8,int8"
BARE = """
import sys, time
import numpy as np, keras, tensorflow as tf
model = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])["x"]
def data():
    for i in range(len(x)):
        yield [x[i:i + 1]]
for name in ("fp32", "fp16", "dynamic-int8", "int8"):
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if name != "fp32":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if name == "fp16":
        c.target_spec.supported_types = [tf.float16]
    if name == "int8":
        c.representative_dataset = data
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    t0 = time.perf_counter()
    c.convert()
    print(name, round(time.perf_counter() - t0, 1), flush=True)
"""


def build(folder: Path, samples: int) -> tuple[Path, Path]:
    """MobileNetV2 (weights=None, 224×224, 100 classes) and random calibration images."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3),
                                           classes=100)
    path = folder / "mobilenetv2.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    calib = folder / "calib.npz"
    np.savez(calib, x=rng.uniform(-1, 1, (samples, 224, 224, 3)).astype(np.float32),
             y=rng.integers(0, 100, samples))
    return path, calib


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident GB of the process tree, output tail) of one command, run
    in an empty folder: run in this checkout's root, ``python -m quantlab`` would import the
    checkout's ``quantlab`` folder ahead of ``PYTHONPATH`` (the "before" row would then time
    this checkout's code)."""
    import psutil

    neutral = tempfile.mkdtemp(prefix="qspeed-cwd-")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, cwd=neutral)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            with contextlib.suppress(psutil.Error):  # a worker exited while being read
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    os.rmdir(neutral)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}… failed ({proc.returncode}):\n{out[-2000:]}")
    return wall, peak / 1e9, out.strip().splitlines()[-1] if out.strip() else ""


def main(argv: list[str] | None = None) -> int:
    """Run every row, print the table and the ratios; 1 when a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default="4653b0e", help="the commit before #27 (today's)")
    ap.add_argument("--samples", type=int, default=100, help="calibration images")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="qspeed-") as tmp_name:
        tmp = Path(tmp_name)
        model, calib = build(tmp, args.samples)
        before = tmp / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

        def quantlab(code: Path, schemes: str, out: str, cache: str, *extra: str
                     ) -> tuple[float, float, str]:
            env = {**base, "PYTHONPATH": str(code), "QUANTLAB_CACHE": str(tmp / cache)}
            row = measure([sys.executable, "-m", "quantlab", "quantize", str(model),
                           "--schemes", schemes, "--calib", str(calib), "--calib-samples",
                           str(args.samples), "--out", str(tmp / out), *extra], env)
            made = json.loads((tmp / out / "manifest.json").read_text())["variants"]
            failed = [f"{v['scheme']}: {v.get('error')}" for v in made if v["status"] != "ok"]
            if failed:  # a row is only a figure when it made every variant
                raise SystemExit(f"{out}: {'; '.join(failed)}")
            print(f"{out} ({code.name}, load {os.getloadavg()[0]:.2f}): {row[0]:.1f} s, "
                  + ", ".join(f"{v['scheme']} {v['seconds']:.1f}" for v in made), flush=True)
            return row

        rows: dict[str, tuple[float, float, str]] = {}
        bare = [sys.executable, "-c", BARE, str(model), str(calib)]
        rows["bare: TF converter, fp32+fp16+dynamic-int8+int8"] = measure(bare, base)
        print(f"bare (load {os.getloadavg()[0]:.2f}): "
              f"{rows['bare: TF converter, fp32+fp16+dynamic-int8+int8'][0]:.1f} s", flush=True)
        rows[f"before ({args.before}): 7 schemes"] = quantlab(before, SEVEN, "b7", "c-b7")
        rows["now: 4 schemes"] = quantlab(ROOT, FOUR, "n4", "c-n4")
        rows["now: 7 schemes"] = quantlab(ROOT, SEVEN, "n7", "c-n7")
        rows["now: 7 schemes, --jobs 1"] = quantlab(ROOT, SEVEN, "n7j1", "c-n7j1", "--jobs", "1")
        rows["now: 7 schemes, calibration cached"] = quantlab(ROOT, SEVEN, "n7c", "c-n7")
        # the bare converter again, last: the load moves during a run, and the faster of its
        # two times is the harder denominator for the 4-scheme ratio
        rows["bare again, last"] = measure(bare, base)
        print(f"bare again (load {os.getloadavg()[0]:.2f}): {rows['bare again, last'][0]:.1f} s",
              flush=True)
    load1 = os.getloadavg()
    print(f"\nMobileNetV2 224x224, 100 classes, {args.samples} calibration images; "
          f"{os.cpu_count()} cores; load average {load0[0]:.2f} before, {load1[0]:.2f} after")
    print("| run | wall s | peak GB |\n|---|---|---|")
    for name, (wall, peak, _) in rows.items():
        print(f"| {name} | {wall:.1f} | {peak:.2f} |")
    walls = {name: wall for name, (wall, _, _) in rows.items()}
    peaks = {name: peak for name, (_, peak, _) in rows.items()}
    seven = walls["now: 7 schemes"] / walls[f"before ({args.before}): 7 schemes"]
    four = walls["now: 4 schemes"] / min(walls["bare: TF converter, fp32+fp16+dynamic-int8+int8"],
                                         walls["bare again, last"])
    memory = peaks["now: 7 schemes, --jobs 1"] / peaks[f"before ({args.before}): 7 schemes"]
    checks = [("7 schemes, now / before", seven, 0.5), ("4 schemes, now / bare converter",
                                                         four, 0.7),
              ("peak memory, --jobs 1 / before", memory, 1.1)]
    for what, value, target in checks:
        print(f"{what}: {value:.2f}x (target <= {target}) {'met' if value <= target else 'MISSED'}")
    return 0 if all(value <= target for _, value, target in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
