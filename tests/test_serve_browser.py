"""``quantlab serve`` in real headless Chromium against a real uvicorn server on a free
loopback port: the walk lab → runs → a run → two runs compared → a trend, clicked as a
person does (screenshots under the test's tmp dir, their paths printed and recorded in
the JUnit properties); the lab page refreshing itself; the login form beyond loopback."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import require_tool
from fixtures.serve.journey import ARGS, CHROMIUM, walk
from fixtures.serve.server import serving
from fixtures.serve.store import TOKEN, ServeStore, build, job

from quantlab.harness.records import Plan, Run
from quantlab.harness.store import Store, utcnow


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> ServeStore:
    require_tool("chromium", f"{CHROMIUM} is not installed", found=Path(CHROMIUM).exists())
    return build(tmp_path_factory.mktemp("served") / "results")


@pytest.fixture(scope="module")
def base(held: ServeStore) -> Iterator[str]:
    with serving("--results", str(held.folder)) as info:
        yield str(info["url"])


def attach(record_property: Callable[[str, object], None], shots: dict[str, Path]) -> None:
    """Print the screenshots' paths (pytest shows them with -s or on failure) and record
    them in the JUnit XML's properties."""
    for name, path in shots.items():
        assert path.stat().st_size > 10_000, path  # a page was drawn, not a blank
        print(f"screenshot {name}: {path}")
        record_property(f"screenshot-{name}", str(path))


def test_walk_lab_runs_a_run_compare_and_a_trend(base: str, held: ServeStore, tmp_path: Path,
                                                 record_property: Callable[[str, object],
                                                                           None]) -> None:
    seen = walk(base, tmp_path / "screenshots", pick=[held.nights[2], held.nights[3]],
                series=("int8 (model-int8.tflite)", "pixel-8"))
    attach(record_property, seen.screenshots)
    assert list(seen.screenshots) == ["lab", "runs", "run", "compare", "trend"]
    assert seen.console_errors == []
    assert seen.run_id == held.nights[2]
    assert seen.raw_text.startswith("night 3 model-")  # the raw output behind a figure
    assert seen.gate == "fails the gate"
    assert seen.stability_text.count("\tstable\t") == 4  # each job's score, in the page
    int8_phone = next(line for line in seen.compare_text.splitlines()
                      if line.startswith("int8 (model-int8.tflite)\tpixel-8"))
    assert "\tslower\t" in int8_phone
    assert sum("no significant difference" in line
               for line in seen.compare_text.splitlines()) == 3
    assert "slower\tconfirmed\t" + held.nights[2] in seen.trend_text


def test_the_lab_page_refreshes_without_reloading(held: ServeStore, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    folder = tmp_path / "results"
    shutil.copytree(held.folder, folder)
    with serving("--results", str(folder), "--refresh", "1") as info, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(str(info["url"]))
        sim = page.locator("#lab-devices tbody tr").filter(has_text="host")
        expect(sim.locator("td").nth(5)).to_have_text("–")  # doing nothing
        page.evaluate("window.loadedOnce = true")
        # a bench elsewhere starts measuring on the simulator, writing to the same store
        store = Store.open(str(folder))
        started = job("int8-io", "sim", "sim")
        run = Run(run_id="20260509-020000-0009", created_at=utcnow(), host="lab-controller",
                  settings=started.settings)
        store.create_run(run, Plan(jobs=(started,)))
        store.mark_running(run.run_id, started.job_id)
        store.close()
        expect(sim.locator("td").nth(5)).to_contain_text("model-int8-io.tflite",
                                                          timeout=30_000)
        expect(sim.locator("td").nth(5)).to_contain_text(run.run_id)
        assert page.evaluate("window.loadedOnce") is True  # the same page, not a reload
        assert int(page.locator("#lab-live").get_attribute("data-refreshes") or 0) >= 1
        browser.close()


def test_beyond_loopback_the_browser_logs_in_with_the_token(held: ServeStore,
                                                            tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    token_file = tmp_path / "lab-token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    with serving("--host", "0.0.0.0", "--token-file", str(token_file), "--results",
                 str(held.folder)) as info, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{info['port']}/runs?tag=nightly")
        expect(page.locator('input[name="token"]')).to_be_visible()  # sent to the login form
        page.fill('input[name="token"]', "tok-guess")
        page.click("form button")
        expect(page.locator("p.bad")).to_have_text("That is not the lab token.")
        page.fill('input[name="token"]', TOKEN)
        page.click("form button")
        expect(page.locator("#runs-table")).to_be_visible()
        assert page.url.endswith("/runs?tag=nightly")
        assert TOKEN not in page.content()
        browser.close()
