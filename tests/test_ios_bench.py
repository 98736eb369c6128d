"""`quantlab devices` and `quantlab bench` with the fake iPhone (QUANTLAB_IOS_BACKEND)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
QUANTLAB = [sys.executable, "-m", "quantlab"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("iosbench_models")
    subprocess.run(
        [sys.executable, str(HERE / "fixtures" / "ios" / "make_models.py"), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        # a module name (file paths are refused); tests/ on the path makes `fakes` importable
        "QUANTLAB_IOS_BACKEND": "fakes.iphone:make_backend",
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p),
        "QUANTLAB_FAKE_IPHONE_DIR": str(tmp_path / "phone"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "QUANTLAB_COOLDOWN_S": "0",  # the fake app does not cool down
    }


def test_devices_lists_the_fake_iphone(tmp_path: Path) -> None:
    out = subprocess.run(
        [*QUANTLAB, "devices", "--json"], env=_env(tmp_path), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    devices = data if isinstance(data, list) else data.get("devices", [])
    [phone] = [d for d in devices if d["platform"] == "ios"]
    assert phone["model"] == "iPhone15,2" and phone["os_version"] == "17.5.1"
    assert phone["state"] == "ready" and "coreml-ane" in phone["delegates"]


def test_bench_runs_supported_pairs_and_skips_the_rest(tmp_path: Path, models: Path) -> None:
    cmd = [
        *QUANTLAB,
        "bench",
        str(models / "tiny.tflite"),
        str(models / "tiny.mlpackage"),
        "--device",
        "all",
        "--delegate",
        "tflite-cpu,coreml-ane",
        "--results",
        str(tmp_path / "results"),
        "--json",
    ]
    out = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    data = json.loads(out.stdout)
    ios = {
        (r["model"]["format"], r["delegate"]): r
        for r in data["results"]
        if r["device"]["platform"] == "ios"
    }
    assert ios[("tflite", "tflite-cpu")]["status"] == "ok"
    assert ios[("mlpackage", "coreml-ane")]["status"] == "ok"
    assert ios[("tflite", "coreml-ane")]["status"] == "skipped"
    assert "tflite-coreml" in ios[("tflite", "coreml-ane")]["error"]
    assert ios[("mlpackage", "tflite-cpu")]["status"] == "skipped"
    assert "Core ML model" in ios[("mlpackage", "tflite-cpu")]["error"]


def test_ios_status_and_install(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = subprocess.run(
        [*QUANTLAB, "ios", "status", "--json"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert row["app_installed"] is True and row["compute_plan"] is True
    bad = subprocess.run(
        [*QUANTLAB, "ios", "install", str(tmp_path / "nope.ipa")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no such file" in bad.stdout + bad.stderr
    ipa = tmp_path / "BenchRunner.ipa"
    ipa.write_bytes(b"PK")
    ok = subprocess.run(
        [*QUANTLAB, "ios", "install", str(ipa), "--json"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["udid"].startswith("00008110")


def test_energy_of_off_cpu_core_ml_jobs_is_never_ranked_against_cpu_jobs(
    tmp_path: Path, models: Path
) -> None:
    """The iPhone's energy figure is the process's CPU share: a Core ML job on the Neural
    Engine or the GPU would look nearly free beside a CPU job. Those jobs get no figure,
    with the reason, and `recommend --by energy` ranks the CPU-only job alone."""
    env = _env(tmp_path)
    results = str(tmp_path / "results")
    cmd = [*QUANTLAB, "bench", str(models / "tiny.mlpackage"), "--device", "all",
           "--delegate", "coreml-cpu,coreml-ane,coreml-gpu", "--energy",
           "--results", results, "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    data = json.loads(out.stdout)
    ios = {r["delegate"]: r for r in data["results"] if r["device"]["platform"] == "ios"}
    assert ios["coreml-cpu"]["energy"]["comparability"] == "process-estimate"
    for off_cpu, where in (("coreml-ane", "Neural Engine"), ("coreml-gpu", "GPU")):
        assert ios[off_cpu]["status"] == "ok" and ios[off_cpu]["energy"] is None
        assert where in ios[off_cpu]["energy_unavailable_reason"]
    rec = subprocess.run([*QUANTLAB, "recommend", data["run_id"], "--by", "energy",
                          "--results", results, "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert rec.returncode == 0, rec.stderr
    [phone] = [d for d in json.loads(rec.stdout)["devices"]
               if d["device"] == ios["coreml-cpu"]["device"]["id"]]
    assert phone["best"]["delegate"] == "coreml-cpu" and phone["runner_up"] is None
    for off_cpu in ("coreml-ane", "coreml-gpu"):
        [why] = [x for x in phone["excluded"] if f"· {off_cpu}:" in x]
        assert "CPU" in why  # the reason, not only "no energy figure"
