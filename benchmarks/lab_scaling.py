"""Lab scaling: job throughput on 1, 2, 4, 8 devices through Ray vs the same jobs on one host.

Jobs are device-bound: each device's agent sleeps a fixed time per job (tests/lab_agents.py
``SleepAgent``), so the ideal is linear scaling and anything above the sleep is quantlab's
own cost (dispatcher, store writes, and in lab mode Ray's round trip and the actor shell).
The lab is real: ``quantlab lab head`` plus two ``quantlab lab join`` hosts on loopback,
token authentication on (add ``--tls`` for mutual TLS). The controller is this process,
running the ordinary dispatcher into a SQLite store.

Targets (issue 7): ≥ 0.9 × linear scaling, ≤ 20 ms overhead per job. "Overhead per job"
is printed twice: all of quantlab's (wall time per job on a device minus the sleep: the
dispatcher, the store's writes and in lab mode Ray) and Ray's share (lab minus
single-host at the same device count), which the target is checked against.

    .venv/bin/python benchmarks/lab_scaling.py [--jobs 10] [--sleep 0.2] [--tls] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from quantlab.harness.dispatch import Dispatcher  # noqa: E402
from quantlab.harness.environment import new_run  # noqa: E402
from quantlab.harness.plan import Fleet, build_plan, discover  # noqa: E402
from quantlab.harness.records import DeviceInfo, ModelRef, Settings  # noqa: E402
from quantlab.harness.store import Store  # noqa: E402

COUNTS = (1, 2, 4, 8)


def _model(folder: Path) -> ModelRef:
    data = os.urandom(64 * 1024)
    path = folder / "bench.tflite"
    path.write_bytes(data)
    return ModelRef(str(path), hashlib.sha256(data).hexdigest(), len(data), "tflite")


def measure(fleet: Fleet, devices: list[DeviceInfo], model: ModelRef, jobs_per_device: int,
            folder: Path) -> float:
    """Seconds to run ``jobs_per_device`` jobs on each device (plan → dispatch → store)."""
    plan = build_plan([model], devices, fleet, ["cpu"], list(range(1, jobs_per_device + 1)),
                      Settings(repeats=1))
    assert len(plan.jobs) == jobs_per_device * len(devices), plan.skipped
    store = Store.open(str(folder / f"store-{time.monotonic_ns()}"))
    run = new_run(Settings(repeats=1))
    store.create_run(run, plan, devices)
    start = time.perf_counter()
    accounts = Dispatcher(store, run.run_id, fleet).run(list(plan.jobs))
    took = time.perf_counter() - start
    assert sum(a.ok for a in accounts) == len(plan.jobs), accounts
    store.close()
    return took


def row(mode: str, n: int, took: float, jobs: int, sleep_s: float,
        base: float | None) -> dict[str, Any]:
    """One result line: throughput, scaling vs linear, overhead per job."""
    throughput = n * jobs / took
    ideal = n / sleep_s
    return {"mode": mode, "devices": n, "jobs": n * jobs, "seconds": round(took, 3),
            "jobs_per_s": round(throughput, 2), "vs_ideal": round(throughput / ideal, 3),
            "scaling_vs_linear": round(throughput / (n * base), 3) if base else 1.0,
            "overhead_ms_per_job": round((took / jobs - sleep_s) * 1000, 1)}


def main() -> int:
    """Run both modes and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="jobs per device")
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds per job on a device")
    parser.add_argument("--tls", action="store_true", help="mutual TLS between lab members")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    from lab_agents import SleepAgent
    from lab_cluster import LOOPBACK, Lab

    work = Path(tempfile.mkdtemp(prefix="qlbench"))
    model = _model(work)
    rows: list[dict[str, Any]] = []

    local_agent = SleepAgent(count=max(COUNTS), sleep_s=args.sleep)
    local = discover(agents=[local_agent])
    measure(local, list(local.devices[:1]), model, 2, work)  # warm: imports, first store
    base = None
    for n in COUNTS:
        took = measure(local, list(local.devices[:n]), model, args.jobs, work)
        r = row("single-host", n, took, args.jobs, args.sleep, base)
        base = base or r["jobs_per_s"]
        rows.append(r)

    lab = Lab(tls=args.tls, sleep_s=args.sleep, devices_per_host=max(COUNTS) // 2)
    try:
        t0 = time.perf_counter()
        lab.start_head()
        lab.start_host("hostA", wait=False)
        lab.start_host("hostB", wait=False)
        lab.members["hostA"].wait_for("joined", 120)
        lab.members["hostB"].wait_for("joined", 120)
        startup = time.perf_counter() - t0
        from quantlab.harness.lab.agent import lab_agents

        fleet = discover(agents=lab_agents(lab.address, lab.sec, node_ip=LOOPBACK))
        by_host: dict[str, list[DeviceInfo]] = {}
        for d in sorted(fleet.devices, key=lambda d: d.id):
            by_host.setdefault(d.host or "", []).append(d)
        spread = [d for pair in zip(*by_host.values(), strict=False) for d in pair]
        measure(fleet, spread[:1], model, 2, work)  # warm: actors import, model cached
        base = None
        for n in COUNTS:
            took = measure(fleet, spread[:n], model, args.jobs, work)
            r = row("ray-lab", n, took, args.jobs, args.sleep, base)
            base = base or r["jobs_per_s"]
            rows.append(r)
    finally:
        import ray

        ray.shutdown()
        lab.close()

    local_rows = {r["devices"]: r for r in rows if r["mode"] == "single-host"}
    for r in rows:
        if r["mode"] == "ray-lab":
            r["vs_single_host"] = round(r["jobs_per_s"] / local_rows[r["devices"]]["jobs_per_s"],
                                        3)
    ray_rows = [r for r in rows if r["mode"] == "ray-lab"]
    extra = [r["overhead_ms_per_job"] - local_rows[r["devices"]]["overhead_ms_per_job"]
             for r in ray_rows]
    summary = {
        "jobs_per_device": args.jobs, "sleep_s": args.sleep, "tls": args.tls,
        "lab_startup_s": round(startup, 1),
        "min_scaling_vs_linear": min(r["scaling_vs_linear"] for r in ray_rows),
        "max_overhead_ms_per_job": max(r["overhead_ms_per_job"] for r in ray_rows),
        "ray_extra_ms_per_job": round(max(extra), 1),
    }
    summary["targets_met"] = (summary["min_scaling_vs_linear"] >= 0.9
                              and summary["ray_extra_ms_per_job"] <= 20.0)
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}, indent=2))
        return 0
    print(f"lab scaling: {args.jobs} jobs per device, {args.sleep * 1000:.0f} ms each "
          f"(device-bound); lab = head + 2 hosts on loopback, token"
          f"{' + mTLS' if args.tls else ''}; started in {startup:.1f}s")
    print(f"{'mode':<12} {'devices':>7} {'jobs/s':>8} {'vs ideal':>9} {'vs linear':>10} "
          f"{'overhead/job':>13} {'vs 1 host':>10}")
    for r in rows:
        print(f"{r['mode']:<12} {r['devices']:>7} {r['jobs_per_s']:>8.2f} {r['vs_ideal']:>9.3f} "
              f"{r['scaling_vs_linear']:>10.3f} {r['overhead_ms_per_job']:>10.1f} ms "
              f"{r.get('vs_single_host', ''):>10}")
    print(f"ray lab: scaling ≥ {summary['min_scaling_vs_linear']:.3f} × linear (target 0.9); "
          f"Ray's overhead ≤ {summary['ray_extra_ms_per_job']:.1f} ms/job over single-host "
          f"(target 20); all of quantlab's overhead ≤ "
          f"{summary['max_overhead_ms_per_job']:.1f} ms/job (dispatcher + store + Ray) — "
          f"{'targets met' if summary['targets_met'] else 'TARGETS MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
