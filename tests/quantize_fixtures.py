"""Session-cached models and variants (training and converting are slow): the digits CNN, the
shapes detector, the tiny PyTorch net and their variants, built once for every test module that
imports them (the quantize, device-accuracy and PyTorch tests). Tests read them and write
their own outputs elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
_CACHE: dict[str, Any] = {}
"""Built artifacts by fixture name: fixtures imported by several modules build once."""
QUANTLAB = [sys.executable, "-m", "quantlab"]


def quantlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess; returns the completed process (text)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    return subprocess.run(
        [*QUANTLAB, *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=300
    )


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trained digits CNN (.keras) and its held-out data (.npz with x, y)."""
    from quantlab.harness.quantize.demo_model import build_digits_model

    if "digits" not in _CACHE:
        _CACHE["digits"] = build_digits_model(tmp_path_factory.mktemp("digits"), epochs=10)
    return _CACHE["digits"]


def _training_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quantlab.harness.quantize.demo_model import write_training_split

    if "digits_calib" not in _CACHE:
        _CACHE["digits_calib"] = write_training_split(tmp_path_factory.mktemp("digits_train"))
    return _CACHE["digits_calib"]


@pytest.fixture(scope="session")
def digits_calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits training split (x, y): calibration data that shares no sample with the
    held-out evaluation data (``digits[1]``), as evaluate's held-out rule asks."""
    return _training_split(tmp_path_factory)


@pytest.fixture(scope="session")
def keras_variants(digits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every scheme made from the Keras digits model, calibrated on the training split."""
    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.variants import quantize

    if "keras_variants" not in _CACHE:
        out = tmp_path_factory.mktemp("kv") / "variants"
        quantize(QuantizeRequest.create(digits[0], ["all"], _training_split(tmp_path_factory), out,
                 eval_data=digits[1]))
        _CACHE["keras_variants"] = out
    return _CACHE["keras_variants"]


@pytest.fixture(scope="session")
def digits_fp32_int8(digits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 and int8 of the digits model, calibrated on the training split: the variants the
    device-accuracy tests (sim, Android, iOS, gateway, lab) score. Read-only: a test that
    changes the folder copies it first."""
    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.variants import quantize

    if "digits_fp32_int8" not in _CACHE:
        out = tmp_path_factory.mktemp("digits-fp32-int8") / "v"
        quantize(QuantizeRequest.create(digits[0], ["fp32", "int8"],
                                        _training_split(tmp_path_factory), out))
        _CACHE["digits_fp32_int8"] = out
    return _CACHE["digits_fp32_int8"]


def _detector_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shapes detector (SSD outputs, 3 classes) trained once per session, with its
    evaluation images, COCO labels and calibration images (``build_detector``'s paths)."""
    from quantlab.harness.quantize.demo_detector import build_detector

    if "detector_model" not in _CACHE:
        _CACHE["detector_model"] = build_detector(tmp_path_factory.mktemp("det") / "model",
                                                  styles=("ssd",))
    return _CACHE["detector_model"]


def _detector_variants(tmp_path_factory: pytest.TempPathFactory, schemes: list[str]
                       ) -> dict[str, Path]:
    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.variants import quantize

    key = "detector:" + ",".join(schemes)
    if key not in _CACHE:
        paths = _detector_model(tmp_path_factory)
        out = tmp_path_factory.mktemp("det-" + "-".join(schemes)) / "v"
        quantize(QuantizeRequest.create(paths["ssd"], schemes, paths["calib"], out))
        _CACHE[key] = {**paths, "variants": out}
    return _CACHE[key]


@pytest.fixture(scope="session")
def detector_all(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shapes detector and its fp32/fp16/int8/int8-io variants (``variants``)."""
    return _detector_variants(tmp_path_factory, ["fp32", "fp16", "int8", "int8-io"])


@pytest.fixture(scope="session")
def detector_fp32_int8(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shapes detector (the same trained model as :func:`detector_all`'s) and its fp32
    and int8 variants (``variants``): the device-accuracy tests' detector."""
    return _detector_variants(tmp_path_factory, ["fp32", "int8"])


@pytest.fixture(scope="session")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrained wide model where weights dominate the file size."""
    from quantlab.harness.quantize.demo_model import build_digits_model

    if "wide" not in _CACHE:
        _CACHE["wide"] = build_digits_model(
            tmp_path_factory.mktemp("wide"), epochs=0, width=64, dense_units=512, name="wide"
        )
    return _CACHE["wide"]


@pytest.fixture(scope="session")
def bad_calib(digits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 unrepresentative calibration samples: nearly black images (1/20 of the real range)."""
    if "bad_calib" not in _CACHE:
        data = np.load(digits[1])
        path = tmp_path_factory.mktemp("badcal") / "bad_calib.npz"
        np.savez(path, x=(data["x"][:8] * 0.05).astype(np.float32), y=data["y"][:8])
        _CACHE["bad_calib"] = path
    return _CACHE["bad_calib"]


def plain_litert_top1(path: str, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy computed independently: sample by sample, bare ai_edge_litert Interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    correct = 0
    for i in range(len(x)):
        sample = x[i : i + 1]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            lo, hi = np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max  # int8 or uint8
            sample = np.clip(np.round(sample / scale + zero), lo, hi).astype(inp["dtype"])
        interp.set_tensor(inp["index"], sample)
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(out["index"])[0]) == y[i])
    return correct / len(x)


def _outlier_model(keras_path: Path, out: Path, factor: float = 1000.0) -> Path:
    """The digits model's function, but conv1's busiest channel is ×factor (conv2 compensates).

    Float accuracy is unchanged; a per-tensor int8 scale for conv1's output is
    stretched by the outlier channel and crushes every other channel.
    """
    import keras

    model = keras.models.load_model(keras_path)
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    x = np.load(keras_path.with_suffix(".npz"))["x"][:100]
    busiest = int(np.argmax(np.asarray(conv1(x)).mean(axis=(0, 1, 2))))
    k1, b1 = conv1.get_weights()
    k1[..., busiest] *= factor
    b1[busiest] *= factor
    conv1.set_weights([k1, b1])
    k2, b2 = conv2.get_weights()
    k2[:, :, busiest, :] /= factor
    conv2.set_weights([k2, b2])
    path = out / "outlier.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def outlier_model(digits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits model with one outlier activation channel (same float function)."""
    if "outlier" not in _CACHE:
        _CACHE["outlier"] = _outlier_model(digits[0], tmp_path_factory.mktemp("outlier"))
    return _CACHE["outlier"]


@pytest.fixture(scope="session")
def outlier_tflite(outlier_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The outlier model as a float .tflite (a third-party-style source)."""
    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.variants import quantize

    if "outlier_tflite" not in _CACHE:
        out = tmp_path_factory.mktemp("outlier_tflite") / "v"
        quantize(QuantizeRequest.create(outlier_model, ["fp32"], None, out))
        _CACHE["outlier_tflite"] = out / "fp32.tflite"
    return _CACHE["outlier_tflite"]


TORCH_NET = '''
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.hidden = torch.nn.Linear(8, 512)  # 4096 weights: Core ML compresses it
        self.fc = torch.nn.Linear(512, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.hidden(torch.relu(self.conv(x)).mean((2, 3)))))


def make():
    return Net()
'''
"""The PyTorch tests' tiny conv net (module ``tinynet``, factory ``make``)."""


@pytest.fixture(scope="session")
def torch_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny conv net (:data:`TORCH_NET`) in one folder: its module (``tinynet.py``, so
    ``tinynet:make`` names it with the folder on PYTHONPATH), its ``torch.export`` archive
    (``net.pt2``, input 1×3×8×8) and NCHW calibration data (``calib.npz``, 16 samples).
    Skips without ExecuTorch (the ``torch`` extra). Read-only: tests write their variants
    to folders of their own."""
    pytest.importorskip("executorch")
    import torch

    if "torch_net" not in _CACHE:
        tmp = tmp_path_factory.mktemp("torch")
        (tmp / "tinynet.py").write_text(TORCH_NET)
        sys.path.insert(0, str(tmp))
        try:
            import tinynet
        finally:
            sys.path.remove(str(tmp))
        model = tinynet.make().eval()
        torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 8, 8),)), tmp / "net.pt2")
        rng = np.random.default_rng(0)
        np.savez(tmp / "calib.npz", x=rng.standard_normal((16, 3, 8, 8)).astype(np.float32))
        _CACHE["torch_net"] = tmp
    return _CACHE["torch_net"]
