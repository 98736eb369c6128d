"""Worker processes for the quantize side: one run (:func:`run_worker`), or several side by side
(:func:`run_lanes`: ``quantize --jobs N``).

Each worker process loads the model once and makes schemes until none is left: every worker
of a request is given the same ordered list and claims each scheme before making it (a
``.claim-<scheme>`` file created exclusively in the variants folder), so N workers share the
list without a coordinator and the slow schemes start first (:func:`work_order`). A worker
that crashes in a converter fails only the scheme it had claimed (the one it started); its
lane starts a fresh worker for the schemes nobody has claimed yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from quantlab.harness.quantize.requests import WorkerRequest
from quantlab.harness.quantize.schemes import Scheme

SHARED = ("inspect", "opcheck", "calibration", "source_note", "warning")
"""Events about the source and its data, which every worker reports."""
ProgressFn = Callable[[str, dict[str, Any]], None]
"""Called with (event name, event fields) as the worker reports."""

WORKER_BYTES = 1_000_000_000
"""Memory one TF worker needs beyond its model: TensorFlow, the converter's buffers."""
MODEL_FACTOR = 40
"""A worker's memory per byte of the source model file (the model, its float and calibrated
.tflite copies, the converter's graphs)."""


def claim_path(work: Path, scheme: str) -> Path:
    """The file a worker creates to claim a scheme."""
    return work / f".claim-{scheme}"


def claim(work: Path, scheme: str) -> bool:
    """Claim a scheme for this worker (False: another worker has it)."""
    try:
        os.close(os.open(claim_path(work, scheme), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def work_order(picked: list[Scheme]) -> list[str]:
    """The order workers claim schemes in: mixed precision first (it calibrates, ranks the
    layers and builds several candidates: the longest), then the schemes that need no
    calibration (while the calibration is being made), then the rest of the int8 family
    (quantized from that calibration in seconds)."""
    def rank(scheme: Scheme) -> int:
        return 0 if scheme.mixed or scheme.needs_training else 1 if not scheme.needs_calibration \
            else 2
    return [s.name for s in sorted(picked, key=rank)]


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def default_jobs(model_bytes: int, schemes: int) -> int:
    """Workers to run: one per idle core (the cores less the load average: on a busy machine a
    second worker only slows the first), as many as the available memory holds (each holds the
    model and the converter's buffers), no more than the schemes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    idle = round((cores or 1) - os.getloadavg()[0]) if hasattr(os, "getloadavg") else cores
    memory = available_memory()
    fits = memory // (WORKER_BYTES + MODEL_FACTOR * model_bytes) if memory else cores or 1
    return max(1, min(idle or 1, int(fits), schemes))


def run_worker(request: WorkerRequest, work: Path, progress: ProgressFn | None = None,
               stop: threading.Event | None = None) -> tuple[int, list[dict[str, Any]], str]:
    """Run the worker process on a request; returns (exit code, events, log tail). ``stop``
    set: the worker is killed (another lane hit a fatal error). The export folders of workers
    that are gone (killed with their parent) are swept first, and this worker's own once it has
    ended, however it ended (:mod:`~quantlab.harness.quantize.tf_export`)."""
    from quantlab.harness.quantize import tf_export

    tf_export.sweep()
    tag = time.monotonic_ns()
    events_path = work / f".events-{tag}.jsonl"
    req_path = work / f".request-{tag}.json"
    log_path = work / f".worker-{tag}.log"
    req_path.write_text(json.dumps(replace(request, events=str(events_path)).to_dict()))
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "CUDA_VISIBLE_DEVICES": "",
    }
    seen = 0
    events: list[dict[str, Any]] = []
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quantlab.harness.quantize.worker", str(req_path)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
        )
        try:
            while True:
                done = proc.poll() is not None
                if stop is not None and stop.is_set() and not done:
                    proc.kill()
                if events_path.exists():
                    lines = events_path.read_text().splitlines()
                    for line in lines[seen:]:
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        events.append(ev)
                        if progress:
                            progress(ev["event"], ev)
                    seen = len(lines)
                if done:
                    break
                time.sleep(0.1)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            tf_export.remove_for(proc.pid)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    for p in (events_path, req_path, log_path):
        p.unlink(missing_ok=True)
    return proc.returncode, events, tail


class Lanes:
    """``jobs`` lanes, each running worker processes on one request until every scheme is
    claimed; what they report, in arrival order."""

    def __init__(self, request: WorkerRequest, work: Path, jobs: int,
                 progress: ProgressFn | None) -> None:
        self.request = request
        self.work = work
        self.jobs = jobs
        self.progress = progress
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.events: list[dict[str, Any]] = []
        self.results: dict[str, dict[str, Any]] = {}  # scheme → its done / failed event
        self.attempts: list[tuple[int, list[dict[str, Any]], str]] = []  # the failed attempts
        self.errors: list[BaseException] = []

    def _on_event(self, name: str, ev: dict[str, Any]) -> None:
        with self.lock:
            if name in SHARED and ev in self.events:
                return  # every worker reports the source and data: once is enough
            self.events.append(ev)
            if name in ("done", "failed"):
                self.results[ev["scheme"]] = ev
            if name == "fatal":
                self.stop.set()
            if self.progress:
                self.progress(name, ev)

    def _lane(self) -> None:
        try:
            while not self.stop.is_set():
                todo = [s for s in self.request.schemes
                        if not claim_path(self.work, s).exists()]
                if not todo:
                    return
                code, events, tail = run_worker(replace(self.request, schemes=tuple(todo)),
                                                self.work, self._on_event, self.stop)
                started = [ev["scheme"] for ev in events if ev["event"] == "start"]
                ended = {ev["scheme"] for ev in events if ev["event"] in ("done", "failed")}
                crashed = [s for s in started if s not in ended]
                for scheme in crashed:  # a native crash in a converter: that scheme fails
                    self._on_event("failed", {"event": "failed", "scheme": scheme,
                                              "error": f"the converter crashed (exit code {code})"})
                if code != 0 and not crashed:
                    with self.lock:
                        self.attempts.append((code, events, tail))
                    self.stop.set()  # a worker that fails outside a scheme: no use retrying
                    return
        except BaseException as exc:
            with self.lock:
                self.errors.append(exc)
            self.stop.set()

    def run(self) -> None:
        """Run the lanes to the end (the first exception of a lane is raised here)."""
        threads = [threading.Thread(target=self._lane, daemon=True) for _ in range(self.jobs)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            self.stop.set()
            for thread in threads:
                thread.join()
            raise
        if self.errors:
            raise self.errors[0]
