"""benchmarks/quantize_speed.py times the code it is given: its "before" row runs the
``quantlab`` of an older commit through ``PYTHONPATH``, and a command started in this
checkout's root imported the checkout's own ``quantlab`` folder instead (``python -m`` puts the
working folder first), so "before" and "now" timed the same code (#27)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_row_runs_the_quantlab_on_its_pythonpath(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "quantize_speed", ROOT / "benchmarks" / "quantize_speed.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    older = tmp_path / "older" / "quantlab"
    older.mkdir(parents=True)
    (older / "__init__.py").write_text("")
    (older / "__main__.py").write_text("print('the older quantlab')\n")
    env = {**os.environ, "PYTHONPATH": str(older.parent)}
    monkeypatch.chdir(ROOT)  # where the benchmark is run from
    _, _, last = bench.measure([sys.executable, "-m", "quantlab"], env)
    assert last == "the older quantlab"
