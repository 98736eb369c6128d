"""Fixed inputs and numerics on an Android phone, for
:class:`quantlab.agents.android.agent.AndroidAgent`.

The host makes the inputs and the float reference's outputs in a worker process
(:func:`quantlab.agents.litert.reference.prepare`: LiteRT never loads in the controller);
the input files go to the phone; one short benchmark_model launch on the job's delegate
writes its outputs to a file that comes back and is compared on the host
(:mod:`quantlab.android_runner.numerics`). The launch itself is the agent's, passed in.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantlab.agents.android.faults import adb_errors, adb_faults
from quantlab.android_runner import numerics as numericsmod
from quantlab.android_runner import provision
from quantlab.android_runner.command import BINARY, DEVICE_DIR
from quantlab.android_runner.litert_command import DELEGATES as LITERT_DELEGATES
from quantlab.android_runner.parser import BenchmarkOutput
from quantlab.harness.device_numerics import (
    compare,
    load_reference,
    load_variant,
    outputs_npz,
    unchecked,
)
from quantlab.harness.models import file_sha256
from quantlab.harness.records import DeviceInfo, Job, RawOutput


@dataclass
class FixedInputs:
    """What a job does with fixed inputs: ``check`` numerics with ``prepared`` tensors,
    feed ``input_flags`` to the timed launches (``--inputs``), or the reason it cannot
    (``numerics`` holds it as ``error``; ``failure`` fails the job: the user's inputs
    cannot be used)."""

    check: bool = False
    prepared: dict[str, Any] | None = None
    input_flags: tuple[str, ...] = ()
    numerics: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


def setup(d: Any, device: DeviceInfo, job: Job, tmp: Path,
          progress: Callable[[str, float | None], None]) -> FixedInputs:
    """Decide and prepare the job's fixed inputs: numerics (``--numerics``, and with
    ``--profile-ops`` as on the simulator) and ``--inputs`` for the timed launches."""
    s = job.settings
    check_numerics = bool(s.numerics or s.profile_ops)
    if job.delegate in LITERT_DELEGATES:  # supports() refused --inputs for these
        return FixedInputs(numerics=unchecked(numericsmod.LITERT_REASON)
                           if check_numerics else {})
    if not (check_numerics or s.inputs):
        return FixedInputs()
    progress("preparing inputs", None)
    prepared, error = prepare_inputs(d, device, job, tmp)
    if error or prepared is None:
        return FixedInputs(numerics=unchecked(error or "") if check_numerics else {},
                           failure=error if s.inputs else None)
    return FixedInputs(check=check_numerics, prepared=prepared,
                       input_flags=tuple(prepared["input_flags"]) if s.inputs else ())


def remote_dir(job: Job) -> str:
    """Where a job's input files and output file live on the phone."""
    return f"{DEVICE_DIR}/numerics/{job.job_id}"


def prepare_inputs(d: Any, device: DeviceInfo, job: Job,
                   tmp: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The fixed inputs (``--inputs`` or seeded random) and the float reference's outputs,
    made on the host under ``tmp``, and the input files pushed to the phone. Returns the
    prepared tensors with the benchmark_model flags that load them (``input_flags``), or
    the reason it could not."""
    from quantlab.agents.litert import reference

    out = reference.prepare(job, tmp, time.monotonic() + job.settings.timeout_s)
    if out.get("error"):
        return None, f"preparing the fixed inputs on the host: {out['error']}"
    prepared = dict(out["prepared"])
    folder = remote_dir(job)
    try:
        prepared["input_flags"] = numericsmod.input_flags(prepared, folder)
    except numericsmod.NumericsUnsupported as exc:
        return None, f"fixed inputs on {device.id}: {exc}"
    prepared["reference_npz"] = str(tmp / "numerics-outputs.npz")
    with adb_faults(device.id, "pushing the fixed inputs"):
        for spec in prepared["inputs"]:
            local = tmp / "numerics-inputs" / spec["file"]
            provision.ensure_file(d, local, f"{folder}/{spec['file']}", file_sha256(local))
    return prepared, None


def check(d: Any, device: DeviceInfo, job: Job, prepared: dict[str, Any],
          raw: list[RawOutput], launch: Callable[[tuple[str, ...]], BenchmarkOutput]
          ) -> dict[str, Any]:
    """Run ``launch`` with the prepared input/output flags, pull the output file and
    compare it with the float reference; the numerics record (``error`` with the reason
    when it could not). The outputs go to ``raw`` as ``numerics-outputs.bin`` and, with
    the inputs and the reference, ``numerics-outputs.npz``."""
    remote = f"{remote_dir(job)}/outputs.bin"
    with adb_faults(device.id, "checking numerics"):
        d.shell2(f"rm -f {shlex.quote(remote)}", timeout=30, v2=True)
    out = launch((*prepared["input_flags"], f"--output_filepath={remote}"))
    if not out.ok:
        return {"error": f"the numerics launch failed: {out.error}"}
    with adb_faults(device.id, "pulling the outputs"):
        try:
            blob = d.sync.read_bytes(remote)
        except adb_errors():
            blob = b""
    if not blob:
        return unchecked(numericsmod.OLD_TOOL_REASON)
    raw.append(RawOutput.capture("numerics-outputs.bin", "application/octet-stream", blob))
    reference, inputs = load_reference(prepared["reference_npz"])
    variant = load_variant(prepared["reference_npz"])
    record, got = compare(prepared, reference, blob,
                          f"device ({Path(BINARY).name} --output_filepath)", variant)
    raw.append(outputs_npz(inputs, got, reference, variant))
    return record
