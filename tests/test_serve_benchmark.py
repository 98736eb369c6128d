"""benchmarks/serve_pages.py in a smoke run: a generated store of 60 runs, every page asked
once through a real ``quantlab serve``; the generated store reads back as the store's own
runs do (history finds the planted change point)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_page_times_smoke_run(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_pages.py"),
                           "--runs", "60", "--requests", "1", "--store", str(tmp_path / "s")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"store {tmp_path / 's'}: 60 runs, 360 jobs")
    pages = [line.split()[0] for line in lines[3:]]
    assert pages == ["lab", "runs", "runs", "one", "compare", "trends", "one", "verdicts",
                     "api", "api", "api", "api", "api"]

    from quantlab.harness.store import Store
    from quantlab.harness.verdicts.history import load_history

    store = Store.open(str(tmp_path / "s"), migrate=False)
    found = load_history(store, model="int8", device="pixel-8", last=60)
    [change] = found.series[0].change_points
    slow_from = lines[0].rsplit(" ", 1)[1]
    assert change.verdict == "slower" and change.run_id == slow_from
    store.close()
