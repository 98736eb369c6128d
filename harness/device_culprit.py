"""``quantlab culprit VARIANT --device DEV``: culprit probes run on a device through its outputs
capability (:mod:`quantlab.agents.outputs`), so every device kind whose outputs come back
(Android phones' benchmark_model delegates, SSH gateways, iPhone TFLite jobs) is probed by the
same code.

A :class:`quantlab.harness.culprit.Launcher` for the search: each probe model is written to a
file; the host first runs it on TFLite's reference kernels in a LiteRT runner process
(:func:`quantlab.agents.litert.probe.host_launcher`, delegate ``cpu``), which makes the fixed
inputs (``--inputs``, else the seeded random ones of every numerics check) and the reference
outputs; those inputs are written once to one ``.npz`` and every probe sends that same file
through ``agent.outputs()`` on the job's delegate: one outputs call per probe, which pushes the
inputs once and brings every exposed tensor back once (on Android: one benchmark_model launch,
one input file pushed, one pull). Placement comes from the outputs facts where the runner reports
one. A device that goes away is waited for and the call made again, as ``evaluate`` does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quantlab.agents.outputs import outputs_support, read_outputs
from quantlab.harness.culprit import Launcher, ProbeRun
from quantlab.harness.device_eval import call_outputs
from quantlab.harness.errors import UserError
from quantlab.harness.models import model_ref
from quantlab.harness.records import DeviceInfo, Job, Settings
from quantlab.harness.retry import RetryPolicy

PROBE_TIMEOUT_S = 300.0


def check_device(agent: Any, device: DeviceInfo, model: str, delegate: str,
                 threads: int = 1) -> None:
    """UserError (one line, naming the device and delegate) when ``device`` cannot bring
    ``model``'s outputs back on ``delegate``."""
    job = Job(model_ref(model), device.id, device.platform, delegate, threads, Settings())
    ok, why = outputs_support(agent, device, job)
    if not ok:
        raise UserError(f"--device {device.id} --delegate {delegate}: culprit needs the "
                        f"device's outputs back, and {why}",
                        hint="pick a delegate whose runner writes outputs (see `quantlab "
                        "devices`), or run culprit on the simulator")


@contextmanager
def device_launcher(agent: Any, device: DeviceInfo, delegate: str, threads: int = 1,
                    inputs: str | None = None, timeout_s: float = PROBE_TIMEOUT_S,
                    retry: RetryPolicy | None = None) -> Iterator[Launcher]:
    """A launcher running each probe on ``device``'s ``delegate`` through ``agent.outputs()``
    and on this host's reference kernels, on the same inputs (see the module docstring);
    the files it writes live while the context is open."""
    import numpy as np

    from quantlab.agents.litert.probe import host_launcher

    host = host_launcher("cpu", threads, inputs, timeout_s)
    policy = retry or RetryPolicy()
    settings = Settings(timeout_s=timeout_s)

    with tempfile.TemporaryDirectory(prefix="quantlab-device-culprit-") as tmp_name:
        tmp = Path(tmp_name)
        sent = tmp / "inputs.npz"
        count = 0

        def launch(data: bytes, label: str) -> ProbeRun:
            nonlocal count
            count += 1
            ref = host(data, label)
            if ref.error:
                return ProbeRun({}, {}, None, error=f"the host's reference kernels: {ref.error}")
            if not sent.exists():  # the fixed inputs, one sample each, written once
                np.savez(sent, **ref.extra["input_arrays"])
            model = tmp / f"probe{count}.tflite"
            model.write_bytes(data)
            job = Job(model_ref(model), device.id, device.platform, delegate, threads,
                      settings)
            out = tmp / f"probe{count}.npz"
            facts = call_outputs(agent, device, job, sent, out, policy, lambda _m: None)
            model.unlink(missing_ok=True)
            if facts.error:
                return ProbeRun({}, ref.reference, None, error=facts.error)
            try:
                came = read_outputs(out)
            except (OSError, ValueError) as exc:
                return ProbeRun({}, ref.reference, None,
                                error=f"the outputs that came back cannot be read: {exc}")
            got = {k: np.asarray(v).reshape(np.shape(ref.reference[k]))
                   if k in ref.reference and np.size(v) == np.size(ref.reference[k])
                   else np.asarray(v) for k, v in came.items()}
            out.unlink(missing_ok=True)
            return ProbeRun(got, ref.reference, facts.placement or None,
                            extra={"inputs": ref.extra.get("inputs"), "run": facts.to_dict()})

        yield launch
