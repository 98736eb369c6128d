"""Parse benchmark_model output (every layout seen in the wild) into a typed result.

The tool's output changed over the years: new and old summary lines, per-phase
``count=`` lines, ``INFO:`` prefixes, logcat ``tflite  :`` prefixes (the APK
variant), three memory layouts, op-profile tables split on tabs (or on runs of
spaces where a paste lost the tabs) and a CSV variant. :func:`parse_output`
reads all of them into :class:`BenchmarkOutput`;
:func:`quantlab.android_runner.result_mapping.to_raw_result` maps one or more launches (repeats)
to a :class:`~quantlab.harness.records.RawResult`.

A run without the final summary line is never a success: the result is failed
with the tool's last error line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# logcat: "05-30 13:04:39.021 25935 25935 I tflite  : text" (threadtime format)
_LOGCAT = re.compile(
    r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[\w.]+\s*:\s?(?P<rest>.*)$"
)
# Android Studio logcat: "2023-06-14 10:55:21.084 18088-18088 tflite   org.x   I  text"
_STUDIO = re.compile(
    r"^\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+-\d+\s+\S+\s+\S+\s+[VDIWEF]\s\s(?P<rest>.*)$"
)
_LEVEL = re.compile(r"^(INFO|WARNING|ERROR|VERBOSE|DEBUG): ?")
_SUMMARY = re.compile(
    r"(?P<kind>Average inference timings|Inference timings) in us:\s*(?P<body>.*)")
_KV = re.compile(r"(\w+)=(-?[\d.]+(?:e[+-]?\d+)?)")
_PEAK = re.compile(r"Peak memory footprint \(MB\):\s*init=([\d.]+)\s+overall=([\d.]+)")
_DELTA = re.compile(
    r"Memory footprint delta from the start of the tool \(MB\):\s*init=([\d.]+)\s+overall=([\d.]+)"
)
_PERIODIC = re.compile(
    r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*([\d.]+)")
_RSS = re.compile(
    r"(?:\[(?P<phase>[^\]]+)\]\s*-\s*)?Memory usage: max resident set size = ([\d.]+) MB")
_REPLACING = re.compile(
    r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \((\w+)\) node, "
    r"yielding (\d+) partitions"
)
_DELEGATED = re.compile(
    r"(\w+) delegate: (\d+) nodes delegated out of (\d+) nodes with (\d+) partitions"
)
_UNSUPPORTED_HEAD = re.compile(r"operations are not supported by (?:the )?(\w+) delegate",
                               re.IGNORECASE)
_UNSUPPORTED_OP = re.compile(r"^(?:(?:ERROR|INFO|WARNING): )?([A-Z][A-Z0-9_]*):(?:\s+(.*))?$")
"""The GPU delegate's list of the ops it refused, one ``OP: reason`` line each."""
_TABLE_TITLE = re.compile(r"^=+ (?P<title>[^=]+?) =+$")
_PARAM = re.compile(r"^(?P<name>[^\[\]:]{2,60}?)\s*: \[(?P<value>[^\]]*)\]$")

FAILURE_MARKERS = (
    "Failed to apply",
    "Failed to invoke",
    "failed to invoke",
    "Benchmarking failed",
    "Failed to allocate tensors",
    "Failed to construct interpreter",
    "Failed to mmap model",
    "Failed to load model",
    "Aborted",
    "Segmentation fault",
    "CANNOT LINK EXECUTABLE",
    "not found",
    "Permission denied",
    "Killed",
)
"""Substrings that mark a line as an error of the tool (or of the shell around it)."""

DELEGATE_NOT_APPLIED = (
    re.compile(r"Could not create (?P<d>\w+) delegate.*"),
    re.compile(r"Though (?P<d>\w+) delegate is explicitly applied, the model graph will not be "
               r"executed by the delegate.*"),
)
"""Lines saying the requested delegate is not running anything (the tool then measures CPU)."""


@dataclass(frozen=True)
class PhaseStats:
    """One ``count=… first=… curr=… min=… max=… avg=… std=…`` line (µs)."""

    count: int
    avg_us: float
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    std_us: float | None = None
    median_us: float | None = None  # LiteRT's tools print p5=… median=… p95=…
    p5_us: float | None = None
    p95_us: float | None = None


@dataclass(frozen=True)
class ProfileRow:
    """One row of an op-profile table (times in ms, as printed)."""

    node_type: str
    avg_ms: float
    first_ms: float | None = None
    start_ms: float | None = None
    pct: float | None = None
    cdf_pct: float | None = None
    mem_kb: float | None = None
    times_called: int = 1
    name: str = ""
    count: int | None = None  # "Summary by node type" only


@dataclass(frozen=True)
class ProfileTable:
    """A table such as Run Order, in the init or the run section."""

    section: str  # "init" | "run"
    title: str  # "Run Order" | "Top by Computation Time" | "Summary by node type" | …
    rows: tuple[ProfileRow, ...]


@dataclass(frozen=True)
class Delegation:
    """What a delegate took over, as the tool reported it."""

    kernel: str
    nodes: int
    total: int | None
    partitions: int


@dataclass(frozen=True)
class BenchmarkOutput:
    """Everything read from one benchmark_model launch."""

    ok: bool
    error: str | None = None
    summary_layout: str | None = None  # "new" | "old"
    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    warmup: PhaseStats | None = None
    inference: PhaseStats | None = None
    peak_memory_mb: float | None = None
    memory_method: str | None = None
    tables: tuple[ProfileTable, ...] = ()
    delegations: tuple[Delegation, ...] = ()
    delegate_messages: tuple[str, ...] = ()
    delegate_not_applied: str | None = None
    unsupported: dict[str, str] = field(default_factory=dict)  # op type → the delegate's reason
    params: dict[str, str] = field(default_factory=dict)
    layouts: tuple[str, ...] = ()  # "info-prefix", "logcat", "tabs", "spaces", "csv" …

    def run_table(self) -> ProfileTable | None:
        """The per-op table of the measured runs: Run Order, else Top by Computation Time,
        else Summary by node type (one row per op type)."""
        for title in ("Run Order", "Top by Computation Time", "Summary by node type"):
            for t in self.tables:
                if t.section == "run" and t.title == title:
                    return t
        return None


def strip_prefix(line: str) -> tuple[str, str | None]:
    """A line without logcat / ``INFO:`` prefixes, and which prefix it had."""
    kind = None
    m = _LOGCAT.match(line) or _STUDIO.match(line)
    if m:
        line, kind = m.group("rest"), "logcat"
    m2 = _LEVEL.match(line)
    if m2:
        line, kind = line[m2.end():], kind or "info-prefix"
    return line, kind


def _num(text: str) -> float | None:
    text = text.strip().rstrip("%").strip()
    try:
        return float(text)
    except ValueError:
        return None


def _is_number(text: str) -> bool:
    return _num(text) is not None


def _phase(line: str) -> PhaseStats | None:
    values = {k: float(v) for k, v in _KV.findall(line)}
    if "count" not in values:
        return None
    avg = values.get("avg", values.get("curr"))
    if avg is None:
        return None
    return PhaseStats(count=int(values["count"]), avg_us=avg, first_us=values.get("first"),
                      curr_us=values.get("curr"), min_us=values.get("min"),
                      max_us=values.get("max"), std_us=values.get("std"),
                      median_us=values.get("median"), p5_us=values.get("p5"),
                      p95_us=values.get("p95"))


def _summary(body: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in body.split(","):
        if ":" not in part:
            continue
        key, _, value = part.partition(":")
        number = _num(value)
        if number is not None:
            out[key.strip().lower()] = number
    return out


# ----------------------------------------------------------------------------- tables


def _header_columns(line: str) -> list[str] | None:
    """Column names of a table header line (bracketed or CSV), lower-case."""
    if "[node type]" in line.lower():
        return [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", line)]
    if line.lower().startswith("node type,"):
        return [c.strip().lower() for c in line.split(",")]
    return None


def _split_row(line: str, columns: list[str], csv: bool) -> list[str] | None:
    """Split a table row into as many cells as there are columns (name may hold spaces)."""
    if csv:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) > len(columns):
            cells = [*cells[:len(columns) - 1], ",".join(cells[len(columns) - 1:])]
        return cells
    if "\t" in line:
        cells = [c.strip() for c in line.split("\t")]
        while cells and cells[0] == "":
            cells.pop(0)
        if len(cells) > len(columns):
            cells = [*cells[:len(columns) - 1], "\t".join(cells[len(columns) - 1:])]
        return cells
    # spaces only: node type = leading non-numeric tokens, then the numeric columns, then name
    tokens = line.split()
    k = 0
    while k < len(tokens) and not _is_number(tokens[k]):
        k += 1
    if k == 0:
        return None
    numeric = len([c for c in columns if c not in ("node type", "name")])
    cells = [" ".join(tokens[:k]), *tokens[k:k + numeric]]
    if "name" in columns:
        cells.append(" ".join(tokens[k + numeric:]))
    return cells


def _row(cells: list[str], columns: list[str]) -> ProfileRow | None:
    data = dict(zip(columns, cells, strict=False))
    node_type = data.get("node type", "").strip()
    avg = _num(data.get("avg ms", data.get("avg_ms", "")))
    if not node_type or avg is None:
        return None
    times = _num(data.get("times called", "1") or "1")
    count = _num(data.get("count", "")) if "count" in data else None
    return ProfileRow(
        node_type=node_type, avg_ms=avg, first_ms=_num(data.get("first", "")),
        start_ms=_num(data.get("start", "")),
        pct=_num(data.get("%", data.get("avg %", ""))),
        cdf_pct=_num(data.get("cdf%", data.get("cdf %", ""))),
        mem_kb=_num(data.get("mem kb", "")), times_called=int(times) if times is not None else 1,
        name=data.get("name", "").strip(), count=int(count) if count is not None else None)


# ----------------------------------------------------------------------------- parsing


def parse_output(text: str, profile_text: str | None = None) -> BenchmarkOutput:
    """Parse one launch's stdout+stderr (and the profile file, when one was written)."""
    layouts: set[str] = set()
    lines: list[str] = []
    error_lines: set[int] = set()
    for raw in text.replace("\r\n", "\n").split("\n"):
        line, kind = strip_prefix(raw.rstrip("\r"))
        if kind:
            layouts.add(kind)
        if re.search(r"(^|\s)(ERROR:|E tflite|[EF]/)", raw):
            error_lines.add(len(lines))
        lines.append(line)
    phases: list[PhaseStats] = []
    summary: dict[str, float] = {}
    layout = None
    memory: tuple[float, str] | None = None
    periodic: float | None = None
    rss: dict[str, float] = {}
    delegations: list[Delegation] = []
    messages: list[str] = []
    not_applied: str | None = None
    errors: list[str] = []
    params: dict[str, str] = {}
    unsupported: dict[str, str] = {}
    listing = False
    for index, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        if listing and (m := _UNSUPPORTED_OP.match(s)):
            unsupported.setdefault(m.group(1), (m.group(2) or "").strip() or "not supported")
        else:
            listing = bool(_UNSUPPORTED_HEAD.search(s))
        if s.startswith("count="):
            ph = _phase(s)
            if ph:
                phases.append(ph)
            continue
        m = _SUMMARY.search(s)
        if m:
            layout = "old" if m.group("kind").startswith("Average") else "new"
            summary = _summary(m.group("body"))
            continue
        if (m := _PERIODIC.search(s)):
            periodic = float(m.group(1))
        elif (m := _PEAK.search(s)):
            memory = (float(m.group(2)), "benchmark_model peak memory footprint (overall)")
        elif (m := _DELTA.search(s)):
            memory = (float(m.group(2)), "benchmark_model memory footprint delta from tool "
                      "start (overall)")
        elif (m := _RSS.search(s)):
            rss[(m.group("phase") or "overall").lower()] = float(m.group(2))
        if (m := _REPLACING.search(s)):
            delegations.append(Delegation(m.group(3), int(m.group(1)),
                                          int(m.group(2)) if m.group(2) else None,
                                          int(m.group(4))))
        elif (m := _DELEGATED.search(s)):
            delegations.append(Delegation(m.group(1), int(m.group(2)), int(m.group(3)),
                                          int(m.group(4))))
            if int(m.group(2)) == 0:
                not_applied = not_applied or s
        if "delegate" in s.lower() and ("applied" in s or "created" in s.lower()
                                        or "Could not" in s):
            messages.append(s)
        for pattern in DELEGATE_NOT_APPLIED:
            if pattern.search(s):
                not_applied = not_applied or s
        if index in error_lines or any(marker in s for marker in FAILURE_MARKERS):
            errors.append(s)
        if (m := _PARAM.match(s)):
            params[m.group("name").strip()] = m.group("value")
    tables = list(_parse_tables(lines, layouts))
    if profile_text:
        tables.extend(_parse_tables(profile_text.replace("\r\n", "\n").split("\n"), layouts))
    warmup = phases[0] if len(phases) >= 2 else None
    inference = phases[-1] if phases else None
    peak_mb, method = (memory if memory else (None, None))
    if periodic is not None:
        peak_mb, method = periodic, "benchmark_model periodic monitoring (overall peak)"
    elif peak_mb is None and rss:
        peak_mb = rss.get("overall", max(rss.values()))
        method = "benchmark_model max resident set size"
    init_us = summary.get("init")
    inference_us = summary.get("inference (avg)", summary.get("inference",
                                                                summary.get("no stats")))
    common: dict[str, Any] = dict(
        summary_layout=layout,
        init_ms=init_us / 1000 if init_us is not None else None,
        first_inference_ms=(summary["first inference"] / 1000 if "first inference" in summary
                            else (inference.first_us / 1000 if inference and layout == "old"
                                  and warmup is None and inference.first_us else
                                  (warmup.first_us / 1000 if warmup and warmup.first_us
                                   else None))),
        warmup_avg_ms=(summary.get("warmup (avg)", summary.get("warmup")) or 0) / 1000
        if ("warmup (avg)" in summary or "warmup" in summary) else None,
        inference_avg_ms=inference_us / 1000 if inference_us is not None else None,
        warmup=warmup, inference=inference, peak_memory_mb=peak_mb, memory_method=method,
        tables=tuple(tables), delegations=tuple(delegations),
        delegate_messages=tuple(messages), delegate_not_applied=not_applied,
        unsupported=unsupported, params=params,
        layouts=tuple(sorted(layouts)))
    if errors and any(m in e for e in errors for m in ("Failed to apply", "failed to invoke",
                                                        "Failed to invoke",
                                                        "Benchmarking failed")):
        return BenchmarkOutput(ok=False, error=errors[-1], **common)
    if layout is None or inference_us is None:
        reason = errors[-1] if errors else (not_applied or _last_line(lines))
        return BenchmarkOutput(ok=False, error="benchmark_model did not finish (no summary "
                               f"line); last output: {reason}", **common)
    return BenchmarkOutput(ok=True, **common)


def _last_line(lines: list[str]) -> str:
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return "(no output)"


def _parse_tables(lines: list[str], layouts: set[str]) -> list[ProfileTable]:
    tables: list[ProfileTable] = []
    section = "run"
    title: str | None = None
    columns: list[str] | None = None
    csv = False
    rows: list[ProfileRow] = []

    def close() -> None:
        nonlocal title, columns, rows
        if title is not None and columns is not None:
            tables.append(ProfileTable(section, title, tuple(rows)))
        title, columns, rows = None, None, []

    for raw in lines:
        line = strip_prefix(raw)[0]
        s = line.strip()
        if "Profiling Info for Benchmark Initialization" in s:
            close()
            section = "init"
            continue
        if "Profiling Info for Regular Benchmark Runs" in s:
            close()
            section = "run"
            continue
        m = _TABLE_TITLE.match(s)
        if m:
            close()
            title = m.group("title").strip()
            continue
        if title is not None and columns is None:
            cols = _header_columns(s)
            if cols:
                columns = cols
                csv = s.lower().startswith("node type,")
                layouts.add("csv" if csv else ("tabs" if "\t" in line else "spaces"))
            continue
        if title is not None and columns is not None:
            if not s or s.startswith(("Number of nodes executed", "Timings (microseconds)",
                                      "Memory (bytes)")):
                close()
                continue
            cells = _split_row(line, columns, csv)
            row = _row(cells, columns) if cells else None
            if row:
                rows.append(row)
    close()
    return tables
