"""Parse the output of LiteRT's ``benchmark_litert_model`` (CompiledModel API) into the same
:class:`~quantlab.android_runner.parser.BenchmarkOutput` that benchmark_model's parser produces.

The tool prints, around what benchmark_model also prints (``count=… median=…`` lines,
"Replacing N out of M node(s) with delegate (…)" lines, op-profile tables), a results
block of its own, each line tagged with its source position::

    ========== BENCHMARK RESULTS ==========
    INFO: [benchmark_litert_model.h:94] Model initialization: 23744.73 ms
    INFO: [benchmark_litert_model.h:96] Warmup (first):       7441.04 ms
    INFO: [benchmark_litert_model.h:98] Warmup (avg):         7441.04 ms (1 runs)
    INFO: [benchmark_litert_model.h:100] Inference (avg):      7430.20 ms (10 runs)
    INFO: [benchmark_litert_model.h:104] Inference (min):      7416.40 ms
    …
    INFO: [benchmark_litert_model.h:126] Init footprint:       6391.74 MB
    INFO: [benchmark_litert_model.h:128] Overall footprint:    6391.74 MB

:func:`parse_litert_output` strips the source tags, joins delegation lines that the log
wrapped, lets :func:`quantlab.android_runner.parser.parse_output` read the shared parts, then
takes the results block's figures (in ms, as printed). :func:`parse_any` picks the parser
by what the text holds, so the Android agent reads either tool's launches the same way.
"""

from __future__ import annotations

import dataclasses
import re

from quantlab.android_runner.parser import BenchmarkOutput, PhaseStats, parse_output, strip_prefix

RESULTS_MARKER = "BENCHMARK RESULTS"
_SOURCE_TAG = re.compile(r"^\s*\[[^\]\s]+:\d+\]\s?")  # [benchmark_litert_model.h:94],
# [./litert/tools/benchmark_litert_model.h:82], a Windows build's [.\litert/tools/….h:57]
_FIELD = re.compile(
    r"^(?P<name>[A-Za-z][A-Za-z ]*?(?: \((?P<stat>[\w ]+)\))?):\s+(?P<value>-?[\d.]+(?:e[+-]?\d+)?)"
    r"\s*(?P<unit>ms|us|MB/s|MB)?(?:\s*\((?P<runs>\d+) runs\))?")
_WRAPPED = re.compile(r"with delegate \(\w+\) node,\s*$")


def _clean(text: str) -> str:
    """Lines without logcat/``INFO:`` prefixes and ``[file.h:NN]`` tags; wrapped
    delegation lines joined."""
    out: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = strip_prefix(raw)[0]
        line = _SOURCE_TAG.sub("", line)
        if out and _WRAPPED.search(out[-1]):
            out[-1] = out[-1].rstrip() + " " + line.strip()
            continue
        out.append(line)
    return "\n".join(out)


def results_block(text: str) -> dict[str, tuple[float, str | None, int | None]]:
    """The fields of the results block: name → (value, unit, runs), as printed."""
    fields: dict[str, tuple[float, str | None, int | None]] = {}
    inside = False
    for line in _clean(text).split("\n"):
        s = line.strip()
        if RESULTS_MARKER in s:
            inside = True
            continue
        if not inside or not s:
            continue
        m = _FIELD.match(s)
        if m:
            fields[m.group("name").strip().lower()] = (
                float(m.group("value")), m.group("unit"),
                int(m.group("runs")) if m.group("runs") else None)
    return fields


def _ms(field: tuple[float, str | None, int | None] | None) -> float | None:
    if field is None:
        return None
    value, unit, _ = field
    return value / 1000 if unit == "us" else value


def parse_litert_output(text: str, profile_text: str | None = None) -> BenchmarkOutput:
    """Parse one benchmark_litert_model launch (stdout+stderr, and a profile file if any)."""
    cleaned = _clean(text)
    base = parse_output(cleaned, profile_text)
    fields = results_block(text)
    avg = fields.get("inference (avg)")
    if avg is None:
        reason = base.error or "no results block"
        reason = reason.replace("benchmark_model did not finish (no summary line)",
                                "benchmark_litert_model did not finish (no results block)")
        return dataclasses.replace(base, ok=False, error=reason)
    inference = base.inference
    runs = avg[2]
    if inference is None and runs:
        # no count= line: the block's own figures (ms → µs, the unit of PhaseStats)
        def us(key: str) -> float | None:
            v = _ms(fields.get(key))
            return v * 1000 if v is not None else None
        std = fields.get("inference (std)")
        inference = PhaseStats(count=runs, avg_us=(_ms(avg) or 0.0) * 1000,
                               min_us=us("inference (min)"), max_us=us("inference (max)"),
                               std_us=std[0] * 1000 if std else None,
                               median_us=us("inference (median)"),
                               p5_us=us("inference (p5)"), p95_us=us("inference (p95)"))
    overall = fields.get("peak memory usage") or fields.get("overall footprint")
    memory_method = None
    if overall is not None:
        memory_method = ("benchmark_litert_model peak memory usage"
                         if "peak memory usage" in fields
                         else "benchmark_litert_model overall memory footprint")
    errors_ok = base.ok or base.error is None or "did not finish" in (base.error or "")
    return dataclasses.replace(
        base,
        ok=errors_ok,
        error=None if errors_ok else base.error,
        summary_layout="litert",
        init_ms=_ms(fields.get("model initialization")),
        first_inference_ms=_ms(fields.get("warmup (first)")),
        warmup_avg_ms=_ms(fields.get("warmup (avg)")),
        inference_avg_ms=_ms(avg),
        inference=inference,
        peak_memory_mb=overall[0] if overall else base.peak_memory_mb,
        memory_method=memory_method or base.memory_method,
        layouts=tuple(sorted({*base.layouts, "litert-results"})),
    )


def is_litert_output(text: str) -> bool:
    """Whether a launch's text comes from benchmark_litert_model."""
    return RESULTS_MARKER in text or "benchmark_litert_model" in text


def parse_any(text: str, profile_text: str | None = None) -> BenchmarkOutput:
    """benchmark_litert_model's parser for its output, benchmark_model's otherwise."""
    if is_litert_output(text):
        return parse_litert_output(text, profile_text)
    return parse_output(text, profile_text)
