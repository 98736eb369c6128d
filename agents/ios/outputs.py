"""Outputs on an iPhone (:mod:`quantlab.agents.outputs`), for
:class:`quantlab.agents.ios.agent.IosAgent`.

One BenchRunner batch job per (variant, compute unit or delegate): the set goes into the job
folder as one raw file per model input holding every sample (``outputs.samples`` in the job
JSON, ios_runner/schema/job.schema.json), the app runs its usual timed runs on the first
sample, then one prediction per sample, and writes every sample's outputs to one file, which
comes back in one read. Core ML variants get their outputs as float32 in output-name order;
``.tflite`` variants as the interpreter gives them, dequantized here. The input files are
made on the host: for a ``.tflite`` by the LiteRT runner's ``outputs-prepare`` mode (the
input's own type), for Core ML as float32 in the shapes the model's description declares
(:mod:`quantlab.ios_runner.coreml_spec`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.agents.ios.numerics import OLD_APP, IosFixedInputs
from quantlab.agents.litert.launch import job_payload, run_runner
from quantlab.agents.outputs import OutputsFacts, Progress
from quantlab.harness.records import DeviceInfo, Job
from quantlab.ios_runner.codec import job_file
from quantlab.ios_runner.coreml_spec import CoreMLSpecError, read_io

RUNNER = "BenchRunner batch job: one prediction per sample in the app"
COREML = ("mlpackage", "mlmodel")


def _coreml_set(job: Job, inputs: Path, folder: Path) -> tuple[list[dict[str, Any]], int]:
    """The set as float32 files for a Core ML model's inputs (by name, else ``arr_<i>``,
    else the only array); ValueError with the reason when it does not fit."""
    try:
        io = read_io(Path(job.model.path))
    except CoreMLSpecError as exc:
        raise ValueError(f"{Path(job.model.path).name}: {exc}") from None
    with np.load(inputs) as npz:
        arrays = {k: npz[k] for k in npz.files}
    files, n = [], None
    for i, feature in enumerate(io.inputs):
        key = feature.name if feature.name in arrays else f"arr_{i}" if f"arr_{i}" in arrays \
            else next(iter(arrays)) if len(arrays) == 1 and len(io.inputs) == 1 else None
        if key is None or not feature.shape:
            raise ValueError(f"no array of the set for Core ML input {feature.name!r}")
        arr = np.ascontiguousarray(arrays[key], np.float32)
        if list(arr.shape[1:]) != list(feature.shape[1:]):
            raise ValueError(f"the set's samples have shape {list(arr.shape[1:])}; Core ML "
                             f"input {feature.name!r} takes {list(feature.shape[1:])}")
        n = len(arr) if n is None else n
        local = folder / f"input{i}.bin"
        local.write_bytes(arr.tobytes())
        files.append({"name": feature.name, "file": job_file(job, local.name),
                      "shape": [1, *feature.shape[1:]], "dtype": "float32", "local": str(local)})
    return files, n or 0


def _tflite_set(job: Job, inputs: Path, folder: Path
                ) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """The set as raw files in each input's own type, and the output tensors (to dequantize),
    made by the LiteRT runner; ValueError with its reason."""
    payload = job_payload(job, folder, None)
    payload.update(outputs_inputs=str(Path(inputs).resolve()), inputs_dir=str(folder / "set"))
    prep = run_runner(payload, "outputs-prepare", 0, folder,
                      time.monotonic() + job.settings.timeout_s, job.settings.timeout_s)
    if prep.get("error"):
        raise ValueError(f"preparing the set on the host: {prep['error']}")
    p = prep["prepared"]
    files = [{"name": s["name"], "file": job_file(job, s["file"]), "shape": s["shape"],
              "dtype": s["dtype"], "local": str(folder / "set" / s["file"])}
             for s in p["inputs"]]
    return files, int(p["samples"]), list(p["outputs"])


def split(blob: bytes, tensors: list[dict[str, Any]], n: int,
          quantization: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The app's outputs file (``tensors``: one sample's, as its result lists them) as
    ``output:<name>`` float32 arrays, samples first; ValueError when the size is off."""
    per = sum(int(t["bytes"]) for t in tensors)
    if not tensors or len(blob) != per * n:
        raise ValueError(f"the outputs file holds {len(blob)} bytes; {n} samples of {per} "
                         "bytes were expected")
    rows = np.frombuffer(blob, np.uint8).reshape(n, per)
    out: dict[str, Any] = {}
    at = 0
    for i, t in enumerate(tensors):
        part = np.ascontiguousarray(rows[:, at:at + int(t["bytes"])]).view(np.dtype(t["dtype"]))
        at += int(t["bytes"])
        values = part.reshape(n, *[int(x) for x in t["shape"][1:]]).astype(np.float32)
        scale, zero = (quantization[i]["quantization"] if quantization and i < len(quantization)
                       else (0.0, 0))
        if np.dtype(t["dtype"]).kind in "iu" and scale:
            values = (values - zero) * scale
        out[f"output:{t['name']}"] = values
    return out


def run_outputs(agent: Any, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress, run_job: Any) -> OutputsFacts:
    """Every sample of ``inputs`` through ``job`` in one BenchRunner batch job (``run_job``:
    the agent's job runner, called with the prepared inputs); every output to ``out``."""
    started = time.monotonic()
    coreml = job.model.format in COREML
    facts: dict[str, Any] = dict(runtime="coreml" if coreml else "litert", launches=1,
                                 runtime_version=None)
    with tempfile.TemporaryDirectory(prefix="quantlab-ios-outputs-") as tmp:
        progress("cutting the set into input files", None)
        try:
            if coreml:
                files, n = _coreml_set(job, inputs, Path(tmp))
                quant = None
            else:
                files, n, quant = _tflite_set(job, inputs, Path(tmp))
        except (ValueError, OSError) as exc:
            return OutputsFacts.failure(job, 0, RUNNER, str(exc), **facts)
        fixed = IosFixedInputs(files=files, samples=n)
        raw = run_job(device, job, progress, fixed)
    runner = dict(raw.runner or {})
    facts.update(runtime_version=f"BenchRunner {runner.get('app_version') or '?'}",
                 transfers={"push": len(files), "pull": 0},
                 runner_detail=runner.get("engine_detail"))
    batch = fixed.batch or {}
    if raw.status != "ok" or not batch.get("blob"):
        why = raw.error if raw.status != "ok" else \
            (batch.get("error") or (OLD_APP if not batch else "the outputs file is missing"))
        return OutputsFacts.failure(job, n, RUNNER, f"{device.id}: {why}",
                                    seconds=time.monotonic() - started, **facts)
    facts["transfers"] = {"push": len(files), "pull": 1}
    try:
        arrays = split(batch["blob"], list(batch.get("tensors") or []), n, quant)
    except ValueError as exc:
        return OutputsFacts.failure(job, n, RUNNER, str(exc),
                                    seconds=time.monotonic() - started, **facts)
    np.savez(out, **arrays)
    progress("done", 1.0)
    return OutputsFacts(samples=n, runner=RUNNER, delegate=job.delegate,
                        seconds=time.monotonic() - started, **facts)
