"""A hand-run benchmark_model (or benchmark_litert_model) log read into what quantlab stores
(``quantlab import``): the phone as a device ``imported:NAME``, the job it measured (model,
delegate, threads and settings as the tool echoed them) and its ``RawResult``, parsed by the
same parsers as the agent's own launches, with the files themselves kept as raw output.

Several files of the same model, device and settings are the launches (repeats) of one job;
a CSV op profile alone (no timings summary) is a profile-only result. A run that failed stays
failed. Every problem with the files is a one-line :class:`~quantlab.harness.errors.UserError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.records import DeviceInfo, Job, ModelRef, RawOutput, RawResult, Settings


@dataclass(frozen=True)
class HandRun:
    """What one import stores: the device, the job and its result (raw files included)."""

    device: DeviceInfo
    job: Job
    raw: RawResult
    settings: Settings


def _delegate_from(params: dict[str, str], text: str) -> str:
    """Which delegate a hand-run log used, from the parameters it echoed."""
    def on(*names: str) -> bool:
        return any(params.get(n, "").strip() in ("1", "true") for n in names)

    if on("Use gpu", "Use GPU"):
        return "gpu"
    if on("Use NNAPI", "Use nnapi"):
        return "nnapi"
    if on("Use Hexagon", "Use hexagon"):
        return "hexagon"
    external = params.get("External delegate path", "").strip()
    if external:
        return "qnn" if "qnn" in external.lower() else "external"
    if params.get("Use xnnpack", "").strip() in ("0", "false"):
        return "cpu"
    if "XNNPACK delegate" in text or on("Use xnnpack"):
        return "xnnpack"
    return "cpu"


def _litert_delegate_from(text: str) -> str:
    """Which accelerator a benchmark_litert_model log used, from what it printed (the tool
    echoes none of its --use_* flags; CPU is its default)."""
    if re.search(r"with delegate \((?:LITERT_CL|\w*Gpu\w*|\w*Drift\w*)\)", text) \
            or "GPU accelerator registered" in text:
        return "litert-gpu"
    if re.search(r"with delegate \(\w*(?:Dispatch|Npu|NPU)\w*\)", text):
        return "litert-npu"
    return "litert-cpu"


def _int(params: dict[str, str], *names: str, default: int) -> int:
    for n in names:
        value = params.get(n, "").strip()
        if value.lstrip("-").isdigit() and int(value) > 0:
            return int(value)
    return default


def _read_texts(files: list[str]) -> list[str]:
    texts: list[str] = []
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"{file}: no such file", hint="give a saved benchmark_model output")
        text = path.read_text(errors="replace")
        if not text.strip():
            raise UserError(f"{file}: empty file", hint="give a saved benchmark_model output")
        texts.append(text)
    return texts


def _model_ref(model: str | None, graph: str | None, files: list[str],
               texts: list[str]) -> ModelRef:
    """The model by content (``--model``), else named by the log with the logs' hash."""
    if model:
        mpath = Path(model)
        if not mpath.is_file():
            raise UserError(f"--model {model}: no such file")
        sha = hashlib.sha256(mpath.read_bytes()).hexdigest()
        return ModelRef(str(mpath.resolve()), sha, mpath.stat().st_size, "tflite")
    return ModelRef(graph or Path(files[0]).name,
                    hashlib.sha256("".join(texts).encode()).hexdigest(), 0, "tflite")


def read_hand_run(files: list[str], device_name: str = "hand-run",
                  delegate: str | None = None, model: str | None = None,
                  profile: str | None = None) -> HandRun:
    """The device, job and result of hand-run tool output ``files`` (the launches of one
    job), ``profile`` the op-profile CSV of the same run; ``delegate`` overrides the one the
    log shows, ``model`` identifies the model by content."""
    from quantlab.android_runner.litert_parser import is_litert_output, parse_any
    from quantlab.android_runner.result_mapping import profile_ops, to_raw_result

    texts = _read_texts(files)
    profile_text = None
    if profile:
        if not Path(profile).is_file():
            raise UserError(f"--profile {profile}: no such file")
        profile_text = Path(profile).read_text(errors="replace")
    launches = [parse_any(t, profile_text if k == 0 else None) for k, t in enumerate(texts)]
    for file, parsed in zip(files, launches, strict=True):
        if parsed.summary_layout is None and not parsed.tables and not parsed.params \
                and parsed.inference is None:
            raise UserError(f"{file}: not benchmark_model output",
                            hint="save the tool's stdout (or `adb logcat -s tflite`) to a file")
    parsed, text = launches[0], texts[0]
    profile_only = (len(launches) == 1 and parsed.summary_layout is None
                    and parsed.run_table() is not None)
    name = device_name.strip() or "hand-run"
    litert = is_litert_output(text)
    used = delegate or (_litert_delegate_from(text) if litert
                        else _delegate_from(parsed.params, text))
    threads = _int(parsed.params, "Num threads", "#threads used for CPU inference", default=1)
    settings = Settings(warmup=_int(parsed.params, "Min warmup runs", default=1),
                        iterations=_int(parsed.params, "Min num runs", default=50),
                        repeats=len(launches), profile_ops=bool(parsed.run_table()))
    for file, other in zip(files[1:], launches[1:], strict=True):
        if (other.params.get("Graph"), _delegate_from(other.params, "")) != \
                (parsed.params.get("Graph"), _delegate_from(parsed.params, "")):
            raise UserError(f"{file}: measures another model or delegate than {files[0]}",
                            hint="import the launches of one job together, other jobs apart")
    ref = _model_ref(model, parsed.params.get("Graph"), files, texts)
    sources = [str(Path(f).resolve()) for f in files]
    device = DeviceInfo(id=f"imported:{name}", platform="android", name=name,
                        extra={"imported_from": sources})
    job = Job(ref, device.id, "android", used, threads, settings)
    runner: dict[str, Any] = {"name": "benchmark_litert_model" if litert else "benchmark_model",
                              "runtime": "litert", "imported_from": sources}
    if profile_only:
        ops, warnings = profile_ops(parsed, used)
        raw = RawResult(job_id=job.job_id, status="ok", ops=tuple(ops), runner=runner,
                        warnings=("profile only: the file has no timings summary",
                                  *warnings))
    else:
        raw = to_raw_result(job.job_id, launches, used, runner=runner)
    # the imported files themselves are the raw output every figure is parsed from
    # (named like an agent's launches: launch-N.stdout, profile.csv)
    kept = [RawOutput.capture(f"launch-{k + 1}.stdout", "text/plain", Path(f).read_bytes())
            for k, f in enumerate(files)]
    if profile:
        kept.append(RawOutput.capture("profile.csv", "text/csv", Path(profile).read_bytes()))
    raw = dataclasses.replace(raw, raw_outputs=(*raw.raw_outputs, *kept))
    return HandRun(device, job, raw, settings)
