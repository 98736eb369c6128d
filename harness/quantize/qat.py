"""Quantization-aware training (``qat-int8``): fine-tune with fake quantization, then full integer.

tensorflow-model-optimization (tfmot) only wraps tf-keras (legacy Keras 2)
models, and ``TF_USE_LEGACY_KERAS=1`` has to be set before TensorFlow is
imported. The quantize worker has TensorFlow loaded in Keras 3 mode already,
so :func:`make_variant` starts :mod:`quantlab.harness.quantize.qat_train` as a process
of its own::

    python -m quantlab.harness.quantize.qat_train REQUEST.json

The request names the source model, the labelled training data, the
calibration samples (an .npy the worker wrote), the output file and the
training settings. Progress goes to the worker's events file (``qat_epoch``
events, one per epoch); the outcome is written to ``REQUEST.json``'s
``result`` path: ``{"ok": true, "facts": {...}}`` or ``{"ok": false, "error": "..."}``.

Sources: a Keras 3 ``.keras``/``.h5`` file is rebuilt as a tf-keras model
(layer configs + weights; layers that cannot be rebuilt are named), a tf-keras
``.h5``/``.keras`` loads directly, a SavedModel only when tf-keras can recover
the Keras model from it (:mod:`quantlab.harness.quantize.qat_rebuild`). A float ``.tflite``
holds no trainable graph and is refused before the process starts (see :func:`refusal`).

This module is the controller/worker side: the up-front request check, the refusal
and the subprocess; :mod:`~quantlab.harness.quantize.qat_train` fine-tunes and converts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quantlab.harness.quantize.requests import QatRequest

if TYPE_CHECKING:
    from quantlab.harness.quantize.converters import Source
    from quantlab.harness.quantize.schemes import Scheme

TFLITE_REFUSAL = (
    "a float .tflite cannot be fine-tuned: it holds no trainable Keras graph "
    "(pass the .keras/.h5 file or the SavedModel it was converted from)"
)


class QatError(Exception):
    """Why quantization-aware training could not be done (message for the manifest)."""


def refusal(source_kind: str) -> str | None:
    """Why a source of this kind cannot be fine-tuned, or None when it can."""
    return TFLITE_REFUSAL if source_kind == "tflite" else None


def check_request(schemes: list[Any], source_kind: str, source: Path,
                  train: str | os.PathLike[str] | None) -> None:
    """Refuse at once (UserError/ModelError, nothing written) a training scheme that cannot run:
    a float .tflite source, or no --train data."""
    from quantlab.harness.errors import ModelError, UserError

    training = [s.name for s in schemes if getattr(s, "needs_training", False)]
    if not training:
        return
    why = refusal(source_kind)
    if why:
        raise ModelError(str(source), f"{', '.join(training)}: {why}")
    if train is None:
        raise UserError(f"{', '.join(training)} needs labelled training data",
                        hint="pass --train train.npz (arrays x and y) or DIR/<class>/*.jpg")
    import importlib.util

    missing = [name for name, module in (("tf-keras", "tf_keras"),
                                         ("tensorflow-model-optimization",
                                          "tensorflow_model_optimization"),
                                         ("dm-tree", "tree"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(f"{', '.join(training)} needs {', '.join(missing)} (not installed)",
                        hint="pip install --no-deps 'tf-keras==2.21.*' "
                        "'tensorflow-model-optimization==0.8.1' dm-tree (--no-deps: their "
                        "metadata would add the full tensorflow wheel beside tensorflow-cpu)")


def make_variant(job: Source, scheme: Scheme, settings: dict[str, Any]) -> dict[str, Any]:
    """Converter ``tfmot``: a qat variant for the quantize worker (``job``: the source it
    loaded), fine-tuned by :mod:`~quantlab.harness.quantize.qat_train` in a process of its own
    with TF_USE_LEGACY_KERAS=1 (``settings``: ``int8_io``); returns the manifest fields."""
    import subprocess

    from quantlab.harness.quantize.tflite_facts import float_ops

    why = refusal(job.kind)
    if why:
        raise ValueError(why)
    train = job.req.train
    if not train:
        raise ValueError(f"{scheme.name} needs labelled training data (--train)")
    qat = job.req.qat
    work: Path = job.work
    out = work / f"{scheme.name}{scheme.suffix}"
    tag = f".qat-{scheme.name}"
    calib_npy = None
    if job.calib_x is not None:
        calib_npy = work / f"{tag}-calib.npy"
        np.save(calib_npy, job.calib_x)
    layers = qat.layers
    ranking: list[str] = []
    if layers and len(layers) == 1 and str(layers[0]).startswith("sensitive:"):
        if job.calib_x is None:
            raise ValueError("--qat-layers sensitive:N ranks layers on calibration data (--calib)")
        from quantlab.harness.quantize import tflite_tf

        ranking = [r["layer"] for r in tflite_tf.layer_errors(job.model, job.kind, job.calib_x)]
    request = QatRequest(
        source=job.source, source_kind=job.kind, scheme=scheme.name, events=job.req.events,
        result=str(work / f"{tag}-result.json"), out=str(out), train=train, data=job.req.data,
        input_shape=tuple(job.input_shape), input_dtype=job.input_dtype,
        calib_npy=str(calib_npy) if calib_npy else None,
        int8_io=bool(settings.get("int8_io")), ranking=tuple(ranking), settings=qat)
    req_path = work / f"{tag}-request.json"
    req_path.write_text(json.dumps(request.to_dict()))
    result_path = Path(request.result)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    code = subprocess.call([sys.executable, "-m", "quantlab.harness.quantize.qat_train",
                            str(req_path)],
                           env=env, stdin=subprocess.DEVNULL)
    try:
        if not result_path.exists():
            raise ValueError(f"the training process crashed (exit code {code})")
        result = json.loads(result_path.read_text())
    finally:
        for p in (req_path, result_path, calib_npy):
            if p is not None:
                Path(p).unlink(missing_ok=True)
    if not result.get("ok"):
        raise ValueError(result.get("error") or "quantization-aware training failed")
    facts = result["facts"]
    model = out.read_bytes()
    return {
        "file": out.name,
        "converter": "tfmot",
        "ops": float_ops(model),
        "qat": facts,
        "options": {
            "weights": "tfmot default 8-bit scheme (conv per channel, dense per tensor)",
            "calibration_samples": facts.get("calibration_samples"),
        },
    }
