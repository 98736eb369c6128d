"""Shared pytest fixtures: small .tflite models built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelgen import build_models


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name → path of the test models (cnn, int8, custom_op, truncated, not_flatbuffer)."""
    return build_models(tmp_path_factory.mktemp("tflite_models"))


@pytest.fixture(scope="session")
def cnn_tflite(tflite_models: dict[str, Path]) -> Path:
    """A small float CNN .tflite."""
    return tflite_models["cnn"]
