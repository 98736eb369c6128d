"""The host's float reference for a device's numerics check, made by the LiteRT runner.

A phone (Android, iPhone) runs a variant on its delegate; what its outputs are compared with is
made here, on the host, in a runner process (LiteRT never loads in the controller): the fixed
inputs (``--inputs`` or seeded random ones) as raw tensor files, and the float model's outputs
on them (:func:`prepare`). The float model is the ``fp32`` variant beside the measured one
(:func:`reference_model`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quantlab.agents.litert.launch import job_payload, run_runner
from quantlab.harness.records import Job, RawOutput


def reference_model(path: str) -> str | None:
    """The float model a variant's numerics are compared with: the ``fp32`` variant of the
    variants folder the file lies in (``manifest.json``); None (the file itself) otherwise."""
    folder = Path(path).resolve().parent
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    for v in manifest.get("variants", []):
        if v.get("scheme") == "fp32" and v.get("status") == "ok" and v.get("file") \
                and str(v["file"]).endswith(".tflite") and (folder / v["file"]).is_file():
            return str(folder / v["file"])
    return None


def prepare(job: Job, tmp: Path, deadline: float, raw: list[RawOutput] | None = None,
            python: str | None = None) -> dict[str, Any]:
    """The host half of a device's numerics check, in a runner process:
    ``tmp/numerics-inputs/input<i>.bin`` (the fixed inputs as raw tensor bytes),
    ``tmp/numerics-outputs.npz`` (the inputs and the float reference's outputs) and, under
    ``prepared``, the model's input and output tensors. A failure comes back as
    ``{"error": reason}``."""
    payload = job_payload(job, tmp, reference_model(job.model.path))
    return run_runner(payload, "numerics-prepare", 0, tmp, deadline, job.settings.timeout_s,
                      python=python, raw=raw)


def input_arrays(path: str, details: list[dict[str, Any]]) -> list[Any]:
    """The arrays of an ``--inputs`` .npz for inputs described by ``details`` (name, shape,
    dtype; by name, else by position), as the runner reads them; ValueError with a one-line
    reason when they do not fit."""
    from quantlab.agents.litert.runner.inputs import load_inputs
    from quantlab.agents.litert.runner.runtime import WorkerError

    try:
        return load_inputs(path, details)
    except WorkerError as exc:
        raise ValueError(str(exc)) from None
