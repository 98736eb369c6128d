"""Results a CI system reads in its own format: JUnit XML and a Markdown summary.

For a comparison (``compare --junit``, ``bench --baseline … --junit``) each matched
pair of jobs is one test case: ``slower`` and ``failed`` verdicts are failures carrying
the numbers, and so is a pair whose series drifted slower (``bench --baseline TAG``:
type ``drift``, with the cumulative change and the trend); ``untestable`` pairs are
skipped with the reason, the rest pass. A job of the baseline missing from the new run
is a failing case (``missing``; skipped with ``--allow-missing``), and so is a job only
in the new run that failed; new jobs that ran are listed in the suite's output, not as
cases. For a run without a baseline (``bench --junit``) each job is one case: failed
jobs fail, skipped jobs are skipped with their reason.

With a plan file's ``[gate]`` (``bench --plan``), the accuracy gate is a second suite:
one case per variant, failing when its drop is beyond its max drop; the Markdown gets
the same as a section. The Markdown is a table for a CI job summary
(``$GITHUB_STEP_SUMMARY``) or a pull-request comment. Both are written atomically (a
reader never sees half a file).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantlab.harness.atomic import write_text_atomically
from quantlab.harness.stats import summarize
from quantlab.harness.store import JobEntry, RunRecord
from quantlab.harness.verdicts.compare import Comparison, Match, Unmatched
from quantlab.harness.verdicts.latency import (
    FAILED,
    FASTER,
    MISSING,
    NEW,
    SAME,
    SLOWER,
    UNTESTABLE,
)

SUITE = "quantlab"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def match_text(m: Match) -> str:
    """One line with a pair's verdict and its numbers (what a CI failure message shows)."""
    if m.baseline_ms is None or m.new_ms is None:
        return (f"{m.verdict}: {m.reason}" if m.reason else m.verdict) + drift_text(m)
    stat = f"{m.statistic} " if m.statistic else ""
    text = f"{m.verdict}: {stat}{_ms(m.new_ms)} vs {_ms(m.baseline_ms)} in the baseline"
    if m.ratio is not None:
        text += f", ratio ×{m.ratio:.3f}"
    if m.ratio_ci95:
        text += f" (95% CI {m.ratio_ci95[0]:.3f}–{m.ratio_ci95[1]:.3f})"
    if m.p_value is not None:
        text += f", p={m.p_value:.2g}"
    if m.method:
        text += f", {m.method}"
    if m.reason:
        text += f"; {m.reason}"
    return text + drift_text(m)


def drift_text(m: Match) -> str:
    """"; drift …" for a pair whose series' drift was judged (empty otherwise)."""
    if m.drift is None or m.drift.cumulative is None:
        return ""
    return f"; {m.drift.text()}"


def _case_name(model: str, delegate: str, threads: int) -> str:
    return f"{model} · {delegate} · {threads}t"


def _classname(device: str) -> str:
    return f"{SUITE}.{device.replace('.', '_')}"


def _xml(suite: ET.Element, counts: Counter[str],
         accuracy: dict[str, Any] | None = None) -> str:
    suites = [(suite, counts)]
    if accuracy is not None:
        suites.append(_accuracy_suite(accuracy))
    total: Counter[str] = Counter()
    for one, c in suites:
        for key in ("failures", "skipped"):
            one.set(key, str(c[key]))
        one.set("tests", str(sum(c.values())))
        one.set("errors", "0")
        total.update(c)
    root = ET.Element("testsuites", name=SUITE, tests=str(sum(total.values())),
                      failures=str(total["failures"]), errors="0",
                      skipped=str(total["skipped"]))
    for one, _ in suites:
        root.append(one)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _gate_text(v: dict[str, Any]) -> str:
    if v.get("drop") is None:
        return f"{v['metric']}: not measured (the runtime refused the variant)"
    from quantlab.harness.quantize.gate import drop_text

    return (f"{v['metric']} {v['value']:.4f}, "
            f"{drop_text(v['metric'], v['drop'], v['max_drop'], bool(v['passed']))}")


def _accuracy_suite(accuracy: dict[str, Any]) -> tuple[ET.Element, Counter[str]]:
    """The plan's accuracy gate (:func:`quantlab.harness.cli.plan_run.run_gate`): one case per
    variant."""
    suite = ET.Element("testsuite", name=f"{SUITE} accuracy gate")
    _properties(suite, {"data": str(accuracy.get("data", ""))})
    counts: Counter[str] = Counter()
    for v in accuracy["variants"]:
        case = ET.SubElement(suite, "testcase", name=v["scheme"] or Path(v["path"]).name,
                             classname=f"{SUITE}.accuracy.{Path(v['folder']).name}", time="0")
        if v["passed"]:
            ET.SubElement(case, "system-out").text = _gate_text(v)
            counts["passed"] += 1
        else:
            ET.SubElement(case, "failure", message=_gate_text(v), type="accuracy")
            counts["failures"] += 1
    return suite, counts


def _properties(suite: ET.Element, values: dict[str, str]) -> None:
    props = ET.SubElement(suite, "properties")
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=value)


def comparison_junit(c: Comparison, accuracy: dict[str, Any] | None = None) -> str:
    """JUnit XML of a comparison: one test case per matched pair (and the accuracy gate)."""
    suite = ET.Element("testsuite", name=f"{SUITE} compare {c.new} vs {c.baseline}")
    _properties(suite, {"baseline": c.baseline, "new": c.new,
                        "threshold": f"{100 * c.threshold:g}%",
                        "match": ",".join(c.match_keys), "rule": c.rule})
    counts: Counter[str] = Counter()
    for m in c.matches:
        case = ET.SubElement(suite, "testcase", name=_case_name(m.model, m.delegate, m.threads),
                             classname=_classname(m.device), time="0")
        text = match_text(m)
        if m.fails:
            kind = m.verdict if m.verdict in (SLOWER, FAILED) else "drift"
            failure = ET.SubElement(case, "failure", message=text, type=kind)
            failure.text = (f"{m.new_label} (run {c.new}) against {m.baseline_label} "
                            f"(run {c.baseline})\n{text}\n"
                            + (f"test: {c.tests[m.method]}\n" if m.method in c.tests else ""))
            counts["failures"] += 1
        elif m.verdict == UNTESTABLE:
            ET.SubElement(case, "skipped", message=f"untestable: {m.reason}")
            counts["skipped"] += 1
        else:
            ET.SubElement(case, "system-out").text = text
            counts["passed"] += 1
    for u in [*c.only_in_baseline, *c.only_in_new]:
        if u.verdict != NEW:
            _unmatched_case(suite, c, u, counts)
    lines = [f"only in new run: {u.label} ({u.status})" for u in c.only_in_new
             if u.verdict == NEW]
    if lines:
        ET.SubElement(suite, "system-out").text = "\n".join(lines)
    return _xml(suite, counts, accuracy)


def unmatched_text(u: Unmatched, allow_missing: bool = False) -> str:
    """One line for a job found in one run only (what a CI failure message shows)."""
    text = f"{u.verdict}: {u.reason or u.status}"
    if u.verdict == MISSING and allow_missing:
        text += " (accepted with --allow-missing)"
    return text


def _unmatched_case(suite: ET.Element, c: Comparison, u: Unmatched,
                    counts: Counter[str]) -> None:
    name = _case_name(u.model, u.delegate, u.threads) if u.model else u.label
    case = ET.SubElement(suite, "testcase", name=name,
                         classname=_classname(u.device) if u.device else SUITE, time="0")
    text = unmatched_text(u, c.allow_missing)
    if u.verdict == FAILED or (u.verdict == MISSING and not c.allow_missing):
        run = c.baseline if u.verdict == MISSING else c.new
        failure = ET.SubElement(case, "failure", message=text, type=u.verdict)
        failure.text = f"{u.label} (run {run})\n{text}\n"
        counts["failures"] += 1
    else:
        ET.SubElement(case, "skipped", message=text)
        counts["skipped"] += 1


def _entry_name(entry: JobEntry) -> str:
    name = Path(entry.job.model.path).name
    return f"{entry.job.model.scheme} ({name})" if entry.job.model.scheme else name


def _entry_figure(entry: JobEntry) -> str:
    summary = summarize(entry.raw) if entry.raw is not None else None
    if summary is None:
        return "no latency figures"
    text = f"{summary.statistic} {_ms(summary.value)} ({summary.method})"
    if summary.ci95:
        text += f", 95% CI {summary.ci95[0]:.3g}–{summary.ci95[1]:.3g} ms"
    return text


def run_junit(record: RunRecord, accuracy: dict[str, Any] | None = None) -> str:
    """JUnit XML of one run without a baseline: one test case per job (and the accuracy
    gate)."""
    suite = ET.Element("testsuite", name=f"{SUITE} bench {record.run.run_id}")
    _properties(suite, {"run": record.run.run_id, "tags": ",".join(record.tags)})
    counts: Counter[str] = Counter()
    for e in record.entries:
        case = ET.SubElement(suite, "testcase",
                             name=_case_name(_entry_name(e), e.job.delegate, e.job.threads),
                             classname=_classname(e.job.device_id), time="0")
        if e.status == "ok":
            ET.SubElement(case, "system-out").text = _entry_figure(e)
            counts["passed"] += 1
        elif e.status == "failed":
            ET.SubElement(case, "failure", message=f"failed: {e.error}", type="failed")
            counts["failures"] += 1
        else:
            ET.SubElement(case, "skipped", message=f"{e.status}: {e.error or 'not run'}")
            counts["skipped"] += 1
    return _xml(suite, counts, accuracy)


# ----------------------------------------------------------------------------- markdown

_ICONS = {SLOWER: "❌", FAILED: "❌", MISSING: "❌", FASTER: "🚀", SAME: "✅",
          UNTESTABLE: "⚠️"}


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _accuracy_markdown(accuracy: dict[str, Any] | None) -> list[str]:
    if accuracy is None:
        return []
    failed = accuracy["failed"]
    out = ["", f"#### Accuracy gate on {_cell(accuracy.get('data', ''))}", "",
           f"{'❌ ' + ', '.join(failed) + ' failed' if failed else '✅ every variant passed'}",
           "", "| | variant | folder | figure |", "|---|---|---|---|"]
    for v in accuracy["variants"]:
        out.append("| " + " | ".join(_cell(x) for x in (
            "✅" if v["passed"] else "❌", v["scheme"] or Path(v["path"]).name, v["folder"],
            _gate_text(v))) + " |")
    return out


def comparison_markdown(c: Comparison, accuracy: dict[str, Any] | None = None) -> str:
    """A Markdown summary of a comparison: counts, one table row per pair, notes (and the
    accuracy gate)."""
    counts = Counter(m.verdict for m in c.matches)
    counts.update(u.verdict for u in [*c.only_in_baseline, *c.only_in_new] if u.verdict != NEW)
    counts.update(f"drift {m.drift.verdict}" for m in c.matches
                  if m.drift is not None and m.drift.flagged)
    red = {SLOWER, FAILED, f"drift {SLOWER}"} | (set() if c.allow_missing else {MISSING})
    head = " · ".join(f"**{n} {v}**" if v in red else f"{n} {v}"
                      for v, n in counts.most_common())
    out = [f"### quantlab: {c.new} vs baseline {c.baseline}", "",
           f"{'❌ regression' if c.fails else '✅ no regression'} — {head or 'no pairs'} "
           f"(threshold {100 * c.threshold:g}%, matched on {', '.join(c.match_keys)})", "",
           "| | variant | device | delegate | thr | baseline | new | ratio [95% CI] | p "
           "| verdict |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for m in c.matches:
        stat = f"{m.statistic} " if m.statistic else ""
        ratio = f"×{m.ratio:.3f}" if m.ratio is not None else "–"
        if m.ratio_ci95:
            ratio += f" [{m.ratio_ci95[0]:.3f}–{m.ratio_ci95[1]:.3f}]"
        p = f"{m.p_value:.2g}" if m.p_value is not None else "–"
        verdict = m.verdict + (f" ({m.method})" if m.method else "")
        if m.drift is not None and m.drift.flagged:
            verdict += f"; **{m.drift.text()}**"
        elif m.drift is not None and m.drift.cumulative is not None:
            verdict += f"; ×{m.drift.cumulative:.3f} since {m.drift.reference_run}"
        icon = "❌" if m.fails else _ICONS.get(m.verdict, "")
        out.append("| " + " | ".join(_cell(x) for x in (
            icon, m.model, m.device, m.delegate, m.threads,
            stat + _ms(m.baseline_ms), stat + _ms(m.new_ms), ratio, p, verdict)) + " |")
    for u in [*c.only_in_baseline, *c.only_in_new]:
        if u.verdict == NEW:
            continue
        icon = "⚠️" if u.verdict == MISSING and c.allow_missing else _ICONS.get(u.verdict, "")
        out.append("| " + " | ".join(_cell(x) for x in (
            icon, u.model or u.label, u.device, u.delegate, u.threads or "", "–", "–", "–", "–",
            unmatched_text(u, c.allow_missing))) + " |")
    notes = [f"- {m.verdict} {_cell(m.new_label)}: {_cell(m.reason)}"
             for m in c.matches if m.reason]
    notes += [f"- only in baseline: {_cell(u.label)} ({u.status})" for u in c.only_in_baseline]
    notes += [f"- only in new run: {_cell(u.label)} ({u.status})" for u in c.only_in_new]
    methods = sorted({m.method for m in c.matches if m.method})
    notes += [f"- {method}: {c.tests[method]}" for method in methods]
    if methods:
        notes.append(f"- {c.rule}")
    if c.drift_rule:
        notes.append(f"- {c.drift_rule}")
    return "\n".join(out + (["", *notes] if notes else []) + _accuracy_markdown(accuracy)) \
        + "\n"


def run_markdown(record: RunRecord, accuracy: dict[str, Any] | None = None) -> str:
    """A Markdown summary of one run: one table row per job (and the accuracy gate)."""
    counts = Counter(e.status for e in record.entries)
    tags = f" · tags {', '.join(record.tags)}" if record.tags else ""
    out = [f"### quantlab bench {record.run.run_id}", "",
           " · ".join(f"{n} {s}" for s, n in counts.most_common()) + tags, "",
           "| | variant | device | delegate | thr | latency | status |",
           "|---|---|---|---|---:|---:|---|"]
    for e in record.entries:
        icon = {"ok": "✅", "failed": "❌"}.get(e.status, "⚠️")
        figure = _entry_figure(e) if e.status == "ok" else "–"
        status = e.status + (f": {e.error}" if e.error else "")
        out.append("| " + " | ".join(_cell(x) for x in (
            icon, _entry_name(e), e.job.device_id, e.job.delegate, e.job.threads, figure,
            status)) + " |")
    return "\n".join(out + _accuracy_markdown(accuracy)) + "\n"


# ----------------------------------------------------------------------------- files

WRITERS: dict[str, tuple[Callable[[Comparison, dict[str, Any] | None], str],
                         Callable[[RunRecord, dict[str, Any] | None], str]]] = {
    "junit": (comparison_junit, run_junit),
    "markdown": (comparison_markdown, run_markdown),
}
"""Format → (writer for a comparison, writer for a run without baseline)."""


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (parent folders made); returns the path."""
    return write_text_atomically(path, text)


def write_outputs(outputs: dict[str, str | None], comparison: Comparison | None = None,
                  record: RunRecord | None = None,
                  accuracy: dict[str, Any] | None = None) -> list[Path]:
    """Write each requested format (``{"junit": PATH, "markdown": PATH}``, None = not asked)
    for the comparison, else for the run, with the plan's accuracy gate when it ran;
    returns the files written."""
    written = []
    for fmt, path in outputs.items():
        if not path:
            continue
        for_comparison, for_run = WRITERS[fmt]
        if comparison is not None:
            text = for_comparison(comparison, accuracy)
        elif record is not None:
            text = for_run(record, accuracy)
        else:  # pragma: no cover  (callers pass one)
            raise ValueError("nothing to write")
        written.append(write_text(path, text))
    return written
