"""Fixed inputs and numerics on an iPhone, for :class:`quantlab.agents.ios.agent.IosAgent`.

The host makes the inputs and the float reference's outputs in a worker process
(:func:`quantlab.agents.litert.reference.prepare`: LiteRT never loads in the controller).
The input files go into the job folder beside the model, over the same house_arrest/AFC
session; the job JSON names them (``inputs.kind = files``: every run of the BenchRunner app
uses them) and asks for the outputs (``outputs.file``). After its last timed run the app
writes every output tensor's raw bytes, one after the other, to that file and lists the
tensors in its result; the file comes back and is split, dequantized and compared on the
host (:mod:`quantlab.harness.device_numerics`).

TFLite jobs (every ``tflite-*`` delegate): the reference is the ``fp32`` variant beside the
model (manifest.json), else the model itself on TFLite's reference kernels, as on Android.
Core ML jobs: the reference is the ``fp32`` .tflite beside the model, used only when the
inputs and outputs match it by position (count and shape; :mod:`quantlab.ios_runner.coreml_spec`
reads the Core ML model's description on the host); the app writes Core ML outputs as
float32. Otherwise the record is ``unchecked`` with the reason. ``--inputs`` feeds the timed
runs in both cases; an ``.npz`` that does not fit the model fails the job.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.agents.ios.interfaces import IosSession
from quantlab.harness.device_numerics import (
    compare,
    load_reference,
    load_variant,
    outputs_npz,
    split_outputs,
    unchecked,
)
from quantlab.harness.numerics import compare_outputs, jsonable
from quantlab.harness.records import Job, RawOutput
from quantlab.ios_runner.codec import job_file
from quantlab.ios_runner.coreml_spec import CoreMLIO, CoreMLSpecError, read_io

COMPUTED_BY = "device (BenchRunner app)"
FILE_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64",
               "bool")
"""Tensor types an input file may hold (job.schema.json)."""
COREML_INPUT_DTYPES = ("float32", "float16", "float64", "int32")
"""File types the app converts into a Core ML multi-array input (CoreMLEngine.swift)."""
NO_REFERENCE = ("no float .tflite reference beside the Core ML model: numerics compare a Core "
                "ML model with the fp32 .tflite variant of its folder (manifest.json, `quantlab "
                "quantize`)")
OLD_APP = ("BenchRunner returned no outputs: this build predates fixed inputs and outputs; "
           "rebuild and reinstall it (ios_runner/README.md)")


@dataclass
class IosFixedInputs:
    """What a job does with fixed inputs: ``files`` to push (every run uses them), whether
    to ``check`` numerics with ``prepared`` tensors, or the reason it cannot (``numerics``
    holds it as an ``unchecked`` record; ``failure`` fails the job: the user's inputs cannot
    be used)."""

    check: bool = False
    prepared: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    numerics: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    coreml: CoreMLIO | None = None
    samples: int | None = None  # a batch job (evaluate --device): samples per input file
    batch: dict[str, Any] | None = None  # its outputs: the app's report and the pulled ``blob``

    def outputs_file(self, job: Job) -> str | None:
        """Where the app writes the outputs (relative to Documents/), when they are compared
        or kept (a batch job)."""
        return job_file(job, "outputs.bin") if self.check or self.samples else None


def setup(job: Job, tmp: Path, progress: Callable[[str, float | None], None]) -> IosFixedInputs:
    """Decide and prepare the job's fixed inputs: numerics (``--numerics``, and with
    ``--profile-ops`` as on the simulator and Android) and ``--inputs`` for the timed runs."""
    s = job.settings
    check = bool(s.numerics or s.profile_ops)
    if not (check or s.inputs):
        return IosFixedInputs()
    progress("preparing inputs", None)
    if job.model.format in ("mlpackage", "mlmodel"):
        return _setup_coreml(job, tmp, check)
    prepared, reason = _prepare(job, tmp)
    if prepared is None:
        return IosFixedInputs(numerics=unchecked(reason) if check else {},
                              failure=reason if s.inputs else None)
    return IosFixedInputs(check=check, prepared=prepared, files=_files(job, tmp, prepared))


def _prepare(job: Job, tmp: Path) -> tuple[dict[str, Any] | None, str]:
    """The fixed inputs and the float reference's outputs of ``job``'s .tflite, made on the
    host; else None and why."""
    from quantlab.agents.litert import reference

    out = reference.prepare(job, tmp, time.monotonic() + job.settings.timeout_s)
    if out.get("error"):
        return None, f"preparing the fixed inputs on the host: {out['error']}"
    prepared = dict(out["prepared"])
    odd = [i for i in prepared["inputs"] if i["dtype"] not in FILE_DTYPES]
    if odd:
        return None, (f"input {odd[0]['name']!r} is {odd[0]['dtype']}: BenchRunner loads "
                      f"{', '.join(FILE_DTYPES)} input files")
    prepared["reference_npz"] = str(tmp / "numerics-outputs.npz")
    return prepared, ""


def _files(job: Job, tmp: Path, prepared: dict[str, Any],
           names: list[str] | None = None) -> list[dict[str, Any]]:
    """The input files for the job JSON (``file`` relative to Documents/) with ``local``, the
    host file; ``names`` replaces the tensor names (a Core ML model's, by position)."""
    return [{"name": names[i] if names else spec["name"], "file": job_file(job, spec["file"]),
             "shape": list(spec["shape"]), "dtype": spec["dtype"],
             "local": str(tmp / "numerics-inputs" / spec["file"])}
            for i, spec in enumerate(prepared["inputs"])]


# --------------------------------------------------------------------------- Core ML


def _setup_coreml(job: Job, tmp: Path, check: bool) -> IosFixedInputs:
    s = job.settings
    try:
        io = read_io(job.model.path)
    except CoreMLSpecError as exc:
        reason = f"cannot read the Core ML model's inputs and outputs: {exc}"
        return IosFixedInputs(numerics=unchecked(reason) if check else {},
                              failure=f"--inputs: {reason}" if s.inputs else None)
    fixed = IosFixedInputs(coreml=io)
    if check:
        prepared, why = _coreml_reference(job, tmp, io)
        if prepared is None:
            fixed.numerics = unchecked(why)
        else:
            fixed.check, fixed.prepared = True, prepared
            fixed.files = _files(job, tmp, prepared, [f.name for f in io.inputs])
    if s.inputs and not fixed.files:
        try:
            fixed.files = _coreml_input_files(job, tmp, io, s.inputs)
        except ValueError as exc:
            fixed.failure = str(exc)
    return fixed


def _coreml_reference(job: Job, tmp: Path, io: CoreMLIO) -> tuple[dict[str, Any] | None, str]:
    """The fixed inputs and outputs of the fp32 .tflite beside a Core ML model, when its
    tensors match the model's by position; else None and why."""
    from quantlab.agents.litert.reference import reference_model

    reference = reference_model(job.model.path)
    if reference is None:
        return None, NO_REFERENCE
    ref_job = dataclasses.replace(job, model=dataclasses.replace(
        job.model, path=reference, format="tflite"))
    prepared, why = _prepare(ref_job, tmp)
    if prepared is None:
        return None, why
    why = mismatch(io, prepared) or ""
    if why:
        return None, why
    context = prepared.setdefault("context", {})
    context["reference"] = {**context.get("reference", {}), "same_file": False,
                            "matched": "inputs and outputs by position"}
    return prepared, ""


def mismatch(io: CoreMLIO, prepared: dict[str, Any]) -> str | None:
    """Why the float reference's tensors do not match the Core ML model's by position (count,
    shape, an input the app cannot fill from a file), or None when they do."""
    ref_in, ref_out = prepared["inputs"], prepared["outputs"]
    if len(io.inputs) != len(ref_in) or len(io.outputs) != len(ref_out):
        return (f"the Core ML model has {len(io.inputs)} inputs and {len(io.outputs)} outputs, "
                f"the float reference {len(ref_in)} and {len(ref_out)}")
    for i, (feature, ref) in enumerate(zip(io.inputs, ref_in, strict=True)):
        if feature.kind != "multiArray":
            return f"Core ML input {feature.name!r} is {feature.kind}, not a multi-array"
        if ref["dtype"] not in COREML_INPUT_DTYPES:
            return (f"the float reference's input {i} is {ref['dtype']}; the app fills Core ML "
                    f"inputs from {', '.join(COREML_INPUT_DTYPES)} files")
        if not _same_shape(feature.shape, ref["shape"], feature.flexible):
            return (f"input {i}: the Core ML model's {feature.name!r} has shape "
                    f"{list(feature.shape)}, the float reference's {ref['shape']}")
    for i, (feature, ref) in enumerate(zip(io.outputs, ref_out, strict=True)):
        if feature.shape and not _same_shape(feature.shape, ref["shape"], feature.flexible):
            return (f"output {i}: the Core ML model's {feature.name!r} has shape "
                    f"{list(feature.shape)}, the float reference's {ref['shape']}")
    return None


def _same_shape(shape: tuple[int, ...], other: list[int], flexible: bool) -> bool:
    if flexible:  # a range or enumerated shapes: the rank must agree
        return len(shape) == len(other)
    return list(shape) == [int(x) for x in other]


def _coreml_input_files(job: Job, tmp: Path, io: CoreMLIO, inputs: str) -> list[dict[str, Any]]:
    """``--inputs`` arrays as raw files for the Core ML model's inputs (by name, else by
    position); ValueError with a one-line reason when they do not fit."""
    from quantlab.agents.litert.reference import input_arrays

    details = []
    for f in io.inputs:
        if f.kind != "multiArray" or f.dtype not in COREML_INPUT_DTYPES:
            raise ValueError(f"--inputs: Core ML input {f.name!r} is "
                             f"{f.dtype or f.kind}; files fill {', '.join(COREML_INPUT_DTYPES)} "
                             "multi-arrays only")
        details.append({"name": f.name, "shape": list(f.shape), "dtype": f.dtype,
                        **({"shape_signature": [-1] * len(f.shape)} if f.flexible else {})})
    arrays = input_arrays(inputs, details)
    folder = tmp / "numerics-inputs"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (d, arr) in enumerate(zip(details, arrays, strict=True)):
        data = np.ascontiguousarray(arr)
        (folder / f"input{i}.bin").write_bytes(data.tobytes())
        files.append({"name": d["name"], "file": job_file(job, f"input{i}.bin"),
                      "shape": [int(x) for x in data.shape], "dtype": str(data.dtype),
                      "local": str(folder / f"input{i}.bin")})
    return files


# --------------------------------------------------------------------------- on the phone


async def push(session: IosSession, fixed: IosFixedInputs) -> None:
    """The input files into the job folder, beside the model (house_arrest/AFC)."""
    for spec in fixed.files:
        await session.push(spec["local"], f"/Documents/{spec['file']}")


async def collect(session: IosSession, fixed: IosFixedInputs, result: dict[str, Any],
                  raw: list[RawOutput]) -> dict[str, Any]:
    """The numerics record of a finished job: the outputs file pulled and compared with the
    float reference (an ``unchecked`` record with the reason when the app wrote none). The
    outputs go to ``raw`` as ``numerics-outputs.bin`` and, with the inputs and the reference,
    ``numerics-outputs.npz``."""
    if fixed.samples is not None:  # a batch job: every sample's outputs kept whole
        batch = dict(result.get("outputs") or {})
        remote = f"/Documents/{batch.get('file')}"
        if result.get("status") == "ok" and batch.get("file") and not batch.get("error") \
                and await session.exists(remote):
            batch["blob"] = await session.read(remote)
        fixed.batch = batch
        return {}
    if not fixed.check or fixed.prepared is None or result.get("status") != "ok":
        return fixed.numerics
    outputs = result.get("outputs")
    if not outputs:
        return unchecked(OLD_APP)
    if outputs.get("error") or not outputs.get("file"):
        return unchecked(f"BenchRunner wrote no outputs: {outputs.get('error') or 'no file'}")
    remote = f"/Documents/{outputs['file']}"
    if not await session.exists(remote):
        return unchecked(f"BenchRunner listed its outputs in {outputs['file']}, which is missing")
    blob = await session.read(remote)
    raw.append(RawOutput.capture("numerics-outputs.bin", "application/octet-stream", blob))
    reference, inputs = load_reference(fixed.prepared["reference_npz"])
    variant = load_variant(fixed.prepared["reference_npz"])  # none for Core ML
    if fixed.coreml is None:
        record, got = compare(fixed.prepared, reference, blob, COMPUTED_BY, variant)
    else:
        record, got, reference = _compare_coreml(fixed, list(outputs.get("tensors") or []),
                                                 reference, blob)
    if got:
        raw.append(outputs_npz(inputs, got, reference, variant))
    return record


def _compare_coreml(fixed: IosFixedInputs, tensors: list[dict[str, Any]],
                    reference: dict[str, np.ndarray], blob: bytes
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Core ML outputs (float32, in the app's order) against the reference by position, in
    the order of the model's description; the record, the outputs and the renamed reference."""
    assert fixed.prepared is not None and fixed.coreml is not None
    context = {**fixed.prepared.get("context", {}), "computed_by": COMPUTED_BY}
    try:
        got = split_outputs(blob, {"outputs": tensors})
    except ValueError as exc:
        return jsonable({"error": str(exc), **context}), {}, reference
    order = [f.name for f in fixed.coreml.outputs]
    names = order if sorted(order) == sorted(got) else list(got)
    ref_names = [o["name"] for o in fixed.prepared["outputs"]]
    shapes = {t["name"]: [int(x) for x in t["shape"]] for t in tensors}
    if len(names) != len(ref_names):
        return unchecked(f"the app wrote {len(names)} Core ML outputs, the float reference "
                         f"has {len(ref_names)}"), {}, reference
    for i, (name, ref_name) in enumerate(zip(names, ref_names, strict=True)):
        if shapes[name] != list(reference[ref_name].shape):
            return unchecked(f"output {i}: the Core ML model's {name!r} has shape "
                             f"{shapes[name]}, the float reference's "
                             f"{list(reference[ref_name].shape)}"), {}, reference
    renamed = {name: reference[ref] for name, ref in zip(names, ref_names, strict=True)}
    ordered = {name: got[name] for name in names}
    return jsonable({**compare_outputs(renamed, ordered), **context}), ordered, renamed
