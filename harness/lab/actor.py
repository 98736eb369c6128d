"""The Ray actor shell around the ordinary agent of one device on a lab host.

One named, detached actor per device (``device:<lab id>`` in namespace ``quantlab``)
runs on the lab host the device is attached to. It holds the same agent class that
single-host mode uses and only adds what crossing hosts needs:

* the device's *lab id* (``sim@host-a``: simulator ids are only unique per host) is
  mapped back to the agent's local id on the way in, and the job id of the result
  back to the controller's job id on the way out;
* model (and inputs) bytes arrive through Ray's object store only when this host's
  cache (``$QUANTLAB_LAB_CACHE``, else ``lab/`` in :func:`quantlab.harness.cache.cache_dir`) lacks
  them, and are written to a file keyed by sha256; ``job.model.path`` is rewritten to that file
  (once a host has a file the controller stops attaching its ref: cheaper calls);
* quantlab errors come back as tagged data (:func:`error_payload`) so the
  controller re-raises the same class (a :class:`~quantlab.harness.errors.DeviceFault` is
  still retried by the controller's dispatcher);
* :meth:`DeviceActor.ping` and :meth:`DeviceActor.status` run in the ``control``
  concurrency group, so they answer while a job runs.

Nothing here decides anything: plan, queue, retries and de-duplication stay in
the controller's store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import ray

from quantlab.agents.base import Agent, load_agent
from quantlab.harness.cache import cache_dir
from quantlab.harness.errors import (
    DeviceDisconnected,
    DeviceTimeout,
    DeviceUnusable,
    JobFailed,
    QuantlabError,
    UserError,
)
from quantlab.harness.records import DeviceInfo, Job, from_dict, to_dict

CONTROL_GROUP = "control"
"""Concurrency group of the calls that must answer while a job runs."""

CONCURRENCY_GROUPS = {CONTROL_GROUP: 2}
"""Passed to ``ray.remote``: the default group runs one job at a time."""


def lab_cache_dir() -> Path:
    """Where a lab host keeps model files received from controllers:
    ``$QUANTLAB_LAB_CACHE``, else ``lab/`` in quantlab's cache folder."""
    env = os.environ.get("QUANTLAB_LAB_CACHE")
    return Path(env) if env else cache_dir() / "lab"


def load_agent_spec(spec: str, options: dict[str, Any]) -> Agent:
    """An agent from a registered kind (``sim``: :mod:`quantlab.harness.kinds`) or a
    ``module:Class`` target."""
    if ":" not in spec:
        return load_agent(spec, **options)
    import importlib

    module_name, class_name = spec.split(":", 1)
    agent: Agent = getattr(importlib.import_module(module_name), class_name)(**options)
    return agent


def pack_model(path: Path) -> bytes:
    """The bytes that carry a model file, or a tar of a model folder (``.mlpackage``)."""
    if path.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(path, arcname=path.name)
        return buf.getvalue()
    return path.read_bytes()


def error_payload(exc: QuantlabError) -> dict[str, Any]:
    """A quantlab error as plain data, for :func:`raise_payload` on the other side."""
    return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint,
            "device_id": getattr(exc, "device_id", None),
            "device_unusable": isinstance(exc, DeviceUnusable)}


def raise_payload(data: dict[str, Any], device_id: str) -> None:
    """Re-raise an error sent by :func:`error_payload` as the matching quantlab class."""
    kind, message, hint = data["type"], data["message"], data.get("hint")
    prefix = f"{data.get('device_id')}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    if kind == "DeviceTimeout":
        raise DeviceTimeout(device_id, message, hint=hint)
    if kind in ("DeviceDisconnected", "DeviceFault"):
        raise DeviceDisconnected(device_id, message, hint=hint)
    if kind == "JobFailed":
        raise JobFailed(message, hint=hint)
    if data.get("device_unusable"):
        raise DeviceUnusable(device_id, message, hint=hint)
    if kind.endswith("Error") and kind != "QuantlabError":
        raise UserError(message, hint=hint)
    raise QuantlabError(message, hint=hint)


class DeviceActor:
    """The thin shell: one device, its ordinary agent, a model cache, and its status."""

    def __init__(self, agent_spec: str, options: dict[str, Any], local_id: str, lab_id: str,
                 host: str) -> None:
        self.agent_spec = agent_spec
        self.local_id = local_id
        self.lab_id = lab_id
        self.host = host
        self.agent = load_agent_spec(agent_spec, options)
        self.started = time.time()
        self.jobs_done = 0
        self.current: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._device: DeviceInfo | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ control group

    @ray.method(concurrency_group=CONTROL_GROUP)
    def ping(self) -> dict[str, Any]:
        """Cheap liveness answer (runs while a job runs)."""
        return {"device_id": self.lab_id, "host": self.host, "pid": os.getpid(),
                "busy": self.current is not None}

    @ray.method(concurrency_group=CONTROL_GROUP)
    def status(self) -> dict[str, Any]:
        """What this device is doing: current job and since when, jobs done, last error."""
        with self._lock:
            current = dict(self.current) if self.current else None
        return {"device_id": self.lab_id, "local_id": self.local_id, "host": self.host,
                "node": socket.gethostname(), "pid": os.getpid(), "agent": self.agent_spec,
                "kind": self.agent.kind, "up_since": self.started, "jobs_done": self.jobs_done,
                "current": current, "last_error": self.last_error}

    # ------------------------------------------------------------------ default group

    def describe(self) -> dict[str, Any]:
        """The device as the agent sees it now (DeviceInfo with the lab id and host)."""
        device = self._local_device(fresh=True)
        return {"kind": self.agent.kind, "delegates": list(self.agent.delegates),
                "device": to_dict(self._to_lab(device))}

    def health(self) -> dict[str, Any]:
        """The agent's live health of the device."""
        return self.agent.health(self._local_device(fresh=True))

    def supports(self, job: dict[str, Any]) -> tuple[bool, str]:
        """The agent's answer for this job on this device."""
        local_job = dataclasses.replace(from_dict(Job, job), device_id=self.local_id)
        return self.agent.supports(self._local_device(), local_job)

    def run(self, job: dict[str, Any], model: list[Any], inputs: list[Any]) -> dict[str, Any]:
        """Measure one job; returns ``{"result": RawResult dict}`` or ``{"error": …}``.

        ``model`` and ``inputs`` each wrap an ObjectRef (or nothing) in a list so that
        Ray does not fetch the bytes unless this host's cache lacks them. When the
        controller sent no refs (it believes this host has the files) and the cache lacks
        one, the answer is ``{"missing": name}`` and the controller sends them.
        """
        def measure(lab_job: Job) -> dict[str, Any]:
            local_job = self._localise(lab_job, model, inputs)
            raw = self.agent.run(self._local_device(), local_job, self._progress)
            return {"result": to_dict(dataclasses.replace(raw, job_id=lab_job.job_id))}

        return self._serve(job, measure)

    def outputs(self, job: dict[str, Any], model: list[Any], inputs: list[Any]
                ) -> dict[str, Any]:
        """Every sample of the job's inputs (``settings.inputs``: an outputs ``.npz``, cached
        on this host like a model) through the agent's outputs capability
        (:mod:`quantlab.agents.outputs`): ``{"facts": OutputsFacts dict, "outputs": the
        outputs .npz bytes or None, "fetched": the files fetched from the controller}``,
        ``{"missing": name}`` or ``{"error": …}`` as :meth:`run`."""
        def through(lab_job: Job) -> dict[str, Any]:
            fetched: list[str] = []
            local_job = self._localise(lab_job, model, inputs, fetched)
            data = Path(str(local_job.settings.inputs))  # the set, not a benchmark's inputs
            local_job = dataclasses.replace(local_job, settings=dataclasses.replace(
                local_job.settings, inputs=None, inputs_sha256=None))
            with tempfile.TemporaryDirectory(prefix="quantlab-lab-outputs-") as tmp:
                out = Path(tmp) / "outputs.npz"
                facts = self.agent.outputs(  # type: ignore[attr-defined]
                    self._local_device(), local_job, data, out, self._progress)
                blob = out.read_bytes() if facts.ok and out.exists() else None
            return {"facts": {**dataclasses.asdict(facts), "notes": list(facts.notes)},
                    "outputs": blob, "fetched": fetched}

        return self._serve(job, through)

    def _serve(self, job: dict[str, Any], work: Callable[[Job], dict[str, Any]]
               ) -> dict[str, Any]:
        """What every job call shares: the job shown as running now (``status``), its
        answer, ``{"missing": name}`` when this host's cache lacks a file the controller
        thought it had, ``{"error": …}`` for quantlab's own errors, the counters kept."""
        lab_job = from_dict(Job, job)
        with self._lock:
            self.current = {"job_id": lab_job.job_id, "label": lab_job.label(),
                            "since": time.time(), "phase": "receiving"}
        try:
            answer = work(lab_job)
            self.jobs_done += 1
            self.last_error = None
            return answer
        except _NotCached as exc:
            return {"missing": str(exc)}
        except QuantlabError as exc:
            self.last_error = exc.one_line()
            return {"error": error_payload(exc)}
        finally:
            with self._lock:
                self.current = None

    # ------------------------------------------------------------------ helpers

    def _progress(self, phase: str, fraction: float | None) -> None:
        with self._lock:
            if self.current is not None:
                self.current["phase"] = phase
                self.current["fraction"] = fraction

    def _local_device(self, fresh: bool = False) -> DeviceInfo:
        """The device as its agent describes it; asks the agent again only when ``fresh``
        (a job on a vanished device fails in the agent itself with a DeviceFault)."""
        if self._device is not None and not fresh:
            return self._device
        for d in self.agent.discover():
            if d.id == self.local_id:
                self._device = d
                return d
        raise DeviceDisconnected(self.lab_id, f"no longer attached to {self.host}",
                                 hint="reconnect it; quantlab lab join picks it up again")

    def _to_lab(self, device: DeviceInfo) -> DeviceInfo:
        return dataclasses.replace(device, id=self.lab_id, host=self.host,
                                   name=device.name if self.lab_id == device.id
                                   else f"{device.name} ({self.host})")

    def _localise(self, job: Job, model: list[Any], inputs: list[Any],
                  fetched: list[str] | None = None) -> Job:
        model_path = self._cached(job.model.sha256, Path(job.model.path).name, model, fetched)
        settings = job.settings
        if settings.inputs and settings.inputs_sha256:
            inputs_path = self._cached(settings.inputs_sha256, Path(settings.inputs).name, inputs,
                                       fetched)
            settings = dataclasses.replace(settings, inputs=str(inputs_path))
        return dataclasses.replace(
            job, device_id=self.local_id, settings=settings,
            model=dataclasses.replace(job.model, path=str(model_path)),
        )

    def _cached(self, sha256: str, name: str, ref: list[Any],
                fetched: list[str] | None = None) -> Path:
        """The local file for content ``sha256``; fetches the bytes only when missing (and
        then names it in ``fetched``)."""
        target = cache_path(sha256, name)
        if target.exists():
            return target
        if not ref:
            raise _NotCached(name)
        if fetched is not None:
            fetched.append(name)
        return store_in_cache(sha256, name, ray.get(ref[0]))


SHA256_HEX = re.compile(r"[0-9a-f]{64}")
"""A cache key: exactly 64 lowercase hex digits."""


def cache_path(sha256: str, name: str) -> Path:
    """``<cache>/<sha256>/<name>``, after refusing a key or name that could leave the cache."""
    if not SHA256_HEX.fullmatch(sha256):
        raise JobFailed(f"model sha256 {sha256[:80]!r}: not 64 lowercase hex digits",
                        hint="the controller sent a malformed job; nothing was written")
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise JobFailed(f"model file name {name[:80]!r}: not a plain file name",
                        hint="the controller sent a malformed job; nothing was written")
    return lab_cache_dir() / sha256 / name


def store_in_cache(sha256: str, name: str, data: bytes) -> Path:
    """Write received bytes to the cache: a file whose sha256 must match, or a tar of a
    model folder (``.mlpackage``) whose members must all be plain files and folders under
    ``name/`` (no absolute paths, no ``..``, no links or devices)."""
    target = cache_path(sha256, name)
    folder = target.parent
    archive = name.endswith((".mlpackage", ".mlmodelc")) or _is_tar(data)
    if not archive and hashlib.sha256(data).hexdigest() != sha256:
        raise JobFailed(f"{name}: bytes received do not match sha256 {sha256[:12]}…")
    folder.mkdir(parents=True, exist_ok=True)
    if archive:
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder))
        try:
            try:
                with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
                    members = checked_members(tar, name)
                    tar.extractall(staging, members=members, filter="data")
            except tarfile.TarError as exc:
                raise JobFailed(f"{name}: the archive received is unreadable ({exc})") from None
            if not (staging / name).exists():
                raise JobFailed(f"{name}: the archive received holds no {name}")
            with contextlib.suppress(FileExistsError, OSError):
                (staging / name).rename(target)  # another job may have unpacked it first
            if not target.exists():
                raise JobFailed(f"{name}: could not unpack into the cache")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target
    tmp = folder / f".{name}.{os.getpid()}.part"
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def checked_members(tar: tarfile.TarFile, top: str) -> list[tarfile.TarInfo]:
    """Every member of a model archive, or a JobFailed naming the first unsafe one."""
    members = tar.getmembers()
    for m in members:
        path = PurePosixPath(m.name)
        problem = None
        if not path.parts:
            problem = "an empty name"
        elif path.is_absolute() or m.name.startswith(("/", "\\")):
            problem = "an absolute path"
        elif ".." in path.parts:
            problem = "a path with '..'"
        elif "\\" in m.name:
            problem = "a backslash in a name"
        elif not (m.isfile() or m.isdir()):
            problem = "a link or special file" if (m.issym() or m.islnk()) else "not a file"
        elif path.parts[0] != top:
            problem = f"outside {top}/"
        if problem:
            raise JobFailed(f"{top}: the archive received holds {problem} ({m.name[:120]!r})",
                            hint="only plain files and folders of the model are accepted")
    return members


class _NotCached(Exception):
    """The controller sent no bytes, believing this host has the file: ask for them."""


def _is_tar(data: bytes) -> bool:
    return len(data) > 262 and data[257:262] == b"ustar"
