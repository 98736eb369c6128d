"""``.pte`` jobs on a phone: ExecuTorch's ``executor_runner``, provisioned like benchmark_model
(``quantlab android provision --executorch-runner PATH``), pushed with the program, launched
once per repeat (``warmup + iterations`` executions; the first ``warmup`` dropped, every other
iteration's time kept as a raw sample), and once more with ``--etdump_path`` for the per-op
profile: the ETDump pulled and read with ExecuTorch's Inspector
(:mod:`quantlab.agents.executorch.etdump`), the same rows as the simulator's. ``--inputs``
and the numerics check go through the runner's own ``--inputs`` and ``--output_file`` files.
The command line and output format: :mod:`quantlab.android_runner.executorch_command`.
"""

from __future__ import annotations

import shlex
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from quantlab.agents.android.faults import adb_errors, adb_faults
from quantlab.agents.base import Progress
from quantlab.agents.executorch import host as et_host
from quantlab.android_runner import executorch_command as etcmd
from quantlab.android_runner import provision
from quantlab.android_runner.command import DEVICE_DIR, BenchmarkCommand
from quantlab.harness.errors import DeviceUnusable, JobFailed
from quantlab.harness.records import DeviceInfo, Job, OpRecord, RawOutput, RawResult

PROVISION = "quantlab android provision --executorch-runner PATH --abi {abi}"
MEMORY_NOT_REPORTED = "not reported: executor_runner prints no memory figure"


def supports_pte(device: DeviceInfo, job: Job) -> tuple[bool, str]:
    """Whether ``device`` can run the ``.pte`` job, with the one-line reason when not."""
    if job.delegate not in etcmd.DELEGATES:
        return False, (f"{job.delegate}: a LiteRT delegate; an ExecuTorch program runs on "
                       f"{', '.join(etcmd.DELEGATES)} on Android")
    refused = et_host.program_refusal(job.model.path, job.delegate)
    if refused:
        return False, refused
    if provision.cached_binary(device.abi or "", etcmd.RUNNER) is None:
        return False, (f"no ExecuTorch executor_runner provisioned for ABI "
                       f"{device.abi or 'unknown'}: run `"
                       f"{PROVISION.format(abi=device.abi or 'ABI')}` (docs/devices.md)")
    if job.settings.sustained_s > 0:
        return False, "--sustained: not available for a .pte job on Android yet"
    return True, ""


def run_pte(agent: Any, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
    """Measure the ``.pte`` job on the phone (see the module docstring)."""
    try:
        runner = provision.require_binary(device.abi, etcmd.RUNNER)
    except provision.RunnerMissing as exc:
        raise DeviceUnusable(device.id, exc.message, hint=exc.hint) from None
    if not Path(job.model.path).is_file():
        raise JobFailed(f"{job.model.path}: model file not found on this host",
                        hint="the variant was moved or deleted after planning")
    d = agent._device(device.id)
    warnings = ["energy of an ExecuTorch program is not available on Android yet"
                ] if job.settings.energy else []
    with adb_faults(device.id, "waiting for it to cool down"):
        progress("cooling down", None)
        thermal_before = agent._wait_cool(device, warnings)
    model = f"{DEVICE_DIR}/models/{job.model.sha256[:16]}.pte"
    with adb_faults(device.id, "pushing files"):
        progress("pushing", None)
        provision.ensure_file(d, runner.path, etcmd.BINARY, runner.sha256, mode=0o755)
        provision.ensure_file(d, Path(job.model.path), model, job.model.sha256)
    s = job.settings
    warmup, raw_outputs = int(s.warmup), list[RawOutput]()
    source, no_reference = et_host.float_reference(job.model.path) if s.numerics else (None, "")
    prepared: dict[str, Any] = {}
    if s.inputs or source is not None:
        progress("preparing the inputs", None)
        prepared = _prepare(d, device, job, source, raw_outputs)
        if s.inputs and prepared.get("error"):
            return RawResult.failure(job.job_id, str(prepared["error"]),
                                     raw_outputs=tuple(raw_outputs),
                                     runner={"name": etcmd.RUNNER, "runtime": "executorch"})
    inputs_flags = (prepared["flag"],) if s.inputs else ()
    cmd = etcmd.build_command(job, model, warmup + int(s.iterations), extra_flags=inputs_flags)
    runner_meta: dict[str, Any] = {
        "name": etcmd.RUNNER, "runtime": "executorch", "version": runner.version,
        "abi": runner.abi, "sha256": runner.sha256, "argv": list(cmd.argv),
        "warmup": f"the first {warmup} of each launch's executions, dropped on the host"}
    samples: list[tuple[float, ...]] = []
    loads: list[float] = []
    firsts: list[float] = []
    for r in range(max(int(s.repeats), 1)):
        progress(f"repeat {r + 1}/{s.repeats}", r / max(int(s.repeats), 1))
        out = _launch(d, device, cmd, raw_outputs, f"launch-{r + 1}")
        if not out.ok:
            return RawResult.failure(job.job_id, str(out.error), runner=runner_meta,
                                     raw_outputs=tuple(raw_outputs))
        samples.append(out.samples_ms[warmup:] or out.samples_ms)
        firsts.append(out.samples_ms[0])
        if out.load_ms is not None:
            loads.append(out.load_ms)
    ops: tuple[OpRecord, ...] = ()
    ops_model_ms = None
    if s.profile_ops:
        progress("profiling ops", None)
        profiled, why = _profile(d, device, job, model, raw_outputs)
        if profiled is None:
            warnings.append(f"per-op profile unavailable: {why}")
        else:
            ops = tuple(OpRecord(**row) for row in profiled["ops"])
            ops_model_ms = profiled["ops_model_ms"]
            runner_meta["profiler"] = f"{profiled['profiler']} (pulled from the phone)"
            if profiled.get("ops_note"):
                warnings.append(f"per-op profile: {profiled['ops_note']}")
    numerics: dict[str, Any] = {}
    if s.numerics:
        progress("checking numerics", None)
        numerics = ({"error": no_reference, "unchecked": True} if source is None
                    else prepared if prepared.get("error")
                    else _numerics(d, device, job, model, prepared, raw_outputs))
    with adb_faults(device.id, "reading its thermal state"):
        thermal_after = agent._thermal_snapshot(device)
    progress("done", 1.0)
    return RawResult(job_id=job.job_id, status="ok", samples_ms=tuple(samples),
                     init_ms=statistics.median(loads) if loads else None,
                     first_inference_ms=statistics.median(firsts),
                     memory_method=MEMORY_NOT_REPORTED, ops=ops, ops_model_ms=ops_model_ms,
                     thermal_before=thermal_before, thermal_after=thermal_after,
                     runner=runner_meta, warnings=tuple(warnings), numerics=numerics,
                     raw_outputs=tuple(raw_outputs))


def _prepare(d: Any, device: DeviceInfo, job: Job, source: dict[str, Any] | None,
             raw: list[RawOutput]) -> dict[str, Any]:
    """The fixed inputs (``--inputs``, else the seeded ones) made on this host as raw files by
    the ExecuTorch runner's ``numerics-prepare`` mode, with the float reference's outputs on
    them when ``source`` names one (:func:`quantlab.agents.executorch.host.float_reference`),
    and pushed to the phone: the runner's ``--inputs`` flag (``flag``), the program's output
    tensors and the reference's arrays (``want``); ``{"error": reason}`` when not."""
    import numpy as np

    from quantlab.agents.litert.launch import job_payload, run_runner

    with tempfile.TemporaryDirectory(prefix="quantlab-et-inputs-") as tmp:
        payload = {**job_payload(job, Path(tmp), None), "reference_source": source}
        prep = run_runner(payload, "numerics-prepare", 0, Path(tmp),
                          time.monotonic() + job.settings.timeout_s, job.settings.timeout_s,
                          raw=raw, module=et_host.RUNNER_MODULE)
        if prep.get("error"):
            return {"error": str(prep["error"])}
        spec = prep["prepared"]
        folder = f"{DEVICE_DIR}/out/{job.job_id}-inputs"
        files = [f"{folder}/{i['file']}" for i in spec["inputs"]]
        with adb_faults(device.id, "pushing the input files"):
            d.shell2(f"rm -rf {shlex.quote(folder)} && mkdir -p {shlex.quote(folder)}",
                     timeout=60, v2=True)
            for item, remote in zip(spec["inputs"], files, strict=True):
                d.sync.push(str(Path(payload["inputs_dir"]) / item["file"]), remote)
        with np.load(payload["outputs_path"]) as npz:
            want = {k.split(":", 1)[1]: npz[k] for k in npz.files
                    if k.startswith("reference:")}
    return {**spec, "folder": folder, "flag": f"--inputs={','.join(files)}", "want": want}


def _numerics(d: Any, device: DeviceInfo, job: Job, model: str, prepared: dict[str, Any],
              raw: list[RawOutput]) -> dict[str, Any]:
    """The numerics check through executor_runner's own files: the ``prepared`` inputs
    (:func:`_prepare`) in one execution, each output pulled back (``--output_file``:
    ``BASE-<i>.bin``) and compared here with the float reference's, like a ``.tflite``'s."""
    import numpy as np

    from quantlab.harness.numerics import compare_outputs, jsonable

    base = f"{prepared['folder']}/out"
    cmd = etcmd.build_command(job, model, 1, extra_flags=(prepared["flag"],
                                                          f"--output_file={base}"))
    out = _launch(d, device, cmd, raw, "numerics-launch")
    if not out.ok:
        return {"error": str(out.error)}
    got = {}
    with adb_faults(device.id, "pulling the numerics outputs"):
        for i, o in enumerate(prepared["outputs"]):
            try:
                blob = d.sync.read_bytes(f"{base}-{i}.bin")
            except adb_errors():
                blob = b""
            if len(blob) != o["bytes"]:
                return {"error": f"executor_runner wrote {len(blob)} bytes for output {i}, "
                                 f"{o['bytes']} expected ({o['dtype']} {o['shape']})"}
            raw.append(RawOutput.capture(f"numerics-out-{i}.bin", "application/octet-stream",
                                         blob))
            got[o["name"]] = np.frombuffer(blob, np.dtype(o["dtype"])).reshape(o["shape"])
    return jsonable({**compare_outputs(prepared["want"], got), **prepared["context"],
                     "computed_by": "host (from executor_runner's --output_file files)"})


def _launch(d: Any, device: DeviceInfo, cmd: BenchmarkCommand, raw: list[RawOutput],
            name: str) -> etcmd.RunnerOutput:
    """One executor_runner launch; its stdout and stderr kept raw, then read."""
    with adb_faults(device.id, "running executor_runner"):
        res = d.shell2(cmd.shell(), timeout=cmd.timeout_s + 60, v2=True, encoding=None)
    raw.append(RawOutput.capture(f"{name}.stdout", "text/plain", res.stdout))
    if res.stderr:
        raw.append(RawOutput.capture(f"{name}.stderr", "text/plain", res.stderr))
    out = etcmd.parse_output(res.stdout.decode("utf-8", "replace") + "\n"
                             + res.stderr.decode("utf-8", "replace"))
    if res.returncode in (124, 137):
        return etcmd.RunnerOutput(False, f"executor_runner ran past the device-side limit of "
                                  f"{cmd.timeout_s}s and was killed")
    if res.returncode != 0 and out.ok:
        return etcmd.RunnerOutput(False, f"executor_runner exited with code {res.returncode}")
    return out


def _profile(d: Any, device: DeviceInfo, job: Job, model: str, raw: list[RawOutput]
             ) -> tuple[dict[str, Any] | None, str]:
    """The launch with ``--etdump_path``, its ETDump pulled and read; or None and why."""
    remote = f"{DEVICE_DIR}/out/{job.job_id}.etdp"
    with adb_faults(device.id, "profiling ops"):
        d.shell2(f"mkdir -p {shlex.quote(DEVICE_DIR + '/out')} && rm -f {shlex.quote(remote)}",
                 timeout=60, v2=True)
    cmd = etcmd.build_command(job, model, max(int(job.settings.iterations), 10), remote)
    out = _launch(d, device, cmd, raw, "profile-launch")
    if not out.ok:
        return None, str(out.error)
    with adb_faults(device.id, "pulling the ETDump"):
        try:
            blob = d.sync.read_bytes(remote)
        except adb_errors():
            blob = b""
    if not blob:
        return None, (f"executor_runner wrote no ETDump at {remote} (build it with "
                      "ET_EVENT_TRACER_ENABLED: EXECUTORCH_BUILD_DEVTOOLS and "
                      "EXECUTORCH_ENABLE_EVENT_TRACER)")
    raw.append(RawOutput.capture("profile.etdp", "application/octet-stream", blob))
    if not et_host.installed():
        return None, ("reading the ETDump needs ExecuTorch on this host: "
                      "pip install 'quantlab[torch]'")
    from quantlab.agents.executorch.etdump import EtdumpError, read_etdump

    with tempfile.TemporaryDirectory(prefix="quantlab-etdump-") as tmp:
        path = Path(tmp) / "profile.etdp"
        path.write_bytes(blob)
        try:
            return read_etdump(path), ""
        except EtdumpError as exc:
            return None, str(exc)
