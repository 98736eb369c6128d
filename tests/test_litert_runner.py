"""The LiteRT runner package (quantlab.agents.litert.runner) is self-contained: it imports
only itself, the standard library, numpy and ai_edge_litert, so it runs where quantlab is not
installed (a Linux gateway receives its folder as the package ``litert_runner``), and what
gateways receive is that whole folder, hashed as one (tests/test_ssh_gateway.py runs it over a
real sshd)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from quantlab.agents.executorch import host as et_host
from quantlab.agents.linux import remote as ssh_remote
from quantlab.agents.linux.session import HELPER, worker_bundle
from quantlab.agents.litert import runner
from quantlab.agents.litert.results import numerics_from
from quantlab.agents.litert.runner.runtime import dequantize as runner_dequantize
from quantlab.harness.numerics import dequantize

PACKAGE = Path(runner.__file__).resolve().parent
ALLOWED = {"numpy", "ai_edge_litert"}


def _imports(path: Path) -> list[tuple[int, int, str]]:
    """(line, level, module) of every import in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, 0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.level, node.module or ""))
    return found


def test_the_runner_imports_nothing_of_quantlab() -> None:
    outside = [f"{f.name}:{line}: {module}" for f in sorted(PACKAGE.glob("*.py"))
               for line, level, module in _imports(f)
               if not level and module.split(".")[0] not in sys.stdlib_module_names | ALLOWED]
    assert outside == []
    assert sorted(f.name for f in PACKAGE.iterdir() if f.suffix == ".py") == [
        "__init__.py", "__main__.py", "batching.py", "inputs.py", "measure.py", "numerics.py",
        "op_coverage.py", "op_types.py", "outputs.py", "profiler.py", "rapl.py", "runtime.py",
        "sustained.py", "worker.py"]


def test_gateways_receive_the_whole_package_and_the_helper() -> None:
    """The LiteRT runner package, ExecuTorch's runner modules (a .pte job's workers) and the
    helper; ExecuTorch's import nothing of quantlab either (the gateway has none)."""
    sha, files = worker_bundle()
    et = Path(et_host.__file__).resolve().parent
    want = ({f"{ssh_remote.RUNNER_PACKAGE}/{f.name}" for f in PACKAGE.glob("*.py")} | {HELPER}
            | {f"{ssh_remote.ET_RUNNER_PACKAGE}/{f.name}" for f in et.glob("*.py")})
    assert sorted(f.name for f in et.glob("*.py")) == [
        "__init__.py", "etdump.py", "host.py", "numerics.py", "runner.py"]
    outside = [f"{f.name}:{line}: {module}" for f in sorted(et.glob("*.py"))
               for line, level, module in _imports(f) if not level
               and module.split(".")[0] not in sys.stdlib_module_names | {"numpy", "torch",
                                                                          "executorch"}]
    assert outside == []
    assert set(files) == want
    numerics = (PACKAGE / "numerics.py").read_bytes()
    assert files[f"{ssh_remote.RUNNER_PACKAGE}/numerics.py"] == numerics
    assert len(sha) == 16 and worker_bundle()[0] == sha


def test_dequantize_is_the_hosts(tmp_path: Path) -> None:
    for array, scale, zero in ((np.array([-128, 0, 127], np.int8), 0.05, -3),
                               (np.array([0, 200, 255], np.uint8), 0.5, 128),
                               (np.array([0.5, -1.25], np.float32), 0.0, 0),
                               (np.array([3, 4], np.int32), 0.0, 0)):
        assert np.array_equal(runner_dequantize(array, scale, zero),
                              dequantize(array, scale, zero))


@pytest.fixture()
def standalone(tmp_path: Path) -> Path:
    """The runner's folder copied as the package ``litert_runner``, as a gateway has it."""
    shutil.copytree(PACKAGE, tmp_path / ssh_remote.RUNNER_PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _run_standalone(code_dir: Path, job: dict[str, object]) -> dict[str, object]:
    """``python -S -m litert_runner``: no site processing, so no editable install of quantlab
    answers an import; numpy and ai_edge_litert come from site-packages as a plain path."""
    (code_dir / "job.json").write_text(json.dumps(job))
    env = {"PYTHONPATH": f"{code_dir}:{sysconfig.get_paths()['purelib']}",
           "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-S", "-m", ssh_remote.RUNNER_PACKAGE,
                           str(code_dir / "job.json"), str(code_dir / "result.json")],
                          cwd=code_dir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads((code_dir / "result.json").read_text())
    return out


def test_the_runner_measures_and_checks_numerics_without_quantlab(
        standalone: Path, cnn_tflite: Path) -> None:
    settings = {"warmup": 1, "iterations": 3, "min_time_s": 0.0, "inputs": None, "energy": False}
    job = {"model": str(cnn_tflite), "delegate": "xnnpack", "threads": 1, "settings": settings,
           "reference_model": None, "outputs_path": str(standalone / "outputs.npz"),
           "inputs_dir": str(standalone / "inputs")}
    measured = _run_standalone(standalone, {**job, "mode": "measure", "seed": 0})
    assert measured["error"] is None and len(measured["samples_ms"]) == 3  # type: ignore[arg-type]
    checked = _run_standalone(standalone, {**job, "mode": "numerics", "seed": 0})
    assert checked["error"] is None, checked["error"]
    record = numerics_from(checked, standalone / "outputs.npz")  # compared on the host
    assert record["cosine"] == pytest.approx(1.0, abs=1e-3)
    assert record["computed_by"] == "host (simulator worker)"
    assert record["reference"]["same_file"] is True
