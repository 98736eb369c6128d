"""What the SSH path adds per job over a local simulator job on the same model.

``.venv/bin/python benchmarks/ssh_overhead.py [--iterations N] [--rounds N] [--small]``
starts a real sshd on a loopback address (throwaway keys, as the tests do; needs
Debian's openssh-server), makes this machine a gateway whose Python is this
interpreter, builds a model in a subprocess (MobileNetV2 1.0 224 with random
weights; ``--small``: the tests' 96×96 CNN), then alternates simulator jobs and
``ssh:`` jobs of the same settings and prints:

* latency ratio: median of the SSH jobs' medians / median of the simulator jobs'
  medians (target ≤ 1.05: the gateway runs the same worker, so the per-inference
  figure should not change);
* setup cost per job: connect + host-key check + SFTP + cache checks + job file, for
  a cold gateway (first job: pushes the worker code and the model, verifies the
  checksum) and a warm one (every later job);
* wall time per job, SSH minus simulator (what a user waits for in addition).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

BUILD = """
import sys, tensorflow as tf
tf.keras.utils.set_random_seed(0)
m = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None)
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(m).convert())
"""

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")


def build_model(out: Path, small: bool) -> None:
    """Write the benchmark model (TensorFlow runs in a subprocess)."""
    if small:
        code = "import sys; from modelgen import build_cnn; build_cnn(__import__('pathlib')" \
               ".Path(sys.argv[1]))"
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=ENV,
                       capture_output=True, cwd=ROOT / "tests")
    else:
        subprocess.run([sys.executable, "-c", BUILD, str(out)], check=True, env=ENV,
                       capture_output=True)


def main() -> None:
    """Start sshd, build the model, alternate sim and ssh jobs, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="the tests' small CNN")
    args = parser.parse_args()

    from sshd import SSHD, SshServer

    if not SSHD.exists():
        raise SystemExit(f"{SSHD} not found: install Debian's openssh-server")
    from quantlab.agents.linux.agent import SshAgent
    from quantlab.agents.sim.agent import SimAgent
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import Job, Settings

    server = SshServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / ("cnn_float.tflite" if args.small else "mobilenet_v2.tflite")
            build_model(model, args.small)
            hosts = server.dir / "hosts.toml"
            hosts.write_text(server.hosts_entry("bench", python=sys.executable))
            sim, ssh = SimAgent(), SshAgent(hosts)
            sim_dev = sim.discover()[0]
            t0 = time.perf_counter()
            (ssh_dev,) = ssh.discover()
            discover_ms = (time.perf_counter() - t0) * 1000
            settings = Settings(warmup=args.warmup, iterations=args.iterations, repeats=1)
            ref = model_ref(model)
            sim_job = Job(ref, sim_dev.id, "sim", "xnnpack", 1, settings)
            ssh_job = Job(ref, ssh_dev.id, "linux", "xnnpack", 1, settings)
            sim_med, ssh_med, sim_wall, ssh_wall, setup = [], [], [], [], []
            for _ in range(args.rounds + 1):  # the first round is the cold gateway
                for agent, dev, job, meds, walls in ((sim, sim_dev, sim_job, sim_med, sim_wall),
                                                     (ssh, ssh_dev, ssh_job, ssh_med, ssh_wall)):
                    t = time.perf_counter()
                    raw = agent.run(dev, job, lambda phase, fraction: None)
                    walls.append((time.perf_counter() - t) * 1000)
                    if raw.status != "ok":
                        raise SystemExit(f"{dev.id} failed: {raw.error}")
                    meds.append(statistics.median(raw.samples_ms[0]))
                    if agent is ssh:
                        setup.append(raw.runner["setup_ms"])
            cold_setup = setup.pop(0)
            for series in (sim_med, ssh_med, sim_wall, ssh_wall):
                series.pop(0)  # cold round: not in the medians
            s, g = statistics.median(sim_med), statistics.median(ssh_med)
            print(f"model: {model.name} ({model.stat().st_size / 1e6:.1f} MB), 1 thread, "
                  f"XNNPACK, {args.iterations} iterations, {args.rounds} rounds; gateway "
                  f"ssh:bench on {server.address} (this machine)")
            print(f"simulator median {s:.3f} ms | ssh gateway median {g:.3f} ms")
            print(f"latency ratio (ssh / simulator): {g / s:.3f}   (target ≤ 1.05)")
            print(f"setup per job: cold {cold_setup:.0f} ms (pushes worker + model, verifies "
                  f"sha256), warm {statistics.median(setup):.0f} ms (connect, host-key check, "
                  f"SFTP cache checks, job file)")
            print(f"wall per job: simulator {statistics.median(sim_wall):.0f} ms, ssh "
                  f"{statistics.median(ssh_wall):.0f} ms (+"
                  f"{statistics.median(ssh_wall) - statistics.median(sim_wall):.0f} ms)")
            print(f"discovery of one gateway (connect + probe): {discover_ms:.0f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
