"""Shared pytest fixtures (small .tflite models and .pte programs, tests/pte_fixtures.py, built
once per test session) and the suite's rules for system tools and real phones.

* :func:`require_tool`: a test that needs a system tool skips when it is missing, except
  under ``CI=true`` for the tools ``.ci/run`` installs (:data:`CI_INSTALLS`): there the test
  fails, so a CI image that lost a tool cannot pass by skipping.
* Tests under ``tests/device/`` need a real phone: they get the ``device`` marker and are
  skipped unless pytest runs with ``--device-tests``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from modelgen import build_models
from pte_fixtures import (  # noqa: F401 (shared .pte fixtures)
    portable_pte,
    pte_dir,
    pte_with_source,
    small_pte,
)

pytest_plugins = ["pytester"]  # tests/test_ci_rules.py runs pytest on small test files

CI_INSTALLS = {
    "adb": "adb",
    "chromium": "chromium",
    "initdb": "postgresql",
    "sshd": "openssh-server",
}
"""System tool → the Debian package ``.ci/run`` installs for it."""

DEVICE_TESTS = Path(__file__).resolve().parent / "device"
"""Every test under this folder needs a real phone attached."""


def in_ci() -> bool:
    """Whether the suite runs in CI (``CI=true``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_tool(name: str, hint: str = "", found: bool | None = None) -> None:
    """Skip the calling test when system tool ``name`` is missing; fail it instead under CI
    when ``.ci/run`` installs that tool.

    ``found`` is the caller's own verdict (a fixed path, a folder of binaries); by default
    ``name`` is looked up on PATH and in /usr/sbin and /sbin (where sshd lives).
    """
    if found is None:
        found = bool(shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin"))
    if found:
        return
    reason = f"{name} not found" + (f": {hint}" if hint else "")
    if in_ci() and name in CI_INSTALLS:
        pytest.fail(f"{reason} (CI=true and .ci/run installs {CI_INSTALLS[name]}: this test must "
                    "run here, not skip)", pytrace=False)
    pytest.skip(reason)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--device-tests``: also run the tests that need a real phone."""
    parser.addoption("--device-tests", action="store_true", default=False,
                     help="run the tests that need a real phone attached (tests/device/, "
                     "marker 'device'); skipped by default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests under tests/device/ ``device``; skip ``device`` tests unless asked for."""
    run_device_tests = config.getoption("--device-tests")
    skip = pytest.mark.skip(reason="needs a real phone: run pytest with --device-tests")
    for item in items:
        if DEVICE_TESTS in item.path.parents:
            item.add_marker(pytest.mark.device)
        if not run_device_tests and item.get_closest_marker("device"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name → path of the test models (cnn, int8, custom_op, truncated, not_flatbuffer)."""
    return build_models(tmp_path_factory.mktemp("tflite_models"))


@pytest.fixture(scope="session")
def cnn_tflite(tflite_models: dict[str, Path]) -> Path:
    """A small float CNN .tflite."""
    return tflite_models["cnn"]
