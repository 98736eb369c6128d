"""Evaluate the TFLite variants of a variants folder against fp32 on the host: the loop.

Each variant runs through LiteRT (:mod:`quantlab.harness.quantize.tflite_runner`); its task
metrics, :mod:`~quantlab.harness.quantize.fidelity` and :mod:`~quantlab.harness.quantize.edge_cases`
are measured and :mod:`~quantlab.harness.quantize.gate` decides pass or fail.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantlab.harness.errors import ModelError
from quantlab.harness.numerics import finite_or_none
from quantlab.harness.quantize.edge_cases import edge_cases, edge_outputs
from quantlab.harness.quantize.evaluation import Evaluation, GateVerdict, VariantEvaluation
from quantlab.harness.quantize.fidelity import fidelity
from quantlab.harness.quantize.gate import (
    LOWER_IS_BETTER,
    REFERENCE_ITSELF,
    gate_for,
    judge,
    parse_max_drop,
    unresolved_warnings,
)
from quantlab.harness.quantize.tflite_runner import DEFAULT_BATCH, TfliteRunner


def skipped_variants(folder: Path, from_torch: bool = False) -> list[dict[str, str]]:
    """Variants of the folder that host evaluation cannot run (Core ML; ExecuTorch, unless the
    folder's source is the PyTorch model, ``from_torch``, and then a ``.pte`` lowered to a
    backend this host lacks), with the reason."""
    import json

    from quantlab.harness.quantize.pte_runner import HOST_LACKS, runs_on_host

    manifest = folder / "manifest.json"
    if not manifest.exists():
        return []
    reasons = {
        "coreml": "host evaluation runs TFLite only (coremltools predicts only on macOS): "
                  "evaluate it on an iPhone with --device IPHONE --delegate coreml-ane (or "
                  "coreml-cpu, coreml-gpu, coreml-all)",
        "pte": "ExecuTorch variants are scored against their PyTorch source, which this "
               "folder's manifest does not name; quantize the .pt2 or module:factory again",
    }
    if from_torch:
        reasons = {"coreml": reasons["coreml"], "pte": HOST_LACKS}
    return [
        {"scheme": v["scheme"], "reason": reasons[v["format"]]}
        for v in json.loads(manifest.read_text()).get("variants", [])
        if v.get("status") == "ok" and v.get("format") in reasons
        and not (from_torch and v["format"] == "pte" and runs_on_host(v["scheme"]))
    ]


def variant_files(folder: Path) -> list[dict[str, Any]]:
    """The TFLite variants of a variants folder (from manifest.json, else every *.tflite)."""
    import json

    manifest = folder / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        listed = [v for v in data.get("variants", [])
                  if v.get("status") == "ok" and str(v.get("file", "")).endswith(".tflite")]
        gone = [str(v["file"]) for v in listed if not (folder / v["file"]).is_file()]
        if gone:
            from quantlab.harness.errors import UserError

            raise UserError(f"{manifest}: lists {', '.join(gone)}, which "
                            f"{'is' if len(gone) == 1 else 'are'} not in {folder}",
                            hint="quantize the folder again (--force), or evaluate a folder "
                                 "whose files are all there")
        return [
            {
                "scheme": v["scheme"],
                "path": str(folder / v["file"]),
                "sha256": v.get("sha256"),
                "source_sha256": data.get("source", {}).get("sha256"),
            }
            for v in listed
        ]
    return [
        {"scheme": None, "path": str(p), "sha256": None, "source_sha256": None}
        for p in sorted(folder.glob("*.tflite"))
    ]


def _output_infos(runner: Any) -> list[Any]:
    from quantlab.harness.tasks import OutputInfo

    return [OutputInfo(str(od["name"]), (1, *(int(d) for d in od["shape"][1:])))
            for od in runner.outputs]


def _calibration_stats(folder: Path) -> dict[str, float] | None:
    """The calibration inputs' stats kept in the manifest (None: none kept)."""
    import json

    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    calib = (json.loads(manifest.read_text()).get("calibration") or {}).get("input_stats")
    return calib or None


def calibration_overlap(folder: Path, data_path: Path, x: Any) -> list[str]:
    """Warnings when the variants were calibrated on the evaluation data: the same file
    (content sha256, or the same path for a manifest that kept no hash), or calibration
    samples found again among the evaluation samples. A gate measured on the data the
    ranges were fitted to is optimistic: calibrate on held-out samples (training data)."""
    import json

    from quantlab.harness.models import file_sha256
    from quantlab.harness.quantize import data as qdata

    manifest = folder / "manifest.json"
    if not manifest.exists():
        return []
    calib = json.loads(manifest.read_text()).get("calibration") or {}
    if not calib.get("source"):
        return []
    hint = ("its accuracy gate is measured on the samples int8's ranges were fitted to; "
            "calibrate on other samples (e.g. training data) and evaluate on held-out ones")
    same = calib.get("sha256") == file_sha256(data_path) if calib.get("sha256") else \
        Path(str(calib["source"])).resolve() == data_path.resolve()
    if same:
        return [f"{data_path} is the calibration data of {folder} (quantize --calib "
                f"{calib['source']}): {hint}"]
    digests = set(calib.get("sample_digests") or ())
    if not digests:
        return []
    found = len(digests & set(qdata.sample_digests(x)))
    if not found:
        return []
    return [f"{found} of the {len(digests)} calibration samples of {folder} are also in "
            f"{data_path}: {hint}"]


def _data_warnings(calib: dict[str, float] | None, stats: dict[str, float] | None
                   ) -> list[str]:
    """The calibration-vs-evaluation data check against the stats kept in the manifest."""
    from quantlab.harness.quantize import data as qdata

    if not calib or not stats:
        return []
    why = qdata.stats_mismatch(calib, stats)
    return [why] if why else []


@dataclass
class Prepared:
    """What an evaluation sets up once, before any variant runs: the variants, the data, the
    task and its context, and the fp32 reference's outputs, predictions and metric value
    (``quantlab evaluate`` on the host, and the device evaluation that scores outputs brought
    back from phones against the same reference)."""

    folder: Path
    variants: list[dict[str, Any]]
    ref_entry: dict[str, Any]
    unsafe: dict[str, str]
    x: Any
    y: Any
    task: Any
    why: str
    ctx: Any
    ref_out: list[Any]
    ref_pred: Any
    ref_metrics: dict[str, Any]
    metric: str
    ref_value: float
    ref_fid: dict[str, Any] | None
    lower: set[str]
    overall: float | None
    per_scheme: dict[str, float]
    batch: int = DEFAULT_BATCH
    sample_set: dict[str, Any] | None = None  # the samples evaluated (--samples: a subset)
    runner: Any = TfliteRunner
    """What runs a variant on the host: LiteRT, or ExecuTorch for a PyTorch source's folder."""
    from_torch: bool = False
    """ExecuTorch variants against the PyTorch float model (no edge-case probes: they probe
    LiteRT's kernels)."""

    def allowed(self, scheme: str | None) -> float:
        """The largest drop the scheme's gate allows."""
        return gate_for(scheme, self.overall, self.per_scheme)

    def comparable(self, outputs: list[Any]) -> list[Any]:
        """What per-output fidelity compares (detection: rows an op left unwritten zeroed)."""
        pick = getattr(self.task, "fidelity_outputs", None)
        return pick(outputs, self.ctx) if pick is not None else outputs


def prepare(variants_dir: str | os.PathLike[str], data_path: str | os.PathLike[str], *,
            max_drop: float | str | dict[str, float] | None = None, task: str | None = None,
            labels: str | Path | None = None, decoder: str | None = None, x_key: str = "x",
            y_key: str = "y", image: Any = None, batch: int = DEFAULT_BATCH,
            samples: int | None = None, seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> Prepared:
    """Check the folder and data, pick the task, run the fp32 variant on the host and score
    it (:class:`Prepared`); the arguments as :func:`evaluate`'s, ``progress(samples_done,
    samples)`` as the fp32 variant runs. ``samples``: only a fixed subset of that many samples
    (:func:`quantlab.harness.quantize.samples.pick_samples` with ``seed``); the samples used
    are recorded as ``sample_set`` either way."""
    from quantlab.harness.errors import UserError
    from quantlab.harness.quantize import data as qdata
    from quantlab.harness.quantize.preflight import preflight
    from quantlab.harness.tasks import Context, get_task, infer_task

    folder = Path(variants_dir)
    if not folder.is_dir():
        raise UserError(
            f"{variants_dir}: not a variants folder", hint="make one with `quantlab quantize`"
        )
    overall, per_scheme = parse_max_drop(max_drop)
    variants = variant_files(folder)
    from quantlab.harness.quantize.pte_runner import runner_for, torch_reference

    from_torch = torch_reference(folder)
    ref_runner: Any
    run_variant: Any = TfliteRunner
    unsafe: dict[str, str] = {}
    if from_torch is not None:  # a PyTorch source's variants against its float model
        ref_entry, ref_runner, variants = from_torch
        run_variant = runner_for
        unsafe = preflight([v["path"] for v in variants if v["path"].endswith(".tflite")])
    else:
        if not variants:
            skipped = skipped_variants(folder)
            raise UserError(f"{variants_dir}: holds no TFLite variants",
                            hint=skipped[0]["reason"] if skipped else None)
        found = next((v for v in variants if v["scheme"] == "fp32"), None)
        if found is None:
            raise UserError(
                f"{variants_dir}: no fp32 variant to compare against",
                hint="include fp32 in --schemes when quantizing",
            )
        ref_entry = found
        unsafe = preflight([v["path"] for v in variants])  # native crashes stay out of here
        if ref_entry["path"] in unsafe:
            raise ModelError(ref_entry["path"], unsafe[ref_entry["path"]])
        ref_runner = TfliteRunner(ref_entry["path"], batch=batch)
    shape = (
        tuple(int(d) for d in ref_runner.input["shape_signature"])
        if len(ref_runner.input.get("shape_signature", []))
        else ref_runner.input_shape
    )
    shape = (-1, *shape[1:])
    ds = qdata.load_data(Path(data_path), x_key=x_key, y_key=y_key, image=image,
                         input_shape=shape)
    x = qdata.check_against_model(ds, shape, "float32", ref_entry["path"])
    y = ds.y
    infos = _output_infos(ref_runner)
    if task:
        picked, why = get_task(task), "given with --task"
    else:
        picked, why = infer_task(infos, y, str(labels) if labels else None)
        why = f"inferred: {why}"
    ctx = Context(infos, ref_runner.input_shape, decoder=decoder)
    ctx.labels = picked.load_labels(str(labels) if labels else None, y, len(x), ctx)
    from quantlab.harness.quantize.samples import pick_samples

    index, sample_set = pick_samples(len(x), samples, seed)
    if len(index) < len(x):
        from quantlab.harness.tasks import subset_labels

        x, y = x[index], (y[index] if y is not None else None)
        ctx.labels = subset_labels(ctx.labels, index)
    ref_out = ref_runner.predict(x, (lambda k: progress(k, len(x))) if progress else None)
    return score_reference(Prepared(
        folder=folder, variants=variants, ref_entry=ref_entry, unsafe=unsafe, x=x, y=y,
        task=picked, why=why, ctx=ctx, ref_out=ref_out, ref_pred=None, ref_metrics={},
        metric="", ref_value=1.0, ref_fid=None,
        lower=set(picked.lower_is_better) | LOWER_IS_BETTER, overall=overall,
        per_scheme=per_scheme, batch=batch, sample_set=sample_set, runner=run_variant,
        from_torch=from_torch is not None))


def score_reference(p: Prepared) -> Prepared:
    """``p`` with the fp32 outputs decoded and scored: predictions, metrics, the gated metric
    (the primary one with labels, else the label-free one) and its value."""
    ref_pred = p.task.decode(p.ref_out, p.ctx)
    ref_metrics = p.task.metrics(ref_pred, p.ctx)
    metric = p.task.primary_metric if ref_metrics else p.task.label_free_metric
    ref_value = ref_metrics.get(metric)
    ref_fid: dict[str, Any] | None = None  # the float model against itself, computed once
    if ref_value is None:
        ref_fid = p.task.fidelity(ref_pred, ref_pred, p.ctx)
        ref_value = ref_fid.get(metric)
    return dataclasses.replace(p, ref_pred=ref_pred, ref_metrics=ref_metrics, metric=metric,
                               ref_value=1.0 if ref_value is None else float(ref_value),
                               ref_fid=ref_fid)


def evaluate(
    variants_dir: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    *,
    max_drop: float | str | dict[str, float] | None = None,
    task: str | None = None,
    labels: str | Path | None = None,
    decoder: str | None = None,
    max_mse: float | None = None,
    x_key: str = "x",
    y_key: str = "y",
    image: Any = None,
    batch: int = DEFAULT_BATCH,
    edge: bool = True,
    gate_confidence: bool = False,
    recalibrate: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """Evaluate every TFLite variant of a variants folder against its fp32 variant on the data
    (or, for a folder made from a PyTorch source, every ExecuTorch variant against the PyTorch
    float model: :mod:`quantlab.harness.quantize.pte_runner`; no edge-case probes there).

    ``task``: a name from :data:`quantlab.harness.tasks.TASKS` (None: inferred from the
    outputs and labels, and said so in ``task``). ``labels``: ground truth beside the data
    (COCO annotations JSON for detection). ``max_drop``: see :func:`parse_max_drop` (None:
    each scheme's default gate). ``max_mse``: also fail a variant whose first output's MSE
    against fp32 exceeds it. Each drop comes with its paired 95 % interval
    (:mod:`quantlab.harness.tasks.intervals`); ``gate_confidence`` fails only a drop whose whole
    interval lies beyond its gate (the point estimate decides otherwise). ``warnings`` say
    where the data cannot resolve a gate and where the calibration data is the evaluation
    data. ``recalibrate``: also fit each variant's confidence recalibration on a fixed, seeded
    split of the labelled samples (:func:`recalibration_of`), kept as ``calibration
    ["recalibration"]`` and written into each variant's ``manifest.json`` entry
    (:mod:`~quantlab.harness.quantize.manifest_fits`; a manifest it cannot write is one of the
    ``warnings``); needs labels and a task that recalibrates (classification).

    Returns the :class:`~quantlab.harness.quantize.evaluation.Evaluation`: the task, the fp32
    reference, one row per variant (metrics, fidelity per output, calibration drift, the gate,
    edge cases; or the error the runtime refused it with), the warnings and the variants that
    failed; its ``to_dict`` is ``quantlab evaluate --json``'s record. ``progress(label, done,
    total)`` is called as samples are processed.
    """
    from quantlab.harness.models import file_sha256
    from quantlab.harness.quantize import data as qdata

    done = 0
    label = "fp32"
    total = 0
    n_variants = len(variant_files(Path(variants_dir))) if Path(variants_dir).is_dir() else 0

    def tick(n: int, samples: int = 0) -> None:
        nonlocal done, total
        done += n
        total = total or samples * n_variants
        if progress:
            progress(label, done, total)

    p = prepare(variants_dir, data_path, max_drop=max_drop, task=task, labels=labels,
                decoder=decoder, x_key=x_key, y_key=y_key, image=image, batch=batch,
                progress=tick)
    if recalibrate:
        recalibration_of(p.task, p.ref_pred, p.ref_pred, p.ctx)  # no labels, no such task: now
    folder, variants, ref_entry, unsafe, x = p.folder, p.variants, p.ref_entry, p.unsafe, p.x
    picked, ctx, ref_out, ref_pred = p.task, p.ctx, p.ref_out, p.ref_pred
    ref_metrics, metric, ref_value, ref_fid, lower = (p.ref_metrics, p.metric, p.ref_value,
                                                      p.ref_fid, p.lower)
    total = len(x) * len(variants)
    edge = edge and not p.from_torch  # the edge cases probe LiteRT's kernels
    calib_stats = _calibration_stats(folder)
    # one pass for the data check and the edge cases' range (min, max, mean; no std)
    stats = qdata.input_stats(x, std=False) if edge or calib_stats else None
    low, high = (stats["min"], stats["max"]) if stats else (0.0, 0.0)
    ref_edge = edge_outputs(ref_entry["path"], low, high) if edge else {}
    rows: list[VariantEvaluation] = []
    ref_terms: dict[int, dict[str, Any]] = {}  # fidelity's reference-only terms
    ref_comparable = p.comparable(ref_out)
    for v in variants:
        label = v["scheme"] or Path(v["path"]).name
        sha256 = v["sha256"] or file_sha256(Path(v["path"]))
        if v is ref_entry:
            outputs, pred = ref_out, ref_pred
        else:
            try:
                if v["path"] in unsafe:
                    raise ModelError(v["path"], unsafe[v["path"]])
                outputs = p.runner(v["path"], batch=batch).predict(x, tick)
            except ModelError as exc:  # a variant the runtime refuses fails its gate, alone
                rows.append(VariantEvaluation(
                    scheme=v["scheme"], path=v["path"], sha256=sha256,
                    source_sha256=v["source_sha256"], error=exc.one_line(),
                    gate=GateVerdict(passed=False, drop=None, drop_pt=None, metric=metric,
                                     value=None, max_drop=p.allowed(v["scheme"]),
                                     judged=False)))
                continue
            pred = picked.decode(outputs, ctx)
        same = pred is ref_pred  # the fp32 row: reuse what the reference already computed
        metrics = dict(ref_metrics) if same else picked.metrics(pred, ctx)
        per_output = fidelity(ref_comparable, p.comparable(outputs), ref_terms)
        task_fid = dict(ref_fid) if same and ref_fid is not None else \
            picked.fidelity(ref_pred, pred, ctx)
        value = metrics.get(metric, task_fid.get(metric))
        value = ref_value if value is None else float(value)
        metrics.setdefault(metric, value)
        bad, count = nonfinite_count(p.comparable(outputs))
        interval = _interval(picked, ref_pred, pred, ctx, metric) if not bad else None
        gate = judge(metric, ref_value, value, p.allowed(v["scheme"]), lower,
                     nonfinite=(bad, count), max_mse=max_mse,
                     mse=per_output[0]["mse"], interval=interval, confidence=gate_confidence)
        row = VariantEvaluation(
            scheme=v["scheme"], path=v["path"], sha256=sha256, source_sha256=v["source_sha256"],
            metrics=metrics, fidelity={**task_fid, "outputs": per_output},
            calibration=_calibration(picked, ref_pred, pred, ctx, recalibrate), gate=gate,
            edge_cases=edge_cases(v["path"], low, high, ref_edge) if edge else [])
        rows.append(VariantEvaluation.from_dict(finite_or_none(row.to_dict())))
    fits: list[str] = []
    if recalibrate:  # the fitted values travel with each variant (its manifest.json entry)
        from quantlab.harness.quantize.manifest_fits import keep_fits

        fits = keep_fits(folder, [r.to_dict() for r in rows], str(data_path), len(x))
    return Evaluation(
        task={"name": picked.name, "why": p.why, "decoder": ctx.decoder,
              "primary_metric": picked.primary_metric,
              "label_free_metric": picked.label_free_metric,
              "labels": str(labels) if labels else None, "notes": ctx.notes},
        reference={"scheme": ref_entry["scheme"] or "fp32", "path": ref_entry["path"],
                   "accuracy": ref_metrics, "value": ref_value},
        skipped=skipped_variants(folder, p.from_torch), metric=metric,
        samples=len(x), data=str(data_path),
        warnings=[*_data_warnings(calib_stats, stats),
                  *calibration_overlap(folder, Path(data_path), x),
                  *unresolved_warnings([(r.scheme or r.path, r.gate) for r in rows], len(x),
                                       lower), *fits],
        gate_confidence=gate_confidence, variants=rows)


def recalibration_of(task: Any, ref_pred: Any, pred: Any, ctx: Any) -> dict[str, Any]:
    """The task's confidence recalibration of ``pred`` against ``ctx.labels`` (seed 0; the
    float model's ``ref_pred`` where the task matches it, as detection's recall); UserError
    when there are no labels or the task has no recalibration yet."""
    from quantlab.harness.errors import UserError

    fit = getattr(task, "recalibrate", None)
    if fit is None:
        raise UserError(f"--recalibrate: not available for {task.name} yet",
                        hint="recalibration is fitted for classification and detection")
    if ctx.labels is None:
        raise UserError("--recalibrate: fitting a recalibration needs labels",
                        hint="give labelled data (--y-key)")
    return fit(ref_pred, pred, ctx)  # type: ignore[no-any-return]


def _calibration(task: Any, ref_pred: Any, pred: Any, ctx: Any, recalibrate: bool
                 ) -> dict[str, Any] | None:
    """The task's calibration drift, with the recalibration when asked for."""
    out = task.calibration(ref_pred, pred, ctx)
    if recalibrate and out is not None:
        out["recalibration"] = recalibration_of(task, ref_pred, pred, ctx)
    return out  # type: ignore[no-any-return]


def _interval(task: Any, ref_pred: Any, pred: Any, ctx: Any, metric: str
              ) -> dict[str, Any] | None:
    """The drop's paired 95 % interval from the task ([0, 0] for the reference itself)."""
    if pred is ref_pred:
        return {"low": 0.0, "high": 0.0, "level": 0.95, "method": REFERENCE_ITSELF,
                "resamples": None, "seconds": 0.0}
    find = getattr(task, "drop_interval", None)
    return find(ref_pred, pred, ctx, metric) if find is not None else None


def nonfinite_count(outputs: list[Any]) -> tuple[int, int]:
    """(NaN/Inf values, all values) of a variant's outputs."""
    import numpy as np

    arrays = [np.asarray(o) for o in outputs]
    return (sum(int(a.size - np.count_nonzero(np.isfinite(a))) for a in arrays
                if a.dtype.kind == "f"), sum(int(a.size) for a in arrays))
