"""``autoquant --explore`` on Keras' MobileNetV2, cold then warm (#27): each rung's seconds and the
share the calibration cache saves, both runs in one process tree of this run.

    .venv/bin/python benchmarks/autoquant_speed.py [--samples 100] [--eval 32]

The model and calibration images are benchmarks/quantize_speed.py's (MobileNetV2,
``weights=None``, 224×224, 100 classes, ``--samples`` random images); the gate's evaluation data
is ``--eval`` other random images with random labels (an untrained model: the figures are
time, not accuracy). ``autoquant --explore`` runs three times:

* ``cold``: the cache empty, so the first calibrating rung makes the calibration (later rungs
  of the same run already read it from the cache: the run's ``calibration_saved_s``);
* ``warm``: the same cache folder, the calibration in it (a second autoquant of the same
  model and data);
* ``cold again``: another empty cache folder, last (the load moves during a run: the ratios
  divide by the faster cold run).

Each run's wall time includes start-up and the simulator's latency measurement of the passing
rungs (``--iterations``, ``--repeats`` kept small); the rungs' own seconds come from
``ladder.json`` (``timing``: quantize, of which calibration and conversion, and evaluate).
It prints a table per rung and run (seconds; the calibration's and where it came from,
conversion, evaluate), the ladder's and the whole command's seconds, and the share the filled
cache saved (1 − warm / faster cold, of the ladder and of the whole command), with the load
average beside each run.
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


def _cell(step: dict) -> str:
    """A rung's seconds in one run: the whole step; its quantize run (worker start, model load,
    export, fp32 and the scheme), of which the scheme's calibration (made or cache),
    conversion and checks; evaluate."""
    if step.get("seconds") is None:
        return "skipped"
    timing, calibration = step.get("timing") or {}, step.get("calibration") or {}
    parts = []
    if "reused" in calibration:
        where = "made" if calibration["reused"] is False else "cache"
        parts.append(f"calib {timing.get('calibration') or 0.0:.1f} {where}")
    parts += [f"conv {timing.get('conversion') or 0.0:.1f}",
              f"checks {timing.get('checks') or 0.0:.1f}"]
    return (f"{step['seconds']:.1f} (quantize {timing.get('quantize') or 0.0:.1f}: "
            f"{', '.join(parts)}; eval {timing.get('evaluate') or 0.0:.1f})")


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
        for name, cache in (("cold", "cache"), ("warm", "cache"), ("cold again", "cache2")):
            out = tmp / name.replace(" ", "-")
            wall, peak, _ = measure(
                [sys.executable, "-m", "quantlab", "autoquant", str(model), "--calib",
                 str(calib), "--data", str(data), "--explore", "--calib-samples",
                 str(args.samples), "--max-drop", "0.5", "--iterations", str(args.iterations),
                 "--repeats", "1", "--out", str(out), "--results", str(tmp / "results"),
                 "--json"], {**env, "QUANTLAB_CACHE": str(tmp / cache)})
            ladder = json.loads((out / "ladder.json").read_text())
            load = os.getloadavg()[0]
            runs[name] = (wall, peak, ladder, load)
            print(f"{name}: {wall:.1f} s (load {load:.2f}), ladder "
                  f"{ladder['timing']['seconds']:.1f} s, peak {peak:.2f} GB", flush=True)
    print(f"\nautoquant --explore, MobileNetV2 224x224, 100 classes, {args.samples} calibration "
          f"images, {args.eval} evaluation images; {os.cpu_count()} cores; each rung: its "
          "seconds (its quantize run: worker start, model load, export, fp32 and the scheme, of "
          "which the scheme's calibration made or read from the cache, conversion and checks; "
          "evaluate)")
    names = list(runs)
    print("| rung | " + " | ".join(f"{n} (load {runs[n][3]:.2f})" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    by_run = [{s["rung"]: s for s in runs[n][2]["steps"]} for n in names]
    for step in runs["cold"][2]["steps"]:
        print(f"| {step['rung']} | " + " | ".join(_cell(b.get(step["rung"], {}))
                                                  for b in by_run) + " |")
    ladders = {n: runs[n][2]["timing"] for n in names}
    print("| ladder (rungs only) | " + " | ".join(f"{ladders[n]['seconds']:.1f}"
                                                   for n in names) + " |")
    print("| whole command (start-up, measuring) | " + " | ".join(
        f"{runs[n][0]:.1f}" for n in names) + " |")
    print("| calibrations made / reused (≈ s saved in the run) | " + " | ".join(
        f"{ladders[n]['calibrations_made']} / {ladders[n]['calibrations_reused']} "
        f"({ladders[n]['calibration_saved_s']:.1f})" for n in names) + " |")
    cold_ladder = min(ladders["cold"]["seconds"], ladders["cold again"]["seconds"])
    cold_wall = min(runs["cold"][0], runs["cold again"][0])
    print(f"warm / faster cold: ladder {ladders['warm']['seconds'] / cold_ladder:.2f}x, whole "
          f"command {runs['warm'][0] / cold_wall:.2f}x; share saved by the filled cache: "
          f"ladder {1 - ladders['warm']['seconds'] / cold_ladder:.0%}, whole command "
          f"{1 - runs['warm'][0] / cold_wall:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
