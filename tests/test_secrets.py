"""No password or token in what quantlab stores or prints, checked against a real PostgreSQL.

``quantlab bench`` on the simulator with ``--results postgresql://postgres:PASSWORD@…``
(the test server trusts loopback, so the password is accepted and ignored), then the
password is looked for in bench's JSON, every command's stderr, ``show``/``runs``/``db
status`` JSON, the HTML report, the served dashboard's pages, JSON and raw files, and a
``pg_dump`` of the whole database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.serve.server import serving
from pgserver import PgServer, find_bin_dir, running_server

from quantlab.harness.redact import redact_data, redact_text

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "SECRETPW-k9x2"
TOKEN = "tok-5f1e0c9a7b3d"


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for this module."""
    with running_server() as server:
        yield server


def quantlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quantlab", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def test_password_is_nowhere_after_a_bench_on_postgresql(pg_server: PgServer,
                                                         tflite_models: dict[str, Path],
                                                         tmp_path: Path) -> None:
    plain = pg_server.new_database()  # postgresql://postgres@127.0.0.1:PORT/NAME
    url = plain.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    env = {"RAY_AUTH_TOKEN": TOKEN}
    outputs: dict[str, str] = {}

    bench = quantlab("bench", str(tflite_models["cnn"]), "--device", "sim", "--repeats", "1",
                     "--warmup", "1", "--iterations", "5", "--results", url, "--json", env=env)
    assert bench.returncode == 0, bench.stderr
    outputs["bench stdout"], outputs["bench stderr"] = bench.stdout, bench.stderr
    data = json.loads(bench.stdout)
    assert f"--results postgresql://postgres:***@127.0.0.1:{pg_server.port}/" in data["command"]
    run_id = data["run_id"]

    for name, args in {
        "show": ("show", run_id, "--json"),
        "runs": ("runs", "--json"),
        "db status": ("db", "status", "--json"),
        "db migrate": ("db", "migrate", "--json"),
        "report": ("report", run_id, "--html", str(tmp_path / "report.html"), "--json"),
        "show (human)": ("show", run_id),
        "missing run": ("show", "nosuchrun", "--verbose"),
    }.items():
        proc = quantlab(*args, "--results", url, env=env)
        assert proc.returncode == (2 if name == "missing run" else 0), proc.stderr
        outputs[f"{name} stdout"], outputs[f"{name} stderr"] = proc.stdout, proc.stderr
    assert "nosuchrun: not found in postgresql://postgres:***@" in outputs["missing run stderr"]
    outputs["html report"] = (tmp_path / "report.html").read_text()

    bad = quantlab("bench", str(tflite_models["cnn"]), "--device", "sim", "--verbose",
                   "--results", url.replace(f":{pg_server.port}/", ":notaport/"), env=env)
    assert bad.returncode == 2
    outputs["bad URL stderr"] = bad.stdout + bad.stderr

    with serving("--results", url, env=env) as info:  # the dashboard on the same store
        outputs["serve --json"] = json.dumps(info)
        run = httpx.get(f"{info['url']}api/runs/{run_id}", timeout=60).json()
        raw = [f["url"] for r in run["results"] for f in r["raw_files"]]
        assert raw  # raw output kept in PostgreSQL's raw_blobs, served from there
        for page in ("", "runs", f"runs/{run_id}", f"runs/{run_id}/verdicts.md", "trends",
                     "api/status", "api/runs", f"api/runs/{run_id}", *raw):
            answer = httpx.get(f"{info['url']}{page.lstrip('/')}", timeout=120)
            assert answer.status_code == 200, (page, answer.text)
            outputs[f"serve /{page}"] = answer.text
    assert "postgresql://postgres:***@" in outputs["serve /api/status"]

    bin_dir = find_bin_dir()
    assert bin_dir is not None
    dump = subprocess.run([str(bin_dir / "pg_dump"), "--no-owner", plain],
                          capture_output=True, text=True, timeout=120, check=True).stdout
    assert run_id in dump and "postgres:***@" in dump  # the command line is stored, masked
    outputs["pg_dump"] = dump

    leaks = [name for name, text in outputs.items() if PASSWORD in text or TOKEN in text]
    assert leaks == []


@pytest.mark.parametrize(("text", "expected"), [
    ("quantlab bench m.tflite --results postgresql://lab:pw@db.lab/q --json",
     "quantlab bench m.tflite --results postgresql://lab:***@db.lab/q --json"),
    ("--results=postgresql+psycopg://lab:p@ss/w@db:5432/q",
     "--results=postgresql+psycopg://lab:***@db:5432/q"),
    ("quantlab lab status --token abc123 --token-file /home/me/.quantlab/lab-token",
     "quantlab lab status --token *** --token-file /home/me/.quantlab/lab-token"),
    ("x --lab-token=abc --password 'two words' --api-key K",
     "x --lab-token=*** --password '***' --api-key ***"),
    ("postgresql://db/q?sslmode=require&password=pw", "postgresql://db/q?sslmode=require&password=***"),
    ("postgresql://lab@db/q and sqlite:///results/quantlab.db",
     "postgresql://lab@db/q and sqlite:///results/quantlab.db"),
    ("--author someone --auth-mode token", "--author someone --auth-mode token"),
])
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent


def test_tokens_from_the_environment_are_masked(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("QUANTLAB_LAB_TOKEN", "0123456789abcdef")  # a token, not a file path
    assert redact_data({"a": [f"ray said {TOKEN}", "0123456789abcdef"], "n": 3}) == \
        {"a": ["ray said ***", "***"], "n": 3}
    token_file = tmp_path / "lab-token"
    token_file.write_text("t")
    monkeypatch.setenv("QUANTLAB_LAB_TOKEN", str(token_file))  # the usual case: a path
    assert redact_text(f"token file {token_file}") == f"token file {token_file}"


def test_recorded_command_line_is_masked(tmp_path: Path) -> None:
    from quantlab.harness.environment import new_run
    from quantlab.harness.records import Plan, Settings
    from quantlab.harness.store import Store

    store = Store.open(str(tmp_path))
    run = new_run(Settings(), command="quantlab bench m --results postgresql://u:pw@h/q "
                                      "--token abc")
    store.create_run(run, Plan(jobs=(), skipped=()))
    assert store.load_run(run.run_id).run.command == \
        "quantlab bench m --results postgresql://u:***@h/q --token ***"
    assert store.list_runs()[0]["command"] == store.load_run(run.run_id).run.command
