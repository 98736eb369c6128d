"""One SavedModel export of a Keras model per worker process, reused by every TF Lite conversion.

``TFLiteConverter.from_keras_model(model).convert()`` first exports the Keras model to a
SavedModel in a temporary folder (tracing every layer, writing the variables), loads it back
and only then runs the MLIR converter on that folder. Measured on MobileNetV2, the export is
most of each conversion's time, and a worker converts the same model several times (the float
model for the op check, fp16, dynamic-int8, the int8 family's calibration, sensitivity's
ranking). :func:`reuse_export` makes a converter do the export once per model and process:
the first conversion exports into a folder kept until the process ends, and later ones load
that folder as the converter itself does after its own export (the SavedModel's graph, its
serving signature, the loaded object). The MLIR converter then reads the same SavedModel, so
every variant is the same bytes as before (``tests/test_quantize_export.py`` compares them).

The export folders live in quantlab's cache folder (``<cache>/exports/``), each named by its
worker's process id: a worker removes its own when it ends (normally, on SIGTERM or SIGINT);
the process that started it removes them when it sees the worker end however it ended (a
SIGKILL included, :func:`remove_for`); and every quantize first sweeps the folders of
processes that no longer exist (:func:`sweep`: a parent killed with its workers).

TensorFlow's converter internals are private API: this module is the one place that replaces
the converter's export step, inside the quantize worker process only.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantlab.harness.cache import cache_dir

PREFIX = "quantlab-export-"


@dataclass
class _Export:
    """A Keras model's SavedModel export, as the converter loaded it after writing it."""

    folder: str | None  # None: the export failed (the converter falls back to freezing)
    trackable: Any = None  # the loaded SavedModel (its debug info names the tensors)


_EXPORTS: weakref.WeakKeyDictionary[Any, _Export] = weakref.WeakKeyDictionary()
"""This process's exports by Keras model (dropped with the model)."""


def reuse_export(converter: Any, model: Any) -> Any:
    """``converter`` (from ``TFLiteConverter.from_keras_model(model)``) exporting ``model`` to a
    SavedModel only the first time in this process; returns the converter."""
    own = converter._convert_keras_to_saved_model

    def convert_keras_to_saved_model(_output_dir: str) -> tuple[Any, Any, Any]:
        export = _EXPORTS.get(model)
        if export is None:
            folder = new_folder()
            found = own(folder)
            exported = found[0] is not None
            _EXPORTS[model] = _Export(folder if exported else None,
                                      converter._trackable_obj if exported else None)
            return tuple(found)  # type: ignore[return-value]
        if export.folder is None:
            return None, None, None
        return _load(converter, export)

    converter._convert_keras_to_saved_model = convert_keras_to_saved_model
    return converter


def exports_folder() -> Path:
    """Where the workers' export folders live: ``<quantlab cache>/exports``."""
    return cache_dir() / "exports"


def host_tag() -> str:
    """This host's name as it appears in export folders' names (letters and digits only): a
    cache folder shared by several hosts holds their exports side by side, and a pid means
    something only on the host that ran it."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"


def folder_prefix(pid: int) -> str:
    """``quantlab-export-PID-HOST-``: how the export folders of process ``pid`` here begin."""
    return f"{PREFIX}{pid}-{host_tag()}-"


def new_folder() -> str:
    """A fresh export folder for this process, named by its pid and host
    (``quantlab-export-PID-HOST-…``) and removed when the process ends (in the system's
    temporary folder where the cache folder cannot be written)."""
    prefix = folder_prefix(os.getpid())
    try:
        root = exports_folder()
        root.mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(prefix=prefix, dir=root)
    except OSError:
        folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _pid(folder: Path) -> int | None:
    """The pid of a folder this host's process made (None: not an export, or another host's)."""
    fields = folder.name.removeprefix(PREFIX).split("-", 2)
    if not folder.name.startswith(PREFIX) or len(fields) < 3 or not fields[0].isdigit():
        return None
    return int(fields[0]) if fields[1] == host_tag() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_for(pid: int) -> None:
    """Remove the export folders of the process ``pid`` (a worker that has ended)."""
    root = exports_folder()
    for folder in root.glob(f"{folder_prefix(pid)}*") if root.is_dir() else ():
        shutil.rmtree(folder, ignore_errors=True)


def sweep() -> None:
    """Remove the export folders of this host's processes that no longer run (killed before
    they could); other hosts' folders in a shared cache folder are theirs to sweep."""
    try:
        folders = list(exports_folder().iterdir())
    except OSError:  # no exports folder yet, or one this user cannot read
        return
    for folder in folders:
        pid = _pid(folder)
        if pid is not None and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _load(converter: Any, export: _Export) -> tuple[Any, Any, Any]:
    """What the converter's own export step does after writing the folder, the loaded object
    kept from the first time (loading it again gives the same object)."""
    from tensorflow.python.saved_model import signature_constants, tag_constants

    converter.saved_model_dir = export.folder
    converter._saved_model_tags = {tag_constants.SERVING}
    converter._saved_model_exported_names = [
        signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY]
    converter._parse_saved_model_args(
        always_enable_saved_model_import=converter.experimental_lower_to_saved_model)
    if not converter.saved_model_dir:
        return None, None, None
    graph_def, inputs, outputs = converter._load_saved_model(
        converter.saved_model_dir, converter._saved_model_tags)
    converter._trackable_obj = export.trackable
    return graph_def, inputs, outputs
