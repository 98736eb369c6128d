"""Outputs on an Android phone (:mod:`quantlab.agents.outputs`): the device-side loop.

The whole set goes to the phone once: one file per model input holding every sample's tensor
bytes (made on the host by the LiteRT runner's ``outputs-prepare`` mode). ``outputs.sh`` then
runs on the phone: for each sample it cuts that sample's bytes into the files benchmark_model's
``--input_layer_value_files`` names (``dd``), runs one benchmark_model launch on the job's
delegate (one warm-up-free run, ``--output_filepath``) and appends the launch's output file to
one outputs file, which the host pulls once and splits here by the model's output tensors.
adb transfers per (variant, delegate) therefore do not grow with the number of samples; the
cost per sample is one process start and the delegate's initialisation on the phone.

``benchmark_litert_model`` (the ``litert-*`` delegates) fills its inputs with random data and
writes no outputs: :data:`LITERT_REASON` says so.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantlab.android_runner.command import DEVICE_DIR, build_command
from quantlab.android_runner.numerics import input_flags

if TYPE_CHECKING:
    from quantlab.harness.records import Job

SCRIPT = Path(__file__).with_name("outputs.sh")
SCRIPT_REMOTE = f"{DEVICE_DIR}/outputs.sh"
RUNNER = "benchmark_model, one launch per sample in a device-side loop (outputs.sh)"
LITERT_REASON = ("benchmark_litert_model fills its inputs with random data and writes no "
                 "outputs, so it cannot run an evaluation set: use a benchmark_model delegate "
                 "(xnnpack, cpu, gpu, nnapi, …) for accuracy on the phone")
DONE = "quantlab-outputs:"


def remote_dir(job: Job) -> str:
    """Where one outputs call's files live on the phone."""
    return f"{DEVICE_DIR}/outputs/{job.job_id}"


def loop_line(job: Job, model_remote: str, prepared: dict[str, Any], folder: str) -> str:
    """The device shell line that runs every sample of ``prepared`` (the runner's
    ``outputs-prepare`` record) through ``job``'s delegate: ``outputs.sh`` around one
    benchmark_model launch per sample, under the job's time limit for the whole loop."""
    per_sample = dict(prepared, inputs=[dict(spec, file=f"sample{k}.bin")
                                        for k, spec in enumerate(prepared["inputs"])])
    flags = (*input_flags(per_sample, folder), f"--output_filepath={folder}/out.bin")
    cmd = build_command(job, model_remote, num_runs=1, min_secs=0, warmup_runs=0,
                        extra_flags=flags)
    sizes = ",".join(str(spec["bytes"]) for spec in prepared["inputs"])
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(cmd.env.items()))
    words = ["sh", SCRIPT_REMOTE, folder, str(prepared["samples"]), sizes, *cmd.argv]
    limit = max(1, math.ceil(job.settings.timeout_s))
    return (f"cd {shlex.quote(DEVICE_DIR)} && {env + ' ' if env else ''}timeout -k 5 {limit} "
            + " ".join(shlex.quote(w) for w in words))


def split_outputs(blob: bytes, outputs: list[dict[str, Any]], samples: int
                  ) -> dict[str, Any]:
    """The pulled outputs file as ``output:<name>`` arrays (samples first, dequantized to
    float32), from the model's output tensors (``outputs-prepare``'s ``outputs``); ValueError
    when its size is not ``samples`` launches' worth."""
    import numpy as np

    per = sum(int(o["bytes"]) for o in outputs)
    if len(blob) != per * samples:
        raise ValueError(f"the outputs file holds {len(blob)} bytes, {samples} samples of "
                         f"{per} bytes were expected")
    rows = np.frombuffer(blob, np.uint8).reshape(samples, per) if samples else \
        np.zeros((0, per), np.uint8)
    arrays, at = {}, 0
    for o in outputs:
        dtype = np.dtype(o["dtype"])
        part = np.ascontiguousarray(rows[:, at:at + int(o["bytes"])]).view(dtype)
        at += int(o["bytes"])
        values = part.reshape(samples, *o["shape"][1:])
        scale, zero = o["quantization"]
        arrays[f"output:{o['name']}"] = ((values.astype(np.float32) - zero) * scale
                                         if dtype.kind in "iu" and scale
                                         else values.astype(np.float32))
    return arrays


def loop_report(stdout: str) -> tuple[bool, str]:
    """Whether the loop ran every sample, and the tool's own output that followed (the last
    launch's, or the failed one's)."""
    lines = stdout.splitlines()
    head = next((i for i, line in enumerate(lines) if line.startswith(DONE)), None)
    if head is None:
        return False, stdout.strip()
    return lines[head].endswith(" samples"), "\n".join(lines[head + 1:])
