"""Outputs on the simulator (:mod:`quantlab.agents.outputs`): one LiteRT runner process per
(variant, delegate) runs every sample on the host CPU, in batches where the model's batch axis
can be resized (a ``.pte``: ExecuTorch's runner, one sample at a time), and writes every
output; nothing is transferred."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from quantlab.agents.executorch import host as et_host
from quantlab.agents.litert.launch import (
    RUNNER_MODULE,
    job_payload,
    litert_version,
    run_runner,
)
from quantlab.agents.outputs import OutputsFacts, Progress
from quantlab.harness.records import DeviceInfo, Job

RUNNER = "LiteRT Python interpreter in a runner process, batched where the model allows"
PTE_RUNNER = "executorch.runtime in a runner process, one sample at a time"


def run_outputs(device: DeviceInfo, job: Job, inputs: Path, out: Path, progress: Progress,
                python: str | None = None) -> OutputsFacts:
    """Every sample of ``inputs`` through ``job`` on the host CPU; outputs to ``out``."""
    started = time.monotonic()
    progress("running the samples", None)
    with tempfile.TemporaryDirectory(prefix="quantlab-sim-outputs-") as tmp:
        payload = job_payload(job, Path(tmp), None)
        payload.update(outputs_inputs=str(Path(inputs).resolve()),
                       outputs_path=str(Path(tmp) / "outputs.npz"))
        pte = job.model.format == "pte"  # ExecuTorch's runner, one sample at a time
        result = run_runner(payload, "outputs", 0, Path(tmp), started + job.settings.timeout_s,
                            job.settings.timeout_s, python=python,
                            module=et_host.RUNNER_MODULE if pte else RUNNER_MODULE)
        facts: dict[str, Any] = dict(
            runner=PTE_RUNNER if pte else RUNNER, runtime="executorch" if pte else "litert",
            runtime_version=et_host.executorch_version() if pte else litert_version(),
            launches=1, transfers={"push": 0, "pull": 0})
        if result.get("error"):
            return OutputsFacts.failure(job, 0, error=str(result["error"]),
                                        seconds=time.monotonic() - started, **facts)
        shutil.move(str(Path(tmp) / "outputs.npz"), str(out))
    progress("done", 1.0)
    return OutputsFacts(samples=int(result["samples"]), delegate=job.delegate,
                        seconds=time.monotonic() - started,
                        device_seconds=float(result["loop_s"]),
                        runner_detail=f"batch {result['batch']}, {job.threads} thread(s)",
                        placement=dict(result.get("placement") or {}), **facts)
