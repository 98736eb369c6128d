"""Make the variants of a model: a worker process per attempt, a temp folder renamed at the end.

``quantize(request)`` (a :class:`~quantlab.harness.quantize.requests.QuantizeRequest`) writes
the request's ``out`` folder with one file per scheme and ``manifest.json``. A scheme that
fails is recorded with its reason while the others are produced; a bad model or bad data (or
Ctrl-C) leaves no half-written variants folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from quantlab.harness.errors import DataError, ModelError, UserError
from quantlab.harness.models import file_sha256
from quantlab.harness.quantize.data import ImageOptions
from quantlab.harness.quantize.lanes import Lanes, ProgressFn, default_jobs, run_worker, work_order
from quantlab.harness.quantize.manifest import MANIFEST, Manifest, VariantEntry, tool_versions
from quantlab.harness.quantize.requests import DataSpec, QuantizeRequest, WorkerRequest
from quantlab.harness.quantize.schemes import Scheme, resolve_schemes


def source_kind(path: Path) -> str:
    """keras | savedmodel | tflite | torch-export (.pt2) | torch-entry (``module:factory``), or
    ModelError naming the file and what to pass instead (UserError naming the ``torch`` extra
    for a PyTorch source without it)."""
    from quantlab.harness.quantize.torch_source import require_extra, torch_kind

    torch = torch_kind(str(path))
    if torch is not None:
        require_extra(str(path))
        if torch == "torch-export" and not path.is_file():
            raise ModelError(str(path), "no such model file")
        return torch
    if not path.exists():
        raise ModelError(str(path), "no such model file or folder")
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return "savedmodel"
        if path.suffix == ".mlpackage":
            raise ModelError(
                str(path), "Core ML is an output format only", hint="quantize the Keras/TF source"
            )
        raise ModelError(str(path), "folder is not a SavedModel (no saved_model.pb)")
    suffix = path.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        return "keras"
    if suffix == ".tflite":
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise ModelError(
                str(path),
                "not a TFLite flatbuffer (no TFL3 identifier)",
                hint="is the file corrupt?",
            )
        return "tflite"
    if suffix == ".pte":
        raise ModelError(str(path), "ExecuTorch .pte is an output format only",
                         hint="quantize the PyTorch source (.pt2 or module:factory)")
    if suffix in (".mlmodel", ".mlpackage"):
        raise ModelError(
            str(path), "Core ML is an output format only", hint="quantize the Keras/TF source"
        )
    raise ModelError(
        str(path),
        f"unsupported model format {suffix!r}",
        hint="pass a .keras/.h5, a SavedModel folder, a float .tflite, a torch.export .pt2 "
        "or module:factory",
    )


def path_size(path: Path) -> int:
    """Bytes of a file or of every file in a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _raise_fatal(ev: dict[str, Any], source: Path) -> None:
    if ev.get("kind") == "UserError":  # an option the model contradicts (options.OptionError)
        raise UserError(ev["message"], hint=ev.get("hint"))
    cls = DataError if ev.get("kind") == "DataError" else ModelError
    if cls is ModelError:
        msg = ev["message"]
        prefix = f"{source}: "
        raise ModelError(
            str(source), msg[len(prefix) :] if msg.startswith(prefix) else msg, hint=ev.get("hint")
        )
    raise DataError(ev["message"], hint=ev.get("hint"))


def precheck_data(path: Path, what: str, data: DataSpec) -> None:
    """Fail fast (before any converter starts) on data that cannot be read at all.

    Arrays are loaded and checked for numeric inputs/labels; an image folder is
    checked for images. Shapes are checked against the model later, in the worker.
    """
    from quantlab.harness.quantize.data import IMAGE_SUFFIXES, load_data

    if not path.exists():
        raise DataError(f"{path}: no such {what} file or folder")
    if path.is_dir():
        if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in path.glob("*/*")):
            raise DataError(f"{path}: no images found", hint="lay images out as DIR/<class>/*.jpg")
        return
    load_data(path, x_key=data.x_key, y_key=data.y_key, image=data.image)


def quantize(request: QuantizeRequest, progress: ProgressFn | None = None) -> Manifest:
    """Make one variant per scheme of ``request.source`` into ``request.out`` and write its
    manifest.

    ``request.schemes``: scheme names (see schemes.SCHEMES; ``all``, ``tflite``, ``coreml``
    expand). ``request.data``: calibration data (.npz/.npy/image folder; also mixed-int8's
    gate unless ``eval_data`` is given) and how to read it. ``train``: labelled data for the
    schemes that fine-tune (``qat-int8``), with ``qat`` settings (see
    :mod:`quantlab.harness.quantize.qat`). ``options``: int8 options and ``coreml_keep``
    (see :mod:`quantlab.harness.quantize.options`), recorded per variant. ``out`` must not
    exist unless ``force`` (then it is replaced only once the new one is complete). Raises
    ModelError/DataError (nothing written) for a bad model or data; a scheme that fails is
    recorded as ``failed`` in the manifest. ``progress(event, fields)`` follows the worker.
    """
    src = Path(request.source)
    kind = source_kind(src)
    picked: list[Scheme] = resolve_schemes(list(request.schemes) or ["all"], kind)
    if kind == "torch-entry" and not request.input_shape:
        raise UserError(f"{src}: a module:factory source needs its example-input shape",
                        hint="pass --input-shape 1,3,32,32 (batch first)")
    from quantlab.harness.quantize.options import keeps_layers
    from quantlab.harness.quantize.qat import check_request

    if request.options.coreml_keep:
        if not any(keeps_layers(s) for s in picked):
            raise UserError("--coreml-keep keeps layers fp16 in palettized Core ML weights",
                            hint="add the scheme coreml-w4")
        if kind != "keras":
            raise UserError(f"--coreml-keep names Keras layers: {src} is a {kind} source",
                            hint="pass the .keras/.h5 file")
    check_request(picked, kind, src, request.train)
    out = Path(request.out)
    if out.exists() and any(out.iterdir()) and not request.force:
        raise UserError(
            f"{out}: already exists", hint="choose another --out or pass --force to replace it"
        )
    for p, what in ((request.data.calib, "calibration data"),
                    (request.data.eval_data, "evaluation data"), (request.train, "training data")):
        if p is not None:
            precheck_data(Path(p), what, request.data)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        manifest = _build(request, src, kind, picked, work, progress)
        (work / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2, default=str) + "\n")
        for leftover in work.glob(".*"):
            if leftover.is_file():
                leftover.unlink()
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            work.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _build(request: QuantizeRequest, src: Path, kind: str, picked: list[Scheme], work: Path,
           progress: ProgressFn | None) -> Manifest:
    data = request.data
    worker_request = WorkerRequest(
        task="quantize", source=_resolved(src, kind), source_kind=kind, work_dir=str(work),
        data=replace(data, calib=str(data.calib) if data.calib else None,
                     eval_data=str(data.eval_data) if data.eval_data else None),
        max_drop=request.max_drop, train=request.train or None, qat=request.qat,
        options=request.options, input_shape=request.input_shape)
    out = Path(request.out)
    order = work_order(picked)
    size = 0 if kind == "torch-entry" else path_size(src)  # module:factory: no file to size
    jobs = request.jobs or default_jobs(size, len(order))
    lanes = Lanes(replace(worker_request, schemes=tuple(order)), work, min(jobs, len(order)),
                  progress)
    lanes.run()
    info: dict[str, Any] = {}
    calibration: dict[str, Any] | None = None
    warns: list[str] = []
    source_notes: list[str] = []
    source_ops: dict[str, Any] | None = None
    for ev in lanes.events:
        kind_ev = ev["event"]
        if kind_ev == "fatal":
            _raise_fatal(ev, src)
        elif kind_ev == "inspect":
            info = {"shape": ev["input_shape"], "dtype": ev["input_dtype"],
                    "inputs": ev["inputs"]}
        elif kind_ev == "calibration":
            calibration = {k: v for k, v in ev.items() if k != "event"}
        elif kind_ev == "source_note":
            if ev["message"] not in source_notes:
                source_notes.append(ev["message"])
        elif kind_ev == "opcheck":
            source_ops = {k: v for k, v in ev.items() if k != "event"}
        elif kind_ev == "warning" and ev["message"] not in warns:
            warns.append(ev["message"])
    for code, events, tail in lanes.attempts:
        if not any(ev["event"] == "inspect" for ev in events):
            raise ModelError(
                str(src),
                f"the converter process crashed while loading it (exit code {code})",
                hint="is the model file corrupt?",
            )
        last = tail.strip().splitlines()[-1:] or [""]
        raise ModelError(
            str(src), f"the converter process failed (exit code {code}) {last[0][:200]}"
        )
    results = lanes.results
    entries = []
    for scheme in picked:
        ev = results.get(scheme.name) or {"event": "failed", "error": "not made (worker stopped)"}
        if ev["event"] == "done":
            path = work / ev["file"]
            entries.append(
                VariantEntry(
                    scheme=scheme.name,
                    format=scheme.format,
                    status="ok",
                    file=ev["file"],
                    size_bytes=path_size(path),
                    sha256=file_sha256(path),
                    seconds=round(ev.get("seconds", 0.0), 3),
                    seconds_split=ev.get("seconds_split"),
                    converter=ev.get("converter"),
                    ops=ev.get("ops"),
                    mixed=ev.get("mixed"),
                    notes=ev.get("notes"),
                    options=ev.get("options"),
                    qat=ev.get("qat"),
                    calibration=ev.get("calibration"),
                )
            )
        else:
            entries.append(
                VariantEntry(
                    scheme=scheme.name,
                    format=scheme.format,
                    status="failed",
                    error=ev.get("error"),
                    seconds=ev.get("seconds"),
                )
            )
    source_info = {
        "path": str(src),
        "kind": kind,
        "sha256": None if kind == "torch-entry" else file_sha256(src),
        "size_bytes": None if kind == "torch-entry" else path_size(src),
        "ops": source_ops,
        "notes": source_notes,
    }
    return Manifest(
        out=str(out),
        source=source_info,
        input=info,
        calibration=calibration,
        tools=tool_versions(),
        variants=entries,
        warnings=warns,
    )


def _resolved(src: Path, kind: str) -> str:
    """The source as the worker opens it: a resolved path, or ``module:factory`` as given."""
    return str(src) if kind == "torch-entry" else str(src.resolve())


def check(source: str | os.PathLike[str], schemes: list[str] | None) -> dict[str, Any]:
    """The op-support check alone (``quantize --check``): the source's ops and, per scheme,
    whether it can be made and run, the ops it needs and why not (in a worker; no data)."""
    src = Path(source)
    kind = source_kind(src)
    picked = resolve_schemes(schemes or ["all"], kind)
    with tempfile.TemporaryDirectory(prefix="quantlab-check-") as tmp:
        request = WorkerRequest(task="check", source=_resolved(src, kind), source_kind=kind,
                                work_dir=tmp, schemes=tuple(s.name for s in picked))
        code, events, tail = run_worker(request, Path(tmp))
    ops: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for ev in events:
        if ev["event"] == "fatal":
            _raise_fatal(ev, src)
        elif ev["event"] == "opcheck":
            ops = {k: v for k, v in ev.items() if k != "event"}
        elif ev["event"] == "check":
            rows.append({k: v for k, v in ev.items() if k != "event"})
        elif ev["event"] == "source_note":
            notes.append(ev["message"])
    if ops is None:
        last = tail.strip().splitlines()[-1:] or [""]
        raise ModelError(str(src), f"the op check crashed (exit code {code}) {last[0][:200]}")
    return {"source": str(src), "kind": kind, "ops": ops, "notes": notes, "schemes": rows}


def sensitivity(
    source: str | os.PathLike[str],
    calib: str | os.PathLike[str],
    *,
    calib_samples: int = 200,
    seed: int = 0,
    x_key: str = "x",
    y_key: str = "y",
    image: ImageOptions | None = None,
    data: str | os.PathLike[str] | None = None,
    by: Literal["error", "accuracy"] = "error",
    top: int | None = None,
    input_shape: Sequence[int] | None = None,
    task: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    decoder: str | None = None,
) -> dict[str, Any]:
    """Layers of ``source``, most sensitive first (in a worker): ``{"by", "layers",
    "seconds", "top", "converted", "task", "metric"}``. ``by="error"`` ranks by int8
    quantization error on ``calib``; ``by="accuracy"`` quantizes one layer at a time (the
    rest float) and ranks by the task metric's drop on the labelled ``data`` (``top``: only
    the error ranking's first N layers, the rest following in the error ranking's order
    without a drop; ``converted``: how many were). ``seconds`` says what each ranking cost.
    A PyTorch source is ranked on litert-torch's float .tflite of it (the layers are that
    file's tensors, as for its LiteRT variants); ``input_shape`` is a ``module:factory``
    source's example input. ``task``, ``labels``, ``decoder`` (``by="accuracy"`` only): as
    :func:`~quantlab.harness.quantize.evaluate.evaluate` takes them; each model is scored by
    that task's plug-in (detection by mAP, segmentation by mIoU; ``task``/``metric`` say
    which)."""
    src = Path(source)
    kind = source_kind(src)
    if kind == "torch-entry" and not input_shape:
        raise UserError(f"{source}: a module:factory source needs its example-input shape",
                        hint="pass input_shape=(1, 3, H, W), or rank its .pt2 archive")
    if not Path(calib).exists():
        raise DataError(f"{calib}: no such calibration data file or folder")
    if by == "accuracy" and data is None:
        raise DataError("sensitivity --by accuracy needs labelled data to score each layer on",
                        hint="add --data eval.npz (inputs and labels, as evaluate takes them)")
    if data is not None and not Path(data).exists():
        raise DataError(f"{data}: no such evaluation data file or folder")
    given = [f for f, v in (("--task", task), ("--labels", labels), ("--decoder", decoder))
             if v is not None]
    if given and by != "accuracy":
        raise UserError(f"{given[0]}: only used with --by accuracy",
                        hint="add --by accuracy --data eval.npz")
    if task is not None:
        from quantlab.harness.tasks import get_task

        get_task(task)  # an unknown task fails before the worker starts
    if labels is not None and not Path(labels).is_file():
        raise DataError(f"{labels}: no such labels file", hint="pass the COCO annotations JSON")
    if top is not None and (by != "accuracy" or top < 1):
        raise UserError(f"--top {top}: " + ("at least 1" if by == "accuracy" else
                                            "only used with --by accuracy"),
                        hint="--by accuracy --top N converts the error ranking's first N layers")
    with tempfile.TemporaryDirectory(prefix="quantlab-sens-") as tmp:
        request = WorkerRequest(
            task="sensitivity", source=str(source) if kind == "torch-entry"
            else str(src.resolve()), source_kind=kind, work_dir=tmp,
            data=DataSpec(calib=str(calib), eval_data=None if data is None else str(data),
                          calib_samples=calib_samples, seed=seed, x_key=x_key,
                          y_key=y_key, image=image), by=by, top=top,
            input_shape=tuple(input_shape) if input_shape else None, eval_task=task,
            labels=None if labels is None else str(Path(labels).resolve()), decoder=decoder)
        code, events, _ = run_worker(request, Path(tmp))
    for ev in events:
        if ev["event"] == "fatal":
            _raise_fatal(ev, src)
        if ev["event"] == "ranking":
            layers = list(ev["layers"])
            return {"by": ev["by"], "layers": layers, "seconds": ev["seconds"],
                    "top": ev.get("top"), "task": ev.get("task"), "metric": ev.get("metric"),
                    "converted": sum(r.get("ranked_by") == "accuracy" for r in layers)}
    raise ModelError(str(src), f"the sensitivity worker crashed (exit code {code})")
