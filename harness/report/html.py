"""One self-contained HTML report of stored runs (inline CSS and SVG; no scripts, no network).

Every section is always present; a section with nothing to show says "no data"
and why. :func:`write_report` is what the CLI and the demo call.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.report.compare import compare_runs
from harness.stats import stability_warnings, summarize
from harness.store import JobEntry, RunRecord, Store

SECTIONS = ("summary", "latency", "accuracy", "ops", "resources", "warnings", "comparison")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733;
background:#f4f6f8}
header{background:#1f3a5f;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
nav{margin:8px 0 0}nav a{color:#cfe0f5;margin-right:14px;text-decoration:none;font-size:13px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:14px 22px;
margin:18px 0}h2{font-size:17px;margin:4px 0 10px;color:#1f3a5f}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin:6px 0 10px}
th,td{padding:4px 8px;border-bottom:1px solid #e3e7eb;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.nodata{color:#7a8794;font-style:italic}.warn{color:#a35c00}.bad{color:#b3261e}.good{color:#1e7b34}
figure{margin:8px 0}figure svg{max-width:100%;height:auto}code{font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("–" if value is None else str(value))


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
                         for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _nodata(why: str) -> str:
    return f'<p class="nodata">no data — {_e(why)}</p>'


def _name(entry: JobEntry) -> str:
    m = entry.job.model
    name = Path(m.path).name
    return f"{m.scheme} ({name})" if m.scheme else name


def _ok(records: list[RunRecord]) -> list[tuple[RunRecord, JobEntry]]:
    return [(r, e) for r in records for e in r.entries if e.status == "ok" and e.raw is not None]


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}" data-section="{key}"><h2>{_e(title)}</h2>{body}</section>'


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
    from harness.report.plots import latency_plot

    by_device: dict[str, list[JobEntry]] = defaultdict(list)
    for _r, e in _ok(records):
        if any(len(s) for s in e.raw.samples_ms):  # type: ignore[union-attr]
            by_device[e.job.device_id].append(e)
    if not by_device:
        return _nodata("no finished job with raw latency samples")
    out = []
    for device, entries in sorted(by_device.items()):
        labels, samples, cis, rows = [], [], [], []
        for e in entries:
            assert e.raw is not None
            s = summarize(e.raw)
            assert s is not None
            labels.append(f"{_name(e)} · {e.job.delegate} · {e.job.threads}t")
            samples.append(np.concatenate([np.asarray(x, float) for x in e.raw.samples_ms if x]))
            cis.append(s.ci95)
            ci = f"{s.ci95[0]:.3g}–{s.ci95[1]:.3g} ms" if s.ci95 else "–"
            rows.append([labels[-1], _ms(s.median), ci, _ms(s.p90), _ms(s.p99), _ms(s.min),
                         _ms(s.max), f"{s.count} ({len(e.raw.samples_ms)} repeats)",
                         _ms(e.raw.init_ms), _ms(e.raw.first_inference_ms)])
        out.append(f"<h3>{_e(device)}</h3><figure>"
                   f"{latency_plot(labels, samples, cis, f'Latency on {device}')}</figure>")
        out.append(_table(["variant · delegate · threads", "median", "95% CI of median", "p90",
                           "p99", "min", "max", "samples", "init", "first inference"],
                          rows, set(range(1, 10))))
    return "".join(out)


def _accuracy(store: Store, records: list[RunRecord]) -> str:
    from harness.report.plots import accuracy_plot

    ok = _ok(records)
    evals = store.evaluations({e.job.model.sha256 for _r, e in ok})
    if not evals:
        return _nodata("no accuracy evaluation is stored for these variants "
                       "(run quantlab evaluate / quantize with --data)")
    out = []
    by_device: dict[str, list[JobEntry]] = defaultdict(list)
    for _r, e in ok:
        if e.job.model.sha256 in evals:
            by_device[e.job.device_id].append(e)
    for device, entries in sorted(by_device.items()):
        pts: dict[tuple[str, str], tuple[float, float, float]] = {}
        metric = "accuracy"
        for e in entries:
            ev = evals[e.job.model.sha256]
            s = summarize(e.raw) if e.raw else None
            if s is None or ev.get("value") is None:
                continue
            metric = str(ev.get("metric") or metric)
            med = s.median if s.median is not None else s.mean
            pts[(_name(e), e.job.delegate)] = (med, float(ev["value"]),
                                                e.job.model.size_bytes / 1024)
        if not pts:
            continue
        labels = [f"{n} · {d}" for n, d in pts]
        vals = list(pts.values())
        out.append(f"<h3>{_e(device)}</h3><figure>" + accuracy_plot(
            labels, [v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals], metric,
            f"{metric} vs latency on {device}") + "</figure>")
    rows = [[ev.get("scheme") or Path(str(ev.get("path"))).name, ev.get("metric"),
             f"{ev['value']:.4g}" if ev.get("value") is not None else "–",
             f"{ev['reference_value']:.4g}" if ev.get("reference_value") is not None else "–",
             f"{ev['drop']:.4f}" if ev.get("drop") is not None else "–",
             ev.get("max_drop"), "passed" if ev.get("passed") else "failed"]
            for ev in evals.values()]
    out.append(_table(["variant", "metric", "value", "reference", "drop", "max drop", "gate"],
                      rows, {2, 3, 4, 5}))
    return "".join(out) or _nodata("evaluations exist but no measured job has a latency")


def _ops(records: list[RunRecord]) -> str:
    from harness.report.plots import bar_plot

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
        energy = (f"{en.mj_per_inference:.3g} mJ/inference ({en.method}"
                  + (f", idle {en.baseline_mw:.0f} mW subtracted" if en.baseline_mw else "")
                  + ")") if en else f"not measured: {raw.energy_unavailable_reason or 'not asked'}"
        mem = (f"{raw.peak_memory_mb:.1f} MB ({raw.memory_method or 'method not given'})"
               if raw.peak_memory_mb is not None else "not measured")
        rows.append([f"{_name(e)} · {e.job.device_id} · {e.job.delegate}", mem, energy,
                     _thermal(raw.thermal_before), _thermal(raw.thermal_after)])
    if not rows:
        return _nodata("no finished job")
    return _table(["job", "peak memory", "energy", "thermal before", "thermal after"], rows)


def _thermal(state: dict[str, Any]) -> str:
    if not state:
        return "not measured"
    return ", ".join(f"{k} {v}" for k, v in sorted(state.items()))


def _warnings(records: list[RunRecord]) -> str:
    rows = []
    for r in records:
        for e in r.entries:
            label = f"{_name(e)} · {e.job.device_id} · {e.job.delegate} · {e.job.threads}t"
            if e.status != "ok":
                rows.append([r.run.run_id, label, e.status, e.error or "no reason recorded"])
            if e.raw is not None:
                for w in list(e.raw.warnings) + stability_warnings(e.raw):
                    rows.append([r.run.run_id, label, "warning", w])
    if not rows:
        return _nodata("no stability warnings, and no skipped or failed jobs")
    return _table(["run", "job", "state", "reason"], rows)


def _comparison(store: Store, records: list[RunRecord], baseline: str | None) -> str:
    if not baseline:
        return _nodata("no baseline given (report --baseline RUN_ID)")
    base = store.load_run(baseline)
    out = []
    for r in records:
        c = compare_runs(base, r)
        rows = [[m.model, m.device, m.delegate, m.threads, _ms(m.baseline_median_ms),
                 _ms(m.new_median_ms), f"{m.ratio:.3f} [{m.ratio_ci95[0]:.3f}–"
                 f"{m.ratio_ci95[1]:.3f}]", f"{m.p_value:.2g}", m.verdict] for m in c.matches]
        out.append(f"<h3>{_e(r.run.run_id)} vs baseline {_e(base.run.run_id)}</h3>"
                   f"<p>{_e(c.test)}; threshold {100 * c.threshold:.0f}%</p>")
        out.append(_table(["variant", "device", "delegate", "thr", "baseline", "new",
                           "ratio [95% CI]", "p", "verdict"], rows, {3, 4, 5, 6, 7})
                   if rows else _nodata("no job matched between the runs"))
        for lab in c.only_in_new:
            out.append(f"<p class='warn'>only in {_e(r.run.run_id)}: {_e(lab)}</p>")
        for lab in c.only_in_baseline:
            out.append(f"<p class='warn'>only in baseline: {_e(lab)}</p>")
    return "".join(out)


def render(store: Store, records: list[RunRecord], baseline: str | None = None) -> str:
    """The whole HTML document."""
    ids = ", ".join(r.run.run_id for r in records)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    parts = [
        _section("summary", "Summary", _summary(records)),
        _section("latency", "Latency distributions", _latency(records)),
        _section("accuracy", "Accuracy vs latency and size", _accuracy(store, records)),
        _section("ops", "Per-op breakdown", _ops(records)),
        _section("resources", "Memory, energy and thermal state", _resources(records)),
        _section("warnings", "Stability warnings, skipped and failed jobs", _warnings(records)),
        _section("comparison", "Comparison with baseline", _comparison(store, records, baseline)),
    ]
    nav = "".join(f'<a href="#{k}">{k}</a>' for k in SECTIONS)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>quantlab report · {_e(ids)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>quantlab report</h1><p>runs {_e(ids)} · written {now} from "
            f"{_e(store.location)}</p><nav>{nav}</nav></header><main>{''.join(parts)}</main>"
            f"</body></html>\n")


def write_report(store: Store, run_ids: list[str], path: Path,
                 baseline: str | None = None) -> Path:
    """Render the runs (``latest`` when none given) to ``path`` atomically; returns the path."""
    records = [store.load_run(r) for r in (run_ids or ["latest"])]
    text = render(store, records, baseline)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
