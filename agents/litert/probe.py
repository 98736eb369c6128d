"""The simulator's culprit probes: a probe model (bytes) run by the LiteRT runner's numerics
mode in a fresh process on this host, on the job's delegate and on TFLite's reference kernels,
with the same fixed inputs (``--inputs``, else the seeded random ones every numerics check
uses); its outputs and placement come back as a :class:`quantlab.harness.culprit.ProbeRun`
(``extra``: how the inputs were made, and the input arrays themselves, which a device's
probes are fed: :mod:`quantlab.harness.device_culprit`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from quantlab.agents.litert.launch import run_runner
from quantlab.harness.culprit import Launcher, ProbeRun

PROBE_TIMEOUT_S = 300.0


def host_launcher(delegate: str, threads: int = 1, inputs: str | None = None,
                  timeout_s: float = PROBE_TIMEOUT_S) -> Launcher:
    """A launcher that runs each probe on this host's LiteRT (``xnnpack`` or ``cpu``)."""
    import numpy as np

    def launch(data: bytes, label: str) -> ProbeRun:
        with tempfile.TemporaryDirectory(prefix="quantlab-culprit-") as tmp_name:
            tmp = Path(tmp_name)
            model = tmp / "probe.tflite"
            model.write_bytes(data)
            payload = {"model": str(model), "delegate": delegate, "threads": threads,
                       "settings": {"inputs": str(Path(inputs).resolve()) if inputs else None},
                       "reference_model": None, "outputs_path": str(tmp / "outputs.npz")}
            out = run_runner(payload, "numerics", 0, tmp, time.monotonic() + timeout_s,
                             timeout_s)
            if out.get("error"):
                return ProbeRun({}, {}, None, error=str(out["error"]))
            with np.load(tmp / "outputs.npz") as npz:
                arrays = {k: npz[k] for k in npz.files}
        return ProbeRun({k[7:]: v for k, v in arrays.items() if k.startswith("output:")},
                        {k[10:]: v for k, v in arrays.items() if k.startswith("reference:")},
                        out.get("placement"),
                        extra={"inputs": out.get("numerics_context", {}).get("inputs"),
                               "input_arrays": {k[6:]: v for k, v in arrays.items()
                                                if k.startswith("input:")}})

    return launch
