"""The remedy ladder: from "int8 fails the gate" to a variant that ships, one rung at a time.

TFLite rungs, in order (each records why the ladder moved on):

1. ``int8`` per channel on the calibration data as given;
2. ``int8`` with more / better calibration — only when the calibration set is
   small or its input range differs from the evaluation data, and other data
   (``--train`` or unused calibration samples) exists;
3. ``mixed-int8``: the most sensitive layers kept float, growing until the
   gate passes — within a size limit (a share of the float model), since a
   "mixed" model that keeps most weights float is no longer worth shipping;
4. ``int16x8``;
5. ``qat-int8`` when labelled training data is given;
6. ``fp16`` as the last resort.

It stops at the first variant that passes the gate (``explore``: tries every
rung). Each step records its seconds (``timing``: the rung's quantize run, of which its
scheme's calibration, conversion and checks, and its evaluation) and the shared calibration
it used (``calibration``: ``reused`` ``"cache"`` when an earlier rung or run made it, see
:mod:`~quantlab.harness.quantize.calibrations`); the result's ``timing`` sums them.
Passing candidates are then measured on the target device by the caller's
``measure`` (the CLI uses the same dispatcher as ``quantlab bench``) and the fastest
wins; two latencies are a tie when the same test as ``quantlab compare`` calls them no
significant difference (the caller's ``ties``; overlapping confidence intervals do not
mean no difference), or, for a pair it could not test, when their medians are within
:data:`TIE_SHARE`; ties go to the smaller file.

The Core ML ladder (``coreml-w8`` → ``coreml-w4`` → ``coreml-w4`` with the most
int8-sensitive layers kept fp16 → ``coreml-fp16``) makes each rung and records its
size; its accuracy is not measured on any host (a Core ML runtime exists only on macOS,
and even there quantlab does not evaluate Core ML yet), and every Core ML step says so.
The kept layers come from the same int8 sensitivity ranking as mixed-int8 (mapped to
Keras layers as ``--qat-layers sensitive:N`` is), among the layers whose weights
palettization compresses; with no accuracy to check, the kept set cannot grow until a
gate passes as mixed-int8's does, so the rung keeps :data:`COREML_KEEP_LAYERS`
(``LadderRequest.coreml_keep``).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SMALL_CALIBRATION = 500
"""Fewer calibration samples than this, with more available, is worth a better-calibration rung."""
BETTER_CALIBRATION_SAMPLES = 1000
RANGE_MISMATCH = 0.2
"""Calibration range off the evaluation range by more than this share of the latter: mismatch."""
MIXED_MAX_SIZE_SHARE = 0.6
"""Largest mixed-int8 size, as a share of the float model, that the ladder accepts."""
TIE_SHARE = 0.03
COREML_KEEP_LAYERS = 1
"""Most int8-sensitive layers the palettized Core ML rung keeps fp16."""
NO_COREML_RUNTIME = ("not measured: no Core ML runtime on this host (coremltools predicts "
                     "only on macOS); measure its accuracy on an iPhone: quantlab evaluate "
                     "VARIANTS --data D --device IPHONE --delegate coreml-ane")

ProgressFn = Callable[[str, dict[str, Any]], None]
MeasureFn = Callable[[list[dict[str, Any]]], dict[str, dict[str, Any]]]
"""Given candidate steps (``file``, ``scheme``), returns latency by file path:
``{"median_ms", "ci95", "device", "delegate", "run_id"}``, and where compare's test
judged the pairs, ``"file"`` (the path) and ``"ties"`` (``{other file: tie?}``)."""


@dataclass
class LadderRequest:
    """What to climb: the model, its data, the gate and the ladder's settings."""

    model: str
    calib: str
    data: str
    out: str
    max_drop: float = 0.02
    train: str | None = None
    explore: bool = False
    coreml: bool = False
    calib_samples: int = 200
    seed: int = 0
    x_key: str = "x"
    y_key: str = "y"
    image: Any = None
    qat: dict[str, Any] = field(default_factory=dict)
    mixed_max_size_share: float = MIXED_MAX_SIZE_SHARE
    coreml_keep: int = COREML_KEEP_LAYERS
    mixed_rank: str = "error"  # the mixed-int8 rung ranks layers by int8 error or accuracy drop


def _arrays(path: str, req: LadderRequest) -> np.ndarray | None:
    from quantlab.harness.quantize.data import load_data

    try:
        return load_data(path, x_key=req.x_key, y_key=req.y_key, image=req.image).x
    except Exception:
        return None


def calibration_advice(req: LadderRequest) -> tuple[str | None, int, str]:
    """(better calibration data or None, samples, why) for rung 2."""
    calib_x, eval_x = _arrays(req.calib, req), _arrays(req.data, req)
    if calib_x is None or eval_x is None:
        return None, 0, "the calibration or evaluation data could not be read here"
    used = min(req.calib_samples, len(calib_x))
    c_lo, c_hi = float(np.min(calib_x)), float(np.max(calib_x))
    e_lo, e_hi = float(np.min(eval_x)), float(np.max(eval_x))
    span = (e_hi - e_lo) or 1.0
    mismatch = abs(c_lo - e_lo) / span > RANGE_MISMATCH or abs(c_hi - e_hi) / span > RANGE_MISMATCH
    small = used < SMALL_CALIBRATION
    if not (small or mismatch):
        return None, 0, (f"calibration is adequate ({used} samples, range [{c_lo:.3g}, "
                         f"{c_hi:.3g}] matches the evaluation data)")
    reason = (f"calibration range [{c_lo:.3g}, {c_hi:.3g}] differs from the evaluation data's "
              f"[{e_lo:.3g}, {e_hi:.3g}]" if mismatch else f"only {used} calibration samples")
    if req.train:
        train_x = _arrays(req.train, req)
        n = min(BETTER_CALIBRATION_SAMPLES, len(train_x)) if train_x is not None else 0
        if n > 0:
            return req.train, n, f"{reason}: recalibrating on {n} training samples"
    if len(calib_x) > used:
        n = min(BETTER_CALIBRATION_SAMPLES, len(calib_x))
        return req.calib, n, f"{reason}: recalibrating on {n} of the calibration samples"
    return None, 0, f"{reason}, and there is no other data to calibrate on (pass --train)"


def tflite_rungs(req: LadderRequest) -> list[dict[str, Any]]:
    """The TFLite rungs in climbing order: ``name``, ``scheme``, ``options``, calibration, and
    ``skip`` (why a rung does not apply) where it does not."""
    better, n, why = calibration_advice(req)
    calib_best = better or req.calib
    samples_best = n if better else req.calib_samples
    per_channel = {"granularity": "per-channel"}
    rungs: list[dict[str, Any]] = [
        {"name": "int8", "scheme": "int8", "options": per_channel, "calib": req.calib,
         "calib_samples": req.calib_samples},
        {"name": "int8 (better calibration)", "scheme": "int8", "options": per_channel,
         "calib": better, "calib_samples": n, "note": why,
         **({} if better else {"skip": why})},
        {"name": "mixed-int8", "scheme": "mixed-int8",
         "options": {**per_channel, "mixed_max_size_share": req.mixed_max_size_share,
                     "mixed_rank": req.mixed_rank},
         "calib": calib_best, "calib_samples": samples_best},
        {"name": "int16x8", "scheme": "int16x8", "options": per_channel, "calib": calib_best,
         "calib_samples": samples_best},
        {"name": "qat-int8", "scheme": "qat-int8", "options": {}, "calib": calib_best,
         "calib_samples": samples_best, "train": req.train,
         **({} if req.train else {"skip": "no labelled training data (--train)"})},
        {"name": "fp16", "scheme": "fp16", "options": {}, "calib": None, "calib_samples": 0,
         "last_resort": True},
    ]
    return rungs


def coreml_rungs(req: LadderRequest | None = None) -> list[dict[str, Any]]:
    """The Core ML rungs in climbing order (the kept-layers rung ranks layers on ``req``'s
    calibration data)."""
    keep = req.coreml_keep if req else COREML_KEEP_LAYERS
    return [
        {"name": "coreml-w8", "scheme": "coreml-w8", "options": {"granularity": "per-channel"}},
        {"name": "coreml-w4", "scheme": "coreml-w4", "options": {"palettization": "4-bit"}},
        {"name": "coreml-w4 (sensitive layers kept)", "scheme": "coreml-w4",
         "options": {"palettization": "4-bit", "coreml_keep": [f"sensitive:{keep}"]},
         "calib": req.calib if req else None, "calib_samples": req.calib_samples if req else 0,
         "note": (f"the {keep} most int8-sensitive layer(s) among those palettization "
                  "compresses stay fp16; the kept set grows only where Core ML accuracy can "
                  "be checked")},
        {"name": "coreml-fp16", "scheme": "coreml-fp16", "options": {}, "last_resort": True},
    ]


def _emit(progress: ProgressFn | None, name: str, **fields: Any) -> None:
    if progress:
        progress(name, fields)


def _make_step(req: LadderRequest, rung: dict[str, Any], index: int, root: Path,
               progress: ProgressFn | None) -> dict[str, Any]:
    """Quantize (fp32 + the rung's scheme) into its own folder and evaluate it."""
    from quantlab.harness.errors import QuantlabError
    from quantlab.harness.quantize.evaluate import evaluate
    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.variants import quantize

    folder = root / "steps" / f"{index:02d}-{rung['scheme']}"
    step: dict[str, Any] = {
        "rung": rung["name"], "scheme": rung["scheme"], "options": dict(rung["options"]),
        "folder": str(folder), "file": None, "size_bytes": None, "metric": None, "value": None,
        "reference": None, "drop": None, "max_drop": req.max_drop, "passed": None,
        "verdict": None, "latency_ms": None, "why_next": None, "note": rung.get("note"),
    }
    if rung.get("calib_samples"):
        step["options"]["calibration_samples"] = rung["calib_samples"]
    t0 = time.monotonic()
    try:
        request = QuantizeRequest.create(
            req.model, ["fp32", rung["scheme"]], rung.get("calib"), folder,
            eval_data=req.data, calib_samples=max(1, int(rung.get("calib_samples") or 1)),
            seed=req.seed, max_drop=req.max_drop, x_key=req.x_key, y_key=req.y_key,
            image=req.image, force=True, train=rung.get("train"), qat=req.qat,
            options={k: v for k, v in rung["options"].items()
                     if k.startswith(("gran", "mixed", "coreml_keep"))})
        manifest = quantize(request, progress=lambda name, ev: _emit(progress, name, **ev))
    except QuantlabError as exc:
        step.update(verdict="error", passed=False, why_next=exc.one_line(),
                    seconds=round(time.monotonic() - t0, 1))
        return step
    entry = next(v for v in manifest.variants if v.scheme == rung["scheme"])
    if entry.status != "ok":
        step.update(verdict="error", passed=False, why_next=f"could not be made: {entry.error}",
                    seconds=round(time.monotonic() - t0, 1))
        return step
    step.update(file=str(folder / str(entry.file)), size_bytes=entry.size_bytes,
                sha256=entry.sha256, calibration=entry.calibration,
                timing=step_timing(entry.seconds_split, time.monotonic() - t0))
    if entry.options:
        step["options"].update(entry.options)
    if entry.mixed:
        step["mixed"] = {k: entry.mixed.get(k) for k in ("float_layers", "size_cost_bytes",
                                                          "limit", "drop", "rank",
                                                          "rank_seconds")}
    if entry.qat:
        step["qat"] = {k: entry.qat.get(k) for k in (
            "epochs_run", "epochs", "best_epoch", "stopped_early", "lr",
            "seconds_per_epoch", "seconds_per_epoch_per_1000_samples", "train_samples")}
    if entry.format == "coreml":
        step.update(verdict="unverified", passed=None, accuracy_note=NO_COREML_RUNTIME
                    if sys.platform != "darwin" else "Core ML accuracy is not evaluated yet")
        step["seconds"] = round(time.monotonic() - t0, 1)
        return step
    t_eval = time.monotonic()
    report = evaluate(folder, req.data, max_drop=req.max_drop, x_key=req.x_key,
                      y_key=req.y_key, image=req.image, edge=False)
    step["timing"]["evaluate"] = round(time.monotonic() - t_eval, 2)
    row = next(v for v in report.variants if v.scheme == rung["scheme"])
    gate = row.gate
    step.update(metric=report.metric, value=gate.value, reference=report.reference["value"],
                drop=gate.drop, passed=bool(gate.passed), verdict="pass" if gate.passed else "fail",
                evaluation=row.to_dict(), seconds=round(time.monotonic() - t0, 1))
    if not gate.passed:
        why = (f"drop {gate.drop * 100:.2f} pt > {req.max_drop * 100:.2f} pt"
               if gate.drop is not None else row.error or gate.why or "no drop was measured")
        if entry.mixed and entry.mixed.get("limit"):
            why += f" ({entry.mixed['limit']})"
        step["why_next"] = why
    return step


def step_timing(split: dict[str, float] | None, quantize_s: float) -> dict[str, Any]:
    """A step's seconds: ``quantize`` (its whole quantize run: worker start, model load, fp32
    and the rung's scheme), of which the scheme's ``calibration``, ``conversion`` and ``checks``
    (the manifest's ``seconds_split``), and ``evaluate`` (filled in once evaluated; not
    ``evaluation``: that key is the evaluation report a step holds, left out of its JSON)."""
    split = split or {}
    return {"quantize": round(quantize_s, 2), "calibration": split.get("calibration"),
            "conversion": split.get("conversion"), "checks": split.get("checks"),
            "evaluate": None}


def ladder_timing(steps: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The climb's seconds and what the shared calibration saved: the rungs that made a
    calibration, those that reused one, and ``calibration_saved_s`` (for each reuse, what
    making that calibration took less what reading it did)."""
    made = reused = 0
    saved = 0.0
    for step in steps:
        calibration = step.get("calibration") or {}
        if "reused" not in calibration:
            continue
        if calibration["reused"] is False:
            made += 1
        else:
            reused += 1
            spent = (step.get("timing") or {}).get("calibration") or 0.0
            saved += max(0.0, float(calibration.get("seconds") or 0.0) - spent)
    return {"seconds": round(seconds, 1), "calibrations_made": made,
            "calibrations_reused": reused, "calibration_saved_s": round(saved, 1)}


def _is_tie(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a is b:
        return True
    judged = a.get("ties") or {}
    if b.get("file") in judged:  # compare's verdict on the pair
        return bool(judged[b["file"]])
    ma, mb = a["median_ms"], b["median_ms"]
    return abs(ma - mb) <= TIE_SHARE * max(ma, mb)


def choose(steps: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The passing step to ship and why: fastest measured, ties to the smaller file."""
    passing = [s for s in steps if s.get("passed")]
    if not passing:
        return None, "no rung passed the gate"
    measured = [s for s in passing if s.get("latency") and s["latency"].get("median_ms")]
    if not measured:
        best = min(passing, key=lambda s: s["size_bytes"] or 0)
        return best, "the only passing variant" if len(passing) == 1 else \
            "smallest passing variant (no latency measured)"
    fastest = min(measured, key=lambda s: s["latency"]["median_ms"])
    tied = [s for s in measured if _is_tie(s["latency"], fastest["latency"])]
    best = min(tied, key=lambda s: s["size_bytes"] or 0)
    if len(measured) == 1:
        return best, "the only passing variant"
    if len(tied) > 1:
        return best, (f"tied on latency with {', '.join(s['rung'] for s in tied if s is not best)}"
                      "; the smaller file wins")
    return best, "fastest passing variant on the target device"


def climb(req: LadderRequest, measure: MeasureFn | None = None,
          progress: ProgressFn | None = None) -> dict[str, Any]:
    """Climb the ladder; returns ``{"id", "model", "max_drop", "steps", "chosen", "why",
    "coreml"}`` and writes it to ``out/ladder.json`` (the chosen file is copied to ``out/``)."""
    root = Path(req.out)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    steps: list[dict[str, Any]] = []
    passed_any = False
    for rung in tflite_rungs(req):
        if passed_any and not req.explore:
            break
        if rung.get("skip"):
            steps.append({"rung": rung["name"], "scheme": rung["scheme"],
                          "options": rung["options"], "verdict": "skipped", "passed": None,
                          "why_next": rung["skip"]})
            _emit(progress, "ladder_step", **steps[-1])
            continue
        _emit(progress, "ladder_rung", rung=rung["name"], index=len(steps) + 1)
        step = _make_step(req, rung, len(steps) + 1, root, progress)
        steps.append(step)
        _emit(progress, "ladder_step", **{k: v for k, v in step.items() if k != "evaluation"})
        passed_any = passed_any or bool(step.get("passed"))
    candidates = [s for s in steps if s.get("passed")]
    if measure and candidates:
        _emit(progress, "ladder_measure", candidates=[s["rung"] for s in candidates])
        latencies = measure(candidates)
        for s in candidates:
            lat = latencies.get(s["file"])
            if lat:
                s["latency"] = lat
                s["latency_ms"] = lat.get("median_ms")
    timing = ladder_timing(steps, time.monotonic() - t0)
    chosen, why = choose(steps)
    if chosen:
        shutil.copy2(chosen["file"], root / Path(chosen["file"]).name)
        for s in steps:
            if s.get("passed") and s is not chosen and s.get("latency_ms") and not s.get(
                    "why_next"):
                s["why_next"] = "passed, not chosen: " + (
                    "slower" if chosen.get("latency_ms") and s["latency_ms"] > chosen[
                        "latency_ms"] else "larger file at the same speed")
    result: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "model": req.model,
        "data": req.data,
        "max_drop": req.max_drop,
        "explore": req.explore,
        "steps": steps,
        "chosen": None if chosen is None else {
            "rung": chosen["rung"], "scheme": chosen["scheme"],
            "file": str(root / Path(chosen["file"]).name), "size_bytes": chosen["size_bytes"],
            "drop": chosen["drop"], "latency_ms": chosen.get("latency_ms"),
            "options": chosen["options"]},
        "why": why,
        "timing": timing,
        "coreml": climb_coreml(req, root, progress) if req.coreml else None,
    }
    (root / "ladder.json").write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    return result


def climb_coreml(req: LadderRequest, root: Path, progress: ProgressFn | None) -> dict[str, Any]:
    """The Core ML rungs: each made and sized; accuracy only where a Core ML runtime exists."""
    steps: list[dict[str, Any]] = []
    for rung in coreml_rungs(req):
        _emit(progress, "ladder_rung", rung=rung["name"], index=len(steps) + 1)
        step = _make_step(req, {"calib": None, "calib_samples": 0, **rung}, 50 + len(steps),
                          root, progress)
        steps.append(step)
        _emit(progress, "ladder_step", **step)
    made = [s for s in steps if s.get("size_bytes")]
    smallest = min(made, key=lambda s: s["size_bytes"]) if made else None
    return {
        "steps": steps,
        "runtime": sys.platform == "darwin",
        "note": NO_COREML_RUNTIME if sys.platform != "darwin" else None,
        "smallest": smallest["scheme"] if smallest else None,
        "chosen": None,
        "why": ("accuracy not verified, so no Core ML variant is chosen; the smallest made is "
                f"{smallest['scheme']}" if smallest else "no Core ML variant could be made"),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "evaluation"}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The ladder as stored with each evaluation (``payload["ladder"]``) for the HTML report."""
    return _jsonable({k: result[k] for k in ("id", "model", "max_drop", "steps", "chosen", "why")})
