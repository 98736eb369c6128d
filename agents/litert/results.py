"""The LiteRT runner's results → records, for every agent that runs it.

The simulator (:mod:`quantlab.agents.sim.agent`) runs :mod:`quantlab.agents.litert.runner` on this
host and the SSH agent (:mod:`quantlab.agents.linux.agent`) runs the same runner on a gateway; both
hand its ``measure`` results (one dict per process-level repeat) to :func:`measured_result`,
so a figure is built the same way wherever it was measured. :func:`numerics_from` compares
the outputs of the runner's ``numerics`` mode on the host, as a phone's are;
:func:`sustained_windows` reads its ``sustained`` mode.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from quantlab.harness.records import Energy, Job, RawResult
from quantlab.harness.sustained import sustained_record, window_figures


def measured_result(job: Job, runs: list[dict[str, Any]], **fields: Any) -> RawResult:
    """The ``ok`` RawResult of ``runs`` (at least one): every repeat's samples, the median
    load/init and first-inference times, the highest peak memory; ``fields`` add the rest."""
    return RawResult(
        job_id=job.job_id,
        status="ok",
        samples_ms=tuple(tuple(r["samples_ms"]) for r in runs),
        init_ms=statistics.median(r["init_ms"] for r in runs),
        first_inference_ms=statistics.median(r["first_inference_ms"] for r in runs),
        peak_memory_mb=max(r["peak_memory_mb"] for r in runs),
        memory_method=runs[0]["memory_method"],
        **fields,
    )


def sustained_windows(job: Job, out: dict[str, Any]) -> dict[str, Any]:
    """The ``RawResult.sustained`` dict of a runner's ``sustained`` result: each window's
    figures (:func:`quantlab.harness.sustained.window_figures`) with its sensor readings."""
    windows = []
    for w in out["windows"]:
        sensors = {k: v for k, v in w.items() if k not in ("samples_ms", "start_s", "end_s")}
        windows.append({**window_figures(w["samples_ms"], w["start_s"], w["end_s"]),
                        **sensors})
    s = job.settings
    return sustained_record(windows, duration_s=s.sustained_s, window_s=s.window_s,
                            threshold_pct=s.throttle_pct,
                            source="per-iteration times of one LiteRT runner process",
                            sensors_note=out.get("sensors_note"))


def startup_record(job: Job, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``RawResult.startup`` dict of ``measure`` results (medians over the repeats): the
    model load (the interpreter built), the delegate (allocation, where LiteRT applies
    XNNPACK; none for builtin kernels) and the first inference; no warm start (the Python
    interpreter exposes no delegate cache)."""
    loads = [r["load_ms"] for r in runs if r.get("load_ms") is not None]
    if len(loads) != len(runs):
        return {}
    load = statistics.median(loads)
    init = statistics.median(r["init_ms"] for r in runs)
    xnnpack = job.delegate == "xnnpack"
    return {
        "source": "LiteRT runner: interpreter built (load), allocate_tensors (XNNPACK applied), "
                  "first invoke; medians over the repeats",
        "cold": {"load_ms": load if xnnpack else init,
                 "delegate_ms": init - load if xnnpack else None,
                 "first_inference_ms": statistics.median(r["first_inference_ms"] for r in runs)},
        "warm": None, "cache": None,
        "warm_unavailable": "no delegate cache: LiteRT's Python interpreter exposes none",
    }


def pooled_rapl_energy(runs: list[dict[str, Any]]) -> Energy | None:
    """RAPL energy per inference over the repeats (medians), or None unless every repeat
    measured it."""
    energies = [r["energy"] for r in runs if r.get("energy")]
    if not energies or len(energies) != len(runs):
        return None
    e0 = energies[0]
    baselines = [e["baseline_mw"] for e in energies if e.get("baseline_mw") is not None]
    return Energy(
        method="rapl",
        mj_per_inference=statistics.median(e["mj_per_inference"] for e in energies),
        baseline_mw=statistics.median(baselines) if baselines else None,
        samples=sum(e["samples"] for e in energies),
        label=e0["label"],
        detail={"per_repeat_mj": [e["mj_per_inference"] for e in energies],
                "per_repeat_baseline_mw": baselines,
                **e0["detail"]},
    )


def rapl_unavailable_reason(runs: list[dict[str, Any]]) -> str | None:
    """Why the worker measured no RAPL energy (the first repeat that says), or None."""
    return next((r["energy_unavailable_reason"] for r in runs
                 if r.get("energy_unavailable_reason")), None)


def numerics_from(out: dict[str, Any], outputs: Path) -> dict[str, Any]:
    """The numerics record of a runner's ``numerics`` result ``out``: the model's outputs in
    ``outputs`` (the .npz it wrote) compared with the float reference's and, where the
    variant ran on the reference kernels, with those (``delegate_only``); with how the check
    was set up. ``{"error": reason}`` when the runner failed."""
    if out.get("error"):
        return {"error": out["error"]}
    import numpy as np

    from quantlab.harness.numerics import compare_outputs, delegate_only, jsonable

    with np.load(outputs) as npz:
        arrays = {name: npz[name] for name in npz.files}

    def part(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    got, variant = part("output:"), part("variant:")
    result = compare_outputs(part("reference:"), got)
    if variant:
        result["delegate_only"] = delegate_only(variant, got)
    return jsonable({**result, **out["numerics_context"],
                     "computed_by": "host (simulator worker)"})
