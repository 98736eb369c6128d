"""PyTorch sources (the ``torch`` extra): a ``torch.export`` archive or ``module:factory`` made
into ExecuTorch variants (``et-fp32``, ``et-int8``) by the converters registry; without the
extra, a PyTorch source is refused in one line naming it, and commands that do not read
PyTorch models import nothing of torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import quantize_fixtures as qf

ROOT = Path(__file__).resolve().parents[1]

def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), os.environ.get("PYTHONPATH", "")])}


torch_model = qf.torch_net  # the tiny conv net: tinynet.py, net.pt2, calib.npz (session-wide)


@pytest.fixture(scope="module")
def et_variants(torch_model: Path) -> Path:
    """The .pt2 quantized into the ExecuTorch schemes that run on this host."""
    import quantlab

    out = torch_model / "et-variants"
    quantlab.quantize(torch_model / "net.pt2", out, ["et-fp32", "et-int8"],
                      calib=torch_model / "calib.npz")
    return out


def test_pt2_makes_executorch_variants_that_match_the_float_model(
        torch_model: Path, et_variants: Path) -> None:
    import torch
    from executorch.runtime import Runtime

    from quantlab.harness.quantize.manifest import Manifest

    out = et_variants
    manifest = Manifest.load(out)
    assert [v.scheme for v in manifest.variants] == ["et-fp32", "et-int8"]
    assert all(v.status == "ok" for v in manifest.variants), manifest.variants
    assert manifest.source["kind"] == "torch-export"
    assert manifest.input["shape"] == [-1, 3, 8, 8]
    assert {"torch", "executorch"} <= set(manifest.tools)
    assert manifest.calibration is not None and manifest.calibration["samples"] == 16
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(
        np.float32))
    reference = torch.export.load(torch_model / "net.pt2").module()(x).detach().numpy().ravel()
    for v in manifest.variants:
        assert v.file == f"{v.scheme}.pte" and v.converter == "executorch"
        assert v.size_bytes == (out / v.file).stat().st_size and v.seconds is not None
        assert v.ops is not None and v.ops["delegated_ops"] >= 3  # conv, relu, mean, linear
        method = Runtime.get().load_program(str(out / v.file)).load_method("forward")
        got = method.execute([x])[0].numpy().ravel()
        cosine = float(got @ reference / np.linalg.norm(got) / np.linalg.norm(reference))
        assert cosine > 0.98, (v.scheme, cosine)
    assert manifest.variants[1].options == {"granularity": "per-channel",
                                            "calibration_samples": 16}


def test_et_portable_lowers_without_xnnpack(torch_model: Path) -> None:
    import quantlab
    from quantlab.harness.quantize.manifest import Manifest

    out = torch_model / "portable"
    quantlab.quantize(torch_model / "net.pt2", out, ["et-portable"])
    [v] = Manifest.load(out).variants
    assert (v.scheme, v.status, v.file) == ("et-portable", "ok", "et-portable.pte"), v
    assert v.ops is not None and v.ops["delegated_ops"] == 0 and v.ops["portable_ops"] >= 3
    assert v.ops["delegate"] == "none (portable kernels)"
    assert b"XnnpackBackend" not in (out / v.file).read_bytes()


def test_entry_point_through_the_cli(torch_model: Path) -> None:
    out = torch_model / "cli-variants"
    args = [sys.executable, "-m", "quantlab", "quantize", "tinynet:make", "--out", str(out),
            "--schemes", "et-fp32", "--input-shape", "1,3,8,8", "--json"]
    done = subprocess.run(args, capture_output=True, text=True, env=_env(torch_model),
                          cwd=torch_model, check=False)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["variants"]
    assert [(r["scheme"], r["status"]) for r in rows] == [("et-fp32", "ok")]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "torch-entry"
    missing = subprocess.run([*args[:6], f"{out}-2", "--json"], capture_output=True,
                             text=True, env=_env(torch_model), cwd=torch_model, check=False)
    assert missing.returncode == 2 and "--input-shape" in missing.stderr


WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # not installed, as far as importlib can tell
sys.modules["executorch"] = None
from quantlab.harness.cli.main import main
sys.argv = ["quantlab", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("source", ["net.pt2", "tinynet:make"])
def test_without_the_extra_a_pytorch_source_is_refused_in_one_line(
        tmp_path: Path, source: str) -> None:
    (tmp_path / "net.pt2").write_bytes(b"PK")
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "quantize", source, "--out",
                           str(tmp_path / "v"), "--input-shape", "1,3,8,8"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in done.stderr
    assert "quantlab[torch]" in done.stderr and source in lines[0], done.stderr
    assert not (tmp_path / "v").exists()


def test_commands_that_do_not_read_pytorch_import_nothing_of_it(tmp_path: Path) -> None:
    script = """
import sys
from quantlab.harness.cli.main import main
sys.argv = ["quantlab", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print([m for m in ("torch", "executorch", "torchao", "litert_torch", "jax") if m in sys.modules])
"""
    for args in (["--help"], ["quantize", "--help"], ["runs"]):
        done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                              text=True, cwd=tmp_path, check=False,
                              env={**os.environ, "QUANTLAB_RESULTS": str(tmp_path / "r")})
        assert done.stdout.strip().splitlines()[-1] == "[]", (args, done.stderr)


def test_evaluate_says_why_executorch_variants_are_not_scored(tmp_path: Path) -> None:
    from quantlab.harness.errors import UserError
    from quantlab.harness.quantize.evaluate import evaluate

    (tmp_path / "et-fp32.pte").write_bytes(b"\x3c\x00\x00\x00ET12")
    (tmp_path / "manifest.json").write_text(json.dumps({"variants": [
        {"scheme": "et-fp32", "format": "pte", "status": "ok", "file": "et-fp32.pte"}]}))
    np.savez(tmp_path / "eval.npz", x=np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(UserError) as caught:
        evaluate(tmp_path, tmp_path / "eval.npz")
    assert "ExecuTorch variants" in caught.value.one_line()
    assert "PyTorch source" in caught.value.one_line()


def test_evaluate_scores_executorch_variants_against_the_pytorch_model(
        torch_model: Path, et_variants: Path, tmp_path: Path) -> None:
    import torch

    from quantlab.harness.quantize.evaluate import evaluate

    x = np.random.default_rng(2).standard_normal((24, 3, 8, 8)).astype(np.float32)
    float_model = torch.export.load(torch_model / "net.pt2").module()
    with torch.no_grad():  # the float model is right (it was exported with batch 1)
        y = np.array([int(float_model(torch.from_numpy(x[i:i + 1])).argmax())
                      for i in range(len(x))])
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    report = evaluate(et_variants, tmp_path / "eval.npz", task="classification").to_dict()
    assert report["reference"]["scheme"] == "float (PyTorch)"
    assert report["reference"]["path"].endswith("net.pt2")
    assert report["reference"]["value"] == 1.0
    rows = {r["scheme"]: r for r in report["variants"]}
    assert set(rows) == {"et-fp32", "et-int8"} and not report["skipped"]
    fp32, int8 = rows["et-fp32"], rows["et-int8"]
    assert fp32["gate"]["passed"] and fp32["gate"]["drop"] == 0.0
    fp32_mse = fp32["fidelity"]["outputs"][0]["mse"]
    assert fp32_mse < 1e-8  # XNNPACK float: the PyTorch model's own outputs
    assert int8["fidelity"]["outputs"][0]["mse"] > 10 * fp32_mse  # int8's own error
    assert int8["gate"]["value"] is not None
