"""The suite's own rules (tests/conftest.py): missing system tools fail under CI=true instead
of skipping, and tests that need a real phone are marked ``device`` and run only when asked;
and the tree's: no product module over 500 lines, and none without a docstring."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_tool

CONFTEST = Path(__file__).with_name("conftest.py")


@pytest.fixture
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH holds no tools at all (an empty folder)."""
    monkeypatch.setenv("PATH", str(tmp_path))


def test_missing_tool_skips_outside_ci(no_tools: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^adb not found: install adb$"):
        require_tool("adb", "install adb")


def test_missing_ci_tool_fails_in_ci(no_tools: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"chromium not found.*installs chromium"):
        require_tool("chromium", found=False)
    # a tool .ci/run does not install still only skips
    with pytest.raises(pytest.skip.Exception, match=r"^frobnicate not found$"):
        require_tool("frobnicate")


def test_found_tool_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require_tool("adb", found=True)  # the caller's own lookup wins: nothing raised


def _suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_host="def test_on_the_host():\n    pass\n")
    (pytester.path / "device").mkdir()
    (pytester.path / "device" / "test_phone.py").write_text(
        "def test_on_a_real_phone():\n    pass\n")


def test_phone_tests_are_marked_and_skipped_by_default(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*needs a real phone: run pytest with --device-tests*"])


def test_phone_tests_run_with_device_tests(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    pytester.runpytest("--device-tests", "-p", "no:cacheprovider").assert_outcomes(passed=2)
    only = pytester.runpytest("--device-tests", "-m", "device", "-p", "no:cacheprovider")
    only.assert_outcomes(passed=1, deselected=1)  # the marker was added by location


def test_ci_reports_a_missing_tool_as_a_failure(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_adb="from conftest import require_tool\n\n"
                        "def test_needs_adb():\n    require_tool('adb', found=False)\n")
    monkeypatch.setenv("CI", "true")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)
    monkeypatch.setenv("CI", "false")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=1)


MAX_MODULE_LINES = 500


PRODUCT = ("harness", "agents", "android_runner", "ios_runner")


def _product_modules() -> list[Path]:
    root = CONFTEST.parent.parent
    return [f for folder in PRODUCT for f in sorted((root / folder).rglob("*.py"))] + \
        sorted((root / "quantlab").glob("*.py"))


def test_no_module_over_500_lines() -> None:
    """Rooms that fit in a head (issue 14): a module past 500 lines is split, not grown."""
    root = CONFTEST.parent.parent
    big = {str(f.relative_to(root)): n for f in _product_modules()
           if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"over {MAX_MODULE_LINES} lines: {big}"


def test_every_module_says_what_it_is() -> None:
    """A module moved or split keeps a docstring (issue 24): the tree reads file by file."""
    import ast

    root = CONFTEST.parent.parent
    bare = [str(f.relative_to(root)) for f in _product_modules()
            if f.read_text().strip() and not ast.get_docstring(ast.parse(f.read_text()))]
    assert not bare, f"modules without a docstring: {bare}"
