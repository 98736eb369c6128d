"""HTML report sections that set the runs against something else: stored accuracy
evaluations and confidence calibration, the autoquant ladder, the delegate matrix,
a baseline run, and the trend across runs (the history page)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quantlab.harness.report.html_markup import _e, _ms, _name, _nodata, _ok, _table
from quantlab.harness.stats import summarize
from quantlab.harness.store import JobEntry, RunRecord, Store
from quantlab.harness.verdicts.compare import compare_runs
from quantlab.harness.verdicts.drift import DRIFT_RULE
from quantlab.harness.verdicts.history import History


def _accuracy(store: Store, records: list[RunRecord]) -> str:
    from quantlab.harness.report.plots import accuracy_plot

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
            pts[(_name(e), e.job.delegate)] = (s.value, float(ev["value"]),
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
             f"{ev['drop']:.4f}" if ev.get("drop") is not None else "–", _drop_interval(ev),
             ev.get("max_drop"), "passed" if ev.get("passed") else "failed"]
            for ev in evals.values()]
    out.append(_table(["variant", "metric", "value", "reference", "drop",
                       "95 % interval of the drop", "max drop", "gate"], rows, {2, 3, 4, 6}))
    return "".join(out) or _nodata("evaluations exist but no measured job has a latency")


def _drop_interval(ev: dict[str, Any]) -> str:
    """The stored evaluation's paired 95 % interval of its drop, in the gate's units."""
    from quantlab.harness.quantize.gate import interval_text

    gate = (ev.get("payload") or {}).get("gate") or {}
    interval = gate.get("interval") or {}
    if interval.get("low") is None or interval.get("high") is None:
        return "–"
    metric = str(gate.get("metric"))
    lower = frozenset() if gate.get("drop_pt") is not None else frozenset({metric})
    return interval_text(metric, float(interval["low"]), float(interval["high"]), lower)


def _delegates(records: list[RunRecord], overlays: Mapping[str, str] | None = None) -> str:
    """Per device, a delegate × model matrix: latency, speedup vs CPU, placement bar, numerics,
    and a link to the job's Model Explorer overlays where ``overlays`` has one."""
    from quantlab.harness.report.delegates import delegate_rows, matrix, placement_bar

    cells = matrix(delegate_rows(records))
    if not cells:
        return _nodata("no jobs")
    out = ["<p>Each cell: headline latency (statistic named), speedup over the CPU delegate of "
           "the same device, model and threads, the share of the graph the delegate took (blue) "
           "and the cosine of its outputs against the float model.</p>"]
    for device, grid in sorted(cells.items()):
        models = sorted({m for m, _ in grid})
        dels = sorted({d for _, d in grid})
        head = "".join(f"<th>{_e(d)}</th>" for d in dels)
        body = []
        for m in models:
            tds = []
            for d in dels:
                row = grid.get((m, d))
                if row is None:
                    tds.append("<td class='nodata'>not run</td>")
                    continue
                lat = row["latency"]
                if lat is None:
                    tds.append(f"<td class='bad'>{_e(row['status'])}: {_e(row['error'])}</td>")
                    continue
                sp = (f" · ×{row['speedup_vs_cpu']:.2f}" if row["speedup_vs_cpu"] else "")
                cos = (row["numerics"] or {}).get("cosine")
                num = (f"<br>cosine {cos:.4f}" if cos is not None
                       else f"<br><span class='nodata'>numerics: {_e(row['numerics_note'])}</span>")
                fb = row["fallback_ops"]
                fb_types = ", ".join(sorted({str(o["op_type"]) for o in fb}))
                fallback = f"<br><span class='warn'>CPU: {_e(fb_types)}</span>" if fb else ""
                link = (overlays or {}).get(row["job_id"])
                explore = (f"<br><a href='{_e(link)}' title='node-data files for Model Explorer"
                           f" (quantlab explore)'>overlays</a>" if link else "")
                tds.append(f"<td>{_e(lat['statistic'])} {_e(_ms(lat['value_ms']))}{_e(sp)}<br>"
                           f"{placement_bar(row)}{fallback}{num}{explore}</td>")
            body.append(f"<tr><td>{_e(m)}</td>{''.join(tds)}</tr>")
        out.append(f"<h3>{_e(device)}</h3><table><thead><tr><th>model</th>{head}</tr></thead>"
                   f"<tbody>{''.join(body)}</tbody></table>")
    return "".join(out)


def _calibration(store: Store, records: list[RunRecord]) -> str:
    """Task metrics, agreement with fp32 and confidence-score drift of the evaluated variants."""
    from quantlab.harness.report.plots import reliability_diagrams, score_histograms

    evals = store.evaluations({e.job.model.sha256 for _r, e in _ok(records)})
    rows, labels, refs, hists = [], [], [], []
    bins: list[float] = []
    score = "confidence score"
    recal: list[tuple[str, dict[str, Any]]] = []  # evaluate --recalibrate's fits
    for ev in evals.values():
        payload = ev.get("payload") or {}
        name = ev.get("scheme") or Path(str(ev.get("path"))).name
        metrics = payload.get("metrics") or payload.get("accuracy") or {}
        fid: dict[str, Any] = payload["fidelity"] if isinstance(payload.get("fidelity"), dict) \
            else {}
        cal = payload.get("calibration") or {}
        agree = {k: v for k, v in fid.items() if k != "outputs" and v is not None}
        rows.append([name, ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())),
                     ", ".join(f"{k} {v:.4g}" for k, v in sorted(agree.items())),
                     "–" if cal.get("mean_shift") is None else f"{cal['mean_shift']:+.4f}",
                     "–" if cal.get("reference_ece") is None else f"{cal['reference_ece']:.4f}",
                     "–" if cal.get("ece") is None else f"{cal['ece']:.4f}"])
        if (cal.get("recalibration") or {}).get("reliability"):
            recal.append((name, cal["recalibration"]))
        if cal.get("bins"):
            bins, score = cal["bins"], str(cal.get("score") or score)
            labels.append(name)
            refs.append(cal["reference_hist"])
            hists.append(cal["variant_hist"])
    if not rows:
        return _nodata("no accuracy evaluation is stored for these variants "
                       "(run quantlab evaluate)")
    out = []
    if labels:
        out.append("<figure>" + score_histograms(
            labels, bins, refs, hists, score,
            "Confidence scores: variant (line) over the float model (shaded)") + "</figure>")
    out.append(_table(["variant", "metrics", "agreement with fp32", "mean score shift",
                       "ECE fp32", "ECE variant"], rows, {3, 4, 5}))
    if recal:
        out.append("<figure>" + reliability_diagrams(
            [f"{n} (T {r['temperature']:.2f}; ECE {r['ece_before']:.3f} → "
             f"{r['ece_after']:.3f})" for n, r in recal],
            [r["reliability"]["before"] for _n, r in recal],
            [r["reliability"]["after"] for _n, r in recal],
            "Reliability on the held-out half: before and after the fitted temperature "
            "(evaluate --recalibrate)") + "</figure>")
    out.append("<p>Mean score shift: the variant's score minus the float model's on the same "
               "predictions (top class, or matched boxes). ECE (expected calibration error) "
               "needs labels.</p>")
    if not labels:
        out.append(_nodata("the stored evaluations carry no confidence scores "
                           "(regression/segmentation, or evaluated by an older quantlab)"))
    return "".join(out)


def _comparison(store: Store, records: list[RunRecord], baseline: str | None) -> str:
    if not baseline:
        return _nodata("no baseline given (report --baseline RUN_ID)")
    base = store.load_run(baseline)
    out = []
    for r in records:
        c = compare_runs(base, r)
        rows = []
        for m in c.matches:
            ratio = f"{m.ratio:.3f}" if m.ratio is not None else "–"
            if m.ratio_ci95:
                ratio += f" [{m.ratio_ci95[0]:.3f}–{m.ratio_ci95[1]:.3f}]"
            rows.append([m.model, m.device, m.delegate, m.threads, m.method or "–",
                         m.statistic or "–", _ms(m.baseline_ms), _ms(m.new_ms), ratio,
                         f"{m.p_value:.2g}" if m.p_value is not None else "–",
                         m.verdict + (f" ({m.reason})" if m.reason else "")])
        tests = "; ".join(f"{k}: {v}" for k, v in c.tests.items()
                          if any(m.method == k for m in c.matches))
        out.append(f"<h3>{_e(r.run.run_id)} vs baseline {_e(base.run.run_id)}</h3>"
                   f"<p>{_e(tests)}; {_e(c.rule)}; threshold {100 * c.threshold:.0f}%</p>")
        out.append(_table(["variant", "device", "delegate", "thr", "method", "statistic",
                           "baseline", "new", "ratio [95% CI]", "p", "verdict"], rows,
                          {3, 6, 7, 8, 9})
                   if rows else _nodata("no job matched between the runs"))
        for u in c.only_in_new:
            out.append(f"<p class='warn'>only in {_e(r.run.run_id)}: {_e(u.label)} "
                       f"({_e(u.verdict)}: {_e(u.reason or u.status)})</p>")
        for u in c.only_in_baseline:
            out.append(f"<p class='warn'>only in baseline: {_e(u.label)} "
                       f"({_e(u.verdict)}: {_e(u.reason or u.status)})</p>")
    return "".join(out)


def _ladder(store: Store, records: list[RunRecord]) -> str:
    from quantlab.harness.report.ladder import ladder_section

    return ladder_section(store, records)


def _history_body(found: History) -> str:
    from quantlab.harness.report.plots import trend_plot

    if not found.series:
        return _nodata("no stored run matches (see quantlab runs)")
    out = [f"<p>{len(found.runs)} run(s), oldest to newest. A change point is a shift the "
           f"same test as <code>quantlab compare</code> calls significant: {_e(found.rule)}; "
           f"threshold {100 * found.threshold:g}%. It is unconfirmed until the next run "
           f"shows the same shift. Under each plot, the drift: {_e(DRIFT_RULE)}.</p>"]
    for s in found.series:
        title = f"{s.model} · {s.device} · {s.delegate} · {s.threads}t"
        labels = [p.run_id for p in s.points]
        svg = trend_plot(labels, [p.value_ms for p in s.points],
                         [p.statistic for p in s.points], [p.method for p in s.points],
                         [p.ci95 for p in s.points],
                         [(c.point, c.verdict, c.status == "confirmed")
                          for c in s.change_points],
                         [i for i, p in enumerate(s.points) if p.status == "failed"], title)
        out.append(f"<h3>{_e(title)}</h3><figure>{svg}</figure>")
        if s.drift is not None:
            kind = ("bad" if s.drift.verdict == "slower" else "good") if s.drift.flagged else ""
            out.append(f"<p class='{kind}'>{_e(s.drift.text())}</p>")
        rows = [[c.run_id, c.verdict, c.status, c.baseline_run, c.method, c.statistic,
                 _ms(c.baseline_ms), _ms(c.new_ms),
                 f"{c.ratio:.3f}" + (f" [{c.ratio_ci95[0]:.3f}–{c.ratio_ci95[1]:.3f}]"
                                     if c.ratio_ci95 else "") if c.ratio else "–",
                 f"{c.p_value:.2g}" if c.p_value is not None else "–"]
                for c in [*s.change_points, *s.transients]]
        if rows:
            out.append(_table(["run", "change", "status", "against", "method", "statistic",
                               "before", "after", "ratio [95% CI]", "p"], rows, {6, 7, 8, 9}))
    return "".join(out)
