"""The Python API (``import quantlab``): docs/python-api.md's examples run here on the real
simulator, and the terminal tables that read the same store fit 80 columns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from quantlab.harness.cli.main import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
runner = CliRunner()


def doc_blocks() -> list[str]:
    """The ```python blocks of docs/python-api.md, in order."""
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def doc_namespace(cnn_tflite: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> dict[str, Any]:
    """Run every example of the doc in one namespace (``model``, ``results`` given)."""
    results = tmp_path_factory.mktemp("api_results")
    namespace: dict[str, Any] = {"model": str(cnn_tflite), "results": str(results)}
    blocks = doc_blocks()
    assert len(blocks) >= 6, "the doc's examples were not found"
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            raise AssertionError(f"docs/python-api.md block {i + 1} failed: {exc!r}\n"
                                 f"{block}") from exc
    return namespace


def test_doc_examples_run(doc_namespace: dict[str, Any]) -> None:
    assert doc_namespace["run"].status == "done"
    assert doc_namespace["comparison"].matches


def test_import_is_cheap() -> None:
    code = ("import sys, quantlab; heavy = {'harness', 'sqlalchemy', 'typer', 'rich', "
            "'numpy', 'tensorflow'}; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_records_are_read_only_and_json_is_the_cli_json(doc_namespace: dict[str, Any]) -> None:
    import json

    import quantlab

    run = doc_namespace["new"]
    with pytest.raises(AttributeError):
        run.status = "x"
    with pytest.raises(TypeError):
        run["status"] = "x"  # type: ignore[index]
    assert isinstance(run.results, tuple) and isinstance(run.results[0], quantlab.Record)
    shown = runner.invoke(app, ["show", run.run_id, "--results", doc_namespace["results"],
                                "--json"])
    assert shown.exit_code == 0, shown.output
    cli = json.loads(shown.stdout)
    api = run.as_dict()
    api.pop("devices")  # bench adds the per-device accounts; show has none
    assert cli == json.loads(json.dumps(api, default=str))


def test_same_errors_as_the_cli(tmp_path: Path) -> None:
    import quantlab
    from quantlab.harness.errors import StoreError, UserError

    assert quantlab.UserError is UserError
    with pytest.raises(StoreError, match="no results store"):
        quantlab.open_results(tmp_path / "empty")
    with pytest.raises(UserError) as caught:
        quantlab.bench([str(tmp_path / "missing.tflite")], results=tmp_path)
    res = runner.invoke(app, ["bench", str(tmp_path / "missing.tflite"), "-d", "sim",
                              "--results", str(tmp_path)])
    assert res.exit_code == 2 and caught.value.one_line() in " ".join(res.stderr.split())
    with pytest.raises(UserError, match="threshold"):
        quantlab.compare("latest", "latest", threshold="fast", results=tmp_path)


# ---------------------------------------------------------------------------- 80 columns


def _fits(text: str, width: int = 80) -> None:
    """Every table line fits ``width`` (prose lines, "label: message", are left to the
    terminal to wrap)."""
    lines = text.splitlines()
    assert lines, "nothing printed"
    too_long = [ln for ln in lines if len(ln) > width and ": " not in ln]
    assert not too_long, "\n".join(too_long)


@pytest.mark.parametrize("command", [["runs"], ["show", "latest"], ["recommend", "latest"]])
def test_tables_fit_80_columns(doc_namespace: dict[str, Any], command: list[str]) -> None:
    res = runner.invoke(app, [*command, "--results", doc_namespace["results"]],
                        env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    _fits(res.stdout)


def test_compare_fits_80_columns_one_line_per_pair(doc_namespace: dict[str, Any]) -> None:
    base, new = doc_namespace["base"], doc_namespace["new"]
    res = runner.invoke(app, ["compare", base.run_id, new.run_id, "--threshold", "50%",
                              "--results", doc_namespace["results"]],
                        env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code in (0, 1), res.output
    _fits(res.stdout)
    rows = [ln for ln in res.stdout.splitlines() if "cnn_float" in ln]
    assert len(rows) == 1 and "×" in rows[0] and "±" in rows[0]


def _result(path: str, scheme: str | None, device: str, delegate: str) -> dict[str, Any]:
    return {"model": {"path": path, "scheme": scheme}, "device": {"id": device},
            "delegate": delegate, "threads": 4, "status": "ok", "warnings": ["noisy"],
            "latency_ms": {"statistic": "median", "value": 12.345, "ci95": [12.1, 12.6],
                           "p90": 13.2, "method": "per-launch"},
            "init_ms": 153.2, "peak_memory_mb": 512.0}


def test_long_names_keep_one_line_per_result() -> None:
    from quantlab.harness.cli.tables import results_table

    long_name = "/models/mobilenet_v3_large_1.0_224_quantization_aware_trained.tflite"
    results = [_result(long_name, "mixed-int8", "pixel-8-pro-emulator-5554", "gpu"),
               _result("/m/a.tflite", None, "iphone-15-pro-max-00008130", "coreml-ane"),
               _result("/m/int8.tflite", "int8", "sim", "xnnpack")]
    console = Console(width=80, record=True, force_terminal=False)
    console.print(results_table(results, title="Run 20261122-231500-3fa2", width=80))
    text = console.export_text()
    _fits(text)
    body = [ln for ln in text.splitlines() if "ok" in ln]
    assert len(body) == 3, text  # one line per result: no name folded over several
    assert "±0.25*" in text and "mobilenet" in text and "…" in text


def test_shorten_keeps_both_ends() -> None:
    from quantlab.harness.cli.tables import model_label, shorten

    assert shorten("abc", 5) == "abc"
    assert shorten("abcdefghij", 5) == "ab…ij" or len(shorten("abcdefghij", 5)) == 5
    assert model_label({"path": "/x/int8.tflite", "scheme": "int8"}) == "int8"
    assert model_label({"path": "/x/net.tflite", "scheme": "fp16"}) == "net·fp16"
