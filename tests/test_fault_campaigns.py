"""The fault campaigns of benchmarks/fault_campaigns.py in a smoke run: each with a tiny N on
a small plan, every case counted in one column, none crashed, hung, lost or duplicated.
The full campaigns (their figures are in the README's "Reliability" section) are not CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]


def _campaign(name: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fault_campaigns.py"),
                           name, "--quick", "--json", "--work", str(tmp_path), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == (1 if data["bad"] else 0), proc.stderr[-3000:]
    return data


def _n(rows: dict[str, dict[str, int]], prefix: str) -> int:
    return sum(r["n"] for name, r in rows.items() if name.startswith(prefix))


@pytest.mark.slow
def test_mutated_models_smoke(tmp_path: Path) -> None:
    data = _campaign("mutants", tmp_path, "-n", "4", "--cli-every", "4")
    assert data["bad"] == 0, data["examples"]
    rows = data["rows"]
    # seeds in turn (BlazeFace, okay_nabu, …): each mutant benched once, BlazeFace's evaluated
    assert _n(rows, "bench: ") == 4 and _n(rows, "evaluate: ") == 2
    assert _n(rows, "CLI bench") == 1 and _n(rows, "CLI evaluate") == 1
    assert all(r["ok"] + r["failed"] + r["refused"] == r["n"] for r in rows.values())


@pytest.mark.slow
def test_disconnects_smoke(tmp_path: Path) -> None:
    require_tool("adb", "install the Debian 'adb' package (.ci/run does) to run the "
                 "disconnect campaign", found=shutil.which("adb") is not None)
    data = _campaign("disconnects", tmp_path, "-n", "1")
    assert data["bad"] == 0, data["examples"]
    assert sum(r["n"] for r in data["rows"].values()) == 1
    assert data["jobs"].get("ok", 0) > 0


@pytest.mark.slow
def test_kills_smoke(tmp_path: Path) -> None:
    data = _campaign("kills", tmp_path, "-n", "2")
    assert data["bad"] == 0, data["examples"]
    assert data["kills"] == 2
    # every round's final run equals the uninterrupted one: four jobs each
    assert all(r["n"] == r["ok"] == 4 for r in data["rows"].values())
