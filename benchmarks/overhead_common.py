"""What the overhead benchmarks share: a bare loop in a fresh process against quantlab's simulator.

``sim_overhead.py`` (LiteRT) and ``executorch_overhead.py`` (ExecuTorch) each give a bare
inference loop as a small script; both time it the same way and time the simulator agent the
same way, so their ratios mean the same thing.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path


def bare_median_ms(code: str, model: Path, warmup: int, iterations: int,
                   env: dict[str, str] | None = None) -> float:
    """Median (ms) the bare loop ``code`` prints, run in a fresh process.

    ``code`` takes ``argv[1:4]`` = model, warm-up, iterations and prints its median last.
    """
    out = subprocess.run([sys.executable, "-c", code, str(model), str(warmup), str(iterations)],
                         capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def sim_median_ms(model: Path, delegate: str, warmup: int, iterations: int) -> float:
    """Median (ms) of quantlab's simulator agent: one repeat, one runner process, one thread."""
    from quantlab.agents.sim.agent import SimAgent
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import Job, Settings

    agent = SimAgent()
    device = agent.discover()[0]
    settings = Settings(warmup=warmup, iterations=iterations, repeats=1)
    job = Job(model_ref(model), "sim", "sim", delegate, 1, settings)
    result = agent.run(device, job, lambda phase, fraction: None)
    if result.status != "ok":
        raise SystemExit(f"simulator failed: {result.error}")
    return statistics.median(result.samples_ms[0])
