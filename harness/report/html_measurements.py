"""HTML report sections on what the runs measured: summary, latency, per-op breakdown,
memory/energy/thermal state, the first second (cold and warm start), sustained runs over
time, and stability warnings with skipped
and failed jobs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from quantlab.harness.report.html_markup import _e, _ms, _name, _nodata, _ok, _table
from quantlab.harness.stats import PER_ITERATION, SUMMARY_NOTE, launch_figures, stability, summarize
from quantlab.harness.store import JobEntry, RunRecord


def _summary(records: list[RunRecord]) -> str:
    rows = []
    for r in records:
        counts: dict[str, int] = defaultdict(int)
        for e in r.entries:
            counts[e.status] += 1
        devices = ", ".join(f"{d.id} ({d.model or d.platform})" for d in r.devices.values()) or \
            ", ".join(sorted({e.job.device_id for e in r.entries}))
        rows.append([r.run.run_id, r.run.created_at.replace("T", " "), r.run.host, r.status,
                     ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), devices,
                     r.run.git_sha or "–"])
    out = _table(["run", "when (UTC)", "host", "status", "jobs", "devices", "git"], rows)
    variants = sorted({(_name(e), e.job.model.size_bytes, e.job.model.sha256[:12])
                       for r in records for e in r.entries})
    out += "<h3>Variants</h3>" + _table(
        ["variant", "size", "sha256"],
        [[v, f"{s / 1024:.1f} KiB", h] for v, s, h in variants], {1})
    delegates = sorted({e.job.delegate for r in records for e in r.entries})
    out += f"<p><b>Delegates:</b> {_e(', '.join(delegates) or 'none')}</p>"
    versions: dict[str, str] = {}
    for r in records:
        versions.update(r.run.tool_versions)
    out += "<h3>Tool versions</h3>" + (
        _table(["tool", "version"], [[k, v] for k, v in sorted(versions.items())]) if versions
        else _nodata("the runs recorded no tool versions"))
    return out


def _latency(records: list[RunRecord]) -> str:
    from quantlab.harness.report.plots import latency_plot

    by_device: dict[str, list[JobEntry]] = defaultdict(list)
    for _r, e in _ok(records):
        if summarize(e.raw) is not None:  # type: ignore[arg-type]
            by_device[e.job.device_id].append(e)
    if not by_device:
        return _nodata("no finished job with a latency figure")
    out = []
    for device, entries in sorted(by_device.items()):
        labels, samples, cis, rows = [], [], [], []
        for e in entries:
            assert e.raw is not None
            s = summarize(e.raw)
            assert s is not None
            label = f"{_name(e)} · {e.job.delegate} · {e.job.threads}t"
            labels.append(label if s.method == PER_ITERATION else f"{label} ({s.method})")
            # the plot shows what was measured: every iteration, or each launch's own figure
            samples.append(np.concatenate([np.asarray(x, float) for x in e.raw.samples_ms if x])
                           if s.method == PER_ITERATION
                           else np.asarray([x.mean_ms for x in launch_figures(e.raw)]))
            cis.append(s.ci95)
            ci = f"{s.ci95[0]:.3g}–{s.ci95[1]:.3g} ms" if s.ci95 else "–"
            count = "–" if s.count is None else str(s.count)
            rows.append([label, s.method, f"{s.statistic} {_ms(s.value)}", ci, _ms(s.p90),
                         _ms(s.p99), _ms(s.min), _ms(s.max), _ms(s.std),
                         f"{count} ({s.launches} launch{'es' if s.launches != 1 else ''})",
                         _ms(e.raw.init_ms), _ms(e.raw.first_inference_ms)])
        out.append(f"<h3>{_e(device)}</h3><figure>"
                   f"{latency_plot(labels, samples, cis, f'Latency on {device}')}</figure>")
        out.append(_table(["variant · delegate · threads", "method", "figure",
                           "95% CI of the figure", "p90", "p99", "min", "max", "std",
                           "iterations", "init", "first inference"],
                          rows, set(range(2, 12))))
    out.append(f"<p>Methods: per-iteration = every iteration timed (box: quartiles); "
               f"per-launch = each launch's mean (a point per fresh process); "
               f"summary = the tool's own figures for one launch ({_e(SUMMARY_NOTE)}). "
               "A figure the tool did not print is shown as –.</p>")
    return "".join(out)

def _ops(records: list[RunRecord]) -> str:
    from quantlab.harness.report.plots import bar_plot

    out = []
    for _r, e in _ok(records):
        assert e.raw is not None
        ops = [o for o in e.raw.ops if o.unit == "ms"]
        if not ops:
            continue
        label = f"{_name(e)} · {e.job.device_id} · {e.job.delegate} · {e.job.threads}t"
        total = sum(o.avg_ms for o in ops) or 1.0
        per_type: dict[str, float] = defaultdict(float)
        for o in ops:
            per_type[o.op_type or o.kernel] += o.avg_ms
        types = sorted(per_type.items(), key=lambda kv: -kv[1])[:15]
        out.append(f"<h3>{_e(label)}</h3><figure>" + bar_plot(
            [t for t, _ in types], [v for _, v in types], ["#2980b9"] * len(types),
            "time per inference (ms)", "Time per op type") + "</figure>")
        top = sorted(ops, key=lambda o: -o.avg_ms)[:12]
        out.append(_table(["#", "op type", "kernel", "ran in", "avg", "share"],
                          [[o.index, o.op_type or "?", o.kernel, o.delegate or "CPU (builtin)",
                            _ms(o.avg_ms), f"{100 * o.avg_ms / total:.1f}%"] for o in top],
                          {0, 4, 5}))
        parts: list[list[Any]] = []
        for o in sorted(e.raw.ops, key=lambda o: o.index):
            where = o.delegate or "CPU"
            if parts and parts[-1][0] == where:
                parts[-1][2] = o.index
                parts[-1][3] += 1
            else:
                parts.append([where, o.index, o.index, 1])
        out.append("<p><b>Partitions:</b> " + "; ".join(
            _e(f"ops {a}–{b} ({n}) ran inside {w} delegate" if w != "CPU"
               else f"ops {a}–{b} ({n}) ran on CPU builtin kernels") for w, a, b, n in parts)
            + "</p>")
    return "".join(out) or _nodata("no job was profiled per op (bench --profile-ops)")


def _resources(records: list[RunRecord]) -> str:
    rows = []
    for _r, e in _ok(records):
        raw = e.raw
        assert raw is not None
        en = raw.energy
        energy = (f"{en.mj_per_inference:.3g} mJ/inference · class {en.comparability} "
                  f"(method {en.method})"
                  + (f" · {en.label}" if en.label else "")
                  + (f" · idle {en.baseline_mw:.0f} mW subtracted"
                     if en.baseline_mw is not None else "")
                  ) if en else f"not measured: {raw.energy_unavailable_reason or 'not asked'}"
        mem = (f"{raw.peak_memory_mb:.1f} MB ({raw.memory_method or 'method not given'})"
               if raw.peak_memory_mb is not None else "not measured")
        rows.append([f"{_name(e)} · {e.job.device_id} · {e.job.delegate}", mem, energy,
                     _thermal(raw.thermal_before), _thermal(raw.thermal_after)])
    if not rows:
        return _nodata("no finished job")
    classes = sorted({e.raw.energy.comparability for _r, e in _ok(records)
                      if e.raw is not None and e.raw.energy is not None})
    note = (f"<p>Energy classes here: {_e(', '.join(classes))}. Figures are comparable only "
            "within one class on one device (rails, a battery gauge, an OS per-process "
            "estimate and a host CPU package counter measure different things).</p>"
            if classes else "")
    return note + _table(["job", "peak memory", "energy", "thermal before", "thermal after"],
                         rows)


def _thermal(state: dict[str, Any]) -> str:
    if not state:
        return "not measured"
    return ", ".join(f"{k} {v}" for k, v in sorted(state.items()))


def _startup(records: list[RunRecord]) -> str:
    from quantlab.harness.startup import cold_and_warm

    rows = []
    for _r, e in _ok(records):
        start = e.raw.startup if e.raw is not None else {}
        if not start:
            continue
        c = start.get("cold") or {}
        cold, warm = cold_and_warm(start)
        rows.append([f"{_name(e)} · {e.job.device_id} · {e.job.delegate} · {e.job.threads}t",
                     _ms(c.get("load_ms")), _ms(c.get("delegate_ms")),
                     _ms(c.get("first_inference_ms")), _ms(cold), _ms(warm),
                     start.get("warm_unavailable") or start.get("source") or ""])
    if not rows:
        return _nodata("no job recorded its start (results older than schema version 3)")
    return ("<p>Cold start: model load, delegate and first inference from nothing; warm start: "
            "the same with the delegate's cache (GPU/NNAPI <code>--delegate_serialize_dir</code> "
            "on Android). Time to first result = load + delegate + first inference.</p>"
            + _table(["job", "load", "delegate", "first inference", "cold start",
                      "warm start", "note"], rows))


def _sustained(records: list[RunRecord]) -> str:
    from quantlab.harness.report.plots import sustained_plot
    from quantlab.harness.sustained import describe

    out = []
    for _r, e in _ok(records):
        s = e.raw.sustained if e.raw is not None else {}
        if not s or not s.get("windows"):
            continue
        label = f"{_name(e)} · {e.job.device_id} · {e.job.delegate} · {e.job.threads}t"
        first = s["windows"][0].get("median_ms") or s["windows"][0].get("mean_ms")
        limit = first * (1 + s.get("throttle_pct", 10.0) / 100) if first else None
        out.append(f"<h3>{_e(label)}</h3><p>{_e(describe(s))}</p>"
                   f"<p>{_e(s.get('source') or '')}</p>"
                   + sustained_plot(s["windows"], s.get("throttle_at_s"), limit,
                                    f"{label}: {s['duration_s']:g}s in {s['window_s']:g}s "
                                    "windows"))
    return "".join(out) or _nodata("no sustained run (bench --sustained DURATION)")


def _warnings(records: list[RunRecord]) -> str:
    rows = []
    for r in records:
        for e in r.entries:
            label = f"{_name(e)} · {e.job.device_id} · {e.job.delegate} · {e.job.threads}t"
            if e.status != "ok":
                rows.append([r.run.run_id, label, e.status, e.error or "no reason recorded"])
            if e.raw is not None:
                checks = stability(e.raw)
                for w in list(e.raw.warnings) + checks.warnings:
                    rows.append([r.run.run_id, label, "warning", w])
                for w in checks.not_checkable:
                    rows.append([r.run.run_id, label, "not checkable", w])
    if not rows:
        return _nodata("no stability warnings, and no skipped or failed jobs")
    return _table(["run", "job", "state", "reason"], rows)
