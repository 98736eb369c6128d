"""One calibration per (model, calibration samples, options), shared by the int8 family.

int8, int8-io, uint8-io, int16x8 and mixed-int8 from a Keras or SavedModel source all start from the
same calibrated model (:mod:`~quantlab.harness.quantize.tf_calibrated`); :func:`obtain` makes
it once and keeps it in quantlab's cache folder (``<cache>/calibrations/<key>/``) under a key
made of the content it depends on: the source model's sha256, the calibration samples'
sha256 (the arrays the converter is given, after sampling and image decoding), the settings
that change the calibrated model (weight granularity, custom ops) and the TensorFlow version.
A second ``quantize`` of the same model with the same data, the ladder's rungs and several
worker processes of one run reuse it; a changed calibration file makes another key.

Each variant made from a calibration records it in the manifest (``calibration``): its
``id``, ``reused`` (false: this variant made it; ``"cache"``: read from the cache folder, made by
an earlier run or another worker of this run; a scheme name: made by that scheme in the
same worker) and the seconds making it took.
Workers of one run that need the same calibration at the same time wait for the first
(a file lock), then read it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quantlab.harness.cache import cache_dir

if TYPE_CHECKING:
    from quantlab.harness.quantize.converters import Source

CALIBRATED = "calibrated.tflite"  # the model the converter's quantize step takes
DEBUG = "debug.tflite"  # the converter's calibrate-only output, what TF's debugger quantizes
META = "meta.json"


@dataclass(frozen=True)
class Calibration:
    """A calibrated model, ready to be quantized into any scheme of the int8 family."""

    key: str
    calibrated: bytes
    debug: bytes
    seconds: float  # what making it took (the first time)
    made_by: str  # the scheme whose variant made it
    reused: bool | str  # False, "cache", or the scheme of this run that made it
    spent: float = 0.0  # seconds this variant spent on it (making, waiting, reading)

    def record(self) -> dict[str, Any]:
        """The manifest's ``calibration`` for a variant made from it."""
        return {"id": self.key[:16], "reused": self.reused, "seconds": round(self.seconds, 3)}


def calibration_key(model_sha256: str, samples: np.ndarray, options: dict[str, Any]) -> str:
    """The content key: model sha256 + calibration samples' sha256 + options + TF version."""
    import tensorflow as tf

    data = hashlib.sha256()
    data.update(f"{samples.dtype.str}{samples.shape}".encode())
    data.update(np.ascontiguousarray(samples).tobytes())
    parts = {"model": model_sha256, "data": data.hexdigest(), "options": options,
             "tensorflow": tf.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def folder() -> Path:
    """Where calibrations are kept: ``<quantlab cache>/calibrations``."""
    return cache_dir() / "calibrations"


def obtain(source: Source, scheme: str, options: dict[str, Any],
           calibrate: Callable[[], tuple[bytes, bytes]]) -> Calibration:
    """The calibration of ``source`` (its model and ``calib_x``) with ``options`` (the
    settings that change the calibrated model: ``per_tensor``, ``custom_ops``): from this
    process's memory, from the cache folder, or made now by ``calibrate`` (returning the
    calibrated model and the debugger's, see
    :func:`~quantlab.harness.quantize.tf_calibrated.calibrate`) for ``scheme`` and kept
    there."""
    from quantlab.harness.models import file_sha256

    assert source.calib_x is not None
    t0 = time.perf_counter()
    memo: dict[str, Calibration] = source.calibrations
    if not source.model_sha256:
        source.model_sha256 = file_sha256(Path(source.source))
    key = calibration_key(source.model_sha256, source.calib_x, options)
    if key in memo:
        first = memo[key]
        return Calibration(key, first.calibrated, first.debug, first.seconds, first.made_by,
                           first.reused or first.made_by, time.perf_counter() - t0)
    where = folder() / key
    where.parent.mkdir(parents=True, exist_ok=True)
    with open(where.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker making the same one: wait for it
        calibration = _read(where, key)
        if calibration is None:
            calibration = _make(source, scheme, options, key, where, calibrate)
    memo[key] = calibration
    return replace(calibration, spent=time.perf_counter() - t0)


def _read(where: Path, key: str) -> Calibration | None:
    try:
        meta = json.loads((where / META).read_text())
        return Calibration(key, (where / CALIBRATED).read_bytes(), (where / DEBUG).read_bytes(),
                           float(meta["seconds"]), str(meta["made_by"]), "cache")
    except (OSError, ValueError, KeyError):
        return None


def _make(source: Source, scheme: str, options: dict[str, Any], key: str, where: Path,
          calibrate: Callable[[], tuple[bytes, bytes]]) -> Calibration:
    assert source.calib_x is not None
    t0 = time.perf_counter()
    calibrated, debug = calibrate()
    seconds = time.perf_counter() - t0
    tmp = where.with_name(f".{key}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / CALIBRATED).write_bytes(calibrated)
    (tmp / DEBUG).write_bytes(debug)
    (tmp / META).write_text(json.dumps({"seconds": seconds, "made_by": scheme,
                                        "samples": len(source.calib_x), "options": options}))
    if where.exists():  # a broken entry (no meta): replace it
        import shutil

        shutil.rmtree(where, ignore_errors=True)
    tmp.rename(where)
    return Calibration(key, calibrated, debug, seconds, scheme, False)
