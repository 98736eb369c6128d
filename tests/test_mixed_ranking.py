"""mixed-int8 ranks the layers only when plain int8 misses the gate (#27): ranking (TF's
quantization debugger over the evaluation data) was the longest part of mixed-int8 on
MobileNetV2, and a variant whose plain int8 passes keeps no layer float whatever the ranking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quantlab.harness.quantize.sensitivity import greedy_keep_float
from quantlab.harness.quantize.tflite_facts import input_spec


def _search(model: Path, tmp_path: Path, max_drop: float) -> tuple[dict[str, object], int]:
    fp32 = model.read_bytes()
    shape, _, _ = input_spec(fp32)
    x = np.random.default_rng(0).uniform(0, 1, (8, *shape[1:])).astype(np.float32)
    ranked: list[int] = []

    def rank() -> list[str]:
        ranked.append(1)
        return ["conv", "dense"]

    # every candidate is the float model: its drop is 0 whatever is kept float
    _, facts = greedy_keep_float(lambda keep: fp32, rank, fp32, x, None, max_drop, tmp_path)
    return facts, len(ranked)


def test_plain_int8_within_the_gate_ranks_nothing(cnn_tflite: Path, tmp_path: Path) -> None:
    facts, ranked = _search(cnn_tflite, tmp_path, max_drop=0.02)
    assert ranked == 0
    assert facts["passed"] and facts["float_layers"] == []
    assert len(facts["steps"]) == 1  # type: ignore[arg-type]


def test_plain_int8_over_the_gate_ranks_once_then_keeps_layers_float(
    cnn_tflite: Path, tmp_path: Path,
) -> None:
    facts, ranked = _search(cnn_tflite, tmp_path, max_drop=-1.0)  # nothing can pass
    assert ranked == 1
    assert not facts["passed"]
    assert [s["float_layers"] for s in facts["steps"]] == [0, 1, 2]  # type: ignore[attr-defined]
