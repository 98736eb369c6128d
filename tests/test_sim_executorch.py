"""ExecuTorch on the simulator: a ``.pte`` measured by its own runner, a fresh process per
repeat, with a per-op profile from ETDump, beside ``.tflite`` jobs in one ``bench`` run;
without the ``torch`` extra a ``.pte`` is refused in one line naming it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import quantize_fixtures as qf

torch_net = qf.torch_net  # the tiny conv net: tinynet.py, net.pt2, calib.npz (session-wide)
QUANTLAB = [sys.executable, "-m", "quantlab"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def pte(small_pte: Path) -> Path:
    """The shared conv net lowered to XNNPACK (tests/pte_fixtures.py)."""
    return small_pte


def _quantlab(*args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", script, *args] if script else [*QUANTLAB, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_bench_measures_tflite_and_pte_in_one_run(pte: Path, tflite_models: dict[str, Path],
                                                 tmp_path: Path) -> None:
    proc = _quantlab("bench", str(tflite_models["cnn"]), str(pte), "--device", "sim",
                     "--repeats", "2", "--iterations", "20", "--profile-ops", "--json",
                     "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    results = {Path(r["model"]["path"]).suffix: r for r in json.loads(proc.stdout)["results"]}
    assert set(results) == {".tflite", ".pte"}  # each on its runtime's default delegate
    et = results[".pte"]
    assert et["status"] == "ok", et["error"]
    assert et["delegate"] == "et-xnnpack"
    assert et["runner"]["runtime"] == "executorch" and et["runner"]["version"] == "1.5.1"
    pids = et["runner"]["pids"]
    assert len(pids) == 2 and len(set(pids)) == 2  # a fresh process per repeat
    assert et["latency_ms"]["count"] == 40  # raw samples of both repeats
    assert results[".tflite"]["runner"]["name"] == "litert"
    assert results[".tflite"]["runner"]["runtime"] == "litert"  # every job names its runtime
    # the per-op profile from ETDump: XNNPACK's kernels inside the delegate, each delegate
    # call's own time named as such, the portable operators, within Method::execute
    kernels = {op["kernel"]: op for op in et["ops"]}
    assert any(k.startswith("Convolution") and op["delegate"] == "XNNPACK"
               for k, op in kernels.items())
    assert "DELEGATE_CALL #0 (outside its kernels)" in kernels
    assert 0.3 <= sum(op["avg_ms"] for op in et["ops"]) / et["ops_model_ms"] <= 1.05


def test_a_litert_delegate_is_refused_for_a_pte_with_the_reason(pte: Path,
                                                                tmp_path: Path) -> None:
    proc = _quantlab("plan", str(pte), "--device", "sim", "--delegate", "xnnpack,et-xnnpack",
                     "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [j["delegate"] for j in plan["jobs"]] == ["et-xnnpack"]
    assert "an ExecuTorch program runs on et-xnnpack" in json.dumps(plan["skipped"])


def test_plan_names_each_jobs_runtime_beside_its_delegate(pte: Path,
                                                         tflite_models: dict[str, Path]) -> None:
    args = ("plan", str(tflite_models["cnn"]), str(pte), "--device", "sim")
    proc = _quantlab(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    runtimes = {Path(j["model"]["path"]).suffix: (j["runtime"], j["delegate"])
                for j in json.loads(proc.stdout)["jobs"]}
    assert runtimes == {".tflite": ("litert", "xnnpack"), ".pte": ("executorch", "et-xnnpack")}
    table = subprocess.run([*QUANTLAB, *args], capture_output=True, text=True, cwd=ROOT,
                           timeout=600, env=dict(os.environ, COLUMNS="200"))
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()
            if "planned" in line}
    assert any(line.split()[2:4] == ["delegate", "runtime"]
               for line in table.stdout.splitlines() if line.split()[:1] == ["model"])
    assert [r[2:4] for r in rows.values()] == [["xnnpack/1t", "litert"],
                                               ["et-xnnpack/1t", "executorch"]]


def test_a_program_without_xnnpack_calls_runs_on_et_portable(pte: Path, portable_pte: Path,
                                                             tmp_path: Path) -> None:
    proc = _quantlab("plan", str(pte), str(portable_pte), "--device", "sim", "--json")
    assert proc.returncode == 0, proc.stderr
    jobs = {Path(j["model"]["path"]).name: j["delegate"] for j in json.loads(proc.stdout)["jobs"]}
    assert jobs == {"net.pte": "et-xnnpack", "portable.pte": "et-portable"}  # the defaults
    proc = _quantlab("plan", str(pte), str(portable_pte), "--device", "sim",
                     "--delegate", "et-xnnpack,et-portable", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [(Path(j["model"]["path"]).name, j["delegate"]) for j in plan["jobs"]] == [
        ("net.pte", "et-xnnpack"), ("portable.pte", "et-portable")]
    reasons = {(Path(s["model"]["path"]).name, s["delegate"]): s["reason"]
               for s in plan["skipped"]}
    assert "no XNNPACK delegate call" in reasons[("portable.pte", "et-xnnpack")]
    assert "delegates to XNNPACK" in reasons[("net.pte", "et-portable")]
    proc = _quantlab("bench", str(portable_pte), "--device", "sim", "--repeats", "1",
                     "--iterations", "5", "--json", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "ok", result["error"]
    assert result["delegate"] == "et-portable" and result["latency_ms"]["count"] == 5


WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None
sys.modules["executorch"] = None
from quantlab.harness.cli.main import main
sys.argv = ["quantlab", *sys.argv[1:]]
main()
"""


def test_without_the_extra_a_pte_is_refused_in_one_line(pte: Path, tmp_path: Path) -> None:
    proc = _quantlab("bench", str(pte), "--device", "sim", "--results", str(tmp_path),
                     script=WITHOUT_TORCH)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(pte) in lines[0] and "quantlab[torch]" in lines[0]


@pytest.fixture(scope="module")
def torch_variants(torch_net: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny conv net (.pt2) made into fp32 (litert-torch), et-fp32, et-int8 and
    et-portable."""
    pytest.importorskip("litert_torch")
    import quantlab

    out = tmp_path_factory.mktemp("torch-numerics") / "variants"
    quantlab.quantize(torch_net / "net.pt2", out, ["fp32", "et-fp32", "et-int8", "et-portable"],
                      calib=torch_net / "calib.npz")
    return out


def test_pte_numerics_against_the_pytorch_model_beside_litert(torch_variants: Path,
                                                              small_pte: Path,
                                                              tmp_path: Path) -> None:
    """bench --numerics on a PyTorch source's variants: the .pte rows are compared with the
    PyTorch model (the .pt2) and judged like the .tflite row; a program that is not that
    model's (another net's weights in et-fp32's place) fails the gate, exit 1."""
    from quantlab.agents.sim.agent import SimAgent
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import Job, Settings

    proc = _quantlab("bench", str(torch_variants), "--device", "sim", "--repeats", "1",
                     "--iterations", "3", "--numerics", "--json", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert not any("numerics check" in w for r in data["results"] for w in r["warnings"])
    gate = {v["model"]: v for v in data["numerics_gate"]["verdicts"]}
    assert gate["et-fp32"]["passed"] is True and gate["fp32"]["passed"] is True
    assert gate["et-int8"]["passed"] is not None and gate["et-int8"]["delegate"] == "et-xnnpack"
    rows = _quantlab("delegates", "--json", "--results", str(tmp_path))
    assert rows.returncode == 0, rows.stderr
    figures = {r["model"].split()[0]: r["numerics"] for r in json.loads(rows.stdout)["rows"]}
    assert figures["et-fp32"]["sqnr_db"] > 60  # the same float model, lowered
    assert figures["et-int8"]["cosine"] > 0.9 and figures["et-int8"]["sqnr_db"] < 100

    job = Job(model_ref(torch_variants / "et-int8.pte"), "sim", "sim", "et-xnnpack", 1,
              Settings(repeats=1, iterations=3, numerics=True))
    agent = SimAgent()
    raw = agent.run(agent.discover()[0], job, lambda phase, fraction: None)
    assert raw.numerics["reference"]["model"] == "net.pt2"
    assert "PyTorch" in raw.numerics["reference"]["kernels"]
    assert raw.numerics["nonfinite"] == 0 and raw.numerics["values"] == 4
    assert raw.numerics["inputs"].startswith("seeded random (seed 20251) in the calibration")

    wrong = tmp_path / "wrong"
    shutil.copytree(torch_variants, wrong)
    shutil.copy(small_pte, wrong / "et-fp32.pte")  # same shapes, another net's weights
    proc = _quantlab("bench", str(wrong / "et-fp32.pte"), "--device", "sim", "--repeats", "1",
                     "--iterations", "3", "--numerics", "--json", "--results", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    [verdict] = json.loads(proc.stdout)["numerics_gate"]["verdicts"]
    assert verdict["passed"] is False and "cosine" in verdict["why"]


def test_pte_numerics_without_a_float_reference_say_why(small_pte: Path) -> None:
    from quantlab.agents.sim.agent import SimAgent
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import Job, Settings

    job = Job(model_ref(small_pte), "sim", "sim", "et-xnnpack", 1,
              Settings(repeats=1, iterations=3, numerics=True))
    agent = SimAgent()
    raw = agent.run(agent.discover()[0], job, lambda phase, fraction: None)
    assert raw.status == "ok" and raw.numerics["unchecked"] is True
    assert raw.numerics["error"].startswith("net.pte has no manifest.json beside it")


def test_inputs_feed_a_pte_job_and_a_wrong_shape_fails_it_with_the_reason(
        small_pte: Path, tmp_path: Path) -> None:
    """--inputs is what a .pte job runs on the simulator, as for a .tflite: an array the
    program cannot take fails the job naming it (before, the runner timed random inputs)."""
    import numpy as np

    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, x=np.ones((4, 3, 8, 8), np.float32))
    np.savez(bad, x=np.ones((1, 3, 5, 5), np.float32))
    args = ("bench", str(small_pte), "--device", "sim", "--repeats", "1", "--iterations", "3",
            "--json", "--results", str(tmp_path / "results"), "--inputs")
    proc = _quantlab(*args, str(good))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["status"] == "ok"
    proc = _quantlab(*args, str(bad))
    [row] = json.loads(proc.stdout)["results"]
    assert row["status"] == "failed"
    assert row["error"] == ("--inputs bad.npz: array 'x' has shape (1, 3, 5, 5), the program "
                            "takes (1, 3, 8, 8)")


def test_the_simulators_outputs_capability_runs_a_pte(small_pte: Path, tmp_path: Path) -> None:
    """agents/outputs.py's contract for a .pte on the simulator: every sample of the .npz
    through ExecuTorch's runner, every output back in float32, the facts naming ExecuTorch
    (before, the LiteRT runner was handed the .pte and refused it)."""
    import numpy as np
    import torch
    from pte_fixtures import small_net

    from quantlab.agents.outputs import read_outputs
    from quantlab.agents.sim.agent import SimAgent
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import Job, Settings

    x = np.random.default_rng(3).uniform(-1, 1, (5, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    agent = SimAgent()
    job = Job(model_ref(small_pte), "sim", "sim", "et-xnnpack", 1, Settings())
    facts = agent.outputs(agent.discover()[0], job, tmp_path / "in.npz", tmp_path / "out.npz",
                          lambda phase, fraction: None)
    assert facts.ok, facts.error
    assert (facts.samples, facts.runtime, facts.runtime_version) == (5, "executorch", "1.5.1")
    [got] = read_outputs(tmp_path / "out.npz").values()
    with torch.no_grad():
        want = small_net()(torch.from_numpy(x)).numpy()  # type: ignore[operator]
    assert got.shape == (5, 4) and np.allclose(got, want, atol=1e-4)


def test_device_evaluation_scores_pte_rows_against_the_pytorch_model_and_the_host(
        torch_variants: Path, torch_net: Path, tmp_path: Path) -> None:
    """evaluate --device sim on a PyTorch source's LiteRT and ExecuTorch variants: each .pte
    has a row on its ExecuTorch delegate with the drop against the PyTorch model and against
    the same program on the host (before, the host side loaded the .pte with LiteRT and
    every .pte row had no host figure); et-fp32 on et-xnnpack gives host evaluate's figures
    (the same runtime on the same CPU); a pair that cannot run is skipped, not an error."""
    import numpy as np
    import torch

    import quantlab

    x = np.random.default_rng(5).standard_normal((24, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        net = torch.export.load(str(torch_net / "net.pt2")).module()
        y = np.array([int(net(torch.from_numpy(x[i:i + 1])).argmax()) for i in range(len(x))])
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    proc = _quantlab("evaluate", str(torch_variants), "--data", str(tmp_path / "eval.npz"),
                     "--device", "sim", "--delegate", "xnnpack,et-xnnpack,et-portable",
                     "--max-drop", "1", "--json", "--results", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reference"]["path"].endswith("net.pt2")
    assert report["reference"]["scheme"] == "float (PyTorch)"  # before, "fp32"
    rows = {(r["scheme"], r["delegate"]): r for r in report["rows"]}
    assert sorted(rows) == [("et-fp32", "et-xnnpack"), ("et-int8", "et-xnnpack"),
                            ("et-portable", "et-portable"), ("fp32", "xnnpack")]
    skipped = {(s["scheme"], s["delegate"]) for s in report["skipped"]}
    assert {("fp32", "et-xnnpack"), ("et-fp32", "xnnpack"), ("et-fp32", "et-portable"),
            ("et-portable", "et-xnnpack")} <= skipped
    for row in rows.values():
        assert row["error"] is None and row["vs_host"]["error"] is None, row
        assert row["vs_host"]["drop"] is not None and row["vs_host"]["outputs"]
    for key in [("et-fp32", "et-xnnpack"), ("et-int8", "et-xnnpack"),
                ("et-portable", "et-portable")]:
        assert rows[key]["runtime"] == rows[key]["vs_host"]["runtime"] == "executorch"
    host = {v["scheme"]: v for v in quantlab.evaluate(torch_variants, tmp_path / "eval.npz",
                                                      store=False).variants}
    fp32 = rows[("et-fp32", "et-xnnpack")]
    assert fp32["value"] == host["et-fp32"]["gate"]["value"] == fp32["vs_host"]["value"]
    assert fp32["gate"]["drop"] == host["et-fp32"]["gate"]["drop"]
    assert fp32["vs_host"]["drop"] == 0.0
    assert fp32["vs_host"]["outputs"][0]["max_abs_err"] < 1e-5
