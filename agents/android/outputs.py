"""Outputs on an Android phone (:mod:`quantlab.agents.outputs`), for
:class:`quantlab.agents.android.agent.AndroidAgent`.

The host cuts the set into one raw file per model input in a LiteRT runner process (the
``outputs-prepare`` mode: the samples in the input's own type, and the model's output tensors);
the runner, the model, the loop script and those files are pushed (each content-addressed,
so only what the phone lacks); one shell line runs ``outputs.sh`` on the phone, one
benchmark_model launch per sample on the job's delegate (:mod:`quantlab.android_runner.outputs`);
the one outputs file comes back in one pull and is split by output tensor. The facts count
the set's own transfers (``push``: its input files, ``pull``: 1), which do not grow with N.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from quantlab.agents.android.faults import adb_errors, adb_faults
from quantlab.agents.litert.launch import job_payload, run_runner
from quantlab.agents.outputs import OutputsFacts, Progress
from quantlab.android_runner import outputs as loop
from quantlab.android_runner import provision
from quantlab.android_runner.command import runner_of
from quantlab.android_runner.litert_command import RUNNER as LITERT_RUNNER
from quantlab.android_runner.numerics import OLD_TOOL_REASON, NumericsUnsupported
from quantlab.harness.errors import DeviceUnusable
from quantlab.harness.models import file_sha256
from quantlab.harness.records import DeviceInfo, Job


def outputs_supports(job: Job) -> tuple[bool, str]:
    """benchmark_model delegates only: benchmark_litert_model writes no outputs."""
    if runner_of(job.delegate) == LITERT_RUNNER:
        return False, loop.LITERT_REASON
    return True, ""


def run_outputs(agent: Any, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
    """Every sample of ``inputs`` through ``job`` on the phone; every output to ``out``."""
    import numpy as np

    ok, why = outputs_supports(job)
    if not ok:
        return OutputsFacts.failure(job, 0, loop.RUNNER, why)
    try:
        runner = provision.require_binary(device.abi)
    except provision.RunnerMissing as exc:
        raise DeviceUnusable(device.id, exc.message, hint=exc.hint) from None
    started = time.monotonic()
    facts: dict[str, Any] = dict(runtime="litert",
                                 runtime_version=f"benchmark_model sha256 {runner.sha256[:12]}")
    with tempfile.TemporaryDirectory(prefix="quantlab-android-outputs-") as tmp:
        progress("cutting the set into input files", None)
        payload = job_payload(job, Path(tmp), None)
        payload.update(outputs_inputs=str(Path(inputs).resolve()),
                       inputs_dir=str(Path(tmp) / "set"))
        prep = run_runner(payload, "outputs-prepare", 0, Path(tmp),
                          started + job.settings.timeout_s, job.settings.timeout_s)
        if prep.get("error"):
            return OutputsFacts.failure(job, 0, loop.RUNNER, f"preparing the set on the host: "
                                        f"{prep['error']}", **facts)
        prepared = prep["prepared"]
        n = int(prepared["samples"])
        folder = loop.remote_dir(job)
        try:
            line = loop.loop_line(job, "", prepared, folder)  # checks the tensor names first
        except NumericsUnsupported as exc:
            return OutputsFacts.failure(job, n, loop.RUNNER, str(exc), **facts)
        d = agent._device(device.id)
        pushed = 0
        with adb_faults(device.id, "pushing the set"):
            progress("pushing the set", None)
            model_remote = agent._push(d, runner, job)
            provision.ensure_file(d, loop.SCRIPT, loop.SCRIPT_REMOTE, file_sha256(loop.SCRIPT))
            for spec in prepared["inputs"]:
                local = Path(tmp) / "set" / spec["file"]
                pushed += provision.ensure_file(d, local, f"{folder}/{spec['file']}",
                                                file_sha256(local))
        line = loop.loop_line(job, model_remote, prepared, folder)
        progress(f"running {n} samples on the phone", None)
        ran = time.monotonic()
        with adb_faults(device.id, "running the samples"):
            res = d.shell2(line, timeout=job.settings.timeout_s + 60, v2=True)
        device_s = time.monotonic() - ran
        done, said = loop.loop_report(str(res.stdout or res.output or ""))
        detail = next((x for x in said.splitlines() if x.startswith("stand-in")), None)
        common = dict(launches=n if done else 0, transfers={"push": pushed, "pull": 0},
                      runner_detail=detail, device_seconds=device_s, **facts)
        if not done or res.returncode:
            tail = " | ".join(said.strip().splitlines()[-3:]) or f"exit {res.returncode}"
            reason = OLD_TOOL_REASON if res.returncode == 4 else \
                f"benchmark_model failed on the phone: {tail}"
            return OutputsFacts.failure(job, n, loop.RUNNER, reason,
                                        seconds=time.monotonic() - started, **common)
        with adb_faults(device.id, "pulling the outputs"):
            try:
                blob = d.sync.read_bytes(f"{folder}/outputs.bin")
            except adb_errors():
                blob = b""
            d.shell2(f"rm -rf {shlex.quote(folder)}", timeout=30, v2=True)
        common["transfers"] = {"push": pushed, "pull": 1}
        try:
            arrays = loop.split_outputs(blob, prepared["outputs"], n)
        except ValueError as exc:
            return OutputsFacts.failure(job, n, loop.RUNNER, str(exc),
                                        seconds=time.monotonic() - started, **common)
        np.savez(out, **arrays)
    progress("done", 1.0)
    return OutputsFacts(samples=n, runner=loop.RUNNER, delegate=job.delegate,
                        seconds=time.monotonic() - started, **common)
