"""A generated results store of many runs for ``quantlab serve``'s page times (serve_pages.py).

Written in bulk through the store's own row builders (harness/store/record_rows.py) inside
a few large transactions, not by running bench: 10,000 runs take under two minutes on two
cores. The lab it pretends: six devices (two host simulators, three Android phones, an
iPhone) in three benches of two, three variants of one model. The benches take turns,
one run every 30 minutes from 2025-01-01; a run measures every variant on its bench's two
devices, two launches of 20 iterations each, every job with a raw output. Each bench's
runs are tagged ``nightly-a`` (``-b``, ``-c``) and ``git=…`` and name their own tag as the
baseline in their plan, so each run has a night before with the same jobs. The int8
series on ``pixel-8`` gets 35 % slower at 70 % of the runs (a change point the next run
confirms); one run in a hundred has a failed job; the newest run is still ``running``.

Latencies come from a few hundred sample sets drawn once (seeded), each summarized once
with the store's statistics and reused, so the figures, summaries and raw files agree.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.records import (
    DeviceInfo,
    Job,
    ModelRef,
    Plan,
    RawOutput,
    RawResult,
    Run,
    Settings,
    to_dict,
)
from quantlab.harness.stats import STATS_VERSION, summarize
from quantlab.harness.store import Store
from quantlab.harness.store import record_rows as rows
from quantlab.harness.store import schema as t
from quantlab.harness.store.raw import put_outputs

SETTINGS = Settings(warmup=5, iterations=20, repeats=2)
BENCHES = (("sim-a", "pixel-8"), ("galaxy-s24", "iphone-15"), ("sim-b", "moto-g"))
DEVICES = (
    DeviceInfo(id="sim-a", platform="sim", name="host simulator", model="host"),
    DeviceInfo(id="sim-b", platform="sim", name="host simulator", model="host"),
    DeviceInfo(id="pixel-8", platform="android", name="Pixel 8", model="Pixel 8",
               soc="Tensor G3", os_version="15", health={"battery_pct": 77,
                                                         "thermal_status_name": "none"}),
    DeviceInfo(id="galaxy-s24", platform="android", name="Galaxy S24", model="SM-S921B",
               soc="Exynos 2400", os_version="14", health={"battery_pct": 64,
                                                           "thermal_status_name": "light"}),
    DeviceInfo(id="moto-g", platform="android", name="moto g", model="moto g 5G",
               soc="Dimensity 6020", os_version="14", health={"battery_pct": 91}),
    DeviceInfo(id="iphone-15", platform="ios", name="iPhone 15", model="iPhone15,4",
               soc="A16", os_version="18.1"),
)
DELEGATE = {"sim": "xnnpack", "android": "gpu", "ios": "coreml-all"}
SCHEMES = {"fp32": 1.0, "fp16": 0.8, "int8": 0.45}
SPEED = {"sim-a": 6.0, "sim-b": 6.5, "pixel-8": 9.0, "galaxy-s24": 8.0, "moto-g": 21.0,
         "iphone-15": 4.0}
SETS = 24  # sample sets per series level
SLOW_SERIES = ("int8", "pixel-8")


@dataclass(frozen=True)
class Generated:
    """What was written."""

    folder: Path
    runs: int
    jobs: int
    samples: int
    seconds: float
    run_ids: list[str]
    slow_from: str  # the first run of the slower int8 series on pixel-8


def _job(scheme: str, device: DeviceInfo) -> Job:
    sha = (f"{scheme}-model".encode().hex() * 8)[:64]
    model = ModelRef(path=f"/lab/variants/model-{scheme}.tflite", sha256=sha,
                     size_bytes=int(4_000_000 * SCHEMES[scheme] / 0.45 / 2), format="tflite",
                     scheme=scheme)
    return Job(model=model, device_id=device.id, platform=device.platform,
               delegate=DELEGATE[device.platform], threads=4, settings=SETTINGS)


class Templates:
    """Sample sets drawn once per (series, level), summarized once and reused."""

    def __init__(self, seed: int = 10_000) -> None:
        self.rng = np.random.default_rng(seed)
        self.made: dict[tuple[str, str, int, int], tuple[Any, dict[str, Any], Any, str]] = {}

    def get(self, job: Job, level: float, k: int) -> tuple[Any, dict[str, Any], Any, str]:
        """(samples, body template, summary, raw log) of sample set ``k`` at ``level``."""
        key = (job.model.scheme or "", job.device_id, round(level * 100), k % SETS)
        if key not in self.made:
            base = SPEED[job.device_id] * SCHEMES[job.model.scheme or "fp32"] * level
            samples = tuple(tuple(float(v) for v in base * (1 + 0.02 * self.rng.standard_normal(
                SETTINGS.iterations))) for _ in range(SETTINGS.repeats))
            log = (f"{job.label()}\nset {key}\nInference timings in us: Init: 1200, "
                   f"Inference (avg): {1000 * float(np.mean(samples)):.1f}\n")
            raw = RawResult(job_id="", status="ok", samples_ms=samples, init_ms=1.2,
                            first_inference_ms=3 * base, peak_memory_mb=40.0,
                            memory_method="rss-delta",
                            raw_outputs=(RawOutput.capture("launch-1.stdout", "text/plain", log),))
            summary = summarize(raw)
            body = to_dict(raw)
            for drop in ("samples_ms", "ops", "energy_samples", "raw_outputs", "raw_files"):
                body.pop(drop, None)
            body["summary"] = {"stats_version": STATS_VERSION, **summary.as_dict()}  # type: ignore
            self.made[key] = (samples, body, summary, log)
        return self.made[key]


def generate(folder: Path, runs: int = 10_000, chunk: int = 250) -> Generated:
    """Write ``runs`` runs into a new store in ``folder`` (refused when one is there)."""
    if (folder / "quantlab.db").exists():
        raise SystemExit(f"{folder}: holds a store already (pass another folder)")
    started = time.perf_counter()
    store = Store.open(str(folder))
    templates = Templates()
    jobs_by = {(s, d.id): _job(s, d) for s in SCHEMES for d in DEVICES}
    slow_at = int(runs * 0.7)
    start = dt.datetime(2025, 1, 1, 2, 0, tzinfo=dt.UTC)
    run_ids: list[str] = []
    slow_from = ""
    n_jobs = n_samples = 0
    for first in range(0, runs, chunk):
        batch: dict[str, list[dict[str, Any]]] = {n: [] for n in (
            "runs", "run_tags", "devices", "jobs", "results", "samples", "raw_files")}
        with store.engine.begin() as conn:
            for i in range(first, min(first + chunk, runs)):
                when = start + dt.timedelta(minutes=30 * i)
                run = Run(run_id=f"{when:%Y%m%d-%H%M%S}-{i:04x}",
                          created_at=when.isoformat(timespec="milliseconds"),
                          host="lab-controller", git_sha=f"{i * 2654435761 % 16**8:08x}",
                          command="quantlab bench --plan nightly.toml",
                          settings=SETTINGS, tool_versions={"numpy": np.__version__})
                bench = f"nightly-{'abc'[i % len(BENCHES)]}"
                devices = [d for d in DEVICES if d.id in BENCHES[i % len(BENCHES)]]
                plan = Plan(jobs=tuple(jobs_by[(s, d.id)] for d in devices for s in SCHEMES))
                plan_text = f'[compare]\nbaseline = "{bench}"\nthreshold = "5%"\n'
                last = i == runs - 1
                batch["runs"].append({**rows.run_row(run, plan_text),
                                      "status": "running" if last else "done",
                                      "finished_at": None if last else run.created_at})
                batch["run_tags"] += [{"run_id": run.run_id, "tag": bench},
                                      {"run_id": run.run_id, "tag": f"git={run.git_sha}"}]
                batch["devices"] += [rows.device_row(run.run_id, d) for d in devices]
                job_rows = rows.job_rows(run.run_id, plan)
                for k, (job, row) in enumerate(zip(plan.jobs, job_rows, strict=True)):
                    if last:  # the newest run: one job being measured, the rest pending
                        row.update(status="running" if k == 0 else "pending",
                                   started_at=run.created_at if k == 0 else None,
                                   finished_at=None)
                        continue
                    failed = i % 100 == 37 and k == len(plan.jobs) - 1
                    row.update(status="failed" if failed else "ok", attempts=1,
                               started_at=run.created_at, finished_at=run.created_at)
                    if failed:
                        row["error"] = "GPU delegate: failed to apply (generated failure)"
                        raw = RawResult.failure(job.job_id, row["error"])
                        body = to_dict(raw)
                        batch["results"].append(rows.result_row(run.run_id, job.job_id, raw,
                                                                None, body))
                        continue
                    slow = (job.model.scheme, job.device_id) == SLOW_SERIES and i >= slow_at
                    slow_from = slow_from or (run.run_id if slow else "")
                    samples, body, summary, log = templates.get(job, 1.35 if slow else 1.0, i)
                    stored = RawResult(job_id=job.job_id, status="ok", samples_ms=samples,
                                       raw_outputs=(RawOutput.capture("launch-1.stdout",
                                                                      "text/plain", log),))
                    batch["results"].append(rows.result_row(
                        run.run_id, job.job_id, stored, summary, {**body, "job_id": job.job_id}))
                    batch["samples"] += rows.sample_rows(run.run_id, job.job_id, stored)
                    batch["raw_files"] += [
                        {"run_id": run.run_id, "job_id": job.job_id, "idx": n, **to_dict(f)}
                        for n, f in enumerate(put_outputs(store.raw, conn, stored))]
                batch["jobs"] += job_rows
                run_ids.append(run.run_id)
            for name in ("runs", "run_tags", "devices", "jobs", "results", "samples",
                         "raw_files"):
                if batch[name]:
                    conn.execute(t.metadata.tables[name].insert(), batch[name])
            n_jobs += len(batch["jobs"])
            n_samples += len(batch["samples"])
    store.close()
    return Generated(folder, len(run_ids), n_jobs, n_samples, time.perf_counter() - started,
                     run_ids, slow_from)
