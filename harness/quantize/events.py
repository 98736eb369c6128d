"""What the quantize worker processes share with the controller: the JSON-lines events log.

The worker (:mod:`quantlab.harness.quantize.worker`) and the training process it starts
(:mod:`quantlab.harness.quantize.qat_train`) append one JSON object per event to the file the
request names, so that the controller follows progress and survives a native crash. Both
quiet TensorFlow and the converters' loggers first (:func:`silence`).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np


class Events:
    """Append-only JSON-lines event log, flushed per event."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def emit(self, event: str, **fields: Any) -> None:
        """Append one event with its fields (numpy values as plain JSON)."""
        self._f.write(json.dumps({"event": event, **fields}, default=_jsonable) + "\n")
        self._f.flush()


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def silence() -> None:
    """Quiet TensorFlow, absl and converter loggers."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    warnings.filterwarnings("ignore")
    import logging

    for name in ("tensorflow", "absl", "coremltools", "h5py", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
