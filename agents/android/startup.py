"""The first second of an Android job: model load with the delegate's init, first inference,
and a second start from the delegate's cache.

benchmark_model prints ``Init`` (model load and delegate init together: it gives no
separate compile time) and ``First inference``. For the delegates that serialize what they
compiled (``gpu``, ``nnapi``: ``--delegate_serialize_dir``/``--delegate_serialize_token``) two
short launches follow the measured ones: the first, into an empty cache folder, compiles and
writes the cache (the cold start); the second reads it (the warm start). Any other delegate
gets its cold start from the first measured launch and no warm start, with the reason.
"""

from __future__ import annotations

import shlex
from typing import Any

from quantlab.agents.android.faults import adb_faults
from quantlab.android_runner import command as cmdmod
from quantlab.android_runner.parser import BenchmarkOutput
from quantlab.harness.records import DeviceInfo, Job, RawOutput

CACHED_DELEGATES = ("gpu", "nnapi")
"""benchmark_model's delegates that serialize their compiled model to a folder."""

SOURCE = "benchmark_model's Init (model load and delegate init together) and First inference"


def figures(out: BenchmarkOutput) -> dict[str, Any]:
    """A start's figures from one launch (delegate time: not printed separately)."""
    return {"load_ms": out.init_ms, "delegate_ms": None,
            "first_inference_ms": out.first_inference_ms}


def measure(agent: Any, d: Any, device: DeviceInfo, job: Job, model: str,
            input_flags: tuple[str, ...], raw: list[RawOutput],
            launches: list[BenchmarkOutput]) -> dict[str, Any]:
    """The ``RawResult.startup`` dict of a job whose measured ``launches`` ran (``agent``:
    the Android agent, whose launches this uses)."""
    record: dict[str, Any] = {"source": SOURCE, "cold": figures(launches[0]), "warm": None,
                              "cache": None, "warm_unavailable": None}
    if job.delegate not in CACHED_DELEGATES:
        record["warm_unavailable"] = (f"{job.delegate}: benchmark_model keeps no delegate "
                                      f"cache (only {', '.join(CACHED_DELEGATES)} serialize)")
        return record
    folder = f"{cmdmod.DEVICE_DIR}/cache/{job.job_id}"
    quoted = shlex.quote(folder)
    flags = (*input_flags, f"--delegate_serialize_dir={folder}",
             f"--delegate_serialize_token={job.job_id}")
    with adb_faults(device.id, "preparing the delegate cache folder"):
        agent._shell(d, f"rm -rf {quoted} && mkdir -p {quoted}")
    starts = []
    for name in ("cold", "warm"):
        cmd = agent._command(job, model, extra_flags=flags, num_runs=1, min_secs=0,
                             warmup_runs=0)
        out, _ = agent._launch(d, device, cmd, raw=raw, raw_name=f"start-{name}")
        if not out.ok:
            record["warm_unavailable"] = f"the {name} start with a cache failed: {out.error}"
            break
        starts.append(out)
    with adb_faults(device.id, "reading the delegate cache folder"):
        files = agent._shell(d, f"ls {quoted}").stdout.split()
        agent._shell(d, f"rm -rf {quoted}")
    if len(starts) == 2:
        record["cold"] = figures(starts[0])
        if files:
            record["warm"] = figures(starts[1])
            record["cache"] = {"flag": "--delegate_serialize_dir", "files": files}
        else:
            record["warm_unavailable"] = (f"{job.delegate} wrote nothing to "
                                          "--delegate_serialize_dir: no cached start")
    return record
