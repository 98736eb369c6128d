"""The quantize side's typed requests: built once from a caller's values, read back whole by
the processes they are written for (no TensorFlow here: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantlab.harness.errors import UserError
from quantlab.harness.quantize.data import ImageOptions
from quantlab.harness.quantize.options import QuantizeOptions
from quantlab.harness.quantize.requests import (
    DataSpec,
    QatRequest,
    QatSettings,
    QuantizeRequest,
    WorkerRequest,
)


def test_a_request_is_built_once_from_paths_lists_and_mappings(tmp_path: Path) -> None:
    req = QuantizeRequest.create(
        tmp_path / "m.keras", ["fp32", "coreml-w4"], tmp_path / "calib.npz", tmp_path / "v",
        eval_data=tmp_path / "val.npz", calib_samples=50, seed=3, train=tmp_path / "t.npz",
        qat={"epochs": 2, "layers": ["dense"], "not_a_setting": 1},
        options={"granularity": "per-tensor", "coreml_keep": [" dense1 "]})
    assert req.source == str(tmp_path / "m.keras") and req.out == str(tmp_path / "v")
    assert req.schemes == ("fp32", "coreml-w4")
    assert req.data == DataSpec(calib=str(tmp_path / "calib.npz"),
                                eval_data=str(tmp_path / "val.npz"), calib_samples=50, seed=3)
    assert req.qat == QatSettings(epochs=2, layers=("dense",))
    assert req.options == QuantizeOptions(granularity="per-tensor", coreml_keep=("dense1",))
    assert QuantizeRequest.create("m.keras", None, None, "v").schemes == ("all",)
    assert QatSettings.from_mapping({"layers": []}).layers is None  # all layers


def test_bad_options_are_one_line_user_errors_when_the_request_is_built() -> None:
    with pytest.raises(UserError) as err:
        QuantizeRequest.create("m.keras", ["int8"], None, "v", options={"granularity": "x"})
    assert err.value.one_line() == "--granularity 'x': expected per-channel or per-tensor"
    with pytest.raises(UserError, match="sensitive:N alone"):
        QuantizeRequest.create("m.keras", ["coreml-w4"], None, "v",
                               options={"coreml_keep": ["sensitive:2", "dense"]})


def test_worker_and_training_requests_read_back_whole_from_their_json() -> None:
    data = DataSpec(calib="c.npz", eval_data=None, calib_samples=20, seed=1, x_key="images",
                    image=ImageOptions(image_size=(32, 32), mean=(0.5,), std=(0.25,)))
    worker = WorkerRequest(task="quantize", source="/m.keras", source_kind="keras",
                           work_dir="/w", schemes=("fp32", "int8"), data=data, max_drop=0.01,
                           train="t.npz", qat=QatSettings(lr=0.001, layers=("sensitive:1",)),
                           options=QuantizeOptions(mixed_max_size_share=0.6), events="/e")
    assert WorkerRequest.from_dict(json.loads(json.dumps(worker.to_dict()))) == worker
    qat = QatRequest(source="/m.keras", source_kind="keras", scheme="qat-int8", events="/e",
                     result="/r.json", out="/q.tflite", train="t.npz", data=data,
                     input_shape=(-1, 28, 28, 1), calib_npy="/c.npy", int8_io=True,
                     ranking=("conv1",), settings=QatSettings(epochs=1))
    assert QatRequest.from_dict(json.loads(json.dumps(qat.to_dict()))) == qat
