"""The quantize side's requests as frozen records: what to make, and what one process does.

:class:`QuantizeRequest` is built once, from ``quantlab.quantize``'s keywords or the CLI's
options (:meth:`QuantizeRequest.create`), and read by
:func:`quantlab.harness.quantize.variants.quantize`. Each worker process gets a
:class:`WorkerRequest` (``task``: ``quantize``, ``check`` for the op check alone, or
``sensitivity``) and the qat-int8 training process a :class:`QatRequest`, both as JSON
written by ``to_dict`` and read back by ``from_dict`` on the other side.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from quantlab.harness.errors import UserError
from quantlab.harness.quantize.data import ImageOptions
from quantlab.harness.quantize.options import QuantizeOptions, check_options
from quantlab.harness.records import from_dict, to_dict

PathLike = str | os.PathLike[str]
QAT_SETTINGS = ("epochs", "lr", "batch_size", "val_split", "patience", "layers")


def _path(value: PathLike | None) -> str | None:
    return None if value is None else os.fspath(value)


def _jobs(jobs: int | None) -> int | None:
    if jobs is not None and int(jobs) < 1:
        raise UserError(f"--jobs {jobs}: expected 1 or more worker processes")
    return None if jobs is None else int(jobs)


@dataclass(frozen=True)
class DataSpec:
    """Which data calibrate and evaluate (paths as given; empty means none), and how to read
    them: array keys of an .npz, or how an image folder becomes input."""

    calib: str | None = None
    eval_data: str | None = None  # mixed-int8's gate (default: the calibration data)
    calib_samples: int = 200
    seed: int = 0  # draws the calibration samples
    x_key: str = "x"
    y_key: str = "y"
    image: ImageOptions | None = None


@dataclass(frozen=True)
class QatSettings:
    """qat-int8's fine-tuning settings; None leaves the training process's default."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    val_split: float | None = None
    patience: int | None = None
    layers: tuple[str, ...] | None = None  # Keras layers to quantize, or ("sensitive:N",)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any] | None) -> QatSettings:
        """Settings from a mapping (``quantlab.quantize``'s ``qat``; other keys are ignored,
        an empty layer list is all layers)."""
        given = {k: v for k, v in (settings or {}).items() if k in QAT_SETTINGS}
        layers = given.pop("layers", None)
        return cls(**given, layers=tuple(layers) if layers else None)


@dataclass(frozen=True)
class QuantizeRequest:
    """One variant per scheme of ``source`` into the folder ``out`` (see
    :func:`quantlab.harness.quantize.variants.quantize`)."""

    source: str
    out: str
    schemes: tuple[str, ...] = ("all",)  # names, or all / tflite / coreml
    data: DataSpec = field(default_factory=DataSpec)
    max_drop: float = 0.03  # mixed-int8's gate
    force: bool = False  # replace ``out`` once the new folder is complete
    train: str | None = None  # labelled data for the schemes that fine-tune (qat-int8)
    qat: QatSettings = field(default_factory=QatSettings)
    options: QuantizeOptions = field(default_factory=QuantizeOptions)
    jobs: int | None = None  # worker processes side by side (None: from cores and memory)
    input_shape: tuple[int, ...] | None = None  # a PyTorch source's example input (batch first)

    @classmethod
    def create(cls, source: PathLike, schemes: Sequence[str] | None, calib: PathLike | None,
               out: PathLike, *, eval_data: PathLike | None = None, calib_samples: int = 200,
               seed: int = 0, max_drop: float = 0.03, x_key: str = "x", y_key: str = "y",
               image: ImageOptions | None = None, force: bool = False,
               train: PathLike | None = None, qat: Mapping[str, Any] | None = None,
               options: Mapping[str, Any] | QuantizeOptions | None = None,
               jobs: int | None = None,
               input_shape: Sequence[int] | None = None) -> QuantizeRequest:
        """The request from the values a caller holds (paths, lists, mappings); ``options``
        are checked here (UserError for a bad value, see
        :func:`~quantlab.harness.quantize.options.check_options`)."""
        return cls(
            source=os.fspath(source), out=os.fspath(out),
            schemes=tuple(schemes or ["all"]),
            data=DataSpec(calib=_path(calib), eval_data=_path(eval_data),
                          calib_samples=calib_samples, seed=seed, x_key=x_key, y_key=y_key,
                          image=image),
            max_drop=max_drop, force=force, train=_path(train),
            qat=QatSettings.from_mapping(qat), options=check_options(options), jobs=_jobs(jobs),
            input_shape=tuple(input_shape) if input_shape else None)


@dataclass(frozen=True)
class WorkerRequest:
    """One run of the quantize worker process (:mod:`quantlab.harness.quantize.worker`)."""

    task: Literal["quantize", "check", "sensitivity"]
    source: str  # resolved path
    source_kind: str  # keras | savedmodel | tflite | torch-export | torch-entry
    work_dir: str
    schemes: tuple[str, ...] = ()
    data: DataSpec = field(default_factory=DataSpec)
    max_drop: float = 0.03
    train: str | None = None
    qat: QatSettings = field(default_factory=QatSettings)
    options: QuantizeOptions = field(default_factory=QuantizeOptions)
    events: str = ""  # the JSON-lines events file the worker appends to
    input_shape: tuple[int, ...] | None = None  # a PyTorch source's example input
    by: Literal["error", "accuracy"] = "error"  # sensitivity: how layers are ranked
    top: int | None = None  # sensitivity --by accuracy: convert the error ranking's first N
    eval_task: str | None = None  # sensitivity --by accuracy: the task (None: inferred)
    labels: str | None = None  # its ground truth beside the data (COCO JSON for detection)
    decoder: str | None = None  # detection outputs' decoder (None: inferred)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (what the worker reads)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerRequest:
        """The request the controller wrote."""
        return from_dict(cls, data)


@dataclass(frozen=True)
class QatRequest:
    """One qat-int8 variant for the training process
    (:mod:`quantlab.harness.quantize.qat_train`)."""

    source: str
    source_kind: str
    scheme: str
    events: str  # the worker's events file (``qat_epoch`` events)
    result: str  # where the outcome is written: {"ok": true, "facts"} or {"ok": false, "error"}
    out: str  # the variant file
    train: str
    data: DataSpec  # x_key, y_key, image and seed of the training data
    input_shape: tuple[int, ...]
    input_dtype: str = "float32"
    calib_npy: str | None = None  # the worker's calibration samples (None: 200 training samples)
    int8_io: bool = False
    ranking: tuple[str, ...] = ()  # int8 sensitivity ranking, for layers=("sensitive:N",)
    settings: QatSettings = field(default_factory=QatSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (what the training process reads)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QatRequest:
        """The request the worker wrote."""
        return from_dict(cls, data)
