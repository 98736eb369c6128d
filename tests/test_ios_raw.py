"""iOS raw output: the result JSON BenchRunner wrote (on the fake iPhone behind the agent's
backend seam) is handed back byte for byte, and the result's figures re-parse from it."""

from __future__ import annotations

import json
from pathlib import Path

from test_ios_agent import _agent, _job, models  # noqa: F401  (fixture)

from quantlab.agents.base import no_progress
from quantlab.ios_runner.codec import parse_result


def test_result_json_is_kept_and_reparses(tmp_path: Path, models: Path) -> None:  # noqa: F811
    agent, _ = _agent(tmp_path)
    [dev] = agent.discover()
    job = _job(models / "tiny.tflite", "tflite-cpu")
    raw = agent.run(dev, job, no_progress)
    assert raw.status == "ok", raw.error
    assert [o.name for o in raw.raw_outputs] == ["result.json"]
    kept = raw.raw_outputs[0]
    assert kept.media_type == "application/json" and not kept.truncated
    again = parse_result(json.loads(kept.data()), job)
    assert again.samples_ms == raw.samples_ms and raw.samples_ms
    assert (again.init_ms, again.first_inference_ms, again.peak_memory_mb) == (
        raw.init_ms, raw.first_inference_ms, raw.peak_memory_mb)
    assert again.ops == raw.ops
