"""Run a .tflite on the host through LiteRT: float inputs in, float outputs out.

Small models are fed in batches (the interpreter's batch dimension is resized once)
so evaluation keeps up with a bare per-sample LiteRT loop; large models (their
tensors over ``BATCH_BYTES`` per sample) and models whose batch cannot be
resized are run one sample at a time. The simulator's runner decides the same way:
both call :func:`quantlab.agents.litert.runner.batching.fit_batch`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from quantlab.agents.litert.runner.batching import BATCH as DEFAULT_BATCH
from quantlab.agents.litert.runner.batching import fit_batch
from quantlab.harness.errors import ModelError

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
        try:
            with quiet_native_stderr():
                self.interp, self.batch = fit_batch(self.interp, self.batch, lambda: Interpreter(
                    model_path=self.path, num_threads=self.num_threads))
        except Exception as exc:
            raise ModelError(self.path, "LiteRT cannot prepare it "
                             f"({str(exc).strip().splitlines()[0][:240]})") from None
        self.batched = self.batch > 1
        self.input = self.interp.get_input_details()[0]
        self.outputs = self.interp.get_output_details()

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
