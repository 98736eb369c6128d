"""Run a .tflite on the host through LiteRT: float inputs in, float outputs out.

Small models are fed in batches (the interpreter's batch dimension is resized once)
so evaluation keeps up with a bare per-sample LiteRT loop; large models (their
tensors over :data:`BATCH_BYTES` per sample) and models whose batch cannot be
resized are run one sample at a time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from quantlab.harness.errors import ModelError

DEFAULT_BATCH = 64
BATCH_BYTES = 4 << 20  # tensor bytes a batch may hold (the sum of every op's output tensor)
UNBATCHABLE_OPS = ("TFLite_Detection_PostProcess",)  # custom ops that only take batch 1
PROGRESS_EVERY = 64  # samples between progress calls when the model runs one sample at a time
QUANTIZE_CHUNK = 1 << 20  # input values quantized at a time (round(x / scale + zero), clipped)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence native stderr (LiteRT's 'Created … XNNPACK delegate' line) for a moment."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@dataclass
class TfliteRunner:
    """A LiteRT interpreter for one .tflite, taking float inputs and giving float outputs.

    Quantized (int8/int16) inputs and outputs are (de)quantized with the
    model's own scale and zero point.
    """

    path: str
    batch: int = DEFAULT_BATCH
    num_threads: int | None = None

    def __post_init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            with quiet_native_stderr():
                self.interp = Interpreter(model_path=self.path, num_threads=self.num_threads)
        except Exception as exc:
            raise ModelError(
                self.path,
                f"LiteRT cannot load it ({str(exc).strip()[:200]})",
                hint="is it a valid .tflite file?",
            ) from None
        details = self.interp.get_input_details()
        if len(details) != 1:
            raise ModelError(
                self.path, f"has {len(details)} inputs; evaluation supports single-input models"
            )
        self.input = details[0]
        self.batched = False
        if self.batch > 1:
            ops = self.interp._get_ops_details()
            if any(op["op_name"] in UNBATCHABLE_OPS for op in ops):
                self.batch = 1  # TFLite_Detection_PostProcess decodes image 0 of a batch only
            else:  # small models batch (per-invoke overhead), large ones need not
                self.batch = max(1, min(self.batch, BATCH_BYTES // self._sample_bytes(ops)))
        if self.batch > 1:
            try:
                self.interp.resize_tensor_input(
                    self.input["index"], [self.batch, *self.input["shape"][1:]]
                )
                with quiet_native_stderr():
                    self.interp.allocate_tensors()
                if not self._outputs_keep_batch():
                    # a fixed reshape inside folded the batch into another axis
                    raise ValueError("outputs do not keep the batch axis")
                self.batched = True
            except Exception:
                with quiet_native_stderr():
                    self.interp = Interpreter(model_path=self.path, num_threads=self.num_threads)
        if not self.batched:
            try:
                with quiet_native_stderr():
                    self.interp.allocate_tensors()
            except Exception as exc:
                raise ModelError(self.path, "LiteRT cannot prepare it "
                                 f"({str(exc).strip().splitlines()[0][:240]})") from None
        self.input = self.interp.get_input_details()[0]
        self.outputs = self.interp.get_output_details()

    def _outputs_keep_batch(self) -> bool:
        """Whether every output has the batch as its first axis. A Keras Flatten's reshape is
        computed while running, so its output shape is only known after an invoke."""
        outs = self.interp.get_output_details()
        if all(len(od["shape"]) and int(od["shape"][0]) == self.batch for od in outs):
            return True
        shape = [self.batch, *(int(d) for d in self.input["shape"][1:])]
        self.interp.set_tensor(self.input["index"], np.zeros(shape, self.input["dtype"]))
        self.interp.invoke()
        return all(self.interp.get_tensor(od["index"]).shape[:1] == (self.batch,)
                   for od in outs)

    def _sample_bytes(self, ops: list[dict]) -> int:
        """Bytes of every op's output tensor for one sample: what a batch multiplies. Batches
        of a model this large run no faster than one sample at a time (BlazeFace, 10 MB: 410
        random images in 0.264 s one by one, 0.308 s in batches of 64 whose tensors took 37 ms
        to allocate; on real photos 0.265 s and 0.268 s), and a YOLO head at 640 px would
        allocate gigabytes."""
        tensors = {d["index"]: d for d in self.interp.get_tensor_details()}
        fed = {d["index"] for d in self.interp.get_input_details()}
        for op in ops:  # ops on constants alone (an fp16 model's weight DEQUANTIZE) are not
            if any(i in fed for i in op["inputs"]):  # per sample
                fed.update(op["outputs"])
        outs = {i for op in ops for i in op["outputs"] if i in tensors and i in fed}
        return max(1, sum(int(np.prod(tensors[i]["shape"])) * np.dtype(tensors[i]["dtype"]).itemsize
                          for i in outs))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model's input shape with batch 1."""
        return (1, *(int(d) for d in self.input["shape"][1:]))

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input["dtype"])

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input_dtype
        if dtype.kind == "f":
            return x.astype(dtype, copy=False)
        scale, zero = self.input["quantization"]
        if x.dtype.kind != "f" or not scale:
            return x.astype(dtype, copy=False)
        info = np.iinfo(dtype)
        out = np.empty(x.shape, dtype)
        step = max(1, QUANTIZE_CHUNK // max(1, int(np.prod(x.shape[1:]))))
        for start in range(0, len(x), step):  # in place, a cache-sized chunk at a time
            t = x[start : start + step] / scale
            t += zero
            np.round(t, out=t)
            np.clip(t, info.min, info.max, out=t)
            out[start : start + step] = t
        return out

    def _from_output(self, i: int, y: np.ndarray) -> np.ndarray:
        scale, zero = self.outputs[i]["quantization"]
        if np.dtype(self.outputs[i]["dtype"]).kind in "iu" and scale:
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32, copy=False)

    def predict(
        self, x: np.ndarray, progress: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """Run all samples; one float array per model output, first axis = samples.

        The inputs are quantized once, the raw outputs gathered and dequantized once at the
        end: per sample, only set_tensor / invoke / get_tensor run (issue 12).
        """
        n = len(x)
        step = self.batch if self.batched else 1
        chunks: list[list[np.ndarray]] = [[] for _ in self.outputs]
        outs = [(od["index"], chunks[i].append) for i, od in enumerate(self.outputs)]
        idx = self.input["index"]
        xin = self._to_input(x)
        set_tensor, invoke, get_tensor = (self.interp.set_tensor, self.interp.invoke,
                                          self.interp.get_tensor)
        if step == 1:
            every = PROGRESS_EVERY
            for start in range(0, n, every):
                for i in range(start, min(start + every, n)):
                    set_tensor(idx, xin[i : i + 1])
                    invoke()
                    for o, keep in outs:
                        keep(get_tensor(o))
                if progress:
                    progress(min(every, n - start))
        else:
            for start in range(0, n, step):
                part = xin[start : start + step]
                real = len(part)
                if real < step:
                    part = np.concatenate([part, np.repeat(part[-1:], step - real, axis=0)])
                set_tensor(idx, part)
                invoke()
                for o, keep in outs:
                    keep(get_tensor(o)[:real])
                if progress:
                    progress(real)
        return [self._from_output(i, np.concatenate(c)) if c else np.zeros((0,))
                for i, c in enumerate(chunks)]
