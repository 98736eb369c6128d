"""The batch a model runs at (quantlab.agents.litert.runner.batching): the simulator's outputs
mode and the host's evaluation share it, and learning that a model cannot batch costs neither
a full batch's invoke nor a second load of the model (issue 22's speed target: the simulator's
outputs call against a bare LiteRT process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_tasks import blazeface_model

from quantlab.agents.litert.runner import batching
from quantlab.agents.litert.runner import outputs as mode
from quantlab.agents.litert.runner.runtime import Phases, interpreter


class Counting:
    """A LiteRT interpreter that records the batch of each invoke."""

    def __init__(self, interp: Any, invoked: list[int]) -> None:
        self._interp, self._invoked = interp, invoked

    def __getattr__(self, name: str) -> Any:
        return getattr(self._interp, name)

    def invoke(self) -> None:
        self._invoked.append(int(self._interp.get_input_details()[0]["shape"][0]))
        self._interp.invoke()


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, 128, 128, 3)).astype(np.float32)


def test_outputs_loads_an_unbatchable_model_once_and_never_runs_a_full_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BlazeFace (a fixed reshape folds the batch into its anchors; 10 MB of tensors an
    image) runs one image at a time: the outputs mode loads it once and invokes it once per
    sample, where it used to run 64 images of zeros to find out and then load it again; the
    outputs are a one-at-a-time loop's."""
    loads: list[str] = []
    invoked: list[int] = []

    def counting(model: str, delegate: str, threads: int) -> Counting:
        loads.append(model)
        return Counting(interpreter(model, delegate, threads), invoked)

    monkeypatch.setattr(mode, "interpreter", counting)
    x = _images(5)
    np.savez(tmp_path / "set.npz", x=x)
    job = {"model": str(blazeface_model()), "delegate": "xnnpack", "threads": 1,
           "outputs_inputs": str(tmp_path / "set.npz"), "outputs_path": str(tmp_path / "o.npz")}
    result = mode.outputs(job, Phases(tmp_path / "result.json"))
    assert (result["samples"], result["batch"]) == (5, 1)
    assert len(loads) == 1 and invoked == [1] * 5
    got = np.load(tmp_path / "o.npz")
    bare = interpreter(str(blazeface_model()), "xnnpack", 1)
    bare.allocate_tensors()
    for i in range(5):
        bare.set_tensor(bare.get_input_details()[0]["index"], x[i:i + 1])
        bare.invoke()
        for o in bare.get_output_details():
            assert np.array_equal(got[f"output:{o['name']}"][i], bare.get_tensor(o["index"])[0])


def test_a_folded_batch_is_found_at_batch_2_without_a_reload(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the size cap lifted, BlazeFace is probed: batch 2 shows its outputs fold the
    batch, the interpreter goes back to the model's own shapes (no reload) and gives what a
    fresh one gives."""
    monkeypatch.setattr(batching, "BATCH_BYTES", 1 << 40)
    invoked: list[int] = []
    reloads: list[int] = []
    model = str(blazeface_model())

    def reload() -> Any:
        reloads.append(1)
        return interpreter(model, "xnnpack", 1)

    interp, batch = batching.fit_batch(Counting(interpreter(model, "xnnpack", 1), invoked),
                                       64, reload)
    assert batch == 1 and reloads == [] and max(invoked, default=0) <= batching.PROBE
    fresh = interpreter(model, "xnnpack", 1)
    fresh.allocate_tensors()
    x = _images(1)
    for it in (interp, fresh):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
    for a, b in zip(interp.get_output_details(), fresh.get_output_details(), strict=True):
        assert list(a["shape"]) == [1, 896, a["shape"][2]]
        assert np.array_equal(interp.get_tensor(a["index"]), fresh.get_tensor(b["index"]))


def test_a_stored_set_is_mapped_not_read_up_front_and_a_compressed_one_still_reads(
        tmp_path: Path) -> None:
    """The set the harness writes (``np.savez``: stored members) reaches the loop as memory
    maps of the file, so its bytes are read as the loop reaches them instead of copied and
    checksummed first; a compressed .npz (or a quantized input) is read as before, with the
    same values."""
    details = [{"name": "images", "shape": [1, 4, 4, 3], "dtype": np.float32,
                "quantization": (0.0, 0)}]
    x = _images(6)[:, :4, :4, :]
    np.savez(tmp_path / "stored.npz", images=x)
    np.savez_compressed(tmp_path / "packed.npz", images=x)
    (stored,) = mode.sample_arrays(str(tmp_path / "stored.npz"), details)
    (packed,) = mode.sample_arrays(str(tmp_path / "packed.npz"), details)
    assert isinstance(stored, np.memmap) and not isinstance(packed, np.memmap)
    assert np.array_equal(stored, x) and np.array_equal(packed, x)
    quantized = [{**details[0], "dtype": np.int8, "quantization": (1 / 64, 0)}]
    (q,) = mode.sample_arrays(str(tmp_path / "stored.npz"), quantized)
    assert q.dtype == np.int8 and np.array_equal(q, np.clip(np.round(x * 64), -128, 127))
