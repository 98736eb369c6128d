"""The plain-data records that flow through quantlab (see docs/result-spec.md).

model → :class:`ModelRef`; devices → :class:`DeviceInfo`; a request → :class:`Plan`
of :class:`Job`; an agent returns a :class:`RawResult`; the jobs executed together
form a :class:`Run`. All records are frozen; they serialise to JSON with a
``schema_version`` and load back through :func:`upgrade`, which refuses files
written by a newer quantlab.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

SCHEMA_VERSION = 1
"""Version of the JSON format of every record. Bump it with an upgrade step."""

Platform = Literal["sim", "android", "ios"]
JobStatus = Literal["pending", "running", "ok", "failed", "skipped", "interrupted"]

T = TypeVar("T")


class SchemaError(ValueError):
    """A record file that this quantlab cannot read."""


# --------------------------------------------------------------------------- helpers


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


def _build(tp: Any, value: Any) -> Any:
    """Build a value of type ``tp`` from JSON data (dataclasses, tuples, optionals)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(non_none[0], value) if len(non_none) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value)
    if origin is tuple:
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_build(inner, v) for v in value)
    if origin is dict:
        return dict(value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a frozen record of type ``cls`` from a dict, ignoring unknown keys."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _build(hints[f.name], data[f.name])
    return cls(**kwargs)


def to_dict(record: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a record (nested records and tuples included)."""
    out = _to_jsonable(record)
    assert isinstance(out, dict)
    return out


def canonical_json(data: Any) -> str:
    """Stable JSON text (sorted keys, no spaces) used for hashing."""
    return json.dumps(_to_jsonable(data), sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ModelRef:
    """A model or variant file, identified by content."""

    path: str
    sha256: str
    size_bytes: int
    format: str  # "tflite" | "mlpackage" | "mlmodel"
    scheme: str | None = None  # the quantization scheme when the file is a variant


@dataclass(frozen=True)
class DeviceInfo:
    """Something that runs variants, with its properties and live health."""

    id: str
    platform: Platform
    name: str
    state: str = "ready"  # ready | offline | unauthorized | unavailable
    state_hint: str | None = None  # what to do when state is not ready
    model: str | None = None
    manufacturer: str | None = None
    soc: str | None = None
    os_version: str | None = None
    sdk: int | None = None
    abi: str | None = None
    cores: int | None = None
    host: str | None = None
    delegates: tuple[str, ...] = ()
    health: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """How to measure: the same for every job of one request."""

    warmup: int = 10
    iterations: int = 50
    min_time_s: float = 0.0
    repeats: int = 3
    profile_ops: bool = False
    inputs: str | None = None  # path of an .npz with one array per model input
    inputs_sha256: str | None = None
    energy: bool = False
    timeout_s: float = 600.0


@dataclass(frozen=True)
class Job:
    """One (variant, device, delegate, threads, settings) to measure."""

    model: ModelRef
    device_id: str
    platform: Platform
    delegate: str
    threads: int
    settings: Settings

    @property
    def job_id(self) -> str:
        """Stable id: a hash of what is measured (not of where the file lies)."""
        content = {
            "model": self.model.sha256,
            "device": self.device_id,
            "delegate": self.delegate,
            "threads": self.threads,
            "settings": dataclasses.replace(self.settings, inputs=None),
        }
        return hashlib.sha256(canonical_json(content).encode()).hexdigest()[:16]

    def label(self) -> str:
        """Short human label: model name, device, delegate, threads."""
        name = self.model.path.rsplit("/", 1)[-1]
        return f"{name} · {self.device_id} · {self.delegate} · {self.threads}t"


@dataclass(frozen=True)
class Skipped:
    """A combination left out of a plan, and why."""

    job: Job
    reason: str


@dataclass(frozen=True)
class Plan:
    """The jobs of one request plus what was left out and why."""

    jobs: tuple[Job, ...]
    skipped: tuple[Skipped, ...] = ()
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class OpRecord:
    """One operator (or delegate partition) of a per-op profile, as the runtime reported it."""

    index: int  # position in execution order
    kernel: str  # name the runtime reports (kernel or delegate node name)
    avg_ms: float  # mean time per inference
    op_type: str | None = None  # TFLite builtin op type where the mapping is known
    delegate: str | None = None  # delegate / partition the op ran inside; None = CPU builtin kernel
    node_index: int | None = None  # model node index where known
    times_called: int = 1  # per inference
    unit: str = "ms"  # "ms", or "cycles" where a runtime reports cycles (Hexagon)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnergySample:
    """One reading of an energy sensor (kept raw in the store)."""

    phase: str  # "baseline" (idle) | "load" (during inference)
    t_s: float  # seconds since the sampler started
    channel: str  # e.g. "battery.current", "battery.voltage", "odpm.S4M_VDD_CPUCL0"
    value: float
    unit: str  # e.g. "uA", "uV", "uWs"


@dataclass(frozen=True)
class Energy:
    """An energy measurement with its method; never an invented figure."""

    method: str  # "rapl" | "battery-gauge" | "odpm-rails" | "ios-task-energy"
    mj_per_inference: float
    baseline_mw: float | None = None
    samples: int = 0
    label: str | None = None  # what the figure really measures (e.g. "package energy, host CPU")
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RawResult:
    """What an agent hands back for one job, unprocessed.

    ``samples_ms`` holds one tuple of per-iteration latencies per process-level
    repeat. Where a runner gives only aggregates (a hand-run benchmark_model log),
    ``samples_ms`` is empty and ``aggregates_ms`` carries the tool's own figures.
    """

    job_id: str
    status: Literal["ok", "failed"]
    error: str | None = None
    samples_ms: tuple[tuple[float, ...], ...] = ()
    aggregates_ms: dict[str, float] = field(default_factory=dict)
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_memory_mb: float | None = None
    memory_method: str | None = None
    ops: tuple[OpRecord, ...] = ()
    ops_model_ms: float | None = None  # whole-model time during the profiled runs (op coverage)
    energy: Energy | None = None
    energy_samples: tuple[EnergySample, ...] = ()
    energy_unavailable_reason: str | None = None
    thermal_before: dict[str, Any] = field(default_factory=dict)
    thermal_after: dict[str, Any] = field(default_factory=dict)
    runner: dict[str, Any] = field(default_factory=dict)  # runner name, version, argv …
    warnings: tuple[str, ...] = ()
    raw_files: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def failure(cls, job_id: str, error: str, **extra: Any) -> RawResult:
        """A failed result carrying the runtime's reason."""
        return cls(job_id=job_id, status="failed", error=error, **extra)


@dataclass(frozen=True)
class Run:
    """Jobs executed together, with where and with what they were measured."""

    run_id: str
    created_at: str  # ISO 8601, UTC
    host: str
    tool_versions: dict[str, str] = field(default_factory=dict)
    git_sha: str | None = None
    command: str | None = None
    settings: Settings = field(default_factory=Settings)
    schema_version: int = SCHEMA_VERSION


# --------------------------------------------------------------------------- versioning

_UPGRADES: dict[int, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""``_UPGRADES[n]`` turns a version-n dict into a version n+1 dict."""


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a record dict up to :data:`SCHEMA_VERSION`, refusing newer files."""
    version = int(data.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"schema_version {version} is newer than this quantlab understands "
            f"({SCHEMA_VERSION}); upgrade quantlab"
        )
    while version < SCHEMA_VERSION:
        data = _UPGRADES[version](data)
        version += 1
    data["schema_version"] = SCHEMA_VERSION
    return data


def load_record(cls: type[T], data: dict[str, Any]) -> T:
    """Upgrade and build a versioned record (Plan, RawResult, Run) from JSON data."""
    return from_dict(cls, upgrade(dict(data)))
