"""Start-up time of the everyday commands, as a ratio to a bare ``python -c pass``.

``.venv/bin/python benchmarks/startup.py [--runs N]`` seeds a temporary results store
with one stored run (four jobs, no device needed), then times each command as a whole
process (``--runs`` times, median) and prints the median in seconds and as a ratio to
``python -c pass``. Targets (issue 14): ``--help`` ≤ 0.3 s; ``runs``, ``show`` and
``devices`` ≤ 0.4 s.

Each command runs once untimed first, with ``PYTHONDONTWRITEBYTECODE`` dropped from its
environment, so that the timed runs load cached bytecode as an installed quantlab does.

``devices`` includes asking each agent for its devices: on a machine with no phone
that is the simulator plus a look for adb / usbmux, which answer at once when absent;
with phones attached it adds their round trips, which this figure does not aim to
bound (run it with none attached to compare like with like).
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

TARGETS = {"--help": 0.3, "runs": 0.4, "show": 0.4, "devices": 0.4}


def seed_store(folder: Path) -> str:
    """A store with one finished run of four jobs (synthetic samples); returns its id."""
    from quantlab.harness.records import DeviceInfo, ModelRef, Plan, RawResult, Run, Settings
    from quantlab.harness.records import Job as JobRecord
    from quantlab.harness.store import Store, new_run_id, utcnow

    store = Store.open(str(folder))
    settings = Settings()
    jobs = [JobRecord(model=ModelRef(path=f"/models/{scheme}.tflite", sha256=scheme * 8,
                                     size_bytes=1000, format="tflite", scheme=scheme),
                      device_id="sim", platform="sim", delegate="xnnpack", threads=1,
                      settings=settings)
            for scheme in ("fp32", "fp16", "int8", "mixed-int8")]
    run = Run(run_id=new_run_id(), created_at=utcnow(), host="bench", command="startup.py",
              settings=settings)
    store.create_run(run, Plan(jobs=tuple(jobs)), [DeviceInfo(id="sim", platform="sim",
                                                              name="simulator")])
    for k, j in enumerate(jobs):
        store.mark_running(run.run_id, j.job_id)
        samples = tuple(1.0 + k + 0.01 * (i % 7) for i in range(50))
        store.save_result(run.run_id, j.job_id, RawResult(job_id=j.job_id, status="ok",
                                                          samples_ms=(samples, samples)))
    store.finish_run(run.run_id, "done")
    store.close()
    return run.run_id


def median_seconds(argv: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time of ``argv`` as a whole process (one warm-up run first)."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       check=False)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Seed a store, time the commands, print seconds and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    args = parser.parse_args()
    quantlab = Path(sys.executable).with_name("quantlab")
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        seed_store(results)
        env = {**os.environ, "QUANTLAB_RESULTS": str(results), "COLUMNS": "80"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        base = median_seconds([sys.executable, "-c", "pass"], args.runs, env)
        print(f"python -c pass: {base:.3f} s (median of {args.runs}; {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f})")
        print(f"{'command':<22} {'median s':>9} {'× pass':>8} {'target s':>9}  meets")
        failed = []
        for name, argv in (("--help", [str(quantlab), "--help"]),
                           ("runs", [str(quantlab), "runs"]),
                           ("show", [str(quantlab), "show", "latest"]),
                           ("devices", [str(quantlab), "devices"])):
            seconds = median_seconds(argv, args.runs, env)
            target = TARGETS[name]
            if seconds > target:
                failed.append(name)
            print(f"quantlab {name:<13} {seconds:>9.3f} {seconds / base:>8.1f} "
                  f"{target:>9.1f}  {'yes' if seconds <= target else 'no (over)'}")
    if not failed:
        print("every command meets its target")
    else:
        print(f"over target: {', '.join(failed)} (a loaded machine reads slow: compare the "
              "ratios, and rerun when it is idle)")


if __name__ == "__main__":
    main()
