"""Page times of ``quantlab serve`` on a generated store of 10,000 runs: p50 and p95 per page.

``.venv/bin/python benchmarks/serve_pages.py [--runs 10000] [--store DIR] [--requests 30]
[--journey DIR]`` writes a store of ``--runs`` runs (serve_store.py: bulk rows through the
store's own row builders, under two minutes), or reuses the one in ``--store DIR`` when this
script made it before; starts ``quantlab serve`` on a free loopback port as a user does
(its own process, uvicorn); then asks each page ``--requests`` times, one request at a time,
with a different run, pair, series or page of the list each time (seeded), and prints the
median, p95 and slowest time per page as the client saw it (connection to last byte). The
lab page, the run list (any page of it), the filtered list, the trends list and the JSON
endpoints do not grow with the store: each query has a limit. A run page draws the report's
plots for one run; a series page loads and tests the series' last 30 runs; a verdicts page
compares a run with the night before and fits the drift over the tag's last 30 runs.

``--journey DIR`` then walks lab → runs → a run → a comparison → a trend in headless
Chromium on the same store (tests/fixtures/serve/journey.py) and saves the screenshots in
DIR. Targets: none enforced; the figures go in docs/serve.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from serve_store import DEVICES, SCHEMES, generate  # noqa: E402

DONE_MARK = "serve_pages.json"
"""Written beside a store this script made: its run ids, so a rerun can reuse the store."""


def start_server(folder: Path) -> tuple[subprocess.Popen[str], str]:
    """``quantlab serve --port 0 --json`` on the store; (the process, its base URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "quantlab", "serve", "--port", "0",
                             "--json", "--results", str(folder)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise SystemExit(f"quantlab serve did not start: {err}")
    return proc, str(json.loads(line)["url"]).rstrip("/")


def pages(run_ids: list[str], rng: random.Random) -> dict[str, Callable[[], str]]:
    """Each page to time → a function giving the next URL to ask for it."""
    done = run_ids[:-1]
    series = [(f"{s} (model-{s}.tflite)", d.id) for s in SCHEMES for d in DEVICES]

    def pair() -> str:  # a run and the night before on its bench
        k = rng.randrange(3, len(done))
        return f"a={done[k - 3]}&b={done[k]}"

    def one_series() -> str:
        model, device = rng.choice(series)
        delegate = {"sim": "xnnpack", "android": "gpu", "ios": "coreml-all"}[
            next(d.platform for d in DEVICES if d.id == device)]
        return f"model={quote(model)}&device={device}&delegate={delegate}&threads=4"

    def some_day() -> str:
        day = done[rng.randrange(len(done))][:8]
        return f"{day[:4]}-{day[4:6]}-{day[6:]}"

    return {
        "lab /": lambda: "/",
        "runs /runs (any page)": lambda: f"/runs?offset={50 * rng.randrange(len(done) // 50)}",
        "runs filtered": lambda: (f"/runs?device={rng.choice(DEVICES).id}&since={some_day()}"
                                  f"&model=int8"),
        "one run /runs/RUN": lambda: f"/runs/{rng.choice(done)}",
        "compare /compare": lambda: f"/compare?{pair()}",
        "trends /trends": lambda: "/trends",
        "one series /trends/series": lambda: f"/trends/series?{one_series()}",
        "verdicts /runs/RUN/verdicts.md": lambda: f"/runs/{rng.choice(done)}/verdicts.md",
        "api /api/runs": lambda: f"/api/runs?offset={50 * rng.randrange(len(done) // 50)}",
        "api /api/runs/RUN": lambda: f"/api/runs/{rng.choice(done)}",
        "api /api/compare": lambda: f"/api/compare?{pair()}",
        "api /api/lab": lambda: "/api/lab",
        "api /api/history": lambda: f"/api/history?{one_series()}",
    }


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_pages(base: str, run_ids: list[str], requests: int, seed: int = 26
               ) -> dict[str, list[float]]:
    """Seconds per request, by page (after one untimed request of each)."""
    import httpx

    rng = random.Random(seed)
    out: dict[str, list[float]] = {}
    with httpx.Client(base_url=base, timeout=300) as client:
        for name, next_url in pages(run_ids, rng).items():
            client.get(next_url()).raise_for_status()  # warm: imports, first plot
            times = []
            for _ in range(requests):
                url = next_url()
                start = time.perf_counter()
                answer = client.get(url)
                times.append(time.perf_counter() - start)
                if answer.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {answer.status_code}: {answer.text[:300]}")
            out[name] = times
    return out


def main() -> None:
    """Generate (or reuse) the store, serve it, time the pages, optionally walk it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the store")
    parser.add_argument("--store", help="folder for the store (kept; reused when this script "
                        "made it); default a temporary folder")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    parser.add_argument("--journey", help="walk the dashboard in headless Chromium and save "
                        "its screenshots in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.store) if args.store else Path(tmp) / "results"
        mark = folder / DONE_MARK
        if mark.is_file():
            run_ids = json.loads(mark.read_text())["run_ids"]
            print(f"store {folder}: {len(run_ids)} runs (made earlier by this script)")
        else:
            made = generate(folder, args.runs)
            run_ids = made.run_ids
            mark.write_text(json.dumps({"run_ids": run_ids, "slow_from": made.slow_from}))
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            print(f"store {folder}: {made.runs} runs, {made.jobs} jobs, {made.samples} "
                  f"samples, {size / 1e6:.0f} MB, written in {made.seconds:.0f} s; int8 on "
                  f"pixel-8 is 35 % slower from {made.slow_from}")
        proc, base = start_server(folder)
        try:
            times = time_pages(base, run_ids, args.requests)
            print(f"{len(run_ids)} runs · {args.requests} requests a page, one at a time · "
                  f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
            print(f"{'page':<34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
            for name, values in times.items():
                ms = [1000 * v for v in values]
                print(f"{name:<34} {statistics.median(ms):>8.0f} {percentile(ms, 0.95):>8.0f} "
                      f"{max(ms):>8.0f}")
            if args.journey:
                from fixtures.serve.journey import walk

                done = run_ids[:-1]
                seen = walk(base + "/", Path(args.journey), timeout_ms=120_000,
                            pick=[done[-4], done[-1]],  # the newest run and its night before
                            series=("int8 (model-int8.tflite)", "pixel-8"))
                print(f"journey: {seen.run_id} · compared {seen.compared[0]} → "
                      f"{seen.compared[1]} ({seen.gate}) · console errors: "
                      f"{len(seen.console_errors)}")
                for name, path in seen.screenshots.items():
                    print(f"screenshot {name}: {path}")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
