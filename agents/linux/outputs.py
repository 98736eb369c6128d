"""Outputs on a Linux gateway (:mod:`quantlab.agents.outputs`), for
:class:`quantlab.agents.linux.agent.SshAgent`.

The set (the inputs ``.npz``) goes into the gateway's content-addressed cache over SFTP like a
model (``inputs/<sha256>.npz``: pushed once per gateway, whatever the variants and delegates),
the gateway-side helper runs one LiteRT runner process in the ``outputs`` mode (every sample,
batched where the model allows, exactly as the simulator), and the outputs ``.npz`` comes back
in one SFTP get and is removed there.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from quantlab.agents.linux.session import Session
from quantlab.agents.outputs import OutputsFacts, Progress
from quantlab.harness.models import file_sha256
from quantlab.harness.records import Job

RUNNER = "LiteRT Python interpreter in a runner process on the gateway, batched where the " \
         "model allows"


async def run_outputs(agent: Any, gw: Any, job: Job, inputs: Path, out: Path,
                      progress: Progress) -> OutputsFacts:
    """Every sample of ``inputs`` through ``job`` on the gateway; every output to ``out``.
    SSH and SFTP errors propagate to the caller (the agent maps them as for ``run``)."""
    started = time.monotonic()
    session = await Session.open(gw)
    try:
        progress("pushing the set", None)
        code_dir = await session.ensure_code()
        model = await session.ensure_file(Path(job.model.path), job.model.sha256, "models",
                                          code_dir)
        before = session.pushes
        remote_inputs = await session.ensure_file(Path(inputs), file_sha256(Path(inputs)),
                                                  "inputs", code_dir)
        pushed = session.pushes - before
        tag = f"{job.job_id}-{secrets.token_hex(4)}"
        jobdir = f"{session.workdir}/jobs/{tag}"
        remote_out = f"{session.workdir}/outputs/{tag}.npz"
        await session.sftp.makedirs(jobdir, exist_ok=True)
        await session.sftp.makedirs(f"{session.workdir}/outputs", exist_ok=True)
        spec = agent._job_spec(gw, job, model, None)
        spec["payload"].update(outputs_inputs=remote_inputs, outputs_path=remote_out)
        spec["outputs"] = True
        async with session.sftp.open(f"{jobdir}/job.json", "w") as f:
            await f.write(json.dumps(spec))
        ran = time.monotonic()
        events, status, stderr = await agent._stream(session, code_dir, jobdir, job, progress)
        device_s = time.monotonic() - ran
        result = next((e.get("result") or {} for e in events
                       if e.get("event") == "result" and e.get("mode") == "outputs"), None)
        facts_event: dict[str, Any] = next((e for e in events if e.get("event") == "facts"), {})
        common: dict[str, Any] = dict(
            runtime="litert", runtime_version=facts_event.get("litert"), launches=1,
            transfers={"push": pushed, "pull": 0}, device_seconds=device_s)
        if result is None or result.get("error"):
            why = (result or {}).get("error") or \
                (stderr.strip().splitlines() or [f"the helper exited with {status}"])[-1]
            return OutputsFacts.failure(job, 0, RUNNER, f"{gw.device_id}: {why}",
                                        seconds=time.monotonic() - started, **common)
        await session.sftp.get(remote_out, str(out))
        await session.sftp.remove(remote_out)
        common["transfers"] = {"push": pushed, "pull": 1}
    finally:
        await session.close()
    progress("done", 1.0)
    return OutputsFacts(samples=int(result["samples"]), runner=RUNNER, delegate=job.delegate,
                        seconds=time.monotonic() - started,
                        runner_detail=f"batch {result['batch']}, {job.threads} thread(s), "
                                      f"python {facts_event.get('python')} on "
                                      f"{facts_event.get('arch')}",
                        placement=dict(result.get("placement") or {}), **common)
