"""What quantlab's simulator adds on top of ExecuTorch (the ``torch`` extra).

``.venv/bin/python benchmarks/executorch_overhead.py [--iterations N] [--rounds N]`` exports a
small conv net (random weights; no download) to an XNNPACK-lowered ``.pte`` and, in the same
run, alternating, prints:

* overhead ratio: quantlab simulator median (``et-xnnpack``, one thread) / bare
  ``executorch.runtime`` ``execute`` loop median in a fresh process (target ≤ 1.02).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUILD = """
import sys, torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
torch.manual_seed(0)
layers, c = [], 3
for out in (16, 32, 32, 64, 64):
    layers += [torch.nn.Conv2d(c, out, 3, stride=2 if out != c else 1, padding=1),
               torch.nn.ReLU()]
    c = out
net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                          torch.nn.Linear(c, 10)).eval()
ep = torch.export.export(net, (torch.zeros(1, 3, 160, 160),))
lowered = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
open(sys.argv[1], "wb").write(lowered.to_executorch().buffer)
"""

BARE = """
import sys, time, statistics, torch
from executorch.extension.pybindings import portable_lib
from executorch.runtime import Runtime
portable_lib._unsafe_reset_threadpool(1)
method = Runtime.get().load_program(sys.argv[1]).load_method("forward")
args = [torch.randn(1, 3, 160, 160)]
for _ in range(int(sys.argv[2])): method.execute(args)
s = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter_ns(); method.execute(args); s.append(time.perf_counter_ns() - t)
print(statistics.median(s) / 1e6)
"""


def bare_median_ms(model: Path, warmup: int, iterations: int) -> float:
    """Median of a bare ``execute`` loop in a fresh process."""
    out = subprocess.run([sys.executable, "-c", BARE, str(model), str(warmup), str(iterations)],
                         capture_output=True, text=True, check=True, env=dict(os.environ))
    return float(out.stdout.strip().splitlines()[-1])


def quantlab_median_ms(model: Path, warmup: int, iterations: int) -> float:
    """Median of quantlab's simulator agent (one repeat, one runner process)."""
    from quantlab.agents.sim.agent import SimAgent
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import Job, Settings

    agent = SimAgent()
    device = agent.discover()[0]
    settings = Settings(warmup=warmup, iterations=iterations, repeats=1)
    job = Job(model_ref(model), "sim", "sim", "et-xnnpack", 1, settings)
    result = agent.run(device, job, lambda phase, fraction: None)
    if result.status != "ok":
        raise SystemExit(f"simulator failed: {result.error}")
    return statistics.median(result.samples_ms[0])


def main() -> None:
    """Build the program, measure, print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "convnet_160.pte"
        subprocess.run([sys.executable, "-c", BUILD, str(model)], check=True,
                       capture_output=True)
        bare, ours = [], []
        for _ in range(args.rounds):  # alternate so drift hits both alike
            bare.append(bare_median_ms(model, args.warmup, args.iterations))
            ours.append(quantlab_median_ms(model, args.warmup, args.iterations))
        b, q = statistics.median(bare), statistics.median(ours)
        print(f"program: {model.name} ({model.stat().st_size / 1e3:.0f} kB), 1 thread, "
              "XNNPACK")
        print(f"bare execute() median {b:.3f} ms | quantlab sim median {q:.3f} ms")
        print(f"overhead ratio (quantlab / bare): {q / b:.3f}   (target ≤ 1.02)")


if __name__ == "__main__":
    main()
