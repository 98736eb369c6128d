"""The plain-data records that flow through quantlab (see docs/result-spec.md).

model → :class:`ModelRef`; devices → :class:`DeviceInfo`; a request → :class:`Plan`
of :class:`Job`; an agent returns a :class:`RawResult`; the jobs executed together
form a :class:`Run`. All records are frozen; they serialise to JSON with a
``schema_version`` and load back through :func:`upgrade`, which refuses files
written by a newer quantlab.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

SCHEMA_VERSION = 3
"""Version of the JSON format of every record. Bump it with an upgrade step."""

Platform = str
"""A device kind's registered name (:mod:`quantlab.harness.kinds`): ``sim``, ``android``,
``ios``, ``linux`` (SSH gateways) or one a test or plug-in registered."""
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


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A record class's annotations, resolved once (typing compiles each string annotation:
    resolving them per record was most of the time of loading a stored run)."""
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a frozen record of type ``cls`` from a dict, ignoring unknown keys."""
    hints = _type_hints(typing.cast(type, cls))
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
    energy_on_usb: bool = False  # keep a battery-gauge figure taken on USB/AC power (labelled)
    numerics: bool = False  # fixed inputs → outputs back → compared with the float model
    sustained_s: float = 0.0  # > 0: one sustained run of this long, in windows (no repeats)
    window_s: float = 10.0  # a sustained run's window
    throttle_pct: float = 10.0  # latency staying this far above the first window = throttled


SETTINGS_HASHED_ONLY_WHEN_SET: dict[str, Any] = {"energy_on_usb": False, "numerics": False,
                                                 "sustained_s": 0.0, "window_s": 10.0,
                                                 "throttle_pct": 10.0}
"""Settings fields added after the first release: left out of ``Job.job_id`` while they
hold their default, so the ids of existing jobs never change."""


def _hashed_settings(settings: Settings) -> dict[str, Any]:
    """The settings as they enter ``Job.job_id``: no input path (content is in
    ``inputs_sha256``), and no later-added field while it holds its default."""
    out = to_dict(dataclasses.replace(settings, inputs=None))
    for name, default in SETTINGS_HASHED_ONLY_WHEN_SET.items():
        if out.get(name) == default:
            out.pop(name, None)
    return out


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
            "settings": _hashed_settings(self.settings),
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


ENERGY_CLASSES: dict[str, str] = {
    "odpm-rails": "device-rails",
    "battery-gauge": "battery-gauge",
    "ios-task-energy": "process-estimate",
    "ios-dvt": "process-estimate",
    "rapl": "host-package",
    "hwmon-power": "board-power",
}
"""Energy method → comparability class. Figures are only compared within one class (on
one device): rails, a battery gauge, an OS per-process estimate and a host CPU package
counter measure different things."""

ENERGY_CLASS_MEANING: dict[str, str] = {
    "device-rails": "on-device power-monitor rails: SoC and memory rails, measured",
    "battery-gauge": "battery fuel gauge: whole phone, coarse",
    "process-estimate": "the OS's per-process CPU energy estimate: no GPU or Neural Engine work",
    "host-package": "host CPU package counters (RAPL): whole host",
    "board-power": "a Linux gateway's board power sensors (hwmon INA2xx/INA3221, PMIC)",
}


def energy_class(method: str) -> str:
    """The comparability class of an energy method (the one place it is derived).

    An unknown method gets a class of its own (``other:<method>``), so it is never
    ranked against a known one.
    """
    return ENERGY_CLASSES.get(method, f"other:{method}")


@dataclass(frozen=True)
class Energy:
    """An energy measurement with its method; never an invented figure.

    ``comparability`` is derived from ``method`` (:func:`energy_class`) when the record
    is built, so results stored before the field existed get it on load.
    """

    method: str  # "rapl" | "battery-gauge" | "odpm-rails" | "ios-task-energy"
    mj_per_inference: float
    baseline_mw: float | None = None
    samples: int = 0
    label: str | None = None  # what the figure really measures (e.g. "package energy, host CPU")
    detail: dict[str, Any] = field(default_factory=dict)
    comparability: str = ""  # derived: "device-rails" | "battery-gauge" | "process-estimate" | …

    def __post_init__(self) -> None:
        object.__setattr__(self, "comparability", energy_class(self.method))

    @property
    def on_external_power(self) -> bool:
        """A battery-gauge figure kept although the phone was on USB/AC power."""
        return bool(self.detail.get("on_external_power"))


@dataclass(frozen=True)
class LaunchStats:
    """What one launch (one process) of a runner reported about its measured iterations.

    Runners that print no per-iteration samples (``benchmark_model``) still give one
    of these per launch; each figure is None when the tool did not print it, never
    filled in from another figure.
    """

    mean_ms: float
    count: int | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    median_ms: float | None = None  # printed by LiteRT's benchmark tools, not by older ones
    p5_ms: float | None = None
    p95_ms: float | None = None


RAW_OUTPUT_CAP_BYTES = 4 * 1024 * 1024
"""Default cap on one raw output file (bytes); ``QUANTLAB_RAW_CAP_BYTES`` changes it."""

RAW_CAP_ENV = "QUANTLAB_RAW_CAP_BYTES"


def raw_output_cap() -> int:
    """The cap on one raw output file: ``$QUANTLAB_RAW_CAP_BYTES`` or the default (4 MiB)."""
    value = os.environ.get(RAW_CAP_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else RAW_OUTPUT_CAP_BYTES


def _text_bytes(text: str) -> bytes:
    """UTF-8 bytes of text, giving back the original bytes of a surrogate-escaped decode."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _utf8_start(data: bytes, i: int) -> int:
    """The first index ≥ ``i`` that does not fall inside a UTF-8 sequence."""
    while i < len(data) and data[i] & 0xC0 == 0x80:
        i += 1
    return i


@dataclass(frozen=True)
class RawOutput:
    """One raw output of a runner (a launch's stdout or stderr, a pulled file), as kept.

    Plain data, so it travels through Ray and JSON: ``content`` is the kept bytes as
    UTF-8 text, or base64 when ``encoding`` is ``"base64"`` (not valid UTF-8). An
    output longer than ``cap_bytes`` keeps its first and last halves around one marker
    line and says so in ``truncated``; ``size_bytes`` is the size of the whole output.
    """

    name: str  # unique within the job, e.g. "launch-1.stdout", "profile.csv", "result.json"
    media_type: str  # "text/plain", "text/csv", "application/json"
    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"
    size_bytes: int = 0  # of the whole output, before the cap
    truncated: bool = False
    cap_bytes: int = RAW_OUTPUT_CAP_BYTES

    @classmethod
    def capture(cls, name: str, media_type: str, data: bytes | str,
                cap_bytes: int | None = None) -> RawOutput:
        """Keep ``data`` (cut to the cap: head and tail around a marker line)."""
        raw = _text_bytes(data) if isinstance(data, str) else bytes(data)
        cap = cap_bytes if cap_bytes is not None else raw_output_cap()
        kept, truncated = raw, False
        if len(raw) > cap:
            head_end = _utf8_start(raw, cap // 2)
            tail_start = _utf8_start(raw, max(len(raw) - (cap - cap // 2), head_end))
            cut = tail_start - head_end
            marker = (f"\n[quantlab: {cut} bytes cut here; raw files keep at most {cap} bytes "
                      f"(first and last halves)]\n").encode()
            kept, truncated = raw[:head_end] + marker + raw[tail_start:], True
        try:
            return cls(name, media_type, kept.decode("utf-8"), "utf-8", len(raw), truncated, cap)
        except UnicodeDecodeError:
            return cls(name, media_type, base64.b64encode(kept).decode("ascii"), "base64",
                       len(raw), truncated, cap)

    def data(self) -> bytes:
        """The kept bytes (what the store writes and hashes)."""
        if self.encoding == "base64":
            return base64.b64decode(self.content)
        return self.content.encode("utf-8")


@dataclass(frozen=True)
class RawFile:
    """A raw output stored beside the results, by content; see docs/result-spec.md."""

    name: str
    sha256: str  # of the stored bytes: the file is raw/<sha256[:2]>/<sha256>
    size_bytes: int  # stored bytes
    media_type: str = "text/plain"
    truncated: bool = False
    original_size_bytes: int | None = None  # before the cap
    cap_bytes: int | None = None


@dataclass(frozen=True)
class RawResult:
    """What an agent hands back for one job, unprocessed.

    ``samples_ms`` holds one tuple of per-iteration latencies per process-level
    repeat. Where a runner gives only aggregates (benchmark_model, a hand-run log),
    ``samples_ms`` is empty, ``launches`` holds each launch's own figures and
    ``aggregates_ms`` the figures pooled over launches.
    """

    job_id: str
    status: Literal["ok", "failed"]
    error: str | None = None
    samples_ms: tuple[tuple[float, ...], ...] = ()
    aggregates_ms: dict[str, float] = field(default_factory=dict)
    launches: tuple[LaunchStats, ...] = ()
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
    raw_outputs: tuple[RawOutput, ...] = ()  # full runner output, written by the store
    raw_files: tuple[RawFile, ...] = ()  # the stored raw outputs (filled by the store)
    placement: dict[str, Any] = field(default_factory=dict)  # which ops ran where (see spec)
    numerics: dict[str, Any] = field(default_factory=dict)  # outputs vs the float reference
    sustained: dict[str, Any] = field(default_factory=dict)  # windows over time (see spec)
    startup: dict[str, Any] = field(default_factory=dict)  # the first second: cold/warm start
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

def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added fields with defaults (``launches``, ``raw_outputs``, ``placement``,
    ``numerics``; ``Energy.comparability``, derived from the method; ``Settings.energy_on_usb``
    and ``numerics``) and made ``raw_files`` a list of records: version 1 documented it as a
    list of paths but never filled it, so any strings in it are dropped."""
    if isinstance(data.get("raw_files"), list):
        data["raw_files"] = [f for f in data["raw_files"] if isinstance(f, dict)]
    return data


_UPGRADES: dict[int, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2, 2: dict}  # version 3 only added fields with defaults (docs/result-spec.md)
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
