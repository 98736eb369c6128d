"""``quantlab serve``: the dashboard's JSON endpoints and pages through Starlette's
TestClient on one small store (tests/fixtures/serve/store.py), the lab token, secrets kept
out of every page, read-only, and the command's one-line refusals."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from fixtures.serve.server import serving
from fixtures.serve.store import PASSWORD, TOKEN, ServeStore, build

from quantlab.harness.serve.app import create_app
from quantlab.harness.store import Store

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "http://127.0.0.1"


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> ServeStore:
    return build(tmp_path_factory.mktemp("serve") / "results")


@pytest.fixture(scope="module")
def store(held: ServeStore) -> Iterator[Store]:
    opened = Store.open(str(held.folder), migrate=False)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(store: Store) -> TestClient:
    return TestClient(create_app(store), base_url=LOOPBACK)


def get(client: TestClient, path: str, **kw: Any) -> Any:
    answer = client.get(path, **kw)
    assert answer.status_code == 200, (path, answer.text)
    return answer.json() if answer.headers["content-type"].startswith("application/json") \
        else answer.text


# ----------------------------------------------------------------------------- JSON


def test_runs_page_through_the_store_with_filters(client: TestClient, held: ServeStore) -> None:
    first = get(client, "/api/runs?limit=3")
    assert first["total"] == 8 and first["next_offset"] == 3
    assert [r["run_id"] for r in first["runs"]] == [held.running, *held.nights[:4:-1]]
    last = get(client, "/api/runs?limit=3&offset=6")
    assert [r["run_id"] for r in last["runs"]] == held.nights[1::-1]
    assert last["next_offset"] is None
    picked = get(client, "/api/runs?device=pixel-8&model=fp16&status=done")
    assert [r["run_id"] for r in picked["runs"]] == [held.nights[5]]
    days = get(client, "/api/runs?since=2026-05-02&until=2026-05-03&tag=git")
    assert [r["run_id"] for r in days["runs"]] == [held.nights[2], held.nights[1]]


def test_one_run_is_show_json_with_raw_file_urls(client: TestClient, held: ServeStore) -> None:
    run = get(client, f"/api/runs/{held.nights[2][:10]}")  # a unique prefix, as show takes
    assert run["run_id"] == held.nights[2] and run["tags"] == ["git=abc3", "nightly"]
    assert {r["status"] for r in run["results"]} == {"ok"}
    for r in run["results"]:
        [raw] = r["raw_files"]
        text = get(client, raw["url"])
        assert text.startswith(f"night 3 {r['model']['path'].rsplit('/', 1)[1]}")
        figure = re.search(r"Inference \(avg\): ([\d.]+)", text)
        assert figure and float(figure[1]) / 1000 == pytest.approx(
            r["latency_ms"]["median"], rel=1e-4)  # the figure the page shows, traced
    assert get(client, run["links"]["page"]).count('data-section="') == 15  # 13 + run + raw


def test_compare_gives_compares_verdicts(client: TestClient, held: ServeStore) -> None:
    c = get(client, f"/api/compare?a={held.nights[2]}&b={held.nights[3]}")
    verdicts = {(m["model"], m["device"]): m["verdict"] for m in c["matches"]}
    assert verdicts.pop(("int8 (model-int8.tflite)", "pixel-8")) == "slower"
    assert set(verdicts.values()) == {"no significant difference"}
    assert c["fails"] is True and c["threshold"] == 0.05
    loose = get(client, f"/api/compare?a={held.nights[2]}&b={held.nights[3]}&threshold=50%")
    assert not loose["fails"]  # a 40 % slowdown is within a 50 % threshold
    page = get(client, f"/compare?run={held.nights[3]}&run={held.nights[2]}")  # either order
    assert f"{held.nights[3]} against baseline {held.nights[2]}" in page
    assert re.search(r"int8 \(model-int8.tflite\)</td><td>pixel-8</td>.*?slower", page)


def test_history_has_the_change_point_and_its_confirmation(client: TestClient) -> None:
    found = get(client, "/api/history?model=int8&device=pixel-8&tag=nightly")
    [series] = found["series"]
    [change] = series["change_points"]
    assert change["run_id"].startswith("20260504") and change["verdict"] == "slower"
    assert change["status"] == "confirmed" and change["checked_by"].startswith("20260505")
    flat = get(client, "/api/history?model=fp32&device=sim")
    assert flat["series"][0]["change_points"] == []
    listed = get(client, "/api/series?model=int8")
    assert [(s["model"], s["device"]) for s in listed["series"]] == [
        ("int8 (model-int8.tflite)", "pixel-8"), ("int8 (model-int8.tflite)", "sim")]
    page = get(client, "/trends/series?model=int8+(model-int8.tflite)&device=pixel-8"
                       "&delegate=xnnpack&threads=1")
    assert "<svg" in page and "confirmed" in page and page.count("verdicts.xml") == 8


def test_a_nights_verdicts_are_against_the_night_before(client: TestClient,
                                                        held: ServeStore) -> None:
    fourth = get(client, f"/api/runs/{held.nights[3]}/verdicts")
    assert fourth["baseline"] == "nightly" and fourth["why"].endswith(held.nights[2])
    assert fourth["comparison"]["fails"] is True
    fifth = get(client, f"/api/runs/{held.nights[4]}/verdicts")
    assert fifth["comparison"]["baseline"] == held.nights[3] and not fifth["comparison"]["fails"]
    first = get(client, f"/api/runs/{held.nights[0]}/verdicts")  # no earlier night
    assert first["comparison"] is None and first["why"].startswith("no finished run tagged")
    other = get(client, f"/api/runs/{held.nights[5]}/verdicts?baseline={held.nights[0]}")
    assert other["comparison"]["baseline"] == held.nights[0]  # a run id, given
    junit = get(client, f"/runs/{held.nights[3]}/verdicts.xml")
    assert junit.startswith("<?xml") and 'failures="1"' in junit
    markdown = get(client, f"/runs/{held.nights[3]}/verdicts.md")
    assert "slower" in markdown and held.nights[2] in markdown


def test_lab_shows_snapshots_and_the_running_job(client: TestClient, held: ServeStore) -> None:
    lab = get(client, "/api/lab")
    phone = next(d for d in lab["devices"] if d["device_id"] == "pixel-8")
    assert phone["battery_pct"] == 81 and phone["thermal"] == "light"
    assert phone["health_source"] == "snapshot" and phone["state"] == "last seen"
    assert phone["doing"]["run_id"] == held.running and phone["doing"]["source"] == "store"
    assert lab["hosts"] is None and lab["cluster"] is False


def test_lab_merges_the_live_lab(store: Store) -> None:
    def live() -> dict[str, Any]:  # lab status --json's shape, as the lab answers it
        return {"nodes": [{"node_id": "ab12", "ip": "10.0.0.7", "host": "rack-1",
                           "alive": True, "devices": ["pixel-8", "pixel-9"]}],
                "devices": [{"device_id": "pixel-8", "host": "rack-1", "kind": "android",
                             "health": "busy", "jobs_done": 12,
                             "current": {"label": "int8 · pixel-8", "phase": "measuring",
                                         "since": 0.0},
                             "live_health": {"battery_pct": 64, "thermal_status_name":
                                             "moderate"}},
                            {"device_id": "pixel-9", "host": "rack-1", "kind": "android",
                             "health": "unreachable"}]}

    lab = get(TestClient(create_app(store, live=live), base_url=LOOPBACK), "/api/lab")
    rows = {d["device_id"]: d for d in lab["devices"]}
    assert rows["pixel-8"]["battery_pct"] == 64 and rows["pixel-8"]["thermal"] == "moderate"
    assert rows["pixel-8"]["state"] == "busy" and rows["pixel-8"]["doing"]["source"] == "lab"
    assert rows["pixel-9"]["state"] == "unreachable" and rows["pixel-9"]["runs"] == 0
    assert rows["sim"]["state"] == "not in the lab"
    assert lab["hosts"][0]["host"] == "rack-1"

    def gone() -> dict[str, Any]:
        raise ConnectionError("lab head 10.0.0.1:6379 is gone")

    down = TestClient(create_app(store, live=gone), base_url=LOOPBACK)
    assert "lab head 10.0.0.1:6379 is gone" in get(down, "/api/lab")["cluster_error"]
    assert "the lab did not answer" in get(down, "/lab/live")


def test_errors_are_one_line_with_the_right_status(client: TestClient) -> None:
    for path, status, words in (("/api/runs/nope", 404, "run nope: not found"),
                                ("/runs/nope", 404, "run nope: not found"),
                                ("/api/runs?limit=0", 400, "limit 0: out of range"),
                                ("/api/runs?since=yesterday", 400, "since 'yesterday'"),
                                ("/api/compare?a=2026&b=2026", 400, "ambiguous"),
                                ("/api/compare?a=20260501&b=20260502&threshold=x", 400,
                                 "--threshold 'x': not a number"),
                                ("/api/history?last=zero", 400, "bad request (last:")):
        answer = client.get(path)
        assert answer.status_code == status, (path, answer.text)
        assert words in answer.text, (path, answer.text)


# ----------------------------------------------------------------------------- guards


def every_page(held: ServeStore) -> list[str]:
    """A URL of every route (pages, JSON, verdicts, a raw file)."""
    n3, n4, n6 = held.nights[2], held.nights[3], held.nights[5]
    return ["/", "/lab/live", "/runs", "/runs?status=done&tag=nightly", f"/runs/{n6}",
            f"/runs/{n6}?baseline={n4}", f"/compare?a={n3}&b={n4}", f"/compare?a={n4}&b={n6}",
            f"/compare/verdicts.xml?a={n3}&b={n4}", f"/compare/verdicts.md?a={n3}&b={n4}",
            f"/runs/{n4}/verdicts.xml", f"/runs/{n6}/verdicts.md", "/trends",
            "/trends/series?model=fp16+(model-fp16.tflite)&device=pixel-8&delegate=xnnpack"
            "&threads=1", "/api", "/api/openapi.json", "/api/status", "/api/lab", "/api/runs",
            f"/api/runs/{n6}", f"/api/runs/{n6}/verdicts", f"/api/compare?a={n4}&b={n6}",
            "/api/series", "/api/history", "/api/runs/nope", "/runs/nope"]


def test_no_secret_reaches_a_page(store: Store, held: ServeStore) -> None:
    # the store holds both secrets where it keeps text as given: the mask is the server's
    kept = str(store.table_rows("results", held.nights[5])) + \
        str(store.table_rows("jobs", held.nights[5]))
    assert PASSWORD in kept and TOKEN in kept
    tokened = TestClient(create_app(store, token=TOKEN, loopback_only=False),
                         base_url="http://lab.example:8765",
                         headers={"Authorization": f"Bearer {TOKEN}"})
    pages = every_page(held)
    run = get(tokened, f"/api/runs/{held.nights[5]}")
    pages += [f["url"] for r in run["results"] for f in r["raw_files"]]
    for path in pages:
        answer = tokened.get(path)
        assert answer.status_code in (200, 404), (path, answer.text)
        assert PASSWORD not in answer.text and TOKEN not in answer.text, path
        assert TOKEN not in str(answer.headers), path
    assert "postgresql://lab:***@db.lab/q" in get(tokened, f"/api/runs/{held.nights[5]}")[
        "command"]


def test_the_token_guards_every_page_and_endpoint(store: Store, held: ServeStore) -> None:
    app = create_app(store, token=TOKEN, loopback_only=False)
    anyone = TestClient(app, base_url="http://lab.example:8765", follow_redirects=False)
    for path in every_page(held):
        answer = anyone.get(path)
        if path.startswith("/api"):
            assert answer.status_code == 401, path
            assert answer.json()["error"].startswith("this dashboard needs the lab token")
        else:
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=")
    wrong = anyone.get("/api/runs", headers={"Authorization": "Bearer tok-guess"})
    assert wrong.status_code == 401
    assert anyone.post("/login", data={"token": "tok-guess"}).status_code == 401
    login = anyone.post("/login", data={"token": TOKEN, "next": "/runs?tag=nightly"})
    assert login.status_code == 303 and login.headers["location"] == "/runs?tag=nightly"
    cookie = login.cookies["quantlab_session"]
    assert TOKEN not in cookie and "HttpOnly" in login.headers["set-cookie"]
    assert anyone.get("/runs", cookies={"quantlab_session": cookie}).status_code == 200
    away = anyone.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert away.headers["location"] == "/"  # never sent to another site


def test_loopback_answers_only_loopback_host_names(store: Store) -> None:
    app = create_app(store)
    for host in ("127.0.0.1:8765", "localhost", "[::1]:8765"):
        assert TestClient(app, base_url=f"http://{host}").get("/api/status").status_code == 200
    rebound = TestClient(app, base_url="http://attacker.example:8765").get("/api/status")
    assert rebound.status_code == 400 and "loopback only" in rebound.text


def test_nothing_writes_to_the_store(client: TestClient, held: ServeStore) -> None:
    db = held.folder / "quantlab.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for path in every_page(held):
        client.get(path)
    for route in client.app.routes:  # type: ignore[attr-defined]
        methods = getattr(route, "methods", None) or {"GET"}
        assert methods <= {"GET", "HEAD"} or route.path == "/login", route.path
    assert client.post("/api/runs").status_code == 405
    assert client.delete(f"/api/runs/{held.nights[0]}").status_code == 405
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


# ----------------------------------------------------------------------------- the command


def quantlab(*args: str, env: dict[str, str] | None = None,
             code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code, *args] if code else \
        [sys.executable, "-m", "quantlab", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_beyond_loopback_without_the_token_is_refused(held: ServeStore, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QUANTLAB_LAB_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "quantlab", "serve", "--host", "0.0.0.0",
                           "--results", str(held.folder)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**env, "HOME": str(tmp_path)})
    line = one_line(proc)
    assert "--host 0.0.0.0: listening beyond this machine needs the lab token" in line
    assert f"{tmp_path}/.quantlab/lab-token: no such file" in line and "--token-file" in line
    shared = tmp_path / "token"
    shared.write_text(TOKEN)
    shared.chmod(0o644)
    line = one_line(quantlab("serve", "--host", "0.0.0.0", "--token-file", str(shared),
                             "--results", str(held.folder)))
    assert "readable by other users" in line and TOKEN not in line


def test_the_command_names_the_extra_when_the_framework_is_missing() -> None:
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "from quantlab.harness.cli.main import main\n"
            "sys.argv = ['quantlab', 'serve']\nmain()")
    line = one_line(quantlab(code=code))
    assert "quantlab serve needs the web framework (fastapi" in line
    assert "pip install 'quantlab[serve]'" in line


def test_the_command_refuses_a_folder_without_a_store_and_a_busy_port(
        held: ServeStore, tmp_path: Path) -> None:
    line = one_line(quantlab("serve", "--results", str(tmp_path / "empty")))
    assert f"--results {tmp_path / 'empty'}: no results store there" in line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = one_line(quantlab("serve", "--port", str(port), "--results", str(held.folder)))
    assert f"--port {port} on 127.0.0.1:" in line and "pick another --port" in line


def test_served_beyond_loopback_with_the_token(held: ServeStore, tmp_path: Path) -> None:
    token_file = tmp_path / "lab-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with serving("--host", "0.0.0.0", "--token-file", str(token_file), "--results",
                 str(held.folder)) as info:
        assert info["auth"] == "token" and info["store"] == str(held.folder)
        base = f"http://127.0.0.1:{info['port']}"
        assert httpx.get(f"{base}/api/status").status_code == 401
        status = httpx.get(f"{base}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status.status_code == 200 and status.json()["runs"] == 8
