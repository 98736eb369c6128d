"""quantlab import / android provision / android status through the CLI (no phone needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FIX = Path(__file__).parent / "fixtures" / "android"
ROOT = Path(__file__).resolve().parent.parent


def cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUANTLAB_CACHE": str(tmp_path / "cache"),
           "QUANTLAB_RESULTS": str(tmp_path / "results")}
    return subprocess.run([sys.executable, "-m", "quantlab", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_import_a_hand_run_log_as_a_stored_result(tmp_path: Path) -> None:
    out = cli(["import", str(FIX / "xnnpack_info_tf73862.txt"), "--device-name", "pixel8",
               "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (r,) = data["results"]
    assert r["status"] == "ok" and r["device"]["id"] == "imported:pixel8"
    assert r["delegate"] == "xnnpack" and r["model"]["path"] == "mobilenet_v1_1.0_224.tflite"
    assert r["latency_ms"]["source"] == "aggregates"
    assert r["latency_ms"]["mean"] == 13.5202 and r["latency_ms"]["count"] == 74
    assert r["init_ms"] == 12.75
    shown = cli(["show", data["run_id"], "--json"], tmp_path)
    assert json.loads(shown.stdout)["results"][0]["job_id"] == r["job_id"]


def test_import_a_failed_run_stays_failed_with_the_tools_reason(tmp_path: Path) -> None:
    out = cli(["import", str(FIX / "hexagon_not_created_tf53207.txt"), "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    (r,) = json.loads(out.stdout)["results"]
    assert r["status"] == "failed" and r["delegate"] == "hexagon" and r["threads"] == 4
    assert "Could not create Hexagon delegate" in r["error"]


def test_import_a_profile_table_and_bad_files(tmp_path: Path) -> None:
    out = cli(["import", str(FIX / "summary_by_node_type_tf53138.txt"), "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    (r,) = json.loads(out.stdout)["results"]
    assert r["status"] == "ok" and r["latency_ms"] is None
    assert r["ops"][0]["kernel"] == "CONV_2D" and "profile only" in r["warnings"][0]
    missing = cli(["import", str(tmp_path / "nope.txt")], tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\n")
    bad = cli(["import", str(junk)], tmp_path)
    assert bad.returncode == 2 and "not benchmark_model output" in bad.stderr


def test_provision_and_status(tmp_path: Path) -> None:
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little")
                       + bytes(44))
    out = cli(["android", "provision", "--binary", str(binary), "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["abi"] == "arm64-v8a"
    status = json.loads(cli(["android", "status", "--json"], tmp_path).stdout)
    runners = {r["abi"]: r for r in status["runners"]}
    assert runners["arm64-v8a"]["provisioned"] and not runners["x86_64"]["provisioned"]
    wrong = cli(["android", "provision", "--binary", str(binary), "--abi", "x86_64"], tmp_path)
    assert wrong.returncode == 2 and "built for arm64-v8a, not x86_64" in wrong.stderr
    # ExecuTorch's executor_runner: its own option, its version recorded, shown by status
    assert not runners["arm64-v8a"]["executor_runner"]
    et = cli(["android", "provision", "--executorch-runner", str(binary), "--executorch-version",
              "1.5.1"], tmp_path)
    assert et.returncode == 0, et.stderr
    assert "executor_runner for arm64-v8a" in et.stdout and "ExecuTorch 1.5.1" in et.stdout
    status = json.loads(cli(["android", "status", "--json"], tmp_path).stdout)
    runners = {r["abi"]: r for r in status["runners"]}
    assert runners["arm64-v8a"]["executor_runner"] == {
        "sha256": runners["arm64-v8a"]["sha256"], "version": "1.5.1"}
    bad = cli(["android", "provision", "--executorch-runner", str(binary), "--abi", "x86_64"],
              tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --executorch-runner ") and "not x86_64" in bad.stderr
    both = cli(["android", "provision", "--binary", str(binary), "--executorch-runner",
                str(binary)], tmp_path)
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1
    assert "give one runner: --binary PATH" in both.stderr
