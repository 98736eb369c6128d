"""The quantize worker process: loads the source model and runs the converters, scheme by scheme.

Run as ``python -m quantlab.harness.quantize.worker REQUEST.json``. It reports through
a JSON-lines events file named in the request (``inspect``, ``warning``,
``start``, ``done``, ``failed``, ``fatal``) so that the controller survives
a native crash in a converter and knows which scheme caused it. Its own
stdout/stderr (TensorFlow and converter noise) go to a log file.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.errors import DataError, ModelError, QuantlabError
from quantlab.harness.quantize import data as qdata
from quantlab.harness.quantize.converters import OpCheckError, load_converter
from quantlab.harness.quantize.events import Events, silence
from quantlab.harness.quantize.lanes import claim
from quantlab.harness.quantize.options import OptionError
from quantlab.harness.quantize.requests import WorkerRequest
from quantlab.harness.quantize.schemes import SCHEMES, TORCH_KINDS, Scheme
from quantlab.harness.quantize.tflite_facts import input_spec


class Job:
    """Everything one worker run needs, from the request."""

    def __init__(self, req: WorkerRequest, events: Events) -> None:
        self.req = req
        self.events = events
        self.source: str = req.source
        self.kind: str = req.source_kind
        self.work = Path(req.work_dir)
        self.max_drop: float = float(req.max_drop)
        self.model: Any = None
        self.example_inputs: tuple[Any, ...] = ()  # a PyTorch source's
        self.fp32: bytes = b""
        self.calib_x: np.ndarray | None = None
        self.eval_x: np.ndarray | None = None
        self.eval_y: np.ndarray | None = None
        self.input_shape: list[int] = []
        self.input_dtype = "float32"
        self.ops: dict[str, Any] = {"builtin": {}, "custom": {}, "flex": {}}
        self.aeq_source: str = self.source  # the source, or a copy given a default signature
        self.model_sha256 = ""
        self.calibrations: dict[str, Any] = {}  # see calibrations.obtain

    def load(self) -> None:
        """Load the model and the data; ModelError/DataError when either is unusable.

        Checks the ops first (:mod:`quantlab.harness.quantize.opcheck`) and gives a signature-less
        .tflite a default signature (written beside the variants, said in the manifest).
        """
        from quantlab.harness.quantize import opcheck

        if self.kind in TORCH_KINDS:
            from quantlab.harness.quantize import torch_source

            self.model, self.example_inputs = torch_source.load(
                self.source, self.kind, self.req.input_shape)
            first = self.example_inputs[0]
            shape = [-1, *(int(d) for d in first.shape[1:])]
            dtype, n_inputs = str(first.dtype).removeprefix("torch."), len(self.example_inputs)
        elif self.kind == "tflite":
            self.fp32 = Path(self.source).read_bytes()
            try:
                self.ops = opcheck.model_ops(self.fp32)
                shape, dtype, n_inputs = (
                    opcheck.model_io(self.fp32) if self._blocked() else input_spec(self.fp32))
            except Exception as exc:
                raise ModelError(
                    self.source,
                    f"LiteRT cannot load it ({str(exc).strip()[:200]})",
                    hint="pass a valid float .tflite",
                ) from None
            from quantlab.harness.quantize.signature import (
                fold_fp16_weights,
                normalize_op_codes,
                with_default_signature,
            )

            prepared, notes = self.fp32, []
            for step in (normalize_op_codes, with_default_signature, fold_fp16_weights):
                prepared, note = step(prepared)
                notes += [note] if note else []
            if notes:
                self.aeq_source = str(self.work / ".source-prepared.tflite")
                Path(self.aeq_source).write_bytes(prepared)
                self.fp32 = prepared
                for note in notes:
                    self.events.emit("source_note", message=note)
        else:
            from quantlab.harness.quantize import tflite_tf

            self.model = tflite_tf.load_source(self.source, self.kind)
            try:
                self.ops, self.fp32 = tflite_tf.source_ops(self.model, self.kind)
            except Exception as exc:
                raise ModelError(
                    self.source, f"TF Lite conversion failed ({_short(exc)})"
                ) from None
            shape, dtype, n_inputs = (
                opcheck.model_io(self.fp32) if self._blocked() else input_spec(self.fp32))
        self.events.emit("opcheck", **self.ops)
        self.input_shape, self.input_dtype = shape, dtype
        self.events.emit("inspect", input_shape=shape, input_dtype=dtype, inputs=n_inputs)
        self._load_data(n_inputs)

    def _blocked(self) -> bool:
        """The model needs Flex or unknown custom ops (no stock runtime can load it)."""
        from quantlab.harness.quantize.opcheck import KNOWN_CUSTOM_OPS

        return bool(self.ops["flex"]) or any(c not in KNOWN_CUSTOM_OPS for c in self.ops["custom"])

    def _load_data(self, n_inputs: int) -> None:
        data = self.req.data
        for role, path in (("calib", data.calib), ("eval", data.eval_data)):
            if not path:
                continue
            if n_inputs != 1:
                raise DataError(
                    f"{self.source}: has {n_inputs} inputs; "
                    "calibration data supports single-input models"
                )
            ds = qdata.load_data(
                path,
                x_key=data.x_key,
                y_key=data.y_key,
                image=data.image,
                input_shape=tuple(self.input_shape),
            )
            x = qdata.check_against_model(
                ds, tuple(self.input_shape), self.input_dtype, self.source
            )
            ds = qdata.Dataset(x, ds.y, ds.source, ds.class_names, ds.facts)
            if role == "calib":
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    sub = qdata.calibration_subset(
                        ds, int(data.calib_samples), int(data.seed)
                    )
                for w in caught:
                    self.events.emit("warning", message=str(w.message))
                self.calib_x = sub.x
                from quantlab.harness.models import file_sha256

                self.events.emit("calibration", **sub.facts, source=ds.source,
                                 input_stats=qdata.input_stats(sub.x),
                                 sha256=file_sha256(Path(path)),
                                 sample_digests=qdata.sample_digests(sub.x))
                if not data.eval_data:
                    self.eval_x, self.eval_y = ds.x, ds.y
            else:
                self.eval_x, self.eval_y = ds.x, ds.y
        if data.calib and data.eval_data and self.calib_x is not None \
                and self.eval_x is not None:
            why = qdata.stats_mismatch(qdata.input_stats(self.calib_x),
                                       qdata.input_stats(self.eval_x))
            if why:
                self.events.emit("warning", message=why)

    def make(self, scheme: Scheme) -> dict[str, Any]:
        """Produce one variant with the converter of the scheme's recipe for this source
        (:data:`~quantlab.harness.quantize.converters.CONVERTERS`); returns the manifest
        fields beyond size/sha."""
        recipe = scheme.recipe_for(self.kind)
        if recipe is None:
            raise ValueError(
                "Core ML variants need a Keras, SavedModel or PyTorch source"
                if scheme.format == "coreml" and self.kind not in TORCH_KINDS
                else "ExecuTorch variants need a PyTorch source (.pt2 or module:factory)"
                if scheme.format == "pte"
                else f"{scheme.name} cannot be made from a PyTorch source: its LiteRT "
                "variants are made from litert-torch's float .tflite, which has no recipe for it"
                if self.kind in TORCH_KINDS and scheme.format == "tflite"
                else f"{scheme.name} cannot be made from a {self.kind} source"
            )
        return load_converter(recipe.converter)(self, scheme, dict(recipe.settings))


def _short(exc: BaseException) -> str:
    if isinstance(exc, OpCheckError):
        return str(exc)
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower():
            return ln.strip()[:300]
    return lines[0].strip()[:300] if lines else type(exc).__name__


def split_seconds(seconds: float, timing: dict[str, float]) -> dict[str, float]:
    """A scheme's seconds as calibration (making or waiting for its calibration), checks (op
    check, float ops of the variant) and conversion (the rest: converting, quantizing, and
    mixed-int8's search)."""
    calibration = float(timing.get("calibration", 0.0))
    checks = float(timing.get("checks", 0.0))
    return {"calibration": round(calibration, 3), "conversion":
            round(max(0.0, seconds - calibration - checks), 3), "checks": round(checks, 3)}


def _sensitivity(job: Job, events: Events) -> int:
    """Rank the layers by int8 error, and by accuracy when asked (``ranking`` event)."""
    from quantlab.harness.quantize import sensitivity as sens

    by = job.req.by
    if job.calib_x is None:
        events.emit("fatal", kind="DataError",
                    message="sensitivity needs calibration data (--calib)", hint=None)
        return 3
    if by == "accuracy" and job.eval_x is None:
        events.emit("fatal", kind="DataError", message="sensitivity --by accuracy needs "
                    "labelled data to score each layer on (--data eval.npz)", hint=None)
        return 3
    seconds: dict[str, float] = {}
    task_name: str | None = None
    metric: str | None = None
    kind, model, path = job.kind, job.model, job.source
    try:
        if kind in TORCH_KINDS:  # ranked on litert-torch's float .tflite of the model
            from quantlab.harness.quantize.torch_litert import float_tflite

            float_tflite(job)
            kind, model, path = "tflite", None, job.aeq_source
        t0 = time.perf_counter()
        rows = sens.rank_layers(kind, model, path, job.calib_x)
        seconds["error"] = time.perf_counter() - t0
        if by == "accuracy":
            assert job.eval_x is not None
            t0 = time.perf_counter()
            build = sens.layer_builder(kind, model, job.aeq_source, job.calib_x)
            errors = {r["layer"]: r for r in rows}
            scorer = sens.TaskScorer(job.eval_x, job.eval_y, task=job.req.eval_task,
                                     labels=job.req.labels, decoder=job.req.decoder)
            acc = sens.rank_by_accuracy(build, list(errors), job.fp32, job.eval_x,
                                        job.eval_y, job.work, top=job.req.top, scorer=scorer)
            task_name, metric = scorer.task_name, acc[0].get("metric") if acc else None
            rows = [{**errors[r["layer"]], **r} for r in acc]
            seconds["accuracy"] = time.perf_counter() - t0
    except QuantlabError as exc:  # a task, decoder or labels that do not fit the model
        events.emit("fatal", kind=type(exc).__name__, message=exc.message, hint=exc.hint)
        return 3
    except Exception as exc:
        traceback.print_exc()
        events.emit("fatal", kind="ModelError",
                    message=f"{job.source}: sensitivity analysis failed ({_short(exc)})",
                    hint=None)
        return 3
    events.emit("ranking", layers=rows, by=by, seconds=seconds, top=job.req.top,
                task=task_name, metric=metric)
    return 0


def main(request_path: str) -> int:
    """Run one request; exit 0 when every scheme was attempted, 3 on a fatal (model/data) error."""
    silence()
    # SIGTERM ends the worker as Ctrl-C does, through Python's exit (its export folder removed)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    req = WorkerRequest.from_dict(json.loads(Path(request_path).read_text()))
    events = Events(req.events)
    job = Job(req, events)
    try:
        job.load()
    except QuantlabError as exc:
        events.emit("fatal", kind=type(exc).__name__, message=exc.message, hint=exc.hint)
        return 3
    if req.task == "check":
        from quantlab.harness.quantize.opcheck import scheme_check

        for name in req.schemes:
            events.emit("check", **scheme_check(SCHEMES[name], job.ops))
        return 0
    if req.task == "sensitivity":
        return _sensitivity(job, events)
    for name in req.schemes:
        if not claim(job.work, name):  # another worker of this request makes it
            continue
        scheme = SCHEMES[name]
        events.emit("start", scheme=name, pid=os.getpid())
        t0 = time.perf_counter()
        try:
            fields = job.make(scheme)
        except OptionError as exc:  # e.g. --coreml-keep names a layer the model lacks
            events.emit("fatal", kind="UserError", message=exc.message, hint=exc.hint)
            return 3
        except Exception as exc:
            traceback.print_exc()
            events.emit("failed", scheme=name, error=_short(exc), seconds=time.perf_counter() - t0)
            continue
        seconds = time.perf_counter() - t0
        events.emit("done", scheme=name, seconds=seconds,
                    seconds_split=split_seconds(seconds, fields.pop("timing", {})), **fields)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
