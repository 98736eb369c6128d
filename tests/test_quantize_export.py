"""A worker exports a Keras model to a SavedModel once, not once per conversion (#27), and the
conversions that reuse the export are the bytes a fresh ``TFLiteConverter`` makes.

Measured on MobileNetV2 the export was most of each conversion's time; the float model, fp16,
dynamic-int8 and the int8 family's calibration each exported the same model again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _model() -> object:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, activation="softmax"),
    ])


def test_one_export_serves_every_conversion_of_a_model(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    import keras

    from quantlab.harness.quantize import tf_calibrated, tflite_tf

    writes: list[str] = []
    archive = type(keras.export.ExportArchive())  # the backend's class (TF: TFExportArchive)
    own = archive.write_out

    def counted(self: object, filepath: str, *args: object, **kwargs: object) -> object:
        writes.append(str(filepath))
        return own(self, filepath, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(archive, "write_out", counted)
    model, other = _model(), _model()
    x = np.random.default_rng(0).uniform(0, 1, (8, 12, 12, 3)).astype(np.float32)
    tflite_tf.source_ops(model, "keras")
    tflite_tf.convert(model, "keras", {"fp16": True}, x)
    tflite_tf.convert(model, "keras", {"optimize": True}, x)
    tf_calibrated.calibrate(model, "keras", x)
    assert len(writes) == 1, writes
    tflite_tf.convert(other, "keras", {}, x)  # another model: its own export
    assert len(writes) == 2 and writes[1] != writes[0]


def test_conversions_from_the_kept_export_are_the_fresh_converters_bytes() -> None:
    import tensorflow as tf

    from quantlab.harness.quantize import tflite_tf

    model = _model()
    x = np.random.default_rng(1).uniform(0, 1, (16, 12, 12, 3)).astype(np.float32)
    tflite_tf.convert(model, "keras", {}, x)  # the export is made here, reused below
    for settings in ({}, {"fp16": True}, {"optimize": True},
                     {"optimize": True, "int8_ops": True},
                     {"optimize": True, "int8_ops": True, "int8_io": True}):
        fresh = tflite_tf.configure(tf.lite.TFLiteConverter.from_keras_model(model), settings, x)
        assert tflite_tf.convert(model, "keras", settings, x) == bytes(fresh.convert()), settings


def _exports(*roots: Path) -> list[Path]:
    """Export folders left anywhere under these folders."""
    return [p for root in roots if root.exists() for p in root.rglob("quantlab-export-*")]


def test_a_worker_killed_mid_export_leaves_no_export_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.variants import quantize

    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # where tempfile would put it (the workers' env)
    monkeypatch.setenv("QUANTLAB_CACHE", str(cache))
    model = tmp_path / "m.keras"
    _model().save(model)  # type: ignore[attr-defined]
    killed: list[int] = []

    def kill_mid_export() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "quantlab.harness.quantize.worker" in " ".join(p.cmdline())]
            if workers and _exports(tmp, cache):
                workers[0].send_signal(signal.SIGKILL)
                killed.append(workers[0].pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_mid_export)
    killer.start()
    try:
        manifest = quantize(QuantizeRequest.create(model, ["fp32"], None, tmp_path / "v",
                                                   jobs=1))
    except Exception:  # the only scheme failed: quantize may refuse to finish
        manifest = None
    killer.join()
    assert killed, "no worker was seen exporting"
    if manifest is not None:
        assert "crashed" in str(manifest.variants[0].error)
    assert _exports(tmp, cache) == []


def test_export_folders_of_dead_processes_are_swept(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from quantlab.harness.quantize import tf_export

    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "cache"))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # a pid no process has now (a quantize parent killed with its workers)
    dead = tf_export.exports_folder() / f"{tf_export.folder_prefix(ended.pid)}x"
    alive = tf_export.exports_folder() / f"{tf_export.folder_prefix(os.getpid())}y"
    # a cache folder shared with another host: its pids mean nothing here, its folders stay
    elsewhere = tf_export.exports_folder() / f"quantlab-export-{ended.pid}-otherhost9-z"
    for folder in (dead, alive, elsewhere):
        (folder / "variables").mkdir(parents=True)
    tf_export.sweep()
    assert not dead.exists() and alive.exists() and elsewhere.exists()


def test_an_unwritable_cache_folder_exports_into_the_temporary_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quantlab.harness.quantize import tf_export

    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("QUANTLAB_CACHE", str(tmp_path / "not-a-folder"))
    monkeypatch.setattr(tf_export.tempfile, "tempdir", str(tmp_path))
    folder = Path(tf_export.new_folder())
    assert folder.is_dir() and folder.parent == tmp_path
    assert folder.name.startswith(tf_export.folder_prefix(os.getpid()))
