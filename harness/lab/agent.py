"""The controller's side of a lab: device actors on Ray behind the ordinary Agent protocol.

``lab_agents(address)`` connects to the lab and returns one :class:`LabAgent` per
device kind found there (``sim``, ``android`` …), so planning works exactly as for
local devices (each kind keeps its own delegates and default delegate). A
:class:`LabAgent` forwards ``supports``/``health``/``run`` to the device's named
actor; model bytes go into Ray's object store once per model and are fetched by a
host only when its cache lacks them. A lost actor (its process died, its host
crashed or is cut off) raises :class:`~quantlab.harness.errors.DeviceDisconnected`: the
outcome is unknown, the dispatcher re-runs the job under the same job id when
the device is back, and the store discards a late duplicate.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from quantlab.agents.base import Progress
from quantlab.agents.outputs import OutputsFacts
from quantlab.harness.errors import DeviceDisconnected, DeviceTimeout, QuantlabError, UserError
from quantlab.harness.lab.ray_processes import ACTOR_PREFIX, NAMESPACE, connect
from quantlab.harness.lab.security import LabSecurity
from quantlab.harness.lab.status import device_actor_names
from quantlab.harness.records import DeviceInfo, Job, RawResult, from_dict, load_record, to_dict

CALL_TIMEOUT_S = 30.0
"""Limit of a control call (describe, supports, health) to a device actor."""

JOB_MARGIN_S = 60.0
"""Extra time on top of a job's own timeout before the controller gives up on it."""

OUTCOME_UNKNOWN = "lab device unreachable: outcome unknown, re-run under the same job id"


def _ray_lost(timeout_too: bool = False) -> tuple[type[BaseException], ...]:
    """Ray's errors that mean "the device's actor is unreachable: outcome unknown"."""
    import ray.exceptions as rex

    lost: tuple[type[BaseException], ...] = (rex.RayActorError, rex.ActorUnavailableError,
                                             rex.ObjectLostError, rex.RaySystemError)
    return (*lost, rex.GetTimeoutError) if timeout_too else lost


class LabCluster:
    """One connection to a lab: finds device actors, caches handles and model refs."""

    def __init__(self, address: str, sec: LabSecurity, node_ip: str | None = None) -> None:
        self.address = address
        self.sec = sec
        self.node_ip = node_ip
        self.notes: list[str] = []
        self._handles: dict[str, Any] = {}
        self._refs: dict[str, Any] = {}
        self.sent: set[tuple[str, str, str | None]] = set()
        """(host, model sha256, inputs sha256) already delivered to a host's cache."""
        self._lock = threading.Lock()
        self._described: list[tuple[str, tuple[str, ...], DeviceInfo]] | None = None
        sec.apply()  # before ray is imported: it reads the token settings at import

    def connect(self) -> None:
        """Join the lab as a driver (idempotent)."""
        connect(self.address, self.sec, self.node_ip)

    def handle(self, lab_id: str, refresh: bool = False) -> Any:
        """The actor handle of a device (looked up by name again when ``refresh``)."""
        import ray

        with self._lock:
            if refresh or lab_id not in self._handles:
                self._handles[lab_id] = ray.get_actor(f"{ACTOR_PREFIX}{lab_id}",
                                                      namespace=NAMESPACE)
            return self._handles[lab_id]

    def describe(self, timeout_s: float = CALL_TIMEOUT_S) -> list[tuple[str, tuple[str, ...],
                                                                      DeviceInfo]]:
        """(kind, delegates, DeviceInfo) of every device actor that answers in time."""
        import ray

        if self._described is not None:
            return self._described
        self.connect()
        pending = {}
        for name in device_actor_names():
            lab_id = name[len(ACTOR_PREFIX):]
            try:
                pending[lab_id] = self.handle(lab_id).describe.remote()
            except ValueError:
                continue
        out = []
        deadline = time.monotonic() + timeout_s
        for lab_id, ref in pending.items():
            try:
                data = ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
            except ray.exceptions.RayTaskError as exc:
                self.notes.append(f"lab device {lab_id}: {_cause(exc)}")
                continue
            except _ray_lost(timeout_too=True) as exc:
                self.notes.append(f"lab device {lab_id}: unreachable ({type(exc).__name__}); "
                                  "its host may be down")
                continue
            out.append((data["kind"], tuple(data["delegates"]),
                        from_dict(DeviceInfo, data["device"])))
        self._described = out
        return out

    def model_refs(self, job: Job) -> tuple[list[Any], list[Any]]:
        """Object refs of a job's model (and inputs) bytes, put once per file."""
        import ray

        from quantlab.harness.lab.actor import pack_model

        def ref(key: str, path: str) -> list[Any]:
            with self._lock:
                if key not in self._refs:
                    file = Path(path)
                    if not file.exists():
                        raise UserError(f"{path}: no such file", hint="the controller sends "
                                        "model files to the lab; run from where they are")
                    self._refs[key] = ray.put(pack_model(file))
                return [self._refs[key]]

        model = ref(job.model.sha256, job.model.path)
        s = job.settings
        inputs = ref(s.inputs_sha256, s.inputs) if s.inputs and s.inputs_sha256 else []
        return model, inputs


class LabAgent:
    """Devices of one kind on the lab's hosts, reached through their actors."""

    def __init__(self, cluster: LabCluster, kind: str, delegates: tuple[str, ...]) -> None:
        self.cluster = cluster
        self.kind = kind
        self.delegates = delegates

    def discover(self) -> list[DeviceInfo]:
        """The lab's devices of this kind (host filled in)."""
        return [d for kind, _, d in self.cluster.describe() if kind == self.kind]

    def _call(self, device: DeviceInfo, method: str, *args: Any) -> Any:
        import ray

        try:
            actor = self.cluster.handle(device.id)
            return ray.get(getattr(actor, method).remote(*args), timeout=CALL_TIMEOUT_S)
        except ValueError:
            raise DeviceDisconnected(device.id, "not registered in the lab",
                                     hint="is quantlab lab join running on its host?") from None
        except ray.exceptions.RayTaskError as exc:
            raise QuantlabError(f"{device.id}: {_cause(exc)}") from None
        except _ray_lost(timeout_too=True) as exc:
            raise DeviceDisconnected(device.id, f"{OUTCOME_UNKNOWN} ({type(exc).__name__})"
                                     ) from None

    def health(self, device: DeviceInfo) -> dict[str, Any]:
        """Live health from the device's own agent."""
        out: dict[str, Any] = self._call(device, "health")
        return out

    def supports(self, device: DeviceInfo, job: Job) -> tuple[bool, str]:
        """The device's own agent decides, on its host."""
        try:
            ok, reason = self._call(device, "supports", to_dict(job))
        except QuantlabError as exc:
            return False, exc.one_line()
        return bool(ok), str(reason)

    def run(self, device: DeviceInfo, job: Job, progress: Progress) -> RawResult:
        """Send the job to the device's actor and wait for its RawResult."""
        out = self._send(device, job, progress, "run")
        return load_record(RawResult, out["result"])

    def outputs(self, device: DeviceInfo, job: Job, inputs: Path, out: Path,
                progress: Progress) -> OutputsFacts:
        """Outputs on a lab device (:mod:`quantlab.agents.outputs`): the inputs ``.npz`` goes
        to the device's host once (its cache keeps it by content, as a model: every later
        variant, delegate and device there reuses it), the host's own agent runs the set, and
        the outputs come back as the call's answer. ``transfers["lab_inputs"]`` is 1 when this
        call sent the inputs to the host, 0 when the host had them."""
        from quantlab.harness.models import file_sha256

        settings = dataclasses.replace(job.settings, inputs=str(inputs),
                                       inputs_sha256=file_sha256(Path(inputs)))
        answer = self._send(device, dataclasses.replace(job, settings=settings), progress,
                            "outputs")
        facts = dict(answer["facts"])
        if answer.get("outputs") is not None:
            Path(out).write_bytes(answer["outputs"])
        facts["transfers"] = {**facts.get("transfers", {}),
                              "lab_inputs": int(Path(inputs).name in answer["fetched"])}
        facts["notes"] = (*facts.get("notes", ()), f"on lab host {device.host or '?'}")
        return OutputsFacts(**{**facts, "delegate": job.delegate})

    def _send(self, device: DeviceInfo, job: Job, progress: Progress, method: str
              ) -> dict[str, Any]:
        """Call the device actor's ``method`` (``run``, ``outputs``) with the job, sending
        its model and inputs only when the host lacks them; its answer, or the error."""
        import ray

        from quantlab.harness.lab.actor import raise_payload

        try:
            actor = self.cluster.handle(device.id)
        except ValueError:
            raise DeviceDisconnected(device.id, "not registered in the lab",
                                     hint="is quantlab lab join running on its host?") from None
        progress("sending to " + (device.host or "lab"), None)
        sent_key = (device.host or device.id, job.model.sha256, job.settings.inputs_sha256)
        try:
            out: dict[str, Any] = {"missing": "first"}
            for with_bytes in (sent_key not in self.cluster.sent, True):
                if "missing" not in out:
                    break
                model, inputs = self.cluster.model_refs(job) if with_bytes else ([], [])
                call = getattr(actor, method)
                out = self._await(actor, device, job, progress,
                                  call.remote(to_dict(job), model, inputs))
        except ray.exceptions.RayTaskError as exc:
            raise QuantlabError(f"{device.id}: {_cause(exc)}") from None
        except _ray_lost() as exc:
            raise DeviceDisconnected(device.id, f"{OUTCOME_UNKNOWN} ({type(exc).__name__})"
                                     ) from None
        if "error" in out:
            raise_payload(out["error"], device.id)
        self.cluster.sent.add(sent_key)
        return out

    def _await(self, actor: Any, device: DeviceInfo, job: Job, progress: Progress,
               ref: Any) -> dict[str, Any]:
        import ray

        limit = job.settings.timeout_s + JOB_MARGIN_S
        start = time.monotonic()
        while True:
            ready, _ = ray.wait([ref], timeout=1.0)
            if ready:
                out: dict[str, Any] = ray.get(ref)
                return out
            if time.monotonic() - start > limit:
                raise DeviceTimeout(device.id, f"no answer in {limit:.0f}s",
                                    hint="the device may be stuck; check quantlab lab status")
            self._forward_progress(actor, progress)

    @staticmethod
    def _forward_progress(actor: Any, progress: Progress) -> None:
        import ray

        try:
            status = ray.get(actor.status.remote(), timeout=2.0)
        except Exception:  # progress is best effort
            return
        current = status.get("current") or {}
        if current.get("phase"):
            progress(str(current["phase"]), current.get("fraction"))

    def wait_until_back(self, device: DeviceInfo, timeout_s: float) -> bool:
        """Poll the device's actor (control group) until it answers and is idle."""
        import ray

        deadline = time.monotonic() + timeout_s
        gone: tuple[type[BaseException], ...] = (ValueError, *_ray_lost(timeout_too=True))
        while time.monotonic() < deadline:
            try:
                actor = self.cluster.handle(device.id, refresh=True)
                left = max(0.5, min(5.0, deadline - time.monotonic()))
                status = ray.get(actor.status.remote(), timeout=left)
                if not status.get("current"):
                    return True
            except gone:
                pass
            time.sleep(0.5)
        return False


def lab_agents(address: str, sec: LabSecurity | None = None,
               node_ip: str | None = None) -> list[LabAgent]:
    """Connect to the lab and return one agent per device kind found there."""
    if sec is None:
        from quantlab.harness.lab.security import security

        sec = security(None, None)
    cluster = LabCluster(address, sec, node_ip)
    kinds: dict[str, tuple[str, ...]] = {}
    for kind, delegates, _ in cluster.describe():
        kinds.setdefault(kind, delegates)
    if not kinds:
        notes = "; ".join(cluster.notes)
        raise UserError(f"lab {address}: no devices registered"
                        + (f" ({notes})" if notes else ""),
                        hint="run quantlab lab join on the hosts with devices")
    return [LabAgent(cluster, kind, delegates) for kind, delegates in sorted(kinds.items())]


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
