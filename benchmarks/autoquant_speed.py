"""``autoquant --explore`` on Keras' MobileNetV2, cold then warm (#27): each rung's seconds and the
share the calibration cache saves, both runs in one process tree of this run.

    .venv/bin/python benchmarks/autoquant_speed.py [--samples 100] [--eval 32]

The model and calibration images are benchmarks/quantize_speed.py's (MobileNetV2,
``weights=None``, 224×224, 100 classes, ``--samples`` random images); the gate's evaluation data
is ``--eval`` other random images with random labels (an untrained model: the figures are
time, not accuracy). ``autoquant --explore`` runs twice with the same quantlab cache folder:

* ``cold``: the cache empty, so the first calibrating rung makes the calibration (later rungs
  of the same run already read it from the cache);
* ``warm``: the calibration in the cache (a second autoquant of the same model and data).

Each run's wall time includes start-up and the simulator's latency measurement of the passing
rungs (``--iterations``, ``--repeats`` kept small); the rungs' own seconds come from
``ladder.json`` (``timing``: quantize, of which calibration and conversion, and evaluate).
It prints a table per rung (cold, warm, warm/cold; the calibration's seconds and where it came
from), the ladder's seconds cold and warm, and the share the cache saved (1 − warm/cold, of
the ladder and of the whole command), with the load average beside each run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quantize_speed import ROOT, build, measure


def _calib(step: dict) -> str:
    timing, calibration = step.get("timing") or {}, step.get("calibration") or {}
    if "reused" not in calibration:
        return "–"
    where = "made" if calibration["reused"] is False else "cache"
    return f"{timing.get('calibration', 0.0):.1f} {where}"


def main(argv: list[str] | None = None) -> int:
    """Run autoquant --explore cold then warm and print the figures."""
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=100, help="calibration images")
    ap.add_argument("--eval", type=int, default=32, help="evaluation images (random labels)")
    ap.add_argument("--iterations", type=int, default=5, help="latency iterations per repeat")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aqspeed-") as tmp_name:
        tmp = Path(tmp_name)
        model, calib = build(tmp, args.samples)
        rng = np.random.default_rng(1)
        data = tmp / "eval.npz"
        np.savez(data, x=rng.uniform(-1, 1, (args.eval, 224, 224, 3)).astype(np.float32),
                 y=rng.integers(0, 100, args.eval))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
               "QUANTLAB_CACHE": str(tmp / "cache")}
        runs: dict[str, tuple[float, float, dict, float]] = {}
        for name in ("cold", "warm"):
            out = tmp / name
            wall, peak, _ = measure(
                [sys.executable, "-m", "quantlab", "autoquant", str(model), "--calib",
                 str(calib), "--data", str(data), "--explore", "--calib-samples",
                 str(args.samples), "--max-drop", "0.5", "--iterations", str(args.iterations),
                 "--repeats", "1", "--out", str(out), "--results", str(tmp / "results"),
                 "--json"], env)
            ladder = json.loads((out / "ladder.json").read_text())
            load = os.getloadavg()[0]
            runs[name] = (wall, peak, ladder, load)
            print(f"{name}: {wall:.1f} s (load {load:.2f}), ladder "
                  f"{ladder['timing']['seconds']:.1f} s, peak {peak:.2f} GB", flush=True)
    cold, warm = runs["cold"][2], runs["warm"][2]
    print(f"\nautoquant --explore, MobileNetV2 224x224, 100 classes, {args.samples} calibration "
          f"images, {args.eval} evaluation images; {os.cpu_count()} cores")
    print("| rung | cold s | calibration (cold) | warm s | calibration (warm) | warm/cold |")
    print("|---|---|---|---|---|---|")
    warm_steps = {s["rung"]: s for s in warm["steps"]}
    for step in cold["steps"]:
        other = warm_steps.get(step["rung"], {})
        if step.get("seconds") is None:
            print(f"| {step['rung']} | skipped | | | | |")
            continue
        ratio = other["seconds"] / step["seconds"] if other.get("seconds") else float("nan")
        print(f"| {step['rung']} | {step['seconds']:.1f} | {_calib(step)} | "
              f"{other.get('seconds', float('nan')):.1f} | {_calib(other)} | {ratio:.2f} |")
    lc, lw = cold["timing"]["seconds"], warm["timing"]["seconds"]
    wc, ww = runs["cold"][0], runs["warm"][0]
    print(f"| ladder (rungs only) | {lc:.1f} | load {runs['cold'][3]:.2f} | {lw:.1f} | "
          f"load {runs['warm'][3]:.2f} | {lw / lc:.2f} |")
    print(f"| whole command (start-up, measuring) | {wc:.1f} | | {ww:.1f} | | {ww / wc:.2f} |")
    print(f"share saved by the cache: ladder {1 - lw / lc:.0%}, whole command {1 - ww / wc:.0%}; "
          f"calibrations made cold {cold['timing']['calibrations_made']}, warm "
          f"{warm['timing']['calibrations_made']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
