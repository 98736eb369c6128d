"""The runner's entry point: one process-level repeat of one job, in a process of its own.

``python -m <the runner package> JOB.json RESULT.json`` loads the model with the LiteRT
Python interpreter, runs the job's mode and writes a JSON result. Each repeat runs in a fresh
process so that native crashes (a malformed model) only end this process; the caller reads
the phase file to say where it crashed.

Modes (``"mode"`` in the job JSON): ``measure`` (latency, memory, energy, placement:
:mod:`.measure`), ``profile`` (the per-op profile through :mod:`.profiler`), ``numerics``
(fixed inputs through the model on its delegate, through the float reference and through the
variant on the reference kernels, every output saved for the caller to compare: :mod:`.numerics`)
``numerics-prepare`` (the host half of a phone's numerics check: input files and the
float reference's outputs; the model runs on the phone), ``outputs`` (a set of inputs through
the model on its delegate, every output kept: :mod:`.outputs`), ``outputs-prepare`` (the
host half of a phone's outputs call: the samples as raw input files) and ``sustained`` (the
model run without a pause for a set time, in windows, with the sysfs sensors at each window's
end: :mod:`.sustained`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .measure import measure, profile
from .numerics import numerics, numerics_prepare
from .outputs import outputs, outputs_prepare
from .runtime import Phases, WorkerError
from .sustained import sustained

MODES = {"measure": measure, "profile": profile, "numerics": numerics,
         "numerics-prepare": numerics_prepare, "outputs": outputs,
         "outputs-prepare": outputs_prepare, "sustained": sustained}
"""Each mode of the job JSON and the function that runs it."""


def main(argv: list[str]) -> int:
    """Read the job JSON, write the result JSON; exit 0 unless the process crashed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    phases = Phases(result_path)
    out: dict[str, Any]
    try:
        out = MODES.get(job.get("mode") or "measure", measure)(job, phases)
        out["pid"] = os.getpid()
        out["error"] = None
    except WorkerError as exc:
        out = {"error": str(exc), "pid": os.getpid()}
    result_path.write_text(json.dumps(out))
    return 0
